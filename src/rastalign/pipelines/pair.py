"""The public verbs: :func:`estimate`, :func:`apply` and :func:`align_image_pair`.

``estimate`` reads each input once, as a decimated proxy, and returns the model with
its evidence; ``apply`` warps every band of the moving image onto an output grid,
chunk by chunk, and writes it under a temporary name; ``align_image_pair`` does both
and reports. Option names are coregix's (see :mod:`rastalign.params`).
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from rastalign.errors import InputError, OverlapError, QualityError
from rastalign.geometry.grids import check_band, check_crs, check_crs_option, moving_to_fixed, output_grid, overlap_box
from rastalign.model.rebase import rebase, with_grids
from rastalign.sinks.atomic import check_distinct_outputs, check_output_path
from rastalign.io.raster import inspect_raster
from rastalign.geometry.affine import invert_affine
from rastalign.model.model import AlignmentModel
from rastalign.pipelines.result import AlignmentResult
from rastalign.sinks.models import save_model
from rastalign.params import EstimateParams, WarpParams, output_format_for, split_options
from rastalign.pipelines.apply import apply
from rastalign.runtime import running

if TYPE_CHECKING:  # annotations only: the solver loads scipy, imported where it runs
    from rastalign.tiepoints.pyramid import TiePoints

log = logging.getLogger(__name__)


@dataclass
class Estimate:
    """A model (fixed pixel -> moving pixel) and the evidence that justifies it."""

    model: AlignmentModel
    tiepoints: TiePoints
    quality: dict
    info: dict = field(default_factory=dict)


def _quality(tp: TiePoints, model, params: EstimateParams, solve_px: float, moving_px: float) -> dict:
    """Residual statistics of the inlier tie points, in moving pixels, solve pixels and CRS units.

    The pass/fail check uses solve pixels (the common resolution both images support),
    so a 0.3 m image aligned to a 10 m reference is judged at 10 m.
    """
    from rastalign.model.fit import passes

    inl = tp.inlier
    r = np.hypot(*tp.residual[inl].T) if inl.any() else np.array([np.nan])
    rms = float(np.sqrt(np.mean(r ** 2)))
    to_solve = moving_px / solve_px
    q = {"n_tie_points": int(len(tp)), "n_inliers": int(inl.sum()),
         "rms_residual_px": rms, "median_residual_px": float(np.median(r)),
         "p95_residual_px": float(np.percentile(r, 95)),
         "rms_residual_solve_px": rms * to_solve, "rms_residual_crs_units": rms * moving_px,
         "mean_reliability": float(np.mean(tp.reliability[inl])) if inl.any() else 0.0,
         "residual_field": model.field is not None, "solve_pixel_size": solve_px, "moving_pixel_size": moving_px}
    q["passed"] = passes(q["n_inliers"], rms * min(to_solve, 1.0), params.min_inliers, params.max_rms_px)
    return q


def estimate(moving_image_path, fixed_image_path, params: Optional[EstimateParams] = None, **options) -> Estimate:
    """Estimate the model mapping fixed pixels to moving pixels.

    Each input is a raster's path or URL, or an array source (:func:`rastalign.io.arrays.array_raster`), whose
    proxies and native windows are slices computed by the scheduler's workers.

    The fixed image may also be a :class:`~rastalign.io.proxy.PreparedRaster`: a stack's reference,
    inspected and decimated once.
    Raises :class:`InputError`, :class:`OverlapError` or :class:`AlignmentError` (with a
    one-line message) when the pair cannot be aligned trustworthily.
    """
    from rastalign.runtime.scheduler import single_threaded_blas

    with single_threaded_blas():
        return _estimate(moving_image_path, fixed_image_path, params or EstimateParams(**options))


def _estimate(moving_image_path, fixed_image_path, params):
    from rastalign._kernels.pixels import value_range
    from rastalign.io.proxy import decimation_factor, read_proxies
    from rastalign.model.uncertainty import predicted_block
    from rastalign.pipelines.refine import refine_native
    from rastalign.tiepoints.pyramid import build_levels, common_bias, fit_model, proxy_levels, solve

    t0 = time.perf_counter()
    mov, moving_image_path = _source(moving_image_path)
    fixed_proxy = getattr(fixed_image_path, "proxy", None)
    fix, fixed_image_path = _source(fixed_image_path)
    check_crs(mov, fix)
    check_band(mov, params.moving_band, "moving")
    check_band(fix, params.fixed_band, "fixed")
    oy0, oy1, ox0, ox1 = overlap_box(mov, fix)
    # read only the overlap: the fixed box, and the moving box its footprint needs
    fbox = (oy0, oy1, ox0, ox1) if params.clip_fixed_to_moving else (0, fix.shape[0], 0, fix.shape[1])
    res = params.solve_resolutions
    finest = None if not res or res[-1] == 0 else res[-1]
    ff = decimation_factor((fbox[1] - fbox[0], fbox[3] - fbox[2]), params.max_proxy_size, fix.resolution, finest)
    shared = fixed_proxy is not None and fixed_proxy.serves(params.fixed_band, ff, params.fixed_nodata)
    if shared:  # whole blocks of the reference's proxy, read once for the stack
        fbox = fixed_proxy.snap(fbox)
    to_moving, crs_fit_err = _grid_relation(mov, fix, fbox)
    mbox = _footprint_box(to_moving, fbox, mov.shape, margin=16)
    ratio = float(np.sqrt(abs(np.linalg.det(to_moving.linear[:, :2]))))  # moving px per fixed px
    fm = max(1, int(round(ff * ratio)))
    moving = (mov, params.moving_band, fm, params.moving_nodata, mbox)
    if shared:
        (mimg, mval), (fimg, fval) = read_proxies(moving)[0], fixed_proxy.crop(fbox)
    else:  # both in one compute: the workers read the two rasters side by side
        (mimg, mval), (fimg, fval) = read_proxies(moving, (fix, params.fixed_band, ff, params.fixed_nodata, fbox))
    for name, img, val, band in (("moving", mimg, mval, params.moving_band), ("fixed", fimg, fval, params.fixed_band)):
        if not val.any():
            raise InputError(f"the {name} image has no valid pixels (all nodata/NaN/Inf) in band {band} "
                             f"over the overlap")
        lo, hi = value_range(img, val)
        if hi == lo:
            raise InputError(f"the {name} image is constant (value {lo:g}): nothing to align on")
    # work in coordinates local to the two boxes; shift back at the end
    of, om = (float(fbox[2]), float(fbox[0])), (float(mbox[2]), float(mbox[0]))
    initial = shift_model(to_moving, of, om, inverse=True)
    # mutual validity on the fixed proxy grid, over the overlap
    inside, mval_on_f = _moving_validity_on_fixed(initial, fimg.shape, ff, mval, fm)
    roi = inside if params.clip_fixed_to_moving else np.ones_like(inside)
    mutual = fval & mval_on_f & roi
    frac = mutual.sum() / max(roi.sum(), 1)
    if frac < params.min_valid_fraction or mutual.sum() < 64:
        raise OverlapError(f"too little valid data: {100 * frac:.2f}% of the overlap is valid in both images "
                           f"(--min-valid-fraction {params.min_valid_fraction:g})")
    if params.enforce_mutual_valid_mask:
        fval = fval & mval_on_f
    sr = list(res[:-1]) if res else []
    edges = params.use_edge_proxies
    # a stack's reference: its pyramid is built once for every scene that sees the same crop and mask
    fixed_levels = fixed_proxy.derived(("levels", fbox, edges), fval, lambda: proxy_levels(fimg, fval, edges)) \
        if shared else None
    levels = build_levels(fimg, fval, mimg, mval, ff, fm, edges, fixed_levels=fixed_levels)
    if sr:  # keep the levels nearest to the requested coarser resolutions
        wanted = {min(range(len(levels)), key=lambda i: abs(levels[i].f_fixed * fix.resolution - r)) for r in sr if r}
        levels = [lv for i, lv in enumerate(levels) if i == 0 or i in wanted] or levels[:1]
    domain = (float(ox0) - of[0], float(oy0) - of[1], float(ox1 - 1) - of[0], float(oy1 - 1) - of[1])
    t1 = time.perf_counter()
    # refine at native resolution only when both proxies were decimated (same-scale natives)
    refine = ff > 1 and fm > 1
    result = solve(levels, initial, domain, window=params.window, min_valid=params.min_window_valid_fraction,
                   seed=params.seed, residual_model=params.residual_model, max_tie_points=params.max_tie_points,
                   native_refinement=refine)
    tp, fitted, field_info = result.tiepoints, shift_model(result.model, of, om), result.field_info
    tp.fixed = tp.fixed + np.array(of)
    tp.moving = tp.moving + np.array(om)
    domain = (float(ox0), float(oy0), float(ox1 - 1), float(oy1 - 1))
    if refine:
        # the proxies were decimated: re-measure a spread of tie points at native resolution
        ntp = refine_native(fitted, tp, fixed_image_path, moving_image_path, params.fixed_band, params.moving_band,
                            params.fixed_nodata, params.moving_nodata, fix.shape, mov.shape,
                            params.use_edge_proxies)
        if len(ntp) >= max(params.min_inliers, 12):
            fitted, field_info = fit_model(ntp, domain, allow_field=True, threshold=2.5, seed=params.seed,
                                           residual_model=params.residual_model)
            tp = ntp
    t2 = time.perf_counter()
    model = AlignmentModel(fitted.affine, fitted.field, output_shape=fix.shape, moving_shape=mov.shape)
    keep = tp.reliability >= params.min_reliability
    tp.inlier = tp.inlier & keep
    quality = _quality(tp, model, params, max(ff * fix.resolution, fm * mov.resolution), mov.resolution)
    # a bias every tie point shares at one sub-pixel phase: measured where the proxies are native pixels
    common = common_bias(tp.moving[tp.inlier], fimg, fval, params.window, params.use_edge_proxies) \
        if ff == 1 and fm == 1 else None
    quality["predicted_error_px"] = predicted_block(tp.fixed, tp.moving, tp.weight, tp.inlier, domain,
                                                    (field_info or {}).get("chosen"), _overlap_points(mutual, ff, fbox),
                                                    mov.resolution, params.seed, common)
    info = {"proxy_factor": {"fixed": ff, "moving": fm}, "valid_overlap_fraction": float(frac),
            "resolutions": {"fixed": fix.resolution, "moving": mov.resolution,
                            "solve": max(ff * fix.resolution, fm * mov.resolution), "moving_px_per_fixed_px": ratio},
            "crs_relation_fit_error_px": crs_fit_err,
            "inputs": {"fixed": str(fix.path or "an array"), "fixed_band": params.fixed_band,
                       "fixed_shape": list(fix.shape), "moving_shape": list(mov.shape)},
            "levels": result.levels, "field": field_info, "native_refinement": bool(refine),
            "timings_s": {"proxies": t1 - t0, "solve": t2 - t1}}
    from rastalign.model.uncertainty import accuracy_failure

    err = accuracy_failure(quality["predicted_error_px"], params.max_error_px)
    if not quality["passed"]:
        from rastalign.model.fit import quality_failure

        err = quality_failure(quality["n_inliers"], quality["n_tie_points"], "tie points", quality["rms_residual_px"],
                              params.min_inliers, params.max_rms_px, "--max-rms")
    if err is not None:
        quality["passed"] = False
        err.estimate = Estimate(model, tp, quality, info)  # the evidence, for the report the user asked for
        raise err
    return Estimate(model, tp, quality, info)


def _overlap_points(mutual, f, fbox, most=4096):
    """Full-resolution fixed pixels ``(x, y)`` of the valid overlap (the proxy's ``mutual`` pixels, at most
    about ``most`` of them, evenly thinned)."""
    step = max(1, int(np.ceil(np.sqrt(np.count_nonzero(mutual) / most))))
    ys, xs = np.nonzero(mutual[::step, ::step])
    return np.column_stack([fbox[2] + f * step * xs + (f - 1) / 2.0, fbox[0] + f * step * ys + (f - 1) / 2.0])


def _source(source):
    """``(info, source)`` of an input: an array source is both; a prepared raster holds its info, an inspected
    one is its info, a path is inspected; a file is read by tasks, which may run in other folders, through its
    absolute path."""
    if getattr(source, "data", None) is not None:
        return source, source
    from rastalign.io.paths import absolute_path

    if getattr(source, "proxy", None) is not None:
        info = source.info
    elif getattr(source, "grid", None) is not None:
        info = source
    else:
        info = inspect_raster(absolute_path(source))
    return info, absolute_path(info.path)


def _grid_relation(mov, fix, fbox):
    """Fixed px -> moving px as a model: exact affine in one CRS, else fitted through PROJ
    over the fixed box. Returns ``(model, fit_error_px)``."""
    from rastalign.geometry.grids import pixel_mapping, same_crs
    from rastalign.model.fit import fit_mapping

    if same_crs(mov.crs, fix.crs):
        return AlignmentModel(invert_affine(moving_to_fixed(mov, fix))), 0.0
    f = pixel_mapping(fix, mov)
    y0, y1, x0, x1 = fbox
    local, err = fit_mapping(lambda x, y: f(np.asarray(x) + x0, np.asarray(y) + y0), (y1 - y0, x1 - x0))
    return shift_model(local, (x0, y0), (0.0, 0.0)), err


def _footprint_box(fixed_to_moving, fbox, mshape, margin=16):
    """Moving-pixel box ``(y0, y1, x0, x1)`` covering the fixed box's footprint plus a margin."""
    y0, y1, x0, x1 = fbox
    t = np.linspace(0.0, 1.0, 33)
    bx = np.concatenate([x0 + t * (x1 - x0), np.full(33, x1), x0 + t * (x1 - x0), np.full(33, x0)])
    by = np.concatenate([np.full(33, y0), y0 + t * (y1 - y0), np.full(33, y1), y0 + t * (y1 - y0)])
    xs, ys = fixed_to_moving(bx, by)
    return (max(int(np.floor(ys.min())) - margin, 0), min(int(np.ceil(ys.max())) + margin, mshape[0]),
            max(int(np.floor(xs.min())) - margin, 0), min(int(np.ceil(xs.max())) + margin, mshape[1]))


def shift_model(model, of, om, inverse=False):
    """Re-express a fixed->moving model between global pixels and pixels local to boxes with
    origins ``of`` (fixed) and ``om`` (moving), local = global - origin.

    Local -> global (default): ``t = t' - A of + om`` and the field's origin moves by ``+of``;
    ``inverse=True`` goes global -> local.
    """
    of, om = np.asarray(of, float), np.asarray(om, float)
    aff = np.asarray(model.affine, float).copy()
    lin = aff[:, :2]
    if inverse:
        aff[:, 2] = aff[:, 2] + lin @ of - om
    else:
        aff[:, 2] = aff[:, 2] - lin @ of + om
    fld = model.field
    if fld is not None:
        d = -of if inverse else of
        fld = dataclasses.replace(fld, origin=(fld.origin[0] + d[0], fld.origin[1] + d[1]))
    return AlignmentModel(aff, fld)


def _moving_validity_on_fixed(initial, fshape, ff, mval, fm):
    """(inside moving footprint, moving valid) on the fixed proxy grid: each fixed proxy pixel's nearest moving
    proxy pixel through ``initial`` (compiled, a row at a time)."""
    from rastalign._kernels.bspline import footprint

    return footprint(initial.geometry(fshape, np.array([[ff, 0.0, (ff - 1) / 2.0], [0.0, ff, (ff - 1) / 2.0]])),
                     mval, fm)


def align_image_pair(moving_image_path, fixed_image_path, output_image_path, **options) -> AlignmentResult:
    """Estimate the model, warp every band of the moving image and write it; see :mod:`rastalign.params`.

    Extra options: ``temp_dir``, ``keep_temp_dir``, ``model_out``, ``report_out``, ``plot``. The fixed image may
    be a :class:`~rastalign.io.proxy.PreparedRaster` (a stack's reference, inspected and decimated once).
    """
    t0 = time.perf_counter()
    s = split_options(options)
    rest, output = s.extra, s.output
    prepared = fixed_image_path if getattr(fixed_image_path, "proxy", None) is not None else None
    fixed_image_path = prepared.path if prepared is not None else fixed_image_path
    if output.correction == "georef":
        from rastalign.sinks.georef import check_georef_output

        check_georef_output(output_image_path, output, rest)
    else:
        output_format_for(output_image_path, output.output_format)  # a wrong suffix is refused before any work
    model_out = rest.get("model_out") or f"{output_image_path}.model.json"
    check_distinct_outputs({"--output-image": output_image_path, "--model-out": model_out,
                            "--report-out": rest.get("report_out"), "--plot": rest.get("plot")})
    out = check_output_path(output_image_path, [moving_image_path, fixed_image_path], output.overwrite)
    check_output_path(model_out, [moving_image_path, fixed_image_path, output_image_path], output.overwrite)
    for extra in (rest.get("report_out"), rest.get("plot")):
        if extra:
            check_output_path(extra, [moving_image_path, fixed_image_path, output_image_path, model_out], True)
    if rest.get("plot"):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install 'rastalign[plot]'") from None
    check_crs_option(rest.get("output_crs"))
    # the headers too are read where the tasks run: a remote cluster's workers may see files this process cannot
    with running(s.run):
        return _align(moving_image_path, prepared or fixed_image_path, output_image_path, out, model_out, s, t0)


def _align(moving_image_path, fixed, output_image_path, out, model_out, s, t0):
    """The body of :func:`align_image_pair`, on its scheduler; ``out`` is the checked output path, ``s`` the
    :class:`~rastalign.params.Settings`."""
    from rastalign.runtime.progress import stage
    from rastalign.pipelines.report import build_report, write_report

    est_p, rest = s.estimate, s.extra
    mov = inspect_raster(moving_image_path)
    prepared = getattr(fixed, "proxy", None) is not None
    fix = fixed.info if prepared else inspect_raster(fixed)
    check_crs(mov, fix)  # before the output grid relates them
    like = inspect_raster(rest["like"]) if rest.get("like") else None
    grid = output_grid(mov, fix, s.output.output_on_moving_grid, est_p.clip_fixed_to_moving, like,
                       rest.get("output_crs"), rest.get("output_resolution"))  # every grid checked before any work
    work = Path(tempfile.mkdtemp(prefix="rastalign_", dir=rest.get("temp_dir")))
    keep = bool(rest.get("keep_temp_dir"))
    try:
        stage("estimate")
        try:
            est = estimate(mov, fixed if prepared else fix, est_p)  # each input inspected once
        except QualityError as exc:
            raise _failed(exc, mov, fix, grid, work, keep, rest) from None
        model, rebase_err = rebase(est.model, grid, fix)
        model = with_grids(model, output=grid, moving=mov.grid, **({"solve": fix.grid} if grid.pre is not None else {}))
        est.info["output_grid_fit_error_px"] = rebase_err
        t1 = time.perf_counter()
        stage("warp + write")
        if s.output.correction == "georef":
            from rastalign.sinks.georef import write_georef

            stats = write_georef(moving_image_path, model, mov, out)
        else:
            stats = apply(mov, model, out, grid, s.warp, est_p.moving_nodata, s.warp.output_nodata, fix,
                          s.output.output_format)
        report = build_report(est, model, stats, mov, fix, grid, s.output.output_on_moving_grid,
                              {"estimate_s": t1 - t0, "warp_write_s": stats["warp_write_s"],
                               "total_s": time.perf_counter() - t0})
        save_model(model, model_out)
        write_report(report, est, work, rest.get("report_out"), rest.get("plot"))
        georef = (report.get("output") or {}).get("georeference")  # --correction georef: what holds the model
        return AlignmentResult(str(output_image_path), str(work) if keep else None, str(model_out), model,
                               est.quality, report, {"georeference": georef} if georef else {})
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _failed(exc, mov, fix, grid, work, keep, rest):
    """A failed quality check still writes what the user asked for to find out why: the report (marked
    failed), the plot and the kept working folder; the image is not written. Returns the error to raise,
    its message naming where they are."""
    from rastalign.pipelines.report import plain_correction, write_report

    est = getattr(exc, "estimate", None)
    wanted = [p for p in (rest.get("report_out"), rest.get("plot")) if p] + ([str(work)] if keep else [])
    if est is None or not wanted:
        return exc
    model, _ = rebase(est.model, grid, fix)
    report = {"status": "failed", "error": str(exc), "correction": plain_correction(model, mov, grid),
              "quality": est.quality, "estimation": est.info, "model": model.to_dict(),
              "moving": {"path": mov.path, "shape": list(mov.shape)}, "fixed": {"path": fix.path, "shape": list(fix.shape)}}
    write_report(report, est, work, rest.get("report_out"), rest.get("plot"))
    return QualityError(f"{exc}; no image written; see {', '.join(wanted)}")

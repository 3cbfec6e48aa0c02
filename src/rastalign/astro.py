"""Astronomy: align FITS frames (or arrays, or detection tables) by their stars.

Pipeline: detections (``sep`` per chunk, or tables / SExtractor catalogues) -> spalipy's
filters -> quad matching -> robust full affine -> regularised spline residual field
(cross-validated; flat when there is no distortion) -> warp onto the **template grid**
chunk by chunk -> FITS written under a temporary name and renamed.

The fitted :class:`~rastalign.model.AlignmentModel` is a pull map: **output (template)
pixel -> source pixel**, ``(x, y)``, pixel centres at integers, 0-based.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from scipy.spatial import cKDTree

from .errors import AlignmentError, InputError, QualityError
from .io.catalogs import as_detections, read_sextractor
from .model import AlignmentModel, apply_affine, fit_affine, fit_residual_field, robust_affine
from .model.affine import IDENTITY
from .tiepoints.detect import detect, detect_array, filter_detections
from .tiepoints.quads import cross_match, match_detections

log = logging.getLogger(__name__)

POLY_DEGREES = (3, 4, 5)  # SIP-like polynomial candidates beside the splines
INTERP = {0: "nearest", 1: "bilinear", 2: "cubic", 3: "cubic", 4: "lanczos", 5: "lanczos"}
MATCH_KEYS = ("n_quad_det", "min_quad_sep", "max_match_dist", "min_n_match", "sub_tile", "max_quad_cand",
              "patience_quad_cand", "max_quad_hash_dist", "quad_edge_buffer")
DEFAULTS = dict(n_det=None, n_quad_det=20, min_quad_sep=50.0, max_match_dist=3.0, min_n_match=100, sub_tile=1,
                max_quad_cand=10, patience_quad_cand=2, max_quad_hash_dist=0.005, quad_edge_buffer=0.0,
                spline_order=3, interp_order=3, sep_thresh=5.0, min_fwhm=1.0, bad_flag_bits=0, min_sep=None,
                preserve_footprints=False, output_shape=None, cval=np.nan, cval_mask=1, seed=0, max_rms=1.0)


def resampling_for(interp_order):
    """spalipy's ``interp_order`` (0-5) -> warp kernel name (0 nearest, 1 bilinear, 2-3 cubic, 4-5 lanczos)."""
    try:
        return INTERP[int(interp_order)]
    except (KeyError, ValueError, TypeError):
        raise InputError(f"--interp-order must be an integer 0..5; got {interp_order!r}") from None


def _options(opts):
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}")
    o = dict(DEFAULTS, **{k: v for k, v in opts.items()})
    if o["min_sep"] is None:
        o["min_sep"] = 2.0 * float(o["max_match_dist"])
    for k in ("max_match_dist", "max_quad_hash_dist"):
        if not float(o[k]) > 0:
            raise InputError(f"--{k.replace('_', '-')} must be > 0; got {o[k]}")
    for k in ("n_quad_det", "sub_tile", "max_quad_cand", "min_n_match"):
        if int(o[k]) < 1:
            raise InputError(f"--{k.replace('_', '-')} must be >= 1; got {o[k]}")
    if int(o["n_quad_det"]) < 4:
        raise InputError(f"--n-quad-det must be >= 4 (a quad has 4 stars); got {o['n_quad_det']}")
    resampling_for(o["interp_order"])
    return o


def _xy(t):
    return np.column_stack([np.asarray(t["x"], float), np.asarray(t["y"], float)])


def _weights(sd, td):
    """Relative inverse-variance weights of matched pairs: centroid sigma ~ fwhm^2 / flux per frame."""
    def rel(t):
        fw = np.asarray(t["fwhm"], float)
        fw = np.where(np.isfinite(fw) & (fw > 0), fw, np.nanmedian(fw) if np.isfinite(fw).any() else 1.0)
        sig = fw ** 2 / np.maximum(np.asarray(t["flux"], float), 1e-30)
        return sig / np.median(sig)
    w = 1.0 / (rel(sd) ** 2 + rel(td) ** 2 + 0.1)
    return w / w.mean()


def _split_linear(field, t, w):
    """Move the affine trend of ``field`` (seen at points ``t``) out of it: returns (trend 2x3, field')."""
    from .model import SplineField

    fx, fy = field(t[:, 0], t[:, 1])
    lin = fit_affine(t, np.column_stack([fx, fy]), w)
    ny, nx = field.coef_x.shape
    gx = field.origin[0] + (np.arange(nx) - 1) * field.spacing[0]
    gy = field.origin[1] + (np.arange(ny) - 1) * field.spacing[1]
    X, Y = np.meshgrid(gx, gy)
    lx, ly = apply_affine(lin, X, Y)
    return lin, SplineField(field.origin, field.spacing, field.nodes, field.coef_x - lx, field.coef_y - ly)


def _fit(t, s, w, o, domain):
    """Pull-map fit template px ``t`` -> source px ``s``: robust affine, then (optionally) the field.

    Backfitting with the field's affine trend moved into the affine each round, outliers
    re-judged on the full model's residuals (4 robust sigma, never beyond max_match_dist).
    """
    mmd = float(o["max_match_dist"])
    m, use = robust_affine(t, s, w, threshold=mmd, seed=int(o["seed"]))
    field, finfo = None, {"chosen": None, "reason": "spline_order=0 (affine only)"}
    choice = None
    for it in range(12):
        r = s - np.column_stack(apply_affine(m, t[:, 0], t[:, 1]))
        if int(o["spline_order"]) > 0:
            cand = use if field is not None else np.hypot(*(r - np.median(r[use], axis=0)).T) < mmd
            kw = {"poly_degrees": POLY_DEGREES} if it < 3 or choice is None else {"choice": choice}
            field, info = fit_residual_field(t[cand], r[cand], w[cand], domain, seed=int(o["seed"]), **kw)
            if it < 3:  # the choice is re-made until the affine/field split has settled
                finfo, choice = info, info.get("chosen")
            if field is not None:
                lin, field = _split_linear(field, t[cand], w[cand])
                m = m + lin
                r = s - np.column_stack(apply_affine(m, t[:, 0], t[:, 1]))
        f = np.zeros_like(r) if field is None else np.column_stack(field(t[:, 0], t[:, 1]))
        e = np.hypot(*(r - f).T)
        sigma = 1.4826 * np.median(e[use]) if use.sum() else mmd
        new = e < min(mmd, max(4.0 * sigma, 0.02))
        if new.sum() < 3:
            break
        m = fit_affine(t[new], s[new] - f[new], w[new])
        if np.array_equal(new, use) and (field is None or it >= 3):
            break
        use = new
    return m, field, use, finfo


def fit_detections(src_det, tmp_det, source_shape, template_shape, **opts):
    """Match and fit. Returns ``(AlignmentModel on the template grid, evidence dict)``."""
    o = _options(opts)
    t0 = time.perf_counter()
    sd = filter_detections(as_detections(src_det, "source detections"), o["min_fwhm"], o["bad_flag_bits"],
                           o["min_sep"], o["n_det"], "source", min_n=int(o["min_n_match"]))
    td = filter_detections(as_detections(tmp_det, "template detections"), o["min_fwhm"], o["bad_flag_bits"],
                           o["min_sep"], o["n_det"], "template", min_n=int(o["min_n_match"]))
    sxy, txy = _xy(sd), _xy(td)
    i, j, _, qinfo = match_detections(sxy, txy, source_shape, template_shape, **{k: o[k] for k in MATCH_KEYS})
    ny, nx = template_shape
    domain = (0.0, 0.0, float(nx - 1), float(ny - 1))
    m, field, use, finfo = _fit(txy[j], sxy[i], _weights(sd[i], td[j]), o, domain)
    # re-match everything through the fitted model (gains stars the affine-only pass missed)
    model = AlignmentModel(m, field, IDENTITY.copy(), tuple(template_shape), tuple(source_shape))
    px, py = model(txy[:, 0], txy[:, 1])
    jj, ii = cross_match(np.column_stack([px, py]), cKDTree(sxy), float(o["max_match_dist"]))
    if len(jj) > len(j):
        i, j = ii, jj
        m, field, use, finfo = _fit(txy[j], sxy[i], _weights(sd[i], td[j]), o, domain)
    model = AlignmentModel(m, field, IDENTITY.copy(), tuple(template_shape), tuple(source_shape),
                           meta={"kind": "fits-stars", "spline": finfo.get("chosen")})
    ev = _evidence(model, sd[i], td[j], use, qinfo, finfo)
    ev["fit_s"] = time.perf_counter() - t0
    st = ev["stats"]
    if st["n_inliers"] < 6 or not st["rms_px"] <= float(o["max_rms"]):
        raise QualityError(f"alignment fails the quality check: {st['n_inliers']} inliers of {st['n_matched']} "
                           f"matches, RMS residual {st['rms_px']:.3f} px (max_rms={o['max_rms']} px)")
    model = _output_grid(model, o, source_shape, template_shape)
    return model, ev


def _evidence(model, sm, tm, use, qinfo, finfo):
    txy, sxy = _xy(tm), _xy(sm)
    ix, iy = model.inverse_points(sxy[:, 0], sxy[:, 1])
    d = np.column_stack([txy[:, 0] - ix, txy[:, 1] - iy])  # template - transformed source (spalipy's sign)
    du = d[use]
    stats = {"n_matched": int(len(d)), "n_inliers": int(use.sum()),
             "rms_x_px": float(np.sqrt(np.mean(du[:, 0] ** 2))), "rms_y_px": float(np.sqrt(np.mean(du[:, 1] ** 2))),
             "median_x_px": float(np.median(du[:, 0])), "median_y_px": float(np.median(du[:, 1])),
             "mean_x_px": float(du[:, 0].mean()), "mean_y_px": float(du[:, 1].mean()),
             "std_x_px": float(du[:, 0].std()), "std_y_px": float(du[:, 1].std()),
             "rms_px": float(np.sqrt(np.mean((du ** 2).sum(1)))),
             "median_residual_px": float(np.median(np.hypot(du[:, 0], du[:, 1]))),
             "spline": finfo.get("chosen"), "n_source_det": qinfo["n_source_det"],
             "n_template_det": qinfo["n_template_det"]}
    return {"source_det_matched": sm, "template_det_matched": tm, "inliers": use, "residuals": d,
            "stats": stats, "quads": qinfo, "field": finfo}


def _output_grid(model, o, source_shape, template_shape):
    """Template grid by default; ``output_shape`` (rows, cols) crops/extends it; footprints pad it."""
    if o["preserve_footprints"]:
        ny, nx = source_shape
        e = np.linspace(0, 1, 65)
        bx = np.concatenate([e * (nx - 1), np.full(65, nx - 1.0), e * (nx - 1), np.zeros(65)])
        by = np.concatenate([np.zeros(65), e * (ny - 1), np.full(65, ny - 1.0), e * (ny - 1)])
        tx, ty = model.inverse_points(bx, by)
        x0, y0 = int(np.floor(min(tx.min(), 0))), int(np.floor(min(ty.min(), 0)))
        x1 = int(np.ceil(max(tx.max(), template_shape[1] - 1)))
        y1 = int(np.ceil(max(ty.max(), template_shape[0] - 1)))
        pre = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
        return model.with_output_grid(pre, (y1 - y0 + 1, x1 - x0 + 1))
    if o["output_shape"] is not None:
        shp = tuple(int(v) for v in o["output_shape"])
        if len(shp) != 2 or min(shp) < 1:
            raise InputError(f"--output-shape takes two positive sizes ROWS,COLS; got {o['output_shape']}")
        return model.with_output_grid(IDENTITY.copy(), shp)
    return model


def log_stats(stats, logger=log):
    logger.info("matched %d detections (%d inliers) within max_match_dist", stats["n_matched"], stats["n_inliers"])
    for ax in ("x", "y"):
        logger.info("%s residuals (template - transformed source): mean %.3f, median %.3f, std %.3f, rms %.3f px",
                    ax, stats[f"mean_{ax}_px"], stats[f"median_{ax}_px"], stats[f"std_{ax}_px"],
                    stats[f"rms_{ax}_px"])


# ----------------------------------------------------------------------------- files
def _detections_from_file(path, ext, o, name):
    from .io.fits import inspect_fits, reader

    info = inspect_fits(path, ext)
    det = detect(reader(path, info.ext), info.shape, sep_thresh=float(o["sep_thresh"]), name=f"{name} {path}")
    return det, info


def estimate_fits(source_path, template_path=None, source_ext=None, template_ext=None, source_cat=None,
                  template_cat=None, **opts):
    """Fit the model that aligns a FITS source onto a FITS template (or a template catalogue).

    Returns ``(AlignmentModel, evidence)``; ``evidence["stats"]`` holds the fit statistics and
    ``evidence["source_info"]``/``["template_info"]`` the inspected HDUs.
    """
    from .io.fits import inspect_fits

    o = _options({k: v for k, v in opts.items() if k in DEFAULTS})
    sinfo = inspect_fits(source_path, source_ext)
    if source_cat is not None:
        sdet = read_sextractor(source_cat)
    else:
        sdet, sinfo = _detections_from_file(source_path, source_ext, o, "source")
    tinfo = None
    if template_path is not None:
        tinfo = inspect_fits(template_path, template_ext)
    if template_cat is not None:
        tdet = read_sextractor(template_cat)
    elif template_path is not None:
        tdet, tinfo = _detections_from_file(template_path, template_ext, o, "template")
    else:
        raise InputError("a template is needed: a template FITS (-tf) or a template catalogue (-tc)")
    tshape = tinfo.shape if tinfo is not None else sinfo.shape
    model, ev = fit_detections(sdet, tdet, sinfo.shape, tshape, **o)
    ev.update(source_info=sinfo, template_info=tinfo)
    return model, ev


class _Sink:
    """Adapter: NaN -> ``cval`` in the data, and the invalid mask into the writer's MASK HDU."""

    def __init__(self, writer, cval, cval_mask, with_mask):
        self.w, self.cval, self.cval_mask, self.with_mask = writer, cval, cval_mask, with_mask

    def write(self, box, arr):
        bad = ~np.isfinite(arr).all(axis=0)
        if not np.isnan(self.cval):
            arr = arr.copy()
            arr[:, bad] = self.cval
        self.w.write(box, arr)
        if self.with_mask:
            self.w.write_mask(box, np.where(bad, self.cval_mask, 0))


def align_fits(source_path, output_path, template_path=None, overwrite=False, scheduler="threads", chunks=None,
               split_factor=None, model_out=None, write_mask=False, source_mask_ext=None, **opts):
    """Align ``source_path`` onto the template grid and write ``output_path`` (FITS, float32).

    Options are spalipy's (``n_det``, ``n_quad_det``, ... ``cval``) plus ``source_ext``,
    ``template_ext``, ``source_cat``, ``template_cat``. Returns a JSON-able summary.
    """
    from .io.atomic import check_output_path
    from .io.fits import FitsWriter, reader, resolve_ext
    from .warp.dask import run_warp
    from .warp.plan import plan_warp

    t0 = time.perf_counter()
    check_output_path(output_path, [source_path, template_path, opts.get("source_cat"), opts.get("template_cat")],
                      overwrite)
    o = _options({k: v for k, v in opts.items() if k in DEFAULTS})
    model, ev = estimate_fits(source_path, template_path, **opts)
    t_est = time.perf_counter() - t0
    sinfo, tinfo = ev["source_info"], ev["template_info"]
    wcs_header = None
    if tinfo is not None and tinfo.wcs is not None:
        wcs_header = tinfo.header.copy()
        wcs_header["CRPIX1"] = float(wcs_header.get("CRPIX1", 0.0)) - model.pre[0, 2]
        wcs_header["CRPIX2"] = float(wcs_header.get("CRPIX2", 0.0)) - model.pre[1, 2]
    mask_ext = None if source_mask_ext is None else resolve_ext(source_path, source_mask_ext)
    plan = plan_warp(model.output_shape, 1, resampling_for(o["interp_order"]), split_factor, chunks)
    extra = {"RAMODEL": "rastalign FITS stars", "RANMATCH": ev["stats"]["n_matched"],
             "RARMS": round(ev["stats"]["rms_px"], 5)}
    with FitsWriter(output_path, model.output_shape, 1, "float32", header=sinfo.header, wcs_header=wcs_header,
                    tags=extra, mask=write_mask or source_mask_ext is not None) as w:
        sink = _Sink(w, float(o["cval"]), int(o["cval_mask"]), w.mmask is not None)
        wstats = run_warp(reader(source_path, sinfo.ext, mask_ext), sinfo.shape, model, plan, sink, "float32",
                          np.nan, scheduler=scheduler)
        w.commit()
    if model_out:
        model.to_json(model_out)
    st = ev["stats"]
    return {"output_image_path": str(output_path), "model_path": str(model_out) if model_out else None,
            "output_shape": list(model.output_shape), "source_shape": list(sinfo.shape),
            "quality": {"n_tie_points": st["n_matched"], "n_inliers": st["n_inliers"], "rms_residual_px": st["rms_px"],
                        "median_residual_px": st["median_residual_px"]},
            "stats": st, "model": model.to_dict(), "valid_pixels": wstats["valid_pixels"],
            "timings_s": {"estimate": round(t_est, 3), "warp_write": round(wstats["warp_write_s"], 3),
                          "total": round(time.perf_counter() - t0, 3)}}


# ----------------------------------------------------------------------------- spalipy-like class
class Spalipy:
    """spalipy's class for in-memory data: same constructor arguments and attributes.

    ``source_data``/``template_data`` are 2-D arrays (NaN = invalid), ``source_mask`` a
    boolean array (True = masked), ``source_det``/``template_det`` astropy Tables with
    ``x, y, flux, fwhm, flag`` (0-based). Detection happens in ``__init__`` as in spalipy;
    ``align()`` matches, fits a *full* affine and the regularised spline field, and warps
    onto the template grid. Differences from spalipy: ``cval`` defaults to NaN and
    ``cval_mask`` to 1 (outside the footprint is masked); ``min_sep=None`` is
    ``2 * max_match_dist``; ``spline_order > 0`` turns on the cross-validated cubic field.
    """

    columns = ["x", "y", "flux", "fwhm", "flag"]
    x_col, y_col, flux_col, fwhm_col, flag_col = columns

    def __init__(self, source_data, source_mask=None, template_data=None, source_det=None, template_det=None,
                 output_shape=None, n_det=None, n_quad_det=20, min_quad_sep=50, max_match_dist=3,
                 min_n_match=100, sub_tile=1, max_quad_cand=10, quad_edge_buffer=0, patience_quad_cand=2,
                 max_quad_hash_dist=0.005, spline_order=3, interp_order=3, sep_thresh=5, min_fwhm=1,
                 bad_flag_bits=0, min_sep=None, preserve_footprints=False, cval=np.nan, cval_mask=1,
                 skip_checking=False, copy=True, use_memmap=False, temp_dir=None, thread_pool_max=None, seed=0):
        if isinstance(source_data, (list, tuple)):
            raise InputError("multi-image (list) mode is not supported: align one source array per instance")
        self.source_data = np.array(source_data, dtype=float, copy=copy)
        if self.source_data.ndim != 2:
            raise InputError(f"source_data must be a 2-D array; got shape {self.source_data.shape}")
        self.source_mask = None if source_mask is None else np.asarray(source_mask, bool)
        if self.source_mask is not None and self.source_mask.shape != self.source_data.shape:
            raise InputError(f"source_mask shape {self.source_mask.shape} differs from source_data "
                             f"{self.source_data.shape}")
        self.template_data = None if template_data is None else np.asarray(template_data, float)
        if self.template_data is None and template_det is None:
            raise InputError("either template_data or template_det must be given")
        if preserve_footprints and self.template_data is None:
            raise InputError("preserve_footprints needs template_data")
        self.options = _options(dict(
            n_det=n_det, n_quad_det=n_quad_det, min_quad_sep=min_quad_sep, max_match_dist=max_match_dist,
            min_n_match=min_n_match, sub_tile=sub_tile, max_quad_cand=max_quad_cand, quad_edge_buffer=quad_edge_buffer,
            patience_quad_cand=patience_quad_cand, max_quad_hash_dist=max_quad_hash_dist, spline_order=spline_order,
            interp_order=interp_order, sep_thresh=sep_thresh, min_fwhm=min_fwhm, bad_flag_bits=bad_flag_bits,
            min_sep=min_sep, preserve_footprints=preserve_footprints, output_shape=output_shape, cval=cval,
            cval_mask=cval_mask, seed=seed))
        for k, v in self.options.items():
            setattr(self, k, v)
        valid = None if self.source_mask is None else ~self.source_mask
        self.source_det = (as_detections(source_det, "source_det") if source_det is not None else
                           detect_array(self.source_data, valid, float(sep_thresh), name="source"))
        self.template_det = (as_detections(template_det, "template_det") if template_det is not None else
                             detect_array(self.template_data, None, float(sep_thresh), name="template"))
        self.model = self.evidence = None
        self.aligned_data = self.aligned_mask = None
        self.alignment_failed = False

    @property
    def template_shape(self):
        return self.template_data.shape if self.template_data is not None else self.source_data.shape

    def fit(self):
        """Match and fit the model (no warp); returns the :class:`AlignmentModel`."""
        try:
            self.model, self.evidence = fit_detections(self.source_det, self.template_det, self.source_data.shape,
                                                       self.template_shape, **self.options)
        except AlignmentError:
            self.alignment_failed = True
            raise
        self.output_shape = self.model.output_shape
        return self.model

    def align(self):
        """Fit, then resample the source onto the template grid (``aligned_data``, ``aligned_mask``)."""
        from .warp.kernel import warp_array

        if self.model is None:
            self.fit()
        ok = np.isfinite(self.source_data)
        if self.source_mask is not None:
            ok &= ~self.source_mask
        vals, valid = warp_array(self.source_data, self.model, self.model.output_shape, valid=ok,
                                 resampling=resampling_for(self.interp_order))
        out = vals[0]
        out[~valid] = self.cval
        self.aligned_data = out
        mask = np.where(valid, 0, int(self.cval_mask)).astype(bool)
        if self.source_mask is not None:
            mv, mvalid = warp_array(self.source_mask.astype(np.float32), self.model, self.model.output_shape,
                                    resampling="nearest")
            mask |= mvalid & (mv[0] > 0.5)
        self.aligned_mask = mask
        return self

    # spalipy's attributes ------------------------------------------------------------
    @property
    def affine_transform(self):
        """The affine part of the pull map, output (template) px -> source px, as a 2x3 matrix."""
        return None if self.model is None else self.model.linear

    @property
    def spline_transform(self):
        """The residual :class:`SplineField` (template px -> source px offsets), or None when flat."""
        return None if self.model is None else self.model.field

    @property
    def source_det_matched(self):
        return None if self.evidence is None else self.evidence["source_det_matched"]

    @property
    def template_det_matched(self):
        return None if self.evidence is None else self.evidence["template_det_matched"]

    def full_transform(self, coo, inverse=True):
        """Apply the model to (N, 2) coordinates: template -> source (``inverse=True``) or source -> template."""
        coo = np.asarray(coo, float)
        f = self.model if inverse else self.model.inverse_points
        x, y = f(coo[:, 0], coo[:, 1])
        return np.column_stack([x, y])

    def transform_stats(self):
        """Fit statistics as a dict: matched count, inliers, mean/median/std/RMS of x and y residuals (px)."""
        if self.evidence is None:
            raise AlignmentError("no fit yet: call align() first")
        return dict(self.evidence["stats"])

    def log_transform_stats(self):
        """Log :meth:`transform_stats` at INFO level and return it."""
        st = self.transform_stats()
        log_stats(st)
        return st


FitsAligner = Spalipy

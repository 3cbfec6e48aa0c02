"""Align FITS files by their stars: detect per chunk (or read catalogues), fit, then warp
onto the **template grid** chunk by chunk and write FITS under a temporary name.

The model is a pull map: output (template) pixel -> source pixel, ``(x, y)``, 0-based.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from rastalign.errors import InputError
from rastalign.io.catalogs import read_sextractor
from rastalign.pipelines.result import AlignmentResult
from rastalign.sinks.models import save_model
from rastalign.tiepoints.detections import as_detections
from rastalign.tiepoints.detect import detect
from rastalign.tiepoints.stars import DEFAULTS, star_options, fit_detections

log = logging.getLogger(__name__)


def _detections_from_file(path, info, o, name):
    from rastalign.io.sources import FitsSource
    from rastalign.io.paths import is_url

    # forked worker processes and fsspec's event loop do not mix: remote frames are detected in threads
    return detect(FitsSource(str(path), int(info.ext), tuple(info.shape)).read, info.shape,
                  sep_thresh=float(o["sep_thresh"]), name=f"{name} {path}", processes=not is_url(path))


def _frame_stars(frame, ext, o, name):
    """``(info, detections)`` of a FITS file's image HDU, or of an array source (its first band, read as a
    FITS frame is: float32, NaN where invalid; nothing written)."""
    from rastalign.io.fits import inspect_fits

    if getattr(frame, "data", None) is None:
        info = inspect_fits(frame, ext)
        return info, _detections_from_file(frame, info, o, name)

    def read(box):
        data, valid = frame.read(box)
        data = data[:1].astype(np.float32)
        data[0][~valid] = np.nan
        return data, valid
    return frame, detect(read, frame.shape, sep_thresh=float(o["sep_thresh"]), name=f"{name} array")


def catalogue(path):
    """The detections of a SExtractor catalogue file, in the normal form (0-based pixels)."""
    return as_detections(read_sextractor(path), name=f"catalogue {path}", origin=1)


def template_stars(template_path=None, template_ext=None, template_cat=None, **opts):
    """The template's inspected HDU (``None`` with a catalogue only) and its detections: what every source
    aligned onto it shares, so a stack finds them once."""
    from rastalign.io.fits import inspect_fits

    o = star_options({k: v for k, v in opts.items() if k in DEFAULTS})
    if template_cat is not None:
        return None if template_path is None else inspect_fits(template_path, template_ext), catalogue(template_cat)
    if template_path is None:
        raise InputError("a template is needed: a template FITS (-tf) or a template catalogue (-tc)")
    return _frame_stars(template_path, template_ext, o, "template")


def estimate_fits(source_path, template_path=None, source_ext=None, template_ext=None, source_cat=None,
                  template_cat=None, template=None, **opts):
    """Fit the model that aligns a FITS source onto a FITS template (or a template catalogue). The source and
    the template may be array sources (:func:`rastalign.io.arrays.array_raster`) instead of files.

    ``template``: the template's ``(info, detections)`` from :func:`template_stars`, found once for a stack.
    Returns ``(AlignmentModel, evidence)``; ``evidence["stats"]`` holds the fit statistics and
    ``evidence["source_info"]``/``["template_info"]`` the inspected HDUs.
    """
    from rastalign.runtime.scheduler import single_threaded_blas

    with single_threaded_blas():
        return _estimate_fits(source_path, template_path, source_ext, template_ext, source_cat, template_cat,
                              template, **opts)


def _estimate_fits(source_path, template_path, source_ext, template_ext, source_cat, template_cat, template, **opts):
    from rastalign.io.fits import inspect_fits

    o = star_options({k: v for k, v in opts.items() if k in DEFAULTS})
    if source_cat is not None:
        sinfo, sdet = inspect_fits(source_path, source_ext), catalogue(source_cat)
    else:
        sinfo, sdet = _frame_stars(source_path, source_ext, o, "source")
    tinfo, tdet = template or template_stars(template_path, template_ext, template_cat, **opts)
    tshape = tinfo.shape if tinfo is not None else sinfo.shape
    model, ev = fit_detections(sdet, tdet, sinfo.shape, tshape, **o)
    ev.update(source_info=sinfo, template_info=tinfo)
    return model, ev


def align_fits(source_path, output_path, template_path=None, template=None, **options):
    """Align ``source_path`` onto the template grid and write ``output_path`` (FITS, float32); with
    ``correction="wcs"`` write the source's own pixels and cards with a WCS (+ SIP) onto the template's
    sky instead (:mod:`rastalign.sinks.wcs`).

    Options (one validator, :func:`rastalign.params.split_options`; an unknown name raises
    :class:`InputError`): spalipy's (``n_det``, ``n_quad_det``, ... ``cval``), the warp's (``chunks``,
    ``split_factor``), the output's (``overwrite``, ``correction``), the run's (``scheduler``, ``n_workers``,
    ``threads_per_worker``, ``progress``), and ``source_ext``, ``template_ext``, ``source_cat``,
    ``template_cat``, ``model_out``, ``write_mask``, ``source_mask_ext``. ``template``: the template's
    ``(info, detections)`` from :func:`template_stars`, found once for a stack. Returns the
    :class:`AlignmentResult` (its ``summary()`` is what ``align-fits`` prints; ``wcs`` there describes a WCS
    correction).
    """
    import dataclasses

    from rastalign.sinks.atomic import check_distinct_outputs, check_output_path
    from rastalign.io.fits import resolve_ext
    from rastalign.io.fits_cards import drop_wcs, has_wcs, shifted_header
    from rastalign.geometry.grids import Grid
    from rastalign.sinks.carried import Carried
    from rastalign.sinks.fits import write_fits
    from rastalign.io.sources import FitsSource
    from rastalign.params import FORMAT_SUFFIXES, check_remote_format, split_options
    from rastalign.runtime import running
    from rastalign.runtime.progress import stage
    from rastalign.warp.graph import warp_graph

    t0 = time.perf_counter()
    s = split_options(options, "fits")
    x, o, correction, overwrite = s.extra, s.estimate, s.output.correction, s.output.overwrite
    model_out = x.get("model_out")
    if correction == "resample":
        check_remote_format(output_path, "FITS", instead="a local file, or --correction wcs")
    suffix = Path(str(output_path)).suffix.lower()
    if suffix and suffix not in FORMAT_SUFFIXES["FITS"]:
        raise InputError(f"the output is a FITS file: give it a FITS suffix ({', '.join(FORMAT_SUFFIXES['FITS'])}), "
                         f"not {suffix!r}: {output_path}")
    check_distinct_outputs({"output_filename": output_path, "--model-out": model_out})
    inputs = [source_path, template_path, x.get("source_cat"), x.get("template_cat")]
    check_output_path(output_path, inputs, overwrite)
    if model_out:  # every output is checked before any work: a missing folder must not cost the image
        check_output_path(model_out, inputs + [output_path], overwrite)
    frames = {k: x.get(k) for k in ("source_ext", "template_ext", "source_cat", "template_cat")}
    with running(s.run):
        stage("detect + fit")
        model, ev = estimate_fits(source_path, template_path, template=template, **frames,
                                  **dataclasses.asdict(o))
        t_est = time.perf_counter() - t0
        sinfo, tinfo = ev["source_info"], ev["template_info"]
        if correction == "wcs":
            return _write_wcs_correction(source_path, output_path, template_path, model, ev, model_out, t0, t_est)
        header, wcs_header = sinfo.header, None
        if tinfo is not None and has_wcs(tinfo.header):  # the output is on the template's grid: its WCS
            wcs_header = shifted_header(tinfo.header, model.pre)
        elif has_wcs(header):  # the source's WCS describes the source's pixels, not the output's
            log.warning("the template has no WCS: the output carries none (the source's WCS would be wrong on "
                        "the template grid; --correction wcs keeps the source's pixels and corrects its WCS)")
            header = drop_wcs(header.copy())
        mask_ext = None if x.get("source_mask_ext") is None else resolve_ext(source_path, x["source_mask_ext"])
        stage("warp + write")
        src = FitsSource(str(source_path), int(sinfo.ext), tuple(sinfo.shape), mask_ext)
        arr = warp_graph(src, model, model.output_shape, s.warp, "float32", np.nan)
        carried = Carried(model=model.to_json(indent=None), header=header, wcs_header=wcs_header,
                          summary={"RANMATCH": ev["stats"]["n_matched"], "RARMS": round(ev["stats"]["rms_px"], 5)})
        wstats = write_fits(arr, output_path, Grid.pixel_frame(model.output_shape), None, carried,
                            cval=float(o.cval), cval_mask=int(o.cval_mask),
                            mask=bool(x.get("write_mask")) or mask_ext is not None)
    if model_out:
        save_model(model, model_out)
    return _result(output_path, model_out, model, ev, t0, t_est, wstats["warp_write_s"],
                   {"output_shape": list(model.output_shape), "valid_pixels": wstats["valid_pixels"]})


def _result(output_path, model_out, model, ev, t0, t_est, t_write, extra) -> AlignmentResult:
    """The FITS pair's :class:`AlignmentResult`: the matched stars as its tie points, the plain correction in
    template pixels; the summary adds the fit statistics and the source's shape."""
    from rastalign.geometry.grids import Grid
    from rastalign.pipelines.report import plain_correction

    st, source_shape = ev["stats"], tuple(ev["source_info"].shape)
    quality = {"n_tie_points": st["n_matched"], "n_inliers": st["n_inliers"], "rms_residual_px": st["rms_px"],
               "median_residual_px": st["median_residual_px"],
               "predicted_error_px": _on_the_sky(st["predicted_error_px"], model, ev["template_info"])}
    timings = {"estimate_s": round(t_est, 3), "warp_write_s": round(t_write, 3),
               "total_s": round(time.perf_counter() - t0, 3)}
    report = {"correction": plain_correction(model, Grid.pixel_frame(source_shape),
                                             Grid.pixel_frame(model.output_shape), frame="template pixels"),
              "timings_s": timings}
    extra = {"source_shape": list(source_shape), **extra, "stats": st, "timings_s": timings}
    return AlignmentResult(str(output_path), None, str(model_out) if model_out else None, model, quality, report,
                           extra)


def _on_the_sky(predicted, model, template_info):
    """``predicted`` (source px) with ``ce90_arcsec`` when the template's cards give its pixel scale."""
    from rastalign.io.fits_cards import pixel_scale_deg

    scale = None if template_info is None or predicted is None else pixel_scale_deg(template_info.header)
    if scale is None:
        return predicted
    source_px = float(np.sqrt(abs(np.linalg.det(np.asarray(model.linear)[:, :2]))))  # source px per template px
    return dict(predicted, ce90_arcsec=predicted["p90"] / source_px * scale * 3600.0)


def _write_wcs_correction(source_path, output_path, template_path, model, ev, model_out, t0, t_est):
    from rastalign.sinks.wcs import fit_wcs, write_wcs

    sinfo, tinfo = ev["source_info"], ev["template_info"]
    wcs, info = fit_wcs(model, sinfo.shape, None if tinfo is None else tinfo.wcs)
    t1 = time.perf_counter()
    stats = write_wcs(source_path, int(sinfo.ext), output_path, wcs, info, template_path)
    if model_out:
        save_model(model, model_out)
    wcs_block = {k: stats[k] for k in ("sip_order", "max_error_px", "sky_max_error_px", "inverse_max_error_px")}
    return _result(output_path, model_out, model, ev, t0, t_est, time.perf_counter() - t1,
                   {"output_shape": list(sinfo.shape), "wcs": wcs_block})

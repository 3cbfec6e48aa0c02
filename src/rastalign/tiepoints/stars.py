"""Match detections and fit the star model: spalipy's filters -> quad matching -> robust
full affine -> regularised residual field (splines or SIP-like polynomials, chosen by
cross-validation; flat when there is no distortion).

The fitted :class:`~rastalign.model.AlignmentModel` is a pull map: **output (template)
pixel -> source pixel**, ``(x, y)``, pixel centres at integers, 0-based.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from rastalign.errors import InputError
from rastalign.tiepoints.detections import as_detections
from rastalign.model import AlignmentModel
from rastalign.geometry.affine import IDENTITY
from rastalign.params import STAR_DEFAULTS, StarParams
from rastalign.tiepoints.detect import filter_detections
from rastalign.tiepoints.quads import cross_match, match_detections

log = logging.getLogger(__name__)

POLY_DEGREES = (3, 4, 5)  # SIP-like polynomial candidates beside the splines
MIN_INLIERS = 6  # the quality gate's floor, as the VHR path's --min-inliers default
FIELD_MIN_MATCHES = 30  # fewer matched stars fit the affine only (6 parameters), never a residual field
# scipy spline orders, as spalipy uses them: 2-5 all take the prefiltered cubic B-spline, which
# interpolates star images better than Keys cubic or Lanczos-3 (window-shift 0.0015 vs 0.016 / 0.004 px)
MATCH_KEYS = ("n_quad_det", "min_quad_sep", "max_match_dist", "min_n_match", "sub_tile", "max_quad_cand",
              "patience_quad_cand", "max_quad_hash_dist", "quad_edge_buffer")
DEFAULTS = {f.name: getattr(STAR_DEFAULTS, f.name) for f in dataclasses.fields(StarParams)}
DEFAULTS["min_sep"] = None  # resolved to 2 * max_match_dist by StarParams


def star_options(opts):
    """spalipy's options as a dict, validated by :class:`rastalign.params.StarParams` (one set of defaults)."""
    return dataclasses.asdict(StarParams.from_options(dict(opts)))


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


def _fit(t, s, w, o, domain):
    """Pull-map fit template px ``t`` -> source px ``s`` (:func:`~rastalign.model.fit.fit_robust`): outliers
    at 4 robust sigma, never beyond max_match_dist; the field only with ``spline_order`` > 0."""
    from rastalign.model.fit import fit_robust

    if int(o["spline_order"]) <= 0:
        m, _, use, _ = fit_robust(t, s, w, domain, float(o["max_match_dist"]), field=False, seed=int(o["seed"]),
                                  clip_sigma=4.0)
        return m, None, use, {"chosen": None, "reason": "spline_order=0 (affine only)"}
    return fit_robust(t, s, w, domain, float(o["max_match_dist"]), seed=int(o["seed"]), clip_sigma=4.0,
                      poly_degrees=POLY_DEGREES, min_field_points=FIELD_MIN_MATCHES)


def min_matches(o):
    """Detections a frame must keep after the filters: ``min_n_match``, or with auto the fewest a match takes."""
    from rastalign.tiepoints.quads import AUTO_MIN_MATCHES

    return AUTO_MIN_MATCHES if o["min_n_match"] is None else int(o["min_n_match"])


def fit_detections(src_det, tmp_det, source_shape, template_shape, **opts):
    """Match and fit. Returns ``(AlignmentModel on the template grid, evidence dict)``."""
    from scipy.spatial import cKDTree

    o = star_options(opts)
    t0 = time.perf_counter()
    sd = filter_detections(as_detections(src_det, "source detections"), o["min_fwhm"], o["bad_flag_bits"],
                           o["min_sep"], o["n_det"], "source", min_n=min_matches(o))
    td = filter_detections(as_detections(tmp_det, "template detections"), o["min_fwhm"], o["bad_flag_bits"],
                           o["min_sep"], o["n_det"], "template", min_n=min_matches(o))
    sxy, txy = _xy(sd), _xy(td)
    i, j, _, qinfo = match_detections(sxy, txy, source_shape, template_shape, **{k: o[k] for k in MATCH_KEYS})
    ny, nx = template_shape
    domain = (0.0, 0.0, float(nx - 1), float(ny - 1))
    w = _weights(sd[i], td[j])
    m, field, use, finfo = _fit(txy[j], sxy[i], w, o, domain)
    # re-match everything through the fitted model (gains stars the affine-only pass missed)
    model = AlignmentModel(m, field, IDENTITY.copy(), tuple(template_shape), tuple(source_shape))
    px, py = model(txy[:, 0], txy[:, 1])
    jj, ii = cross_match(np.column_stack([px, py]), cKDTree(sxy), float(o["max_match_dist"]))
    if len(jj) > len(j):
        i, j = ii, jj
        w = _weights(sd[i], td[j])
        m, field, use, finfo = _fit(txy[j], sxy[i], w, o, domain)
    model = AlignmentModel(m, field, IDENTITY.copy(), tuple(template_shape), tuple(source_shape),
                           meta={"kind": "fits-stars", "spline": finfo.get("chosen")})
    ev = _evidence(model, sd[i], td[j], use, qinfo, finfo)
    ev["stats"]["predicted_error_px"] = _predicted(model, txy[j], sxy[i], w, use, finfo,
                                                   domain, source_shape, int(o["seed"]))
    ev["fit_s"] = time.perf_counter() - t0
    st = ev["stats"]
    from rastalign.model.fit import passes, quality_failure

    if not passes(st["n_inliers"], st["rms_px"], MIN_INLIERS, float(o["max_rms"])):
        raise quality_failure(st["n_inliers"], st["n_matched"], "matched stars", st["rms_px"], MIN_INLIERS,
                              float(o["max_rms"]))
    from rastalign.model.uncertainty import accuracy_failure

    err = accuracy_failure(st["predicted_error_px"], o["max_error_px"])
    if err is not None:
        raise err
    model = _output_grid(model, o, source_shape, template_shape)
    return model, ev


def _predicted(model, t, s, w, use, finfo, domain, source_shape, seed, side=64):
    """The predicted model error (:mod:`rastalign.model.uncertainty`, source px) over the template pixels whose
    source place is inside the source frame (a ``side`` x ``side`` lattice)."""
    from rastalign.model.uncertainty import predicted_block

    gx, gy = np.meshgrid(np.linspace(domain[0], domain[2], side), np.linspace(domain[1], domain[3], side))
    px, py = model(gx.ravel(), gy.ravel())
    inside = (px >= 0) & (py >= 0) & (px <= source_shape[1] - 1) & (py <= source_shape[0] - 1)
    at = np.column_stack([gx.ravel(), gy.ravel()])[inside] if inside.any() else np.column_stack([gx.ravel(), gy.ravel()])
    return predicted_block(t, s, w, use, domain, finfo.get("chosen"), at, seed=seed)


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
    stats.update(structured_residuals(txy[use], du, model.field is None))
    return {"source_det_matched": sm, "template_det_matched": tm, "inliers": use, "residuals": d,
            "stats": stats, "quads": qinfo, "field": finfo}


def structured_residuals(xy, r, affine_only, factor=3.0, floor_px=0.05):
    """Do the residuals carry distortion an affine cannot follow? Centroid noise is independent from star to
    star; distortion is smooth, so neighbouring stars share it. Compares the residual RMS with the noise
    level the nearest-neighbour differences show (``rms(r_i - r_nn) / sqrt(2)``): ``factor`` times above
    it (and above ``floor_px``) with an affine-only model, a warning names ``align-fits``."""
    if not affine_only or len(xy) < 20:
        return {"residual_noise_px": None, "distortion_warning": False}
    from scipy.spatial import cKDTree

    _, nn = cKDTree(xy).query(xy, k=2)
    noise = float(np.sqrt(np.mean(((r - r[nn[:, 1]]) ** 2).sum(1)) / 2.0))
    rms = float(np.sqrt(np.mean((r ** 2).sum(1))))
    warn = bool(rms > factor * noise and rms > floor_px)
    if warn:
        log.warning("the residuals (rms %.3f px) are %.0fx what the centroids support (%.3f px): the field is "
                    "distorted and an affine cannot follow it; align-fits fits the distortion", rms,
                    rms / max(noise, 1e-9), noise)
    return {"residual_noise_px": noise, "distortion_warning": warn}


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

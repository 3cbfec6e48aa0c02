"""How far the model is from the truth, predicted from its own tie points (not how well it fits them).

The inlier tie points are split into ``folds`` spatially mixed groups and the model, of the form the fit
chose (affine, or affine plus the chosen residual field), is refitted without each group:

* the spread of the refitted models about each other at a place is the model's own uncertainty there
  (a grouped jackknife variance); it grows where few tie points hold the model, toward corners and gaps,
  and where the field extrapolates;
* each group's residuals under the model fitted without it (held out) against the residuals under the
  full model (in sample) separate the matching noise from the model error at the tie points: for a
  least-squares fit the held-out mean square exceeds the in-sample one by about twice the model's mean
  square error there. Where that error exceeds the jackknife variance (an error the spread does not show:
  a form too stiff for the distortion), the variance map is scaled up to it; never down.

The predicted error at a place is the square root of that (scaled) variance, in moving pixels. Its
percentiles over the valid overlap are what the quality block reports (``predicted_error_px``).
"""
from __future__ import annotations

import numpy as np

from rastalign.geometry.affine import apply_affine, fit_affine

FOLDS = 8
NEIGHBOURS = 9  # tie points whose median residual is the local bias
BIAS_QUANTILE = 0.999  # a local median residual counts as bias beyond this quantile of what noise leaves
MAP_CELLS = 16  # the coarse map: cells per side


def refit(p, q, w, domain, choice=None, rounds=3):
    """The model of the form ``choice`` (``None``: affine only; else a residual field's choice, as
    :func:`~rastalign.model.residual.fit_residual_field` records it) fitted to ``p`` -> ``q`` by weighted
    least squares, the affine and the field fitted in turn. Returns a function ``(x, y) -> (mx, my)``."""
    from rastalign.model.residual import field_fitter

    aff, fld = fit_affine(p, q, w), None
    fit_field = field_fitter(p, w, domain, choice) if choice else None
    for _ in range(rounds if choice else 0):
        r = q - np.column_stack(apply_affine(aff, p[:, 0], p[:, 1]))
        fld = fit_field(r)
        aff = fit_affine(p, q - np.column_stack(fld(p[:, 0], p[:, 1])), w)

    def model(x, y):
        mx, my = apply_affine(aff, x, y)
        if fld is None:
            return mx, my
        fx, fy = fld(x, y)
        return mx + fx, my + fy
    return model


MIN_POINTS = 6  # fewer inlier tie points predict nothing (the quality check refuses them)


def predicted_error(p, q, w, domain, choice, at, others=None, folds=FOLDS, neighbours=NEIGHBOURS, seed=0,
                    common=None):
    """Predicted model error (moving px) at the points ``at`` (M, 2), from the inlier tie points ``p`` ->
    ``q`` (N, 2) with weights ``w`` and the field form ``choice``; ``others``: ``(p, q, w)`` of every tie
    point measured, the rejected ones included (see :func:`local_bias`); ``common``: a bias ``(bx, by)``
    every tie point shares (the matcher's at one sub-pixel phase), which no residual can show. Returns ``(error (M,), info)``; ``info``
    holds the held-out and in-sample RMS of the tie points, the scale applied to the jackknife spread and the
    largest local bias. With fewer than ``2 * folds`` tie points the groups are single points
    (leave-one-out)."""
    p, q, at = np.asarray(p, float), np.asarray(q, float), np.asarray(at, float).reshape(-1, 2)
    w = np.ones(len(p)) if w is None else np.asarray(w, float)
    n = len(p)
    k = int(min(folds, n)) if n >= 2 * folds else n
    group = np.random.default_rng(seed).permutation(n) % k
    full = refit(p, q, w, domain, choice)
    r_in = q - np.column_stack(full(p[:, 0], p[:, 1]))
    r_out = np.zeros_like(r_in)
    pts = np.vstack([at, p])  # each refit seen at the asked points and at the tie points
    preds = np.zeros((k, len(pts), 2))
    for g in range(k):
        keep = group != g
        m = refit(p[keep], q[keep], w[keep], domain, choice)
        preds[g] = np.column_stack(m(pts[:, 0], pts[:, 1]))
        r_out[~keep] = q[~keep] - preds[g, len(at):][~keep]
    # grouped jackknife, with the small-sample correction of an affine's six parameters (few tie points leave
    # the spread itself uncertain: 16 points widen it by sqrt(1.6))
    var_all = (k - 1) * np.mean(np.sum((preds - preds.mean(0)) ** 2, axis=2), axis=0) * n / max(n - 6, 1)
    var, var_tp = var_all[:len(at)], var_all[len(at):]
    # the model's mean square error at the tie points, from held-out against in-sample residuals
    ms_out = float(np.average(np.sum(r_out ** 2, axis=1), weights=w))
    ms_in = float(np.average(np.sum(r_in ** 2, axis=1), weights=w))
    mse_tp = max(0.0, (ms_out - ms_in) / 2.0)
    mean_var_tp = float(np.average(var_tp, weights=w))
    scale = max(1.0, mse_tp / mean_var_tp) if mean_var_tp > 0 else 1.0
    op, oq, ow = (p, q, w) if others is None else (np.asarray(v, float) for v in others)
    bias2 = local_bias(op, oq - np.column_stack(full(op[:, 0], op[:, 1])), ow / ow.mean(), at, neighbours)
    common2 = 0.0 if common is None else float(np.sum(np.square(common)))
    info = {"folds": int(k), "held_out_rms_px": float(np.sqrt(ms_out)), "in_sample_rms_px": float(np.sqrt(ms_in)),
            "spread_scale": float(np.sqrt(scale)), "max_local_bias_px": float(np.sqrt(bias2.max(initial=0.0))),
            "common_bias_px": float(np.sqrt(common2))}
    return np.sqrt(var * scale + bias2 + common2), info


def local_bias(p, resid, w, at, neighbours=NEIGHBOURS):
    """Squared bias of the model at ``at`` that its residuals show: the weighted median residual of the
    ``neighbours`` nearest tie points (every one measured, with its weight ``w``: a distortion the model's
    form cannot follow is rejected by the robust fit as outliers, but its neighbours agree, where a
    mismatch stands alone), less what matching noise could leave in such a median: a bias counts only
    beyond :data:`BIAS_QUANTILE` of that, so a model better than its tie points is not called worse for
    their noise. The noise is the robust scale of the residuals times the square root of the weights
    (the weights are inverse variances, up to a factor)."""
    from rastalign._kernels.neighbours import nearest

    k = int(min(neighbours, len(p)))
    if k < 3:
        return np.zeros(len(at))
    idx = nearest(p, at, k)
    b = np.column_stack([_weighted_median(resid[idx, c], w[idx]) for c in (0, 1)])
    z = resid * np.sqrt(w)[:, None]
    scale2 = float(np.sum((1.4826 * np.median(np.abs(z - np.median(z, axis=0)), axis=0)) ** 2))
    # |median|^2 of white 2-D residuals of variances scale2 / w_i: about (pi/2) scale2 / sum(w), exponentially
    # distributed (chi^2, 2 dof): BIAS_QUANTILE of it is -ln(1 - BIAS_QUANTILE) times that
    floor = -np.log(1.0 - BIAS_QUANTILE) * 0.5 * np.pi * scale2 / w[idx].sum(axis=1)
    return np.maximum(0.0, np.sum(b ** 2, axis=1) - floor)


def _weighted_median(v, w):
    """Row-wise weighted median of ``v`` (M, k) with weights ``w`` (M, k)."""
    order = np.argsort(v, axis=1)
    vs, ws = np.take_along_axis(v, order, 1), np.take_along_axis(w, order, 1)
    cum = np.cumsum(ws, axis=1)
    first = np.argmax(cum >= 0.5 * cum[:, -1:], axis=1)
    return vs[np.arange(len(v)), first]


def predicted_block(p, q, w, inlier, domain, choice, at, pixel_size=None, seed=0, common=None):
    """The quality block's ``predicted_error_px``: :func:`predicted_error` of the ``inlier`` tie points (every
    tie point ``p`` -> ``q`` with weight ``w`` as evidence of a local bias) at the points ``at``, summarised
    (:func:`summarise`) with its figures; ``None`` with fewer than :data:`MIN_POINTS` inliers or no point."""
    if inlier.sum() < MIN_POINTS or not len(at):
        return None
    err, info = predicted_error(p[inlier], q[inlier], w[inlier], domain, choice, at, (p, q, w), seed=seed,
                                common=common)
    return dict(summarise(err, at, domain, pixel_size), **info)


def accuracy_failure(predicted, limit, unit="px"):
    """The one-line :class:`~rastalign.errors.QualityError` of a predicted error over ``--max-error-px``, or
    ``None`` when it passes (or no limit is set, or no prediction: too few tie points, which the quality
    check refuses)."""
    if limit is None or predicted is None or predicted["p95"] <= float(limit):
        return None
    from rastalign.errors import QualityError

    return QualityError(f"alignment failed the accuracy check: predicted model error p95 {predicted['p95']:.3f} "
                        f"{unit} (max {predicted['max']:.3f}) exceeds --max-error-px {float(limit):g}")


def summarise(error, xy, domain, pixel_size=None, unit="crs"):
    """The quality block's ``predicted_error_px``: ``p50``, ``p90``, ``p95``, ``max`` of ``error`` at the points
    ``xy`` (the valid overlap), ``ce90_<unit>`` (the 90th percentile times ``pixel_size``, when known) and a
    ``map`` of :data:`MAP_CELLS` x :data:`MAP_CELLS` cells over ``domain`` ``(x0, y0, x1, y1)`` (each cell
    the largest error in it, ``None`` where no point falls), rows top to bottom, over ``map_box``."""
    e = np.asarray(error, float)
    out = {"p50": float(np.percentile(e, 50)), "p90": float(np.percentile(e, 90)), "p95": float(np.percentile(e, 95)),
           "max": float(e.max())}
    if pixel_size:
        out[f"ce90_{unit}"] = out["p90"] * float(pixel_size)
    x0, y0, x1, y1 = domain
    cx = np.clip(((xy[:, 0] - x0) / max(x1 - x0, 1e-9) * MAP_CELLS).astype(int), 0, MAP_CELLS - 1)
    cy = np.clip(((xy[:, 1] - y0) / max(y1 - y0, 1e-9) * MAP_CELLS).astype(int), 0, MAP_CELLS - 1)
    cells = np.full((MAP_CELLS, MAP_CELLS), -1.0)
    np.maximum.at(cells, (cy, cx), e)
    out["map"] = [[None if v < 0 else round(float(v), 4) for v in row] for row in cells]
    out["map_box"] = [float(v) for v in domain]
    return out

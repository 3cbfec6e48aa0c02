"""Fitting models: the one robust fit of tie points (VHR windows and matched stars alike), and the fit
of any smooth pixel mapping (re-basing across CRS and grids).

:func:`fit_robust`: a seeded RANSAC affine, then a smooth residual field chosen by cross-validation
(none unless the tie points show distortion), backfitted with outliers re-judged on the full model.

:func:`fit_mapping`: a mapping between two grids in different CRS (UTM to Web Mercator, say), or an
estimated model seen from another output grid, is smooth but not affine. It is
sampled on a regular lattice of output pixels and fitted by an affine plus a cubic
B-spline field with enough nodes that the largest error on a validation lattice (the
cell midpoints) is below ``max_err`` pixels; the error is returned so it can be
reported.
"""
from __future__ import annotations

import numpy as np

from rastalign.geometry.affine import apply_affine, fit_affine, robust_affine
from rastalign.model.model import AlignmentModel
from rastalign.model.residual import SplineField, fit_residual_field


def fit_robust(p, q, w, domain, threshold, *, field=True, seed=0, clip_sigma=3.5, min_gain=0.1, poly_degrees=(),
               rounds=12, reselect=3, min_field_points=30, chosen=None):
    """Robust pull-map fit ``p`` (N, 2) -> ``q`` (N, 2) with weights ``w``: returns ``(affine 2x3, field or
    None, inliers, field_info)``.

    A seeded RANSAC affine (consensus within ``threshold`` px), then rounds of backfitting: the residual
    field (when ``field`` and at least ``min_field_points`` points; its form chosen by cross-validation in
    the first ``reselect`` rounds, then refitted) is fitted to the affine's residuals, its affine trend is
    moved into the affine, outliers are re-judged on the full model's residuals (``clip_sigma`` robust
    sigma, at least 0.02 px, never beyond ``threshold``) and the affine is refitted to ``q`` minus the
    field, until the inliers settle. The first field is fitted to every point within ``threshold`` of the
    median affine residual, so distortion the affine alone cannot follow is not clipped before it is seen.
    ``chosen``: a field's form already chosen for these tie points (``field_info`` of a fit of the same windows
    measured before): it is refitted, not chosen again, and its ``field_info`` returned.
    """
    p, q = np.asarray(p, float), np.asarray(q, float)
    w = np.ones(len(p)) if w is None else np.asarray(w, float)
    m, use = robust_affine(p, q, w, threshold=threshold, seed=seed)
    fld, finfo, choice = None, {"chosen": None, "reason": "affine only"}, None
    if chosen is not None and chosen.get("chosen") is not None:
        finfo, choice, reselect = chosen, chosen["chosen"], 0
    with_field = field and len(p) >= min_field_points
    if field and not with_field:  # degrees of freedom follow the evidence
        finfo = {"chosen": None, "reason": f"{len(p)} tie points < {min_field_points}: affine only"}
    for it in range(rounds):
        r = q - np.column_stack(apply_affine(m, p[:, 0], p[:, 1]))
        if with_field:
            cand = use if fld is not None else np.hypot(*(r - np.median(r[use], axis=0)).T) < threshold
            kw = {"poly_degrees": poly_degrees} if it < reselect or choice is None else {"choice": choice}
            fld, info = fit_residual_field(p[cand], r[cand], w[cand], domain, seed=seed, min_gain=min_gain, **kw)
            if it < reselect:  # the choice is re-made until the affine/field split has settled
                finfo, choice = info, info.get("chosen")
            if fld is not None:
                lin, fld = _split_linear(fld, p[cand], w[cand])
                m = m + lin
                r = q - np.column_stack(apply_affine(m, p[:, 0], p[:, 1]))
        f = np.zeros_like(r) if fld is None else np.column_stack(fld(p[:, 0], p[:, 1]))
        e = np.hypot(*(r - f).T)
        sigma = 1.4826 * np.median(e[use]) if use.sum() else threshold
        new = e < min(threshold, max(clip_sigma * sigma, 0.02))
        if new.sum() < 3:
            break
        m = fit_affine(p[new], q[new] - f[new], w[new])
        if np.array_equal(new, use) and (fld is None or it >= reselect):
            break
        use = new
    return m, fld, use, finfo


def passes(n_inliers, rms_px, min_inliers, max_rms_px) -> bool:
    """The quality gate of every alignment: enough inliers and an inlier RMS within the limit (NaN fails)."""
    return bool(n_inliers >= min_inliers and rms_px <= max_rms_px)


def quality_failure(n_inliers, n_points, what, rms_px, min_inliers, max_rms_px, option=None):
    """The one-line :class:`~rastalign.errors.QualityError` of a failed :func:`passes`; ``option`` names the
    command's option that sets the RMS limit (None where the command has none)."""
    from rastalign.errors import QualityError

    limit = f"{option} {max_rms_px:g}" if option else f"limit {max_rms_px:g} px"
    rms_txt = "" if not np.isfinite(rms_px) else f", RMS residual {rms_px:.3f} px ({limit})"
    return QualityError(f"alignment failed the quality check: {n_inliers} inliers of {n_points} {what} "
                        f"(need {min_inliers}){rms_txt}")


def _split_linear(field, t, w):
    """Move the affine trend of ``field`` (seen at points ``t``) out of it: returns (trend 2x3, field')."""
    fx, fy = field(t[:, 0], t[:, 1])
    lin = fit_affine(t, np.column_stack([fx, fy]), w)
    ny, nx = field.coef_x.shape
    gx = field.origin[0] + (np.arange(nx) - 1) * field.spacing[0]
    gy = field.origin[1] + (np.arange(ny) - 1) * field.spacing[1]
    lx, ly = apply_affine(lin, *np.meshgrid(gx, gy))
    return lin, SplineField(field.origin, field.spacing, field.nodes, field.coef_x - lx, field.coef_y - ly)


def fit_mapping(func, shape, max_err=0.002, samples=65, node_counts=(5, 9, 17, 33)):
    """Model ``o -> func(o)`` over an output grid of ``shape`` (rows, cols).

    Returns ``(model, max_error_px)``; the model's ``pre`` is the identity.
    """
    ny, nx = int(shape[0]), int(shape[1])
    xs = np.linspace(-0.5, nx - 0.5, samples)
    ys = np.linspace(-0.5, ny - 0.5, samples)
    gx, gy = np.meshgrid(xs, ys)
    src = np.column_stack([gx.ravel(), gy.ravel()])
    dst = np.column_stack(func(gx.ravel(), gy.ravel()))
    if not np.all(np.isfinite(dst)):
        raise ValueError("the grid mapping is not finite over the output grid")
    aff = fit_affine(src, dst)
    resid = dst - np.column_stack(apply_affine(aff, src[:, 0], src[:, 1]))
    hx, hy = (h.ravel() for h in np.meshgrid((xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2))
    ex, ey = func(hx, hy)  # the validation lattice: the cell midpoints
    best, domain = None, (-0.5, -0.5, nx - 0.5, ny - 0.5)
    for n in (None, *node_counts):  # the affine alone, then fields of more and more nodes
        fld = None if n is None else \
            fit_residual_field(src, resid, None, domain, choice={"nodes": n, "lambda": 1e-9})[0]
        model = AlignmentModel(aff, fld, output_shape=(ny, nx))
        mx, my = model(hx, hy)
        err = float(np.max(np.hypot(mx - ex, my - ey)))
        if best is None or err < best[1]:
            best = (model, err)
        if err <= max_err:
            break
    return best

"""Fit an :class:`AlignmentModel` to any smooth pixel mapping (re-basing across CRS and grids).

A mapping between two grids in different CRS (UTM to Web Mercator, say), or an
estimated model seen from another output grid, is smooth but not affine. It is
sampled on a regular lattice of output pixels and fitted by an affine plus a cubic
B-spline field with enough nodes that the largest error on a validation lattice (the
cell midpoints) is below ``max_err`` pixels; the error is returned so it can be
reported.
"""
from __future__ import annotations

import numpy as np

from .affine import apply_affine, fit_affine
from .model import AlignmentModel
from .residual import fit_residual_field


def fit_mapping(func, shape, max_err=0.002, samples=65, node_counts=(5, 9, 17, 33)):
    """Model ``o -> func(o)`` over an output grid of ``shape`` (rows, cols).

    Returns ``(model, max_error_px)``; the model's ``pre`` is the identity.
    """
    ny, nx = int(shape[0]), int(shape[1])
    xs = np.linspace(-0.5, nx - 0.5, samples)
    ys = np.linspace(-0.5, ny - 0.5, samples)
    gx, gy = np.meshgrid(xs, ys)
    tx, ty = func(gx.ravel(), gy.ravel())
    src = np.column_stack([gx.ravel(), gy.ravel()])
    dst = np.column_stack([tx, ty])
    if not np.all(np.isfinite(dst)):
        raise ValueError("the grid mapping is not finite over the output grid")
    aff = fit_affine(src, dst)
    vx = (xs[:-1] + xs[1:]) / 2
    vy = (ys[:-1] + ys[1:]) / 2
    hx, hy = np.meshgrid(vx, vy)
    ex, ey = func(hx.ravel(), hy.ravel())
    truth = np.column_stack([ex, ey])

    def error(model):
        mx, my = model(hx.ravel(), hy.ravel())
        return float(np.max(np.hypot(mx - truth[:, 0], my - truth[:, 1])))

    model = AlignmentModel(aff, None, output_shape=(ny, nx))
    err = error(model)
    if err <= max_err:
        return model, err
    resid = dst - np.column_stack(apply_affine(aff, src[:, 0], src[:, 1]))
    domain = (-0.5, -0.5, nx - 0.5, ny - 0.5)
    best = (model, err)
    for n in node_counts:
        fld, _ = fit_residual_field(src, resid, None, domain, choice={"nodes": n, "lambda": 1e-9})
        model = AlignmentModel(aff, fld, output_shape=(ny, nx))
        err = error(model)
        if err < best[1]:
            best = (model, err)
        if err <= max_err:
            break
    return best

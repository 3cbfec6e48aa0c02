"""Affine transforms as 2x3 matrices acting on ``(x, y)`` pixel coordinates.

``M @ [x, y, 1]`` maps a point of the *from* grid to the *to* grid. In a
:class:`~rastalign.model.AlignmentModel` the affine maps solve-grid pixels to moving
pixels (a pull map), pixel centres at integer coordinates.
"""
from __future__ import annotations

import numpy as np

from rastalign.errors import AlignmentError

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def as3(m):
    m = np.asarray(m, dtype=float)
    return np.vstack([m.reshape(2, 3), [0.0, 0.0, 1.0]])


def apply_affine(m, x, y):
    """Apply the 2x3 affine ``m`` to coordinate arrays ``x, y``; returns ``(x', y')``."""
    m = np.asarray(m, dtype=float)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]


def compose_affine(outer, inner):
    """Return ``outer o inner`` (apply ``inner`` first)."""
    return (as3(outer) @ as3(inner))[:2]


def invert_affine(m):
    return np.linalg.inv(as3(m))[:2]


def _points(src, dst, weights):
    src = np.asarray(src, float)
    dst = np.asarray(dst, float)
    n = len(src)
    if n < 3:
        raise AlignmentError(f"an affine fit needs at least 3 tie points; got {n}")
    return src, dst, n, (np.ones(n) if weights is None else np.asarray(weights, float))


def fit_affine(src, dst, weights=None):
    """Weighted least-squares affine mapping ``src`` (N, 2) onto ``dst`` (N, 2)."""
    src, dst, n, w = _points(src, dst, weights)
    # centre for conditioning
    c = np.average(src, axis=0, weights=w)
    a = np.column_stack([src - c, np.ones(n)])
    sw = np.sqrt(w)[:, None]
    sol, *_ = np.linalg.lstsq(a * sw, dst * sw, rcond=None)
    lin = sol[:2].T
    off = sol[2] - lin @ c
    return np.column_stack([lin, off])


def residuals(m, src, dst):
    x, y = apply_affine(m, src[:, 0], src[:, 1])
    return np.column_stack([dst[:, 0] - x, dst[:, 1] - y])


def _ransac_best(src, dst, w, trials, threshold):
    """Consensus set of the best-scoring exact affine through each triple of ``trials`` (k, 3), all
    hypotheses solved and scored at once; the first best wins, as in a sequential loop."""
    s, d = src[trials], dst[trials]  # (k, 3, 2)
    u, v = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    good = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]) >= 1e-6
    if not good.any():
        return None
    s, d = s[good], d[good]
    c = s.mean(axis=1, keepdims=True)  # centred for conditioning
    a = np.concatenate([s - c, np.ones(s.shape[:2] + (1,))], axis=2)  # (k, 3, 3)
    sol = np.linalg.solve(a, d)  # (k, 3, 2): rows x, y, 1 -> dst
    pred = src @ sol[:, :2] + (sol[:, 2] - (c @ sol[:, :2])[:, 0])[:, None]  # (k, n, 2)
    diff = dst[None] - pred
    inside = diff[..., 0] ** 2 + diff[..., 1] ** 2 < threshold ** 2  # (k, n)
    score = inside.astype(float) @ w
    return inside[int(np.argmax(score))]


def _triples(n, k, seed):
    """``k`` seeded triples (k, 3) of distinct indices below ``n`` (> 3): drawn all at once, a triple with a
    repeated index drawn again."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, n, size=(k, 3))
    while True:
        bad = (t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2]) | (t[:, 1] == t[:, 2])
        if not bad.any():
            return t
        t[bad] = rng.integers(0, n, size=(int(bad.sum()), 3))


def robust_affine(src, dst, weights=None, threshold=1.0, seed=0, n_trials=400, clip_sigma=3.0):
    """Seeded RANSAC followed by iterative sigma clipping.

    Returns ``(matrix, inlier_mask)``. ``threshold`` (px) decides RANSAC consensus;
    the final inliers are those within ``max(clip_sigma * robust_sigma, 1e-3)``
    of the refined fit, never looser than ``threshold``.
    """
    src, dst, n, w = _points(src, dst, weights)
    best = None
    if n > 3:
        best = _ransac_best(src, dst, w, _triples(n, n_trials, seed), threshold)
    inl = best if best is not None and best.sum() >= 3 else np.ones(n, bool)
    m = fit_affine(src[inl], dst[inl], w[inl])
    for _ in range(10):
        r = np.hypot(*residuals(m, src, dst).T)
        sigma = 1.4826 * np.median(r[inl]) if inl.sum() else threshold
        lim = min(threshold, max(clip_sigma * sigma, 1e-3))
        new = r < lim
        if new.sum() < 3 or np.array_equal(new, inl):
            break
        inl = new
        m = fit_affine(src[inl], dst[inl], w[inl])
    return m, inl


def pixel_to_world(transform) -> np.ndarray:
    """The 2x3 matrix mapping pixel *centres* ``(x = col, y = row)`` to world coordinates, from a GDAL-style
    geotransform ``(a, b, c, d, e, f)`` (``x = a*col + b*row + c`` at pixel *corners*). The one place
    where rastalign's integer-centre convention meets GDAL's corner convention."""
    a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
    return np.array([[a, b, c + 0.5 * (a + b)], [d, e, f + 0.5 * (d + e)]])


def geotransform(pixel_to_world_matrix) -> tuple:
    """The GDAL-style geotransform of a pixel-centre -> world matrix: the inverse of :func:`pixel_to_world`."""
    (a, b, c), (d, e, f) = np.asarray(pixel_to_world_matrix, float)[:2]
    return (float(a), float(b), float(c - 0.5 * (a + b)), float(d), float(e), float(f - 0.5 * (d + e)))

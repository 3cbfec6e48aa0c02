"""Smooth residual fields: a regularised cubic B-spline surface per axis.

After the robust affine, tie-point residuals that vary smoothly across the scene
(optical distortion, terrain, a scanner's wobble) are modelled by a tensor cubic
B-spline whose coefficients are fitted by penalised least squares. The node spacing
and the penalty are chosen by k-fold cross-validation *against the flat field*:
a spline is kept only when it predicts held-out tie points clearly better than no
field at all, so the model never invents distortion that the tie points do not show.
"""
from __future__ import annotations

from dataclasses import dataclass

import functools

import numpy as np

POLY_NODES = 9  # node count of the B-spline that stores a polynomial field


def _basis(t):
    t2, t3 = t * t, t * t * t
    return np.stack([(1 - t) ** 3 / 6.0, (3 * t3 - 6 * t2 + 4) / 6.0,
                     (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0, t3 / 6.0], axis=-1)


def _axis_taps(v, origin, spacing, n_nodes):
    """The node interval (first of its 4 coefficients) and the 4 cubic basis weights of coordinates ``v`` along
    one axis (held at the boundary outside the domain, as the field)."""
    u = np.clip((np.asarray(v, float) - origin) / spacing, 0.0, n_nodes - 1.0)
    i = np.minimum(np.floor(u).astype(np.intp), n_nodes - 2)
    return i, np.ascontiguousarray(_basis(u - i))


@dataclass(frozen=True)
class SplineField:
    """A displacement field ``(dx, dy) = f(x, y)`` on a uniform cubic B-spline grid.

    Coordinates are solve-grid pixels ``(x, y)``; node ``k`` sits at
    ``origin + k * spacing`` for ``k = 0..nodes-1``; coefficient arrays have shape
    ``(ny_nodes + 2, nx_nodes + 2)`` (one extra node on each side). Outside the
    domain the field is held at its boundary value, so it stays bounded.
    """

    origin: tuple
    spacing: tuple
    nodes: tuple  # (nx_nodes, ny_nodes)
    coef_x: np.ndarray
    coef_y: np.ndarray

    def __call__(self, x, y):
        from rastalign._kernels.bspline import eval_field

        x = np.ascontiguousarray(x, dtype=float)
        y = np.ascontiguousarray(np.broadcast_to(np.asarray(y, float), x.shape))
        dx = np.empty(x.shape)
        dy = np.empty(x.shape)
        eval_field(np.ascontiguousarray(self.coef_x, float), np.ascontiguousarray(self.coef_y, float),
                   float(self.origin[0]), float(self.origin[1]), float(self.spacing[0]), float(self.spacing[1]),
                   int(self.nodes[0]), int(self.nodes[1]), x, y, dx, dy)
        return dx, dy

    def taps(self, xs, ys):
        """``(ix, wx, iy, wy)``: the node interval and the 4 basis weights of each of the columns ``xs`` and of
        each of the rows ``ys`` (solve px) of a grid (:func:`_axis_taps`)."""
        ix, wx = _axis_taps(xs, self.origin[0], self.spacing[0], self.nodes[0])
        iy, wy = _axis_taps(ys, self.origin[1], self.spacing[1], self.nodes[1])
        return ix, wx, iy, wy

    def to_dict(self):
        return {"type": "bspline3", "origin": list(self.origin), "spacing": list(self.spacing),
                "nodes": list(self.nodes), "coef_x": self.coef_x.tolist(), "coef_y": self.coef_y.tolist()}

    @classmethod
    def from_dict(cls, d):
        nodes = tuple(int(n) for n in d["nodes"])
        cx = np.asarray(d["coef_x"], float)
        cy = np.asarray(d["coef_y"], float)
        want = (nodes[1] + 2, nodes[0] + 2)
        if cx.shape != want or cy.shape != want:
            raise ValueError(f"spline coefficients have shape {cx.shape}, expected {want}")
        return cls(tuple(map(float, d["origin"])), tuple(map(float, d["spacing"])), nodes, cx, cy)


def _design(x, y, grid):
    """Dense design matrix (n, (ny+2)*(nx+2)) of the tensor B-spline basis on ``grid`` (:func:`_grid`'s)."""
    (x0, y0), (sx, sy), (nx, ny) = grid
    ux = np.clip((np.asarray(x, float) - x0) / sx, 0, nx - 1)
    uy = np.clip((np.asarray(y, float) - y0) / sy, 0, ny - 1)
    ix = np.minimum(np.floor(ux).astype(np.int64), nx - 2)
    iy = np.minimum(np.floor(uy).astype(np.int64), ny - 2)
    bx, by = _basis(ux - ix), _basis(uy - iy)
    a = np.zeros((len(x), (ny + 2) * (nx + 2)))
    rows = np.arange(len(x))
    for j in range(4):
        for i in range(4):
            a[rows, (iy + j) * (nx + 2) + ix + i] += by[:, j] * bx[:, i]
    return a


@functools.lru_cache(maxsize=16)
def _penalty(nodes):
    """Discrete thin-plate bending energy of the coefficient grid: second differences along the rows and
    the columns, and the mixed difference (weighted by sqrt 2), of the ``(ny+2, nx+2)`` coefficients."""
    ix, iy = np.eye(nodes[0] + 2), np.eye(nodes[1] + 2)
    d = np.vstack([np.kron(iy, np.diff(ix, 2, axis=0)), np.kron(np.diff(iy, 2, axis=0), ix),
                   np.sqrt(2) * np.kron(np.diff(iy, axis=0), np.diff(ix, axis=0))])
    return d.T @ d


def _normal(a, w, r):
    """The weighted normal equations ``(A^T W A, A^T W r)`` of design ``a``."""
    aw = a * w[:, None]
    return aw.T @ a, aw.T @ r


def _solve(ata, atb, pen, lam):
    """Penalised least squares from the normal equations (one set, or a stack of them): ``pen`` (the
    bending energy) scaled by ``lam`` relative to the data term; ``pen=None`` is a polynomial's plain
    (ridge-guarded) solve."""
    eye = np.eye(ata.shape[-1])
    trace = np.trace(ata, axis1=-2, axis2=-1)[..., None, None]
    if pen is None:
        return np.linalg.solve(ata + 1e-10 * trace * eye, atb)
    scale = trace / max(np.trace(pen), 1e-12)
    return np.linalg.solve(ata + lam * scale * pen + 1e-9 * scale * eye, atb)


def _grid(domain, n_nodes):
    """``(origin, spacing, nodes)`` of ``n_nodes`` x ``n_nodes`` spline nodes spanning ``domain``."""
    x0, y0, x1, y1 = domain
    sx = max((x1 - x0) / (n_nodes - 1), 1e-9)
    sy = max((y1 - y0) / (n_nodes - 1), 1e-9)
    return (x0, y0), (sx, sy), (n_nodes, n_nodes)


def _monomials(x, y, domain, degree):
    """Design matrix of the 2-D monomials up to total degree ``degree`` in coordinates
    normalised to [-1, 1] over ``domain`` (the caller moves the linear part into the affine)."""
    x0, y0, x1, y1 = domain
    u = (np.asarray(x, float) - (x0 + x1) / 2) / max((x1 - x0) / 2, 1e-9)
    v = (np.asarray(y, float) - (y0 + y1) / 2) / max((y1 - y0) / 2, 1e-9)
    cols = [np.ones_like(u), u, v]
    cols += [u ** (d - j) * v ** j for d in range(2, degree + 1) for j in range(d + 1)]
    return np.column_stack(cols)


@functools.lru_cache(maxsize=8)
def _poly_projection(domain, degree, n_nodes):
    """Matrix taking monomial coefficients to B-spline coefficients (least squares on a dense
    grid: exact for degree <= 3; for degree 5 on 9+ nodes the error is ~1e-5 of the term)."""
    import scipy.linalg

    k = 3 * (n_nodes + 2)
    x0, y0, x1, y1 = domain
    gx, gy = np.meshgrid(np.linspace(x0, x1, k), np.linspace(y0, y1, k))
    a = _design(gx.ravel(), gy.ravel(), _grid(domain, n_nodes))
    return scipy.linalg.lstsq(a, _monomials(gx.ravel(), gy.ravel(), domain, degree))[0]


def fit_residual_field(xy, resid, weights, domain, node_counts=(3, 5, 9), lambdas=(0.01, 0.1, 1.0),
                       folds=5, min_gain=0.1, min_abs_gain=0.005, seed=0, min_points=30,
                       min_points_per_coef=3.0, choice=None, poly_degrees=(), max_cv_points=3000):
    """Fit a :class:`SplineField` to residuals ``resid`` (N, 2) at ``xy`` (N, 2).

    ``domain`` is ``(x0, y0, x1, y1)`` of the solve grid. Returns ``(field or None,
    info)`` where ``info`` records the cross-validated RMS of the flat field and of
    every candidate, and the choice made. The field is kept only when its
    cross-validated RMS is at least ``min_gain`` (relative) and ``min_abs_gain`` (px)
    below the flat one: distortion smaller than that is not worth modelling.
    ``choice = {"nodes": n, "lambda": lam}`` (or ``{"poly": degree}``) skips the selection
    and refits that candidate.

    ``poly_degrees`` adds global polynomial candidates (all monomials up to each total
    degree, the form of astronomical SIP/TPV distortion). They extrapolate smoothly into
    star-free patches where a lightly penalised spline can wander, and are stored as the
    same B-spline field, so the model, its JSON and the warp are unchanged.

    The selection is scored on a seeded random subset of ``max_cv_points`` tie points
    (the chosen candidate is then fitted to all of them), so it costs the same on an
    8192^2 star field as on a small one.
    """
    xy = np.asarray(xy, float)
    resid = np.asarray(resid, float)
    w = np.ones(len(xy)) if weights is None else np.asarray(weights, float)
    info = {"n_points": int(len(xy)), "chosen": None, "candidates": []}
    if len(xy) < min_points:
        info["reason"] = f"too few tie points for a residual field ({len(xy)} < {min_points})"
        return None, info
    if choice is not None:
        return _fit(xy, resid, w, domain, choice), dict(info, chosen=choice)
    rng = np.random.default_rng(seed)
    cx, cr, cw = xy, resid, w  # the selection is scored on at most max_cv_points of them
    if len(xy) > max_cv_points:
        pick = np.sort(rng.choice(len(xy), max_cv_points, replace=False))
        cx, cr, cw = xy[pick], resid[pick], w[pick]
    fold = rng.permutation(len(cx)) % folds
    held = [fold == k for k in range(folds)]

    def training_normals(design):
        """Every fold's training normal equations, stacked: the whole set's minus the held-out fold's, so a
        design's normal equations are formed once for all folds and every penalty."""
        ata, atb = (np.stack(m) for m in zip(*(_normal(design[te], cw[te], cr[te]) for te in held)))
        return ata.sum(0) - ata, atb.sum(0) - atb

    def cv_rms(design=None, normals=None, pen=None, lam=None):
        err = np.zeros(len(cx))
        coef = None if design is None else _solve(*normals, pen, lam)  # (folds, n_coef, 2)
        for k, te in enumerate(held):
            pred = 0.0 if coef is None else design[te] @ coef[k]
            err[te] = np.sum((cr[te] - pred) ** 2, axis=1)
        return float(np.sqrt(np.average(err, weights=cw)))

    flat = cv_rms()
    info["cv_rms_flat"] = flat
    best = (flat, None, None)
    for deg in poly_degrees:
        n_coef = (deg + 1) * (deg + 2) // 2
        if len(xy) < min_points_per_coef * n_coef * 2:
            continue
        design = _monomials(cx[:, 0], cx[:, 1], domain, deg)
        score = cv_rms(design, training_normals(design))
        info["candidates"].append({"poly": deg, "cv_rms": score})
        if score < best[0]:
            best = (score, "poly", deg)
    for n_nodes in node_counts:
        if len(xy) < min_points_per_coef * (n_nodes + 2) ** 2 and n_nodes > node_counts[0]:
            continue
        grid = _grid(domain, n_nodes)
        design = _design(cx[:, 0], cx[:, 1], grid)
        pen, normals = _penalty(grid[2]), training_normals(design)
        for lam in lambdas:
            score = cv_rms(design, normals, pen, lam)
            info["candidates"].append({"nodes": n_nodes, "lambda": lam, "cv_rms": score})
            if score < best[0]:
                best = (score, n_nodes, lam)
    info["cv_rms_best"] = best[0]
    if best[1] is None or best[0] > (1.0 - min_gain) * flat or flat - best[0] < min_abs_gain:
        info["reason"] = "no candidate beats the flat field by the required margin"
        return None, info
    info["chosen"] = {"poly": best[2]} if best[1] == "poly" else {"nodes": best[1], "lambda": best[2]}
    return _fit(xy, resid, w, domain, info["chosen"]), info


def _fit(xy, resid, w, domain, choice):
    """The field of ``choice`` fitted to every point (:func:`field_fitter`)."""
    return field_fitter(xy, w, domain, choice)(resid)


def field_fitter(xy, w, domain, choice):
    """``resid -> SplineField``: the field of form ``choice`` fitted by weighted least squares to residuals
    ``resid`` (N, 2) at ``xy`` with weights ``w``, the design and its normal matrix formed once for any number
    of residual sets (a backfit's rounds); a polynomial is stored as a cubic B-spline on :data:`POLY_NODES`
    nodes."""
    if "poly" in choice:
        design, pen, lam = _monomials(xy[:, 0], xy[:, 1], domain, choice["poly"]), None, None
        grid = _grid(domain, POLY_NODES)
        project = _poly_projection(tuple(float(v) for v in domain), int(choice["poly"]), POLY_NODES)
    else:
        grid = _grid(domain, choice["nodes"])
        design, pen, lam, project = _design(xy[:, 0], xy[:, 1], grid), _penalty(grid[2]), choice["lambda"], None
    aw = design * w[:, None]
    ata = aw.T @ design
    origin, spacing, (nx, ny) = grid

    def fit(resid):
        c = _solve(ata, aw.T @ resid, pen, lam)
        if project is not None:
            c = project @ c
        return SplineField(origin, spacing, (nx, ny), c[:, 0].reshape(ny + 2, nx + 2), c[:, 1].reshape(ny + 2, nx + 2))
    return fit

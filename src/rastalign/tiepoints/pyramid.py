"""Coarse-to-fine estimation of the fixed-pixel -> moving-pixel model from proxies.

Levels are decimated copies of the fixed and moving proxies at the same ground
resolution. The coarsest level gives a global offset (phase correlation of the whole
overlap); every level then measures a grid of windows through the current model and
refits it; the two finest levels also fit the smooth residual field, and the finest is
measured again when its fit moved that field, so the tie points are measured with the final geometry.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List

import numpy as np

from rastalign.errors import AlignmentError
from rastalign.geometry.affine import apply_affine, compose_affine
from rastalign.model.model import AlignmentModel
from rastalign._kernels.bspline import coefficients, sample as sample_bspline3, window_coords
from rastalign._kernels.pixels import edge_proxy, equalised, erode3, normalised
from rastalign._kernels.blocks import downsample2
from rastalign.tiepoints.correlation import match_windows, phase_shift, window_centres

log = logging.getLogger(__name__)
GLOBAL_NEAR_PEAK = 0.8  # a global correlation peak this close to the highest, nearer the georeference, wins
COARSE_TIE_POINTS = 64  # a coarse level only has to bring the model within a pixel of the next one
REFINED_TIE_POINTS = 400  # the finest proxy level, when native refinement follows, screens outliers and the field
LK_TOL_FINAL, LK_TOL_COARSE = 5e-4, 1e-2  # matching stops when a step is below this (level px)
# The finest level's tie points stop at a step below this: a step shrinks about tenfold, so the shift is then
# within about 2e-4 px of where it would settle (p95 4e-5 px on a 2048^2 pair, against a tie-point scatter of
# 4e-3 px there), one step sooner than at LK_TOL_FINAL, which the matcher's own bias (phase_bias) keeps.
LK_TOL_FINEST = 2e-3
# The residual field is fitted from the second-finest level on, so the finest level's windows are matched
# through most of the distortion at once (a curved geometry within a window biases its shift); they are
# matched again, each from its residual, when the finest fit moved the field by this much (level px) or more
# (0.25 skipped the second pass on a 1024^2 scene rotated 5 deg with 1 px of distortion: true p95 0.0052 ->
# 0.0105 px).
FIELD_CHANGE = 0.05


def spline(img, valid):
    """Cubic B-spline coefficients of a moving proxy and where all their taps are valid pixels."""
    return coefficients(img), erode3(erode3(valid))


@dataclass
class Level:
    """One pyramid level: images on their own grids, with full-res pixel = f * px + (f - 1) / 2."""

    fixed: np.ndarray
    fvalid: np.ndarray
    moving: np.ndarray
    mvalid: np.ndarray
    f_fixed: float
    f_moving: float
    _cache: dict = field(default_factory=dict)

    def spline(self):
        """Cubic B-spline coefficients of the moving proxy and where all its taps are valid (cached; set by
        :func:`build_levels`)."""
        if "spline" not in self._cache:
            self._cache["spline"] = spline(self.moving, self.mvalid)
        return self._cache["spline"]

    def centres(self, window, step, min_valid):
        key = ("centres", window, step, min_valid)
        if key not in self._cache:
            self._cache[key] = window_centres(self.fvalid, window, step, min_valid)
        return self._cache[key]


@dataclass
class TiePoints:
    """Tie points in full-resolution pixels: fixed ``(x, y)`` <-> moving ``(x, y)``."""

    fixed: np.ndarray
    moving: np.ndarray
    weight: np.ndarray
    reliability: np.ndarray
    inlier: np.ndarray = None
    residual: np.ndarray = None  # (n, 2) moving px, observed - model
    level: np.ndarray = None

    def __len__(self):
        return len(self.fixed)


def _scale(f):
    """2x3 affine: level pixel -> full-resolution pixel."""
    return np.array([[f, 0.0, (f - 1) / 2.0], [0.0, f, (f - 1) / 2.0]])


def _unscale(f):
    return np.array([[1.0 / f, 0.0, -(f - 1) / (2.0 * f)], [0.0, 1.0 / f, -(f - 1) / (2.0 * f)]])


def proxy_levels(img, valid, use_edges, min_side=256):
    """One image's proxies ``(proxy, valid)``, finest first, halving until the short side is below
    ``2 * min_side``: edge proxies of the image equalised once, at the finest level (:func:`equalised`: the
    coarser levels are means of images already alike, whatever radiometric transform separated them), or
    its normalised intensities."""
    if use_edges:
        img = equalised(img, valid)
    out = []
    while True:
        out.append(edge_proxy(img, valid) if use_edges else (normalised(img, valid), valid))
        if min(img.shape) < 2 * min_side:
            return out
        img, valid = downsample2(img, valid)


def build_levels(fixed, fvalid, moving, mvalid, f_fixed, f_moving, use_edges, min_side=256,
                 fixed_levels=None) -> List[Level]:
    """Finest first, as deep as the shallower of the two images' :func:`proxy_levels`. The fixed and the
    moving sides are built side by side (threads), then the moving levels' spline coefficients, one level a
    task; ``fixed_levels``: the fixed side already built (a reference's, shared by a stack)."""
    from rastalign.runtime.scheduler import each_in_threads

    def side(k):
        if k == 0:
            return fixed_levels if fixed_levels is not None else proxy_levels(fixed, fvalid, use_edges, min_side)
        return proxy_levels(moving, mvalid, use_edges, min_side)

    fl, ml = each_in_threads(side, 2)
    n = min(len(fl), len(ml))
    splines = each_in_threads(lambda i: spline(*ml[i]), n)
    levels = []
    for i in range(n):
        level = Level(*fl[i], *ml[i], float(f_fixed) * 2 ** i, float(f_moving) * 2 ** i)
        level._cache["spline"] = splines[i]
        levels.append(level)
    return levels


def geometry(level: Level, model: AlignmentModel):
    """The moving level's coordinates of every pixel of the fixed level through ``model``, as a compiled
    :class:`~rastalign._kernels.bspline.Geometry` (:meth:`AlignmentModel.geometry`: computed a window at a
    time where the matcher needs them)."""
    return model.geometry(level.fixed.shape, _scale(level.f_fixed), _unscale(level.f_moving))


def _jacobian(level: Level, model: AlignmentModel):
    """d(moving level px) / d(fixed level px) of the model's affine part."""
    return (_unscale(level.f_moving)[:, :2] @ model.linear[:, :2]) * level.f_fixed


def _prior_shifts(level: Level, centres, prior: TiePoints, jac):
    """Starting shifts (level px) of the windows at ``centres``: the residual (moving px) of the prior tie point
    measured there, through the inverse Jacobian; zero where none was."""
    shifts = np.zeros((len(centres), 2))
    index = {(round(x), round(y)): k for k, (x, y) in enumerate(centres.tolist())}
    px, py = apply_affine(_unscale(level.f_fixed), *prior.fixed.T)
    steps = (prior.residual / level.f_moving) @ np.linalg.inv(jac).T
    for x, y, s in zip(px.tolist(), py.tolist(), steps):
        k = index.get((round(x), round(y)))
        if k is not None:
            shifts[k] = s
    return shifts


def global_offset(level: Level, model: AlignmentModel):
    """Translate ``model`` by the phase-correlation offset of the whole overlap at this level."""
    ny, nx = level.fixed.shape
    lx, ly = window_coords(geometry(level, model), [(0, 0)], ny, nx)
    mw, mv = sample_bspline3(*level.spline(), lx[0], ly[0])
    sx, sy, peak = phase_shift(level.fixed, mw, level.fvalid, mv, near_peak=GLOBAL_NEAR_PEAK)
    s = np.array([sx, sy]) * level.f_fixed
    shifted = compose_affine(model.affine, np.array([[1.0, 0.0, s[0]], [0.0, 1.0, s[1]]]))
    log.info("global offset at 1/%g: (%.2f, %.2f) full px, peak %.1f", level.f_fixed, s[0], s[1], peak)
    return AlignmentModel(shifted, model.field), peak


def measure(level: Level, model: AlignmentModel, window, step, min_valid, search, start="phase",
            tol=LK_TOL_FINAL, prior=None) -> TiePoints:
    """Tie points from a grid of windows at this level, matched through ``model`` (see
    :func:`~rastalign.tiepoints.correlation.match_windows` for ``search``, ``start`` and ``tol``). With
    ``prior``, the tie points of the same windows fitted by ``model`` (their residuals set), each window starts
    from its prior residual instead (a re-measurement after a refit moves each window by about that)."""
    centres = level.centres(window, step, min_valid)
    jac = _jacobian(level, model)
    if prior is not None:
        start = _prior_shifts(level, centres, prior, jac)
    res = match_windows(level.fixed, level.fvalid, *level.spline(), geometry(level, model), jac, centres,
                        window, search, start=start, tol=tol)
    ok = res["ok"] & (res["ncc"] > 0)  # an anticorrelated window (an inverted band without edge proxies) says nothing
    c = res["centre"][ok]
    s = res["shift"][ok]
    pf = apply_affine(_scale(level.f_fixed), c[:, 0], c[:, 1])
    pm_level = c + s
    qf = apply_affine(_scale(level.f_fixed), pm_level[:, 0], pm_level[:, 1])
    qm = model(*qf)
    rel = np.clip(res["ncc"][ok], 0, 1)
    return TiePoints(np.column_stack(pf), np.column_stack(qm), rel ** 2, rel,
                     level=np.full(ok.sum(), level.f_fixed))


def fit_model(tp: TiePoints, domain, allow_field, threshold, seed=0, residual_model="auto", chosen=None):
    """The robust fit (:func:`~rastalign.model.fit.fit_robust`) of the tie points; records their residuals
    and inliers on ``tp``. Returns ``(model, field info)``; ``chosen``: the field info of a fit of the same
    windows measured before, whose field form is refitted instead of chosen again."""
    from rastalign.model.fit import fit_robust

    p, q = tp.fixed, tp.moving
    aff, fld, inl, info = fit_robust(p, q, tp.weight, domain, threshold, seed=seed,
                                     field=allow_field and residual_model != "none",
                                     min_gain=0.0 if residual_model == "spline" else 0.1, chosen=chosen)
    m = AlignmentModel(aff, fld)
    tp.residual = q - np.column_stack(m(p[:, 0], p[:, 1]))
    tp.inlier = inl
    return m, info


@dataclass
class SolveResult:
    model: AlignmentModel  # fixed px -> moving px
    tiepoints: TiePoints
    field_info: dict
    levels: list = field(default_factory=list)


def solve(levels: List[Level], initial: AlignmentModel, domain, window=96, min_valid=0.8, seed=0,
          residual_model="auto", max_tie_points=4000, native_refinement=False) -> SolveResult:
    """Coarse-to-fine solve. With ``native_refinement`` (tie points re-measured at native resolution next),
    the proxy solve only has to come within a fraction of a native pixel: fewer windows, a looser
    matching tolerance and one pass at the finest level."""
    coarse = levels[-1]
    model, peak = global_offset(coarse, initial)
    history = []
    tp = None
    info = {}
    rms_level = np.inf  # the last level's inlier rms, in that level's pixels
    if native_refinement:
        max_tie_points = min(max_tie_points, REFINED_TIE_POINTS)
    for li in range(len(levels) - 1, -1, -1):
        lev = levels[li]
        finest = li == 0
        win = level_window(window, lev.fixed.shape)
        # coarse levels only need to bring the model within a pixel: fewer windows
        n_side = max(2, int(np.sqrt(max_tie_points if finest else min(max_tie_points, COARSE_TIE_POINTS))))
        step = max(int(0.75 * win), int(max(lev.fixed.shape) / n_side))
        search = max(2, win // 4)
        # a model already within half a pixel here needs no correlation search, only the matching
        start = "phase" if rms_level * 2.0 > 0.5 else "model"
        tol = LK_TOL_FINEST if finest and not native_refinement else LK_TOL_COARSE
        for it in range(1 if native_refinement or not finest else 2):
            if it > 0 and _field_change(measured_with, model, lev) < FIELD_CHANGE:
                break  # re-measuring only pays when the field changed the geometry the windows were matched with
            measured_with = model
            tp = measure(lev, model, win, step, min_valid, search, start, tol, prior=tp if it > 0 else None)
            if len(tp) < 3:
                raise AlignmentError(f"too few tie points at resolution 1/{lev.f_fixed:g}: {len(tp)} windows matched "
                                     f"(the images share too little texture or valid data)")
            thr = 2.5 * max(lev.f_fixed, 1.0)
            model, info = fit_model(tp, domain, allow_field=li <= 1, threshold=thr, seed=seed,
                                    residual_model=residual_model, chosen=info if it > 0 else None)
            rms = float(np.sqrt(np.mean(np.sum(tp.residual[tp.inlier] ** 2, axis=1)))) if tp.inlier.any() else np.nan
            rms_level = rms / lev.f_fixed if np.isfinite(rms) else np.inf
            history.append({"scale": lev.f_fixed, "window": win, "n_tie_points": len(tp),
                            "n_inliers": int(tp.inlier.sum()), "rms_px": rms, "field": model.field is not None,
                            "start": start})
            log.info("level 1/%g: %d tie points, %d inliers, rms %.4f px", lev.f_fixed, len(tp), tp.inlier.sum(), rms)
    return SolveResult(model, tp, info, history)


def _field_change(old, new, level, n=17):
    """Largest change (moving level px) of the residual field from model ``old`` to ``new`` over ``level``'s
    fixed grid (``n`` x ``n`` points: the field is smooth)."""
    ny, nx = level.fixed.shape
    to_full = _scale(level.f_fixed)
    gx, gy = np.meshgrid(to_full[0, 0] * np.linspace(0, nx - 1, n) + to_full[0, 2],
                         to_full[1, 1] * np.linspace(0, ny - 1, n) + to_full[1, 2])
    (ax, ay), (bx, by) = old.field_at_output(gx, gy), new.field_at_output(gx, gy)
    return float(np.hypot(ax - bx, ay - by).max()) / level.f_moving


def level_window(window, shape):
    """The correlation window at a level of ``shape``: ``window``, at most a quarter of the short side (at least
    32 px), even."""
    win = int(min(window, max(32, min(shape) // 4)))
    return win - win % 2


def common_bias(moving_xy, fixed, fvalid, window, use_edges):
    """The matcher's bias that every tie point shares (px): its bias at the mean sub-pixel phase of the tie
    points' moving positions ``moving_xy`` (:func:`phase_bias` on the finest ``fixed`` level) times how
    concentrated those phases are (1: one phase everywhere, the bias is common; 0: phases spread evenly, it
    averages out); ``None`` without tie points."""
    if not len(moving_xy):
        return None
    frac = moving_xy - np.floor(moving_xy)
    z = np.exp(2j * np.pi * frac).mean(axis=0)
    return np.abs(z) * phase_bias(fixed, fvalid, np.angle(z) / (2 * np.pi), level_window(window, fixed.shape),
                                  use_edges)


def phase_bias(fixed, fvalid, phase, window, use_edges, side=512, per_side=4):
    """The matcher's own bias ``(bx, by)`` (px) at the sub-pixel sampling phase ``phase`` ``(x, y)`` of the
    moving image: a central crop of the fixed image (at most ``side`` px) and itself moved by ``phase``
    (a Fourier shift, exact for its band-limited content) are matched as a pair is, through the exact
    translation, on ``per_side`` x ``per_side`` windows; the mean measured shift is the bias. Where every
    window of a pair samples the moving image at one phase, this bias is common to all its tie points: the
    model absorbs it and no residual shows it."""
    ny, nx = fixed.shape
    h, w = min(ny, side), min(nx, side)
    y0, x0 = (ny - h) // 2, (nx - w) // 2
    f = np.asarray(fixed[y0:y0 + h, x0:x0 + w], np.float64)
    v = np.asarray(fvalid[y0:y0 + h, x0:x0 + w], bool)
    if v.mean() < 0.9 or min(h, w) < window + 64:
        return np.zeros(2)
    f = np.where(v, f, f[v].mean())
    ky, kx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    # moving(q) = fixed(q - phase): the content of fixed pixel p sits at moving q = p + phase
    m = np.fft.irfft2(np.fft.rfft2(f) * np.exp(-2j * np.pi * (kx * phase[0] + ky * phase[1])), s=(h, w))
    level = build_levels(f.astype(np.float32), v, m.astype(np.float32), v, 1.0, 1.0, use_edges, min_side=1 << 30)[0]
    model = AlignmentModel(np.array([[1.0, 0.0, phase[0]], [0.0, 1.0, phase[1]]]))
    margin = 32  # the circular shift's wrap stays out of the windows
    step = max(8, (min(h, w) - 2 * margin - window) // max(per_side - 1, 1))
    tp = measure(_cropped(level, margin), model, window, step, 0.9, 2, start="model")
    if len(tp) < 3:
        return np.zeros(2)
    return (tp.moving - (tp.fixed + np.asarray(phase))).mean(axis=0)


def _cropped(level, margin):
    """``level`` without a ``margin`` px border: the same model holds (the translation is unchanged when both
    images lose the same border)."""
    s = np.s_[margin:-margin, margin:-margin]
    return Level(level.fixed[s], level.fvalid[s], level.moving[s], level.mvalid[s], level.f_fixed, level.f_moving)

"""Tie points by windowed correlation, coarse to fine, with sub-pixel peaks.

For each window centred on a fixed-image point ``p`` the moving image is *resampled
through the current model* onto the fixed window, so what remains is a small shift
``s``. It is found in two steps:

1. integer peak of the Hann-windowed phase correlation, plus a parabolic step;
2. iterated least-squares matching (Lucas-Kanade with gain and offset, compiled in
   :mod:`rastalign._kernels.bspline`), each iteration resampling the moving image at
   ``T(p + s)`` with a cubic spline and its analytic gradient.

The tie point is ``p <-> T(p + s)`` and its reliability is the normalised cross
correlation of the two windows after matching (1 = identical up to gain/offset).
"""
from __future__ import annotations

import functools

import numpy as np


def _parabolic(cm, c0, cp):
    den = cm - 2.0 * c0 + cp
    return 0.0 if den == 0 else float(np.clip(0.5 * (cm - cp) / den, -0.5, 0.5))


@functools.lru_cache(maxsize=16)
def _hann(ny, nx):
    return np.outer(np.hanning(ny), np.hanning(nx)).astype(np.float32)


def phase_shift(a, b, va=None, vb=None, max_shift=None, near_peak=1.0):
    """Shift ``s`` with ``b(p + s) ~ a(p)`` by masked, Hann-windowed phase correlation.

    Without ``max_shift``, of the local peaks at least ``near_peak`` times the highest, the one nearest
    zero shift wins: a periodic scene (rows of fields, a repeated texture) correlates almost equally at
    every period, and the georeference the shift starts from is the better guide between them.
    Returns ``(sx, sy, peak)`` where ``peak`` is the height of the correlation peak
    relative to the surface's spread (a rough confidence).
    """
    from scipy import fft

    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    ny, nx = a.shape
    win = _hann(ny, nx)
    va = np.ones(a.shape, bool) if va is None else va
    vb = np.ones(b.shape, bool) if vb is None else vb
    am = a[va].mean() if va.any() else 0.0
    bm = b[vb].mean() if vb.any() else 0.0
    fa = fft.rfft2(np.where(va, a - am, 0.0).astype(np.float32) * win)
    fb = fft.rfft2(np.where(vb, b - bm, 0.0).astype(np.float32) * win)
    cross = np.conj(fa) * fb
    mag = np.abs(cross)
    cross /= mag + 1e-12 * mag.max() + 1e-30
    cc = fft.fftshift(fft.irfft2(cross, s=(ny, nx)))
    cy, cx = ny // 2, nx // 2
    if max_shift is not None:
        m = int(max_shift)
        sub = cc[max(cy - m, 0):cy + m + 1, max(cx - m, 0):cx + m + 1]
        iy, ix = np.unravel_index(np.argmax(sub), sub.shape)
        iy += max(cy - m, 0)
        ix += max(cx - m, 0)
    else:
        iy, ix = _nearest_of_the_highest(cc, cy, cx, near_peak)
    iy = int(np.clip(iy, 1, ny - 2))
    ix = int(np.clip(ix, 1, nx - 2))
    sx = ix - cx + _parabolic(cc[iy, ix - 1], cc[iy, ix], cc[iy, ix + 1])
    sy = iy - cy + _parabolic(cc[iy - 1, ix], cc[iy, ix], cc[iy + 1, ix])
    spread = cc.std() + 1e-30
    return sx, sy, float((cc[iy, ix] - cc.mean()) / spread)


def _nearest_of_the_highest(cc, cy, cx, near_peak):
    """``(row, col)`` of the local maximum of ``cc`` nearest ``(cy, cx)`` among those >= ``near_peak`` x max."""
    if near_peak >= 1.0:
        return np.unravel_index(np.argmax(cc), cc.shape)
    from scipy import ndimage

    peaks = (cc >= near_peak * cc.max()) & (cc == ndimage.maximum_filter(cc, size=3, mode="wrap"))
    ys, xs = np.nonzero(peaks)
    k = int(np.argmin(np.hypot(ys - cy, xs - cx)))
    return ys[k], xs[k]


def window_centres(valid, window, step, min_valid_fraction):
    """Centres ``(x, y)`` of windows on a grid of about ``step`` whose valid fraction is high enough. The
    grid reaches the image's edges on every side (the first and last windows touch them), so the model is
    measured up to its corners instead of extrapolated over a strip of up to ``step`` px."""
    ny, nx = valid.shape
    h = window // 2
    if ny - window < 0 or nx - window < 0:
        return np.zeros((0, 2))
    cy, cx = (np.rint(np.linspace(h, n - window + h, int(np.ceil((n - window) / step)) + 1)).astype(int)
              for n in (ny, nx))
    # valid pixels per window: band matrices summing each window's rows and columns (exact in float32 below 2**24)
    rows = ((np.arange(ny)[None, :] >= (cy - h)[:, None]) & (np.arange(ny)[None, :] < (cy - h + window)[:, None]))
    cols = ((np.arange(nx)[:, None] >= (cx - h)[None, :]) & (np.arange(nx)[:, None] < (cx - h + window)[None, :]))
    n = rows.astype(np.float32) @ np.asarray(valid, np.float32) @ cols.astype(np.float32)
    gy, gx = np.nonzero(n >= min_valid_fraction * window * window)
    return np.column_stack([cx[gx], cy[gy]]).astype(float).reshape(-1, 2)


def match_windows(fixed, fvalid, sample, centres, window, search, lk_iterations=10, start="phase", tol=5e-4):
    """Measure the residual shift at every window centre.

    ``sample.window(gx, gy)`` returns an object whose ``at(sx, sy)`` samples the moving
    image through the current model at ``(gx + sx, gy + sy)`` and whose
    ``refine(fixed, fvalid, s0, iterations, tol)`` runs the compiled least-squares matching
    (:func:`rastalign._kernels.bspline.lk_bspline3`) from ``s0``. ``start="phase"`` starts the matching from the
    phase-correlation peak within ``search`` px; ``start="model"`` from zero shift, for a model already
    within about a pixel. A shift beyond ``search`` + 1 px is refused. Returns a dict of arrays: ``centre``
    (n, 2), ``shift`` (n, 2), ``ncc`` (n,), ``ok`` (n,) bool. Shifts are in the pixels of ``fixed``.
    """
    h = window // 2
    n = len(centres)
    shift = np.zeros((n, 2))
    ncc = np.zeros(n)
    ok = np.zeros(n, bool)
    oy, ox = np.mgrid[-h:window - h, -h:window - h].astype(float)

    def one(k):
        cx, cy = centres[k]
        ix, iy = int(cx), int(cy)
        fw = fixed[iy - h:iy - h + window, ix - h:ix - h + window].astype(np.float64)
        fv = fvalid[iy - h:iy - h + window, ix - h:ix - h + window]
        if fw[fv].std() < 1e-9:
            return
        win = sample.window(ox + cx, oy + cy)
        sx = sy = 0.0
        if start == "phase":
            mw, mv = win.at(0.0, 0.0)
            if mv.mean() < 0.5 or mw[mv].std() < 1e-9:
                return
            sx, sy, _ = phase_shift(fw, mw, fv, mv, max_shift=search)
        sx, sy, c, good = win.refine(fw, fv, (sx, sy), lk_iterations, tol)
        shift[k] = sx, sy
        ncc[k] = c
        ok[k] = good and abs(sx) <= search + 1 and abs(sy) <= search + 1

    from rastalign.runtime.scheduler import each_in_threads

    each_in_threads(one, n)
    return {"centre": np.asarray(centres, float), "shift": shift, "ncc": ncc, "ok": ok}


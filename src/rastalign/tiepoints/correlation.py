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
import os

import numpy as np

from rastalign._kernels.bspline import lk_windows, sample, window_coords


CHUNK = 64  # windows per task at most: a chunk's stacked spectra stay a few MB


@functools.lru_cache(maxsize=16)
def _hann(ny, nx):
    return np.outer(np.hanning(ny), np.hanning(nx)).astype(np.float32)


def _masked_mean(a, v):
    """Mean of each ``a[k]`` over ``v[k]`` (0 where none is valid), float64."""
    cnt = v.sum(axis=(1, 2))
    return np.where(v, a, 0).sum(axis=(1, 2), dtype=np.float64) / np.maximum(cnt, 1)


def surfaces(a, b, va, vb):
    """Phase-correlation surfaces of the stacks ``a``, ``b`` (k, h, w) with validity ``va``, ``vb``: each
    pair's valid pixels about their mean, Hann-windowed, whitened cross spectrum, zero shift at the centre.
    float32 throughout (numpy >= 2 transforms float32 as such), one stacked FFT per direction."""
    _, ny, nx = a.shape
    win = _hann(ny, nx)
    ma = _masked_mean(a, va).astype(np.float32)[:, None, None]
    mb = _masked_mean(b, vb).astype(np.float32)[:, None, None]
    fa = np.fft.rfft2(np.where(va, np.asarray(a, np.float32) - ma, np.float32(0)) * win, axes=(-2, -1))
    fb = np.fft.rfft2(np.where(vb, np.asarray(b, np.float32) - mb, np.float32(0)) * win, axes=(-2, -1))
    cross = np.conj(fa) * fb
    mag = np.abs(cross)
    cross /= mag + 1e-12 * mag.max(axis=(1, 2), keepdims=True) + 1e-30
    return np.fft.fftshift(np.fft.irfft2(cross, s=(ny, nx), axes=(-2, -1)), axes=(-2, -1))


def _parabolic(cm, c0, cp):
    """Vertex offsets of parabolas through ``(-1, cm), (0, c0), (1, cp)``, within half a pixel (0 if flat)."""
    den = cm - 2.0 * c0 + cp
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, 0.0, np.clip(0.5 * (cm - cp) / safe, -0.5, 0.5))


def peaks(cc, max_shift=None, near_peak=1.0):
    """Sub-pixel peaks ``(sx, sy, height)`` (each (k,)) of the surfaces ``cc`` (k, h, w) from :func:`surfaces`:
    the highest within ``max_shift`` px of zero shift or, without it, of the local peaks at least
    ``near_peak`` times the highest, the one nearest zero shift; a parabola through the peak and its
    neighbours along each axis. ``height`` is the peak above the surface's mean in its standard deviations."""
    k, ny, nx = cc.shape
    cy, cx = ny // 2, nx // 2
    if max_shift is not None:
        m = int(max_shift)
        y0, x0 = max(cy - m, 0), max(cx - m, 0)
        sub = cc[:, y0:cy + m + 1, x0:cx + m + 1]
        iy, ix = np.unravel_index(np.argmax(sub.reshape(k, -1), axis=1), sub.shape[1:])
        iy, ix = iy + y0, ix + x0
    else:
        iy, ix = np.array([_nearest_of_the_highest(c, cy, cx, near_peak) for c in cc]).reshape(k, 2).T
    iy = np.clip(iy, 1, ny - 2)
    ix = np.clip(ix, 1, nx - 2)
    w = np.arange(k)
    c0 = cc[w, iy, ix].astype(np.float64)
    sx = ix - cx + _parabolic(cc[w, iy, ix - 1], c0, cc[w, iy, ix + 1])
    sy = iy - cy + _parabolic(cc[w, iy - 1, ix], c0, cc[w, iy + 1, ix])
    flat = cc.reshape(k, -1)
    return sx, sy, (c0 - flat.mean(axis=1)) / (flat.std(axis=1) + 1e-30)


def phase_shift(a, b, va=None, vb=None, max_shift=None, near_peak=1.0):
    """Shift ``s`` with ``b(p + s) ~ a(p)`` by masked, Hann-windowed phase correlation of one pair of images.

    Without ``max_shift``, of the local peaks at least ``near_peak`` times the highest, the one nearest
    zero shift wins: a periodic scene (rows of fields, a repeated texture) correlates almost equally at
    every period, and the georeference the shift starts from is the better guide between them.
    Returns ``(sx, sy, peak)`` where ``peak`` is the height of the correlation peak
    relative to the surface's spread (a rough confidence).
    """
    va = np.ones(np.shape(a), bool) if va is None else va
    vb = np.ones(np.shape(b), bool) if vb is None else vb
    sx, sy, height = peaks(surfaces(*(np.asarray(x)[None] for x in (a, b, va, vb))), max_shift, near_peak)
    return float(sx[0]), float(sy[0]), float(height[0])


def _nearest_of_the_highest(cc, cy, cx, near_peak):
    """``(row, col)`` of the local maximum of ``cc`` nearest ``(cy, cx)`` among those >= ``near_peak`` x max."""
    if near_peak >= 1.0:
        return np.unravel_index(np.argmax(cc), cc.shape)
    peaks = cc >= near_peak * cc.max()
    for dy in (-1, 0, 1):  # a local maximum: no neighbour higher (the surface wraps around)
        for dx in (-1, 0, 1):
            if dy or dx:
                peaks &= cc >= np.roll(cc, (dy, dx), axis=(0, 1))
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


def _stack(image, corners, window):
    """The ``window`` x ``window`` windows of ``image`` at the top-left pixels ``corners`` (k, 2) ``(x, y)``."""
    r = np.arange(window)
    return image[(corners[:, 1, None] + r)[:, :, None], (corners[:, 0, None] + r)[:, None, :]]


def _phase_starts(fixed, fvalid, coef, mask, geometry, corners, window, search):
    """Starting shifts (k, 2) of the matching from the phase-correlation peaks within ``search`` px, and
    whether each window is worth matching (its moving window at least half valid and not flat)."""
    fw, fv = _stack(fixed, corners, window), _stack(fvalid, corners, window)
    mw, mv = sample(coef, mask, *window_coords(geometry, corners, window, window))
    mean = _masked_mean(mw, mv)[:, None, None]
    var = _masked_mean((mw - mean) ** 2, mv)
    usable = (mv.mean(axis=(1, 2)) >= 0.5) & (var >= 1e-18)
    sx, sy, _ = peaks(surfaces(fw, mw, fv, mv), max_shift=search)
    return np.column_stack([sx, sy]), usable


def match_windows(fixed, fvalid, coef, mask, geometry, jac, centres, window, search, start="phase", tol=5e-4,
                  iterations=10):
    """Measure the residual shift at every window centre (in :data:`CHUNK`-window tasks of the threaded
    scheduler, each a few array operations and one compiled call).

    ``fixed``, ``fvalid``: the fixed level; ``coef``, ``mask``: the moving level's spline coefficients and where
    all their taps are valid; ``geometry``: the moving level's coordinates of every fixed-level pixel through
    the current model (a :class:`~rastalign._kernels.bspline.Geometry`); ``jac``: its 2 x 2 d(moving px) / d(fixed px). Each window is matched by the compiled
    least-squares matcher (:func:`rastalign._kernels.bspline.lk_windows`), from the phase-correlation peak
    within ``search`` px (``start="phase"``, all windows of a chunk in stacked FFTs), from zero shift
    (``start="model"``, for a model already within about a pixel) or from given shifts (``start`` (n, 2)).
    A shift beyond ``search`` + 1 px is refused. Returns a dict of arrays: ``centre`` (n, 2), ``shift`` (n, 2), ``ncc`` (n,), ``ok`` (n,) bool. Shifts are in
    the pixels of ``fixed``.
    """
    from rastalign.runtime.scheduler import each_in_threads

    centres = np.asarray(centres, float).reshape(-1, 2)
    n = len(centres)
    corners = centres.astype(np.intp) - window // 2
    shift = np.array(start, float).reshape(n, 2) if not isinstance(start, str) else np.zeros((n, 2))
    ncc, ok = np.zeros(n), np.ones(n, bool)
    chunk = max(1, min(CHUNK, -(-n // (2 * (os.cpu_count() or 1)))))  # a coarse level's few windows: every core
    parts = [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]

    def part(k):
        s = parts[k]
        if isinstance(start, str) and start == "phase":
            shift[s], ok[s] = _phase_starts(fixed, fvalid, coef, mask, geometry, corners[s], window, search)
        lk_windows(fixed, fvalid, coef, mask, geometry, corners[s], window, jac, shift[s], ncc[s], ok[s], iterations,
                   tol)

    each_in_threads(part, len(parts))
    ok &= (np.abs(shift) <= search + 1).all(axis=1)
    return {"centre": centres, "shift": shift, "ncc": ncc, "ok": ok}

"""The warp's fast paths: a row of precomputed coordinates in two branch-free passes.

:func:`prep` (vectorised; one loop per method): for each pixel of a row, whether its
whole ``n x n`` support lies inside the block, the block column and row of its top-left
tap (from the coordinates clamped into the block where the support is not inside, so the
second pass never reads out of bounds) and its ``2 n`` tap weights (float64, from the
exact fraction). ``sum*`` (one per tap count, per band): the weighted sum of the taps in
float64, columns of taps first (weighted by the y weights), then the row of column sums
(by the x weights); the 2 x 2 and 4 x 4 sums load each row of taps as one vector
(:mod:`rastalign._kernels.simd`). Pixels not inside (frame and block edges, non-finite
coordinates) or, with a mask, whose window is not all valid are left to the generic path
of :mod:`rastalign._kernels.resample`, which takes the same weights (:func:`weights`) and the
same order, so a pixel gets the same bits whichever path and whichever block it falls in.
"""
import math

import numpy as np
from numba import njit

from rastalign._kernels.simd import cols2, cols4
from rastalign._kernels.methods import BILINEAR, BSPLINE, CUBIC, NEAREST, PENDING

_LZ_COS = np.cos(np.pi * (2.0 - np.arange(6)) / 3.0)  # the constant angles of the Lanczos taps
_LZ_SIN = np.sin(np.pi * (2.0 - np.arange(6)) / 3.0)


@njit(nogil=True, cache=True, inline="always")
def _cubic_w(t):
    """Keys' cubic (a = -0.5) weights of the taps at offsets -1, 0, 1, 2 for fraction ``t`` (Horner form;
    exactly 0, 1, 0, 0 at ``t = 0``)."""
    t2 = t * t
    return (((-0.5 * t + 1.0) * t - 0.5) * t, (1.5 * t - 2.5) * t2 + 1.0,
            ((-1.5 * t + 2.0) * t + 0.5) * t, (0.5 * t - 0.5) * t2)


@njit(nogil=True, cache=True, inline="always")
def _bspline_w(t):
    """Cubic B-spline basis at offsets -1, 0, 1, 2 (applied to prefiltered coefficients)."""
    sixth = 1.0 / 6.0
    t2 = t * t
    t3 = t2 * t
    u = 1.0 - t
    return (u * u * u * sixth, ((3.0 * t - 6.0) * t2 + 4.0) * sixth, (((-3.0 * t + 3.0) * t + 3.0) * t + 1.0) * sixth,
            t3 * sixth)


@njit(nogil=True, cache=True, inline="always")
def _lanczos_w(t, w, k0, c):
    """Lanczos (a = 3) weights of the taps at offsets -2..3, normalised to unit sum, into ``w[k0:k0+6, c]``.

    With d = t + 2 - k, sin(pi d) = (-1)^k sin(pi t) and sin(pi d / 3) follows from
    sin/cos(pi t / 3) by the angle-sum rule: three transcendental calls per axis, not twelve.
    """
    if t == 0.0:  # integer position: exactly the pixel itself
        for k in range(6):
            w[k0 + k, c] = 1.0 if k == 2 else 0.0
        return
    st = math.sin(math.pi * t)
    sa = math.sin(math.pi * t / 3.0)
    ca = math.cos(math.pi * t / 3.0)
    s = 0.0
    for k in range(6):  # w is float64: the unnormalised weights first, in place
        d = t + 2.0 - k
        if abs(d) < 1e-100:
            v = 1.0  # the limit at 0 (a fraction like 1e-221 made pd * pd underflow to 0)
        else:
            sign = 1.0 if k % 2 == 0 else -1.0
            pd = math.pi * d
            v = 3.0 * sign * st * (sa * _LZ_COS[k] + ca * _LZ_SIN[k]) / (pd * pd)
        w[k0 + k, c] = v
        s += v
    for k in range(6):
        w[k0 + k, c] /= s


@njit(nogil=True, cache=True, inline="always")
def _put4(w, k0, c, ws):
    w[k0, c] = ws[0]
    w[k0 + 1, c] = ws[1]
    w[k0 + 2, c] = ws[2]
    w[k0 + 3, c] = ws[3]


@njit(nogil=True, cache=True, inline="always")
def weights(method, x, w, k0, c):
    """The 1-D tap weights for coordinate ``x`` into ``w[k0:k0+n, c]``; return (first tap, n taps)."""
    x0 = math.floor(x)
    t = x - x0
    if method == BILINEAR:
        w[k0, c] = 1.0 - t
        w[k0 + 1, c] = t
        return int(x0), 2
    if method == CUBIC:
        _put4(w, k0, c, _cubic_w(t))
        return int(x0) - 1, 4
    if method == BSPLINE:
        _put4(w, k0, c, _bspline_w(t))
        return int(x0) - 1, 4
    _lanczos_w(t, w, k0, c)
    return int(x0) - 2, 6


@njit(nogil=True, cache=True, inline="always")
def _inside(x, y, first, n, sx0, sy0, bw, bh):
    """Whether the taps ``floor - first .. floor - first + n - 1`` of ``(x, y)`` lie in the block (false for
    NaN); the block column and row of the top-left tap and the fractions, from the coordinates clamped
    into the block where they do not (then non-negative: truncation is ``floor``; int32 so it vectorises)."""
    xlo = float(sx0 + first)
    ylo = float(sy0 + first)
    ok = (x >= xlo) & (x < xlo + (bw - n + 1)) & (y >= ylo) & (y < ylo + (bh - n + 1))
    xc = x if ok else xlo
    yc = y if ok else ylo
    ix = np.int32(xc)
    iy = np.int32(yc)
    return ok, xc - ix, yc - iy, ix - np.int32(first + sx0), iy - np.int32(first + sy0)


@njit(nogil=True, cache=True)
def prep(method, xs, ys, sx0, sy0, bw, bh, ixs, iys, w, ov):
    """Pass one over a row (see the module doc): ``ov`` (the row of the output validity) is 1 where the
    support is inside the block, ``PENDING`` elsewhere; ``w`` is ``(2 n, len(xs))``: x weights, then y."""
    one, pending = np.uint8(1), np.uint8(PENDING)
    if method == NEAREST:
        for c in range(xs.shape[0]):
            good, _, _, ixs[c], iys[c] = _inside(xs[c] + 0.5, ys[c] + 0.5, 0, 1, sx0, sy0, bw, bh)
            ov[c] = one if good else pending
    elif method == BILINEAR:
        for c in range(xs.shape[0]):
            good, tx, ty, ixs[c], iys[c] = _inside(xs[c], ys[c], 0, 2, sx0, sy0, bw, bh)
            ov[c] = one if good else pending
            w[0, c] = 1.0 - tx
            w[1, c] = tx
            w[2, c] = 1.0 - ty
            w[3, c] = ty
    elif method == CUBIC:
        for c in range(xs.shape[0]):
            good, tx, ty, ixs[c], iys[c] = _inside(xs[c], ys[c], 1, 4, sx0, sy0, bw, bh)
            ov[c] = one if good else pending
            _put4(w, 0, c, _cubic_w(tx))
            _put4(w, 4, c, _cubic_w(ty))
    elif method == BSPLINE:
        for c in range(xs.shape[0]):
            good, tx, ty, ixs[c], iys[c] = _inside(xs[c], ys[c], 1, 4, sx0, sy0, bw, bh)
            ov[c] = one if good else pending
            _put4(w, 0, c, _bspline_w(tx))
            _put4(w, 4, c, _bspline_w(ty))
    else:
        for c in range(xs.shape[0]):
            good, tx, ty, ixs[c], iys[c] = _inside(xs[c], ys[c], 2, 6, sx0, sy0, bw, bh)
            ov[c] = one if good else pending
            if good:
                _lanczos_w(tx, w, 0, c)
                _lanczos_w(ty, w, 6, c)


# pass two: unsigned flat indices (no negative-index wrap-around code; prep's indices are never negative)
@njit(nogil=True, cache=True)
def sum1(p, bw, ixs, iys, w, o):
    for c in range(ixs.shape[0]):
        o[c] = p[np.uint64(iys[c]) * bw + np.uint64(ixs[c])]


@njit(nogil=True, cache=True)
def sum2(p, bw, ixs, iys, w, o):
    for c in range(ixs.shape[0]):
        i = np.uint64(iys[c]) * bw + np.uint64(ixs[c])
        o[c] = cols2(p, i, bw, w[2, c], w[3, c], w[0, c], w[1, c])


@njit(nogil=True, cache=True)
def sum4(p, bw, ixs, iys, w, o):
    for c in range(ixs.shape[0]):
        i = np.uint64(iys[c]) * bw + np.uint64(ixs[c])
        o[c] = cols4(p, i, bw, w[4, c], w[5, c], w[6, c], w[7, c], w[0, c], w[1, c], w[2, c], w[3, c])


@njit(nogil=True, cache=True)
def sum6(p, bw, ixs, iys, w, o):
    for c in range(ixs.shape[0]):
        i = np.uint64(iys[c]) * bw + np.uint64(ixs[c])
        s = w[0, c] * _col6(p, i, bw, w, c)
        for ii in range(1, 6):
            s += w[ii, c] * _col6(p, i + np.uint64(ii), bw, w, c)
        o[c] = s


@njit(nogil=True, cache=True, inline="always")
def _col6(p, i, bw, w, c):
    cs = w[6, c] * p[i]
    for jj in range(1, 6):
        i += bw
        cs += w[6 + jj, c] * p[i]
    return cs

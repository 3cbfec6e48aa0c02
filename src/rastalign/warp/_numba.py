"""The compiled inner loop of the warp (numba, ``nogil`` so threads run it in parallel).

Coordinates: output pixel ``(gx, gy)`` (global, integer) -> moving pixel
``lin @ (gx, gy, 1) + field``, where the residual field is bilinearly interpolated from
a lattice of exact model values every ``step`` output pixels (global lattice, so every
chunking sees the same numbers). Taps with a non-zero weight must be valid and inside
the source; otherwise the output pixel is invalid. A tap inside the full source but
outside the block handed to the kernel is a *halo violation* and is counted.
``BSPLINE`` reads a block of prefiltered coefficients (:mod:`rastalign.warp.prefilter`),
not of pixels, with the 4-tap cubic B-spline basis.
"""
import math

import numpy as np
from numba import njit

NEAREST, BILINEAR, CUBIC, LANCZOS, BSPLINE = 0, 1, 2, 3, 4
_LZ_COS = np.cos(np.pi * (2.0 - np.arange(6)) / 3.0)  # the constant angles of the Lanczos taps
_LZ_SIN = np.sin(np.pi * (2.0 - np.arange(6)) / 3.0)
RADIUS = {NEAREST: 1, BILINEAR: 1, CUBIC: 2, LANCZOS: 3, BSPLINE: 2}  # BSPLINE: taps on prefiltered coefficients


@njit(nogil=True, cache=True, inline="always")
def _weights(method, x, w):
    """Fill ``w`` with the 1-D tap weights for coordinate ``x``; return (first tap, n taps)."""
    if method == BILINEAR:
        x0 = math.floor(x)
        f = x - x0
        w[0] = 1.0 - f
        w[1] = f
        return int(x0), 2
    if method == CUBIC:  # Keys, a = -0.5
        x0 = math.floor(x)
        t = x - x0
        a = -0.5
        d = 1.0 + t
        w[0] = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        d = t
        w[1] = ((a + 2) * d - (a + 3)) * d * d + 1
        d = 1.0 - t
        w[2] = ((a + 2) * d - (a + 3)) * d * d + 1
        d = 2.0 - t
        w[3] = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        return int(x0) - 1, 4
    if method == BSPLINE:  # cubic B-spline basis (applied to prefiltered coefficients)
        x0 = math.floor(x)
        t = x - x0
        t2 = t * t
        t3 = t2 * t
        u = 1.0 - t
        w[0] = u * u * u / 6.0
        w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
        w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
        w[3] = t3 / 6.0
        return int(x0) - 1, 4
    # LANCZOS (a = 3), normalised to unit sum. With d = t + 2 - k, sin(pi d) = (-1)^k sin(pi t) and
    # sin(pi d / 3) follows from sin/cos(pi t / 3) by the angle-sum rule: three transcendental calls
    # per axis instead of twelve (Lanczos ran 10x slower than cubic, almost all of it in sin)
    x0 = math.floor(x)
    t = x - x0
    if t == 0.0:  # integer position: exactly the pixel itself
        for k in range(6):
            w[k] = 1.0 if k == 2 else 0.0
        return int(x0) - 2, 6
    st = math.sin(math.pi * t)
    sa = math.sin(math.pi * t / 3.0)
    ca = math.cos(math.pi * t / 3.0)
    s = 0.0
    for k in range(6):
        d = t + 2.0 - k
        if abs(d) < 1e-100:
            v = 1.0  # the limit at 0 (a fraction like 1e-221 made pd * pd underflow to 0)
        else:
            sign = 1.0 if k % 2 == 0 else -1.0
            pd = math.pi * d
            v = 3.0 * sign * st * (sa * _LZ_COS[k] + ca * _LZ_SIN[k]) / (pd * pd)
        w[k] = v
        s += v
    for k in range(6):
        w[k] /= s
    return int(x0) - 2, 6


@njit(nogil=True, cache=True, inline="always")
def _generic(src, valid, check_valid, x, y, sx0, sy0, full_w, full_h, method, wx, wy, acc):
    """Any pixel, any method: taps with non-zero weight must be inside and valid.

    Returns ``(ok, n_halo_violations)``; the sum is accumulated in ``acc`` (per band).
    """
    nb, bh, bw = src.shape
    if method == NEAREST:
        ix = int(math.floor(x + 0.5))
        iy = int(math.floor(y + 0.5))
        if ix < 0 or iy < 0 or ix >= full_w or iy >= full_h:
            return False, 0
        bx = ix - sx0
        by = iy - sy0
        if bx < 0 or by < 0 or bx >= bw or by >= bh:
            return False, 1
        if check_valid and valid[by, bx] == 0:
            return False, 0
        for b in range(nb):
            acc[b] = src[b, by, bx]
        return True, 0
    fx, nx = _weights(method, x, wx)
    fy, ny = _weights(method, y, wy)
    # check every tap with a non-zero weight first
    for jj in range(ny):
        if wy[jj] == 0.0:
            continue
        iy = fy + jj
        if iy < 0 or iy >= full_h:
            return False, 0
        by = iy - sy0
        for ii in range(nx):
            if wx[ii] == 0.0:
                continue
            ix = fx + ii
            if ix < 0 or ix >= full_w:
                return False, 0
            bx = ix - sx0
            if by < 0 or bx < 0 or by >= bh or bx >= bw:
                return False, 1
            if check_valid and valid[by, bx] == 0:
                return False, 0
    # separable sum: rows first, then columns (same order as the fast paths)
    for b in range(nb):
        s = 0.0
        for jj in range(ny):
            if wy[jj] == 0.0:
                continue
            by = fy + jj - sy0
            rs = 0.0
            for ii in range(nx):
                if wx[ii] != 0.0:
                    rs += wx[ii] * src[b, by, fx + ii - sx0]
            s += wy[jj] * rs
        acc[b] = s
    return True, 0


@njit(nogil=True, cache=True)
def warp_rows(src, valid, check_valid, out, out_valid, lin, ox0, oy0, row0, row1,
              sx0, sy0, full_w, full_h, lat_dx, lat_dy, has_field, step, lat_ix0, lat_iy0, method):
    """Fill output rows ``row0:row1``; returns the number of halo violations.

    Pixels whose whole support lies inside the block (and, with ``check_valid``, is
    valid) take a fast path computing exactly the same sum, in the same order, as the
    generic path, so every chunking gives bit-identical results.
    """
    nb = src.shape[0]
    bh = src.shape[1]
    bw = src.shape[2]
    ow = out.shape[2]
    nviol = 0
    wx = np.zeros(6)
    wy = np.zeros(6)
    acc = np.zeros(nb)
    four = method == CUBIC or method == BSPLINE
    r0 = 0 if method == NEAREST else (0 if method == BILINEAR else (1 if four else 2))
    ntap = 1 if method == NEAREST else (2 if method == BILINEAR else (4 if four else 6))
    a00, a01, a02 = lin[0, 0], lin[0, 1], lin[0, 2]
    a10, a11, a12 = lin[1, 0], lin[1, 1], lin[1, 2]
    for r in range(row0, row1):
        gy = oy0 + r
        cx = a01 * gy + a02
        cy = a11 * gy + a12
        for c in range(ow):
            gx = ox0 + c
            x = a00 * gx + cx
            y = a10 * gx + cy
            if has_field:
                i = gx // step
                j = gy // step
                tx = (gx - i * step) / step
                ty = (gy - j * step) / step
                li = i - lat_ix0
                lj = j - lat_iy0
                w00 = (1.0 - tx) * (1.0 - ty)
                w10 = tx * (1.0 - ty)
                w01 = (1.0 - tx) * ty
                w11 = tx * ty
                x += (w00 * lat_dx[lj, li] + w10 * lat_dx[lj, li + 1]
                      + w01 * lat_dx[lj + 1, li] + w11 * lat_dx[lj + 1, li + 1])
                y += (w00 * lat_dy[lj, li] + w10 * lat_dy[lj, li + 1]
                      + w01 * lat_dy[lj + 1, li] + w11 * lat_dy[lj + 1, li + 1])
            if not (math.isfinite(x) and math.isfinite(y)):
                out_valid[r, c] = 0
                continue
            if method != NEAREST:
                fxl = int(math.floor(x)) - r0 - sx0
                fyl = int(math.floor(y)) - r0 - sy0
                if fxl >= 0 and fyl >= 0 and fxl + ntap <= bw and fyl + ntap <= bh:
                    fast = True
                    if check_valid:
                        for jj in range(ntap):
                            for ii in range(ntap):
                                if valid[fyl + jj, fxl + ii] == 0:
                                    fast = False
                    if fast:
                        _weights(method, x, wx)
                        _weights(method, y, wy)
                        if method == BILINEAR:
                            for b in range(nb):
                                r0_ = wx[0] * src[b, fyl, fxl] + wx[1] * src[b, fyl, fxl + 1]
                                r1_ = wx[0] * src[b, fyl + 1, fxl] + wx[1] * src[b, fyl + 1, fxl + 1]
                                out[b, r, c] = (0.0 + wy[0] * r0_) + wy[1] * r1_
                        elif four:
                            for b in range(nb):
                                s = 0.0
                                for jj in range(4):
                                    yy = fyl + jj
                                    rs = (((0.0 + wx[0] * src[b, yy, fxl]) + wx[1] * src[b, yy, fxl + 1])
                                          + wx[2] * src[b, yy, fxl + 2]) + wx[3] * src[b, yy, fxl + 3]
                                    s += wy[jj] * rs
                                out[b, r, c] = s
                        else:
                            for b in range(nb):
                                s = 0.0
                                for jj in range(ntap):
                                    rs = 0.0
                                    for ii in range(ntap):
                                        rs += wx[ii] * src[b, fyl + jj, fxl + ii]
                                    s += wy[jj] * rs
                                out[b, r, c] = s
                        out_valid[r, c] = 1
                        continue
            ok, nv = _generic(src, valid, check_valid, x, y, sx0, sy0, full_w, full_h, method, wx, wy, acc)
            nviol += nv
            if ok:
                for b in range(nb):
                    out[b, r, c] = acc[b]
                out_valid[r, c] = 1
            else:
                out_valid[r, c] = 0
    return nviol

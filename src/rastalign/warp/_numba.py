"""The compiled inner loop of the warp (numba, ``nogil`` so threads run it in parallel).

Coordinates: output pixel ``(gx, gy)`` (global, integer) -> moving pixel
``lin @ (gx, gy, 1) + field``, where the residual field is bilinearly interpolated from
a lattice of exact model values every ``step`` output pixels (global lattice, so every
chunking sees the same numbers). Taps with a non-zero weight must be valid and inside
the source; otherwise the output pixel is invalid. A tap inside the full source but
outside the block handed to the kernel is a *halo violation* and is counted.
"""
import math

import numpy as np
from numba import njit

NEAREST, BILINEAR, CUBIC, LANCZOS = 0, 1, 2, 3
RADIUS = {NEAREST: 1, BILINEAR: 1, CUBIC: 2, LANCZOS: 3}


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
    # LANCZOS (a = 3), normalised to unit sum
    x0 = math.floor(x)
    t = x - x0
    s = 0.0
    for k in range(6):
        d = t + 2.0 - k
        if t == 0.0:
            v = 1.0 if k == 2 else 0.0  # integer position: exactly the pixel itself
        elif abs(d) >= 3.0:
            v = 0.0
        else:
            pd = math.pi * d
            v = 3.0 * math.sin(pd) * math.sin(pd / 3.0) / (pd * pd)
        w[k] = v
        s += v
    for k in range(6):
        w[k] /= s
    return int(x0) - 2, 6


@njit(nogil=True, cache=True)
def warp_rows(src, valid, check_valid, out, out_valid, lin, ox0, oy0, row0, row1,
              sx0, sy0, full_w, full_h, lat_dx, lat_dy, has_field, step, lat_ix0, lat_iy0, method):
    nb = src.shape[0]
    bh = src.shape[1]
    bw = src.shape[2]
    ow = out.shape[2]
    nviol = 0
    wx = np.zeros(6)
    wy = np.zeros(6)
    acc = np.zeros(nb)
    for r in range(row0, row1):
        gy = oy0 + r
        for c in range(ow):
            gx = ox0 + c
            x = lin[0, 0] * gx + lin[0, 1] * gy + lin[0, 2]
            y = lin[1, 0] * gx + lin[1, 1] * gy + lin[1, 2]
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
            ok = True
            if not (math.isfinite(x) and math.isfinite(y)):
                out_valid[r, c] = 0
                continue
            if method == NEAREST:
                ix = int(math.floor(x + 0.5))
                iy = int(math.floor(y + 0.5))
                if ix < 0 or iy < 0 or ix >= full_w or iy >= full_h:
                    ok = False
                else:
                    bx = ix - sx0
                    by = iy - sy0
                    if bx < 0 or by < 0 or bx >= bw or by >= bh:
                        nviol += 1
                        ok = False
                    elif check_valid and valid[by, bx] == 0:
                        ok = False
                    else:
                        for b in range(nb):
                            out[b, r, c] = src[b, by, bx]
                out_valid[r, c] = 1 if ok else 0
                continue
            fx, nx = _weights(method, x, wx)
            fy, ny = _weights(method, y, wy)
            for b in range(nb):
                acc[b] = 0.0
            for jj in range(ny):
                if wy[jj] == 0.0:
                    continue
                iy = fy + jj
                if iy < 0 or iy >= full_h:
                    ok = False
                    break
                by = iy - sy0
                for ii in range(nx):
                    if wx[ii] == 0.0:
                        continue
                    ix = fx + ii
                    if ix < 0 or ix >= full_w:
                        ok = False
                        break
                    bx = ix - sx0
                    if by < 0 or bx < 0 or by >= bh or bx >= bw:
                        nviol += 1
                        ok = False
                        break
                    if check_valid and valid[by, bx] == 0:
                        ok = False
                        break
                    wgt = wy[jj] * wx[ii]
                    for b in range(nb):
                        acc[b] += wgt * src[b, by, bx]
                if not ok:
                    break
            if ok:
                for b in range(nb):
                    out[b, r, c] = acc[b]
                out_valid[r, c] = 1
            else:
                out_valid[r, c] = 0
    return nviol

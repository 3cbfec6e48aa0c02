"""Compiled cubic B-spline sampling of prefiltered coefficients (estimation windows).

Equivalent to ``scipy.ndimage.map_coordinates(coef, [y, x], order=3,
prefilter=False, mode="constant")`` but several times faster on the small windows
the tie-point matcher samples thousands of times; also returns the validity of each
sample from a mask (nearest pixel).
"""
import math

import numpy as np
from numba import njit

from rastalign._kernels.jit import announce

announce(__file__)


@njit(nogil=True, cache=True)
def sample_bspline3(coef, mask, lx, ly, out, ok):
    ny, nx = coef.shape
    n = lx.size
    wx = np.empty(4)
    wy = np.empty(4)
    dw = np.empty(4)
    fx = lx.ravel()
    fy = ly.ravel()
    o = out.ravel()
    k = ok.ravel()
    for i in range(n):
        x = fx[i]
        y = fy[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            o[i] = 0.0
            k[i] = False
            continue
        ix = int(math.floor(x))
        iy = int(math.floor(y))
        rx = int(math.floor(x + 0.5))
        ry = int(math.floor(y + 0.5))
        k[i] = 0 <= rx < nx and 0 <= ry < ny and mask[min(max(ry, 0), ny - 1), min(max(rx, 0), nx - 1)]
        _w3(x - ix, wx, dw)
        _w3(y - iy, wy, dw)
        acc = 0.0
        for jj in range(4):
            yy = iy - 1 + jj
            if yy < 0 or yy >= ny:
                continue
            row = 0.0
            for ii in range(4):
                xx = ix - 1 + ii
                if xx < 0 or xx >= nx:
                    continue
                row += wx[ii] * coef[yy, xx]
            acc += wy[jj] * row
        o[i] = acc


def sample(coef, mask, lx, ly):
    lx = np.ascontiguousarray(lx, np.float64)
    ly = np.ascontiguousarray(ly, np.float64)
    out = np.empty(lx.shape, np.float64)
    ok = np.empty(lx.shape, np.bool_)
    sample_bspline3(coef, mask, lx, ly, out, ok)
    return out, ok


@njit(nogil=True, cache=True, inline="always")
def _w3(t, w, dw):
    t2 = t * t
    t3 = t2 * t
    w[0] = (1 - t) ** 3 / 6.0
    w[1] = (3 * t3 - 6 * t2 + 4) / 6.0
    w[2] = (-3 * t3 + 3 * t2 + 3 * t + 1) / 6.0
    w[3] = t3 / 6.0
    dw[0] = -0.5 * (1 - t) ** 2
    dw[1] = 1.5 * t2 - 2 * t
    dw[2] = -1.5 * t2 + t + 0.5
    dw[3] = 0.5 * t2


@njit(nogil=True, cache=True)
def _sample_grad(coef, mask, lx, ly, sx, sy, jac, val, gx, gy, ok):
    """Value and gradient (w.r.t. the fixed-grid shift) of the spline at the shifted window."""
    ny, nx = coef.shape
    wx = np.empty(4)
    wy = np.empty(4)
    dwx = np.empty(4)
    dwy = np.empty(4)
    ox = jac[0, 0] * sx + jac[0, 1] * sy
    oy = jac[1, 0] * sx + jac[1, 1] * sy
    for i in range(lx.size):
        x = lx.flat[i] + ox
        y = ly.flat[i] + oy
        rx = int(math.floor(x + 0.5))
        ry = int(math.floor(y + 0.5))
        if rx < 1 or ry < 1 or rx >= nx - 1 or ry >= ny - 1 or not mask[ry, rx]:
            ok.flat[i] = False
            val.flat[i] = 0.0
            gx.flat[i] = 0.0
            gy.flat[i] = 0.0
            continue
        ok.flat[i] = True
        ix = int(math.floor(x))
        iy = int(math.floor(y))
        _w3(x - ix, wx, dwx)
        _w3(y - iy, wy, dwy)
        v = 0.0
        dvx = 0.0
        dvy = 0.0
        for jj in range(4):
            yy = min(max(iy - 1 + jj, 0), ny - 1)
            r = 0.0
            rd = 0.0
            for ii in range(4):
                xx = min(max(ix - 1 + ii, 0), nx - 1)
                c = coef[yy, xx]
                r += wx[ii] * c
                rd += dwx[ii] * c
            v += wy[jj] * r
            dvx += wy[jj] * rd
            dvy += dwy[jj] * r
        val.flat[i] = v
        # chain rule: moving-level gradient -> fixed-level shift
        gx.flat[i] = dvx * jac[0, 0] + dvy * jac[1, 0]
        gy.flat[i] = dvx * jac[0, 1] + dvy * jac[1, 1]


@njit(nogil=True, cache=True)
def lk_bspline3(fixed, fvalid, coef, mask, lx, ly, jac, sx, sy, iterations, tol):
    """Iterated least-squares matching of one window (shift + gain + offset).

    Returns ``(sx, sy, ncc, ok)`` with ``moving(T(p + s)) ~ fixed(p)``.
    """
    n = lx.size
    val = np.empty(lx.shape)
    gx = np.empty(lx.shape)
    gy = np.empty(lx.shape)
    ok = np.empty(lx.shape, np.bool_)
    a = np.zeros((4, 4))
    b = np.zeros(4)
    good = False
    for _ in range(iterations):
        _sample_grad(coef, mask, lx, ly, sx, sy, jac, val, gx, gy, ok)
        a[:, :] = 0.0
        b[:] = 0.0
        cnt = 0
        for i in range(n):
            if not (ok.flat[i] and fvalid.flat[i]):
                continue
            cnt += 1
            r = (gx.flat[i], gy.flat[i], val.flat[i], 1.0)
            d = fixed.flat[i] - val.flat[i]
            for p in range(4):
                b[p] += r[p] * d
                for q in range(4):
                    a[p, q] += r[p] * r[q]
        if cnt < n // 4:
            return sx, sy, 0.0, False
        if abs(np.linalg.det(a)) < 1e-30:
            return sx, sy, 0.0, False
        sol = np.linalg.solve(a, b)
        if not (math.isfinite(sol[0]) and math.isfinite(sol[1])) or math.hypot(sol[0], sol[1]) > 3.0:
            return sx, sy, 0.0, False
        sx += sol[0]
        sy += sol[1]
        good = True
        if math.hypot(sol[0], sol[1]) < tol:
            break
    _sample_grad(coef, mask, lx, ly, sx, sy, jac, val, gx, gy, ok)
    # normalised cross-correlation over the common valid pixels
    s1 = s2 = s11 = s22 = s12 = 0.0
    cnt = 0
    for i in range(n):
        if ok.flat[i] and fvalid.flat[i]:
            u = fixed.flat[i]
            v = val.flat[i]
            s1 += u
            s2 += v
            s11 += u * u
            s22 += v * v
            s12 += u * v
            cnt += 1
    if cnt < 16:
        return sx, sy, 0.0, False
    c12 = s12 - s1 * s2 / cnt
    c11 = s11 - s1 * s1 / cnt
    c22 = s22 - s2 * s2 / cnt
    ncc = c12 / math.sqrt(c11 * c22) if c11 > 0 and c22 > 0 else 0.0
    return sx, sy, ncc, good


@njit(nogil=True, cache=True)
def eval_field(coef_x, coef_y, ox, oy, sx, sy, nx_nodes, ny_nodes, x, y, outx, outy):
    """Tensor cubic B-spline displacement field at points (see model.residual.SplineField)."""
    wx = np.empty(4)
    wy = np.empty(4)
    dw = np.empty(4)
    for i in range(x.size):
        ux = min(max((x.flat[i] - ox) / sx, 0.0), nx_nodes - 1.0)
        uy = min(max((y.flat[i] - oy) / sy, 0.0), ny_nodes - 1.0)
        ix = min(int(math.floor(ux)), nx_nodes - 2)
        iy = min(int(math.floor(uy)), ny_nodes - 2)
        _w3(ux - ix, wx, dw)
        _w3(uy - iy, wy, dw)
        ax = 0.0
        ay = 0.0
        for jj in range(4):
            rx = 0.0
            ry = 0.0
            for ii in range(4):
                rx += wx[ii] * coef_x[iy + jj, ix + ii]
                ry += wx[ii] * coef_y[iy + jj, ix + ii]
            ax += wy[jj] * rx
            ay += wy[jj] * ry
        outx.flat[i] = ax
        outy.flat[i] = ay

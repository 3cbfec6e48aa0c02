"""The compiled inner loop of the warp (numba, ``nogil`` so threads run it in parallel).

Coordinates: output pixel ``(gx, gy)`` (global, integer) -> moving pixel
``lin @ (gx, gy, 1) + field``, where the residual field is bilinearly interpolated from
a lattice of exact model values every ``step`` output pixels (global lattice, so every
chunking sees the same numbers). Taps with a non-zero weight must be valid and inside
the source; otherwise the output pixel is invalid. A tap inside the full source but
outside the block handed to the kernel is a *halo violation* and is counted.
``BSPLINE`` reads a block of prefiltered coefficients (:mod:`rastalign._kernels.prefilter`),
not of pixels, with the 4-tap cubic B-spline basis.

A row is done in passes: its coordinates (:func:`row_coords`: the affine part as one
multiply-add per pixel from per-row constants, the field from two lattice rows
interpolated along the row once per ``step`` rows; every value depends only on the
global pixel, never on the chunk); then, in :mod:`rastalign._kernels.rows`, one
vectorised pass computing each pixel's tap index, weights and whether its whole support
lies inside the block (with a mask: and is valid, one look-up in the window mask of
:func:`window_valid`), and one branch-free pass of fixed-tap sums. The other pixels
(frame and block edges, invalid neighbourhoods, non-finite coordinates) are marked and
done last by :func:`_generic`, which computes the same sum in the same order (with the
value of a zero-weight tap taken as 0: adding ``0 * v`` changes nothing), so every
chunking gives bit-identical results. Sums are float64 whatever the source type: in
float32, Keys' cubic on a float32 ramp 4000 px wide was off by up to 0.0011 px (9 ulp).
"""
import math

import numpy as np
from numba import njit

from rastalign._kernels import rows as _rows
from rastalign._kernels.rows import weights
from rastalign._kernels.methods import BILINEAR, LANCZOS, NEAREST, PENDING
from rastalign._kernels.jit import announce

announce(__file__)

__all__ = ["window_valid", "warp_rows"]


@njit(nogil=True, cache=True)
def window_valid(valid, ntap, row0, row1, win):
    """``win[y, x] = 1`` where the ``ntap x ntap`` window with top-left ``(y, x)`` lies in the block and is all
    valid, for ``y`` in ``row0:row1`` (0 elsewhere): the fast paths' mask test in one look-up."""
    bh, bw = valid.shape
    colmin = np.empty(bw, np.uint8)
    for y in range(row0, row1):
        wrow = win[y]
        if y + ntap > bh:
            wrow[:] = 0
            continue
        for x in range(bw):
            colmin[x] = valid[y, x] != 0
        for jj in range(1, ntap):
            vrow = valid[y + jj]
            for x in range(bw):
                colmin[x] &= vrow[x] != 0
        nx = max(bw - ntap + 1, 0)
        wrow[:nx] = colmin[:nx]
        for ii in range(1, ntap):
            for x in range(nx):
                wrow[x] &= colmin[x + ii]
        wrow[nx:] = 0


@njit(nogil=True, cache=True)
def _lattice_row(lat, lj, colli, colt, f):
    """The field along lattice row ``lj`` at every column of the box (linear between nodes)."""
    for c in range(f.shape[0]):
        li = colli[c]
        t = colt[c]
        f[c] = (1.0 - t) * lat[lj, li] + t * lat[lj, li + 1]


@njit(nogil=True, cache=True)
def row_coords(lin, gy, gxs, has_field, lat_dx, lat_dy, lat_iy0, step, colli, colt, fcache, fj, xs, ys):
    """Moving coordinates of output row ``gy``, columns ``gxs`` (float), into ``xs, ys``.

    The field is the lattice interpolated along its rows first (``fcache``: those rows at
    every column, kept for the ``step`` output rows between two lattice rows; ``fj[0]``: the
    lattice row they belong to), then between the two rows around ``gy``: one vectorised
    multiply-add per pixel, the same numbers in any chunk (``colli, colt``: each column's
    lattice cell and fraction).
    """
    ow = xs.shape[0]
    a00, a10 = lin[0, 0], lin[1, 0]
    cx = lin[0, 1] * gy + lin[0, 2]
    cy = lin[1, 1] * gy + lin[1, 2]
    if not has_field:
        for c in range(ow):
            xs[c] = a00 * gxs[c] + cx
            ys[c] = a10 * gxs[c] + cy
        return
    j = gy // step
    lj = j - lat_iy0
    if fj[0] != lj:
        if fj[0] == lj - 1:  # the next pair of lattice rows: one is already there
            fcache[0, :] = fcache[1, :]
            fcache[2, :] = fcache[3, :]
        else:
            _lattice_row(lat_dx, lj, colli, colt, fcache[0])
            _lattice_row(lat_dy, lj, colli, colt, fcache[2])
        _lattice_row(lat_dx, lj + 1, colli, colt, fcache[1])
        _lattice_row(lat_dy, lj + 1, colli, colt, fcache[3])
        fj[0] = lj
    ty = (gy - j * step) / step
    uy = 1.0 - ty
    fx0, fx1, fy0, fy1 = fcache[0], fcache[1], fcache[2], fcache[3]
    for c in range(ow):
        xs[c] = (a00 * gxs[c] + cx) + (uy * fx0[c] + ty * fx1[c])
        ys[c] = (a10 * gxs[c] + cy) + (uy * fy0[c] + ty * fy1[c])


@njit(nogil=True, cache=True)
def _generic(src, valid, check_valid, x, y, sx0, sy0, full_w, full_h, method, w, tap, acc):
    """Any pixel, any method: taps with non-zero weight must be inside and valid.

    Returns ``(ok, n_halo_violations)``; the sum is accumulated in ``acc`` (per band), in
    the fast paths' order, with the value of every zero-weight tap taken as 0.
    """
    nb, bh, bw = src.shape
    if not (math.isfinite(x) and math.isfinite(y)):
        return False, 0
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
    fx, n = weights(method, x, w, 0, 0)
    fy, _ = weights(method, y, w, n, 0)
    # check every tap with a non-zero weight first
    for jj in range(n):
        if w[n + jj, 0] == 0.0:
            continue
        iy = fy + jj
        if iy < 0 or iy >= full_h:
            return False, 0
        by = iy - sy0
        for ii in range(n):
            if w[ii, 0] == 0.0:
                continue
            ix = fx + ii
            if ix < 0 or ix >= full_w:
                return False, 0
            bx = ix - sx0
            if by < 0 or bx < 0 or by >= bh or bx >= bw:
                return False, 1
            if check_valid and valid[by, bx] == 0:
                return False, 0
    for b in range(nb):
        for jj in range(n):
            by = fy + jj - sy0
            for ii in range(n):
                use = w[ii, 0] != 0.0 and w[n + jj, 0] != 0.0
                tap[jj, ii] = src[b, by, fx + ii - sx0] if use else 0
        s = w[0, 0] * _colsum(w, tap, 0, n)
        for ii in range(1, n):
            s += w[ii, 0] * _colsum(w, tap, ii, n)
        acc[b] = s
    return True, 0


@njit(nogil=True, cache=True, inline="always")
def _colsum(w, tap, ii, n):
    cs = w[n, 0] * tap[0, ii]
    for jj in range(1, n):
        cs += w[n + jj, 0] * tap[jj, ii]
    return cs


@njit(nogil=True, cache=True)
def _sum(n, p, bw, ixs, iys, w, o):
    if n == 1:
        _rows.sum1(p, bw, ixs, iys, w, o)
    elif n == 2:
        _rows.sum2(p, bw, ixs, iys, w, o)
    elif n == 4:
        _rows.sum4(p, bw, ixs, iys, w, o)
    else:
        _rows.sum6(p, bw, ixs, iys, w, o)


@njit(nogil=True, cache=True)
def warp_rows(src, valid, win, check_valid, out, out_valid, lin, ox0, oy0, row0, row1,
              sx0, sy0, full_w, full_h, lat_dx, lat_dy, has_field, step, lat_ix0, lat_iy0, method):
    """Fill output rows ``row0:row1``; returns the number of halo violations.

    ``win``: :func:`window_valid` of ``valid`` for the method's taps (used when ``check_valid``).
    """
    nb, bh, bw = src.shape
    ow = out.shape[2]
    n = 1 if method == NEAREST else (2 if method == BILINEAR else (6 if method == LANCZOS else 4))
    nviol = 0
    w = np.zeros((2 * n, ow))
    ixs = np.empty(ow, np.int32)
    iys = np.empty(ow, np.int32)
    wg = np.zeros((12, 1))
    tap = np.zeros((6, 6), src.dtype)
    acc = np.zeros(nb)
    xs = np.empty(ow)
    ys = np.empty(ow)
    colli = np.empty(ow, np.int64)  # each column's lattice cell and fraction
    colt = np.empty(ow)
    gxs = np.empty(ow)  # the columns as floats (int64 -> float64 does not vectorise on AVX2)
    for c in range(ow):
        gxs[c] = ox0 + c
        i = (ox0 + c) // step
        colli[c] = i - lat_ix0
        colt[c] = (ox0 + c - i * step) / step
    fcache = np.empty((4, ow) if has_field else (4, 0))
    fj = np.full(1, -2, np.int64)
    planes = src.reshape((nb, bh * bw))
    wflat = win.reshape(win.size)
    ubw = np.uint64(bw)
    for r in range(row0, row1):
        row_coords(lin, oy0 + r, gxs, has_field, lat_dx, lat_dy, lat_iy0, step, colli, colt, fcache, fj, xs, ys)
        ov = out_valid[r]
        _rows.prep(method, xs, ys, sx0, sy0, bw, bh, ixs, iys, w, ov)
        if check_valid:  # a window with an invalid tap: PENDING (2 - 0), else unchanged (max with 2 - 1)
            for c in range(ow):
                ov[c] = max(ov[c], np.uint8(PENDING) - wflat[np.uint64(iys[c]) * ubw + np.uint64(ixs[c])])
        for b in range(nb):
            _sum(n, planes[b], ubw, ixs, iys, w, out[b, r])
        for c in range(ow):  # edges, invalid neighbourhoods, non-finite coordinates
            if out_valid[r, c] != PENDING:
                continue
            good, nv = _generic(src, valid, check_valid, xs[c], ys[c], sx0, sy0, full_w, full_h, method, wg, tap,
                                acc)
            nviol += nv
            if good:
                for b in range(nb):
                    out[b, r, c] = acc[b]
                out_valid[r, c] = 1
            else:
                for b in range(nb):
                    out[b, r, c] = 0
                out_valid[r, c] = 0
    return nviol

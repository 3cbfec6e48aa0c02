"""The exact-interpolation prefilter of the cubic B-spline warp (``resampling="bspline"``).

Interpolating with the cubic B-spline basis reproduces the samples only when it is
applied to *coefficients* ``c`` with ``(c[i-1] + 4 c[i] + c[i+1]) / 6 = d[i]`` (what
``scipy.ndimage.map_coordinates(order=3)`` computes with a recursive filter over the
whole image). Here the inverse filter is a truncated FIR instead,
``h[k] = sqrt(3) z1**|k|`` with ``z1 = sqrt(3) - 2`` for ``|k| <= K`` (renormalised to
unit sum), applied separably (rows, then columns) in float64 with a fixed summation
order, so a coefficient depends only on the source pixels within ``K`` of it and comes
out bit-identical in whatever block it is computed: chunked output equals in-memory output.

* Frame edges (block edge == edge of the full source): mirror reflection
  (``d[-m] = d[m]``, scipy's ``"mirror"``), repeated for frames narrower than ``K``.
* Invalid pixels (mask False or non-finite in any band) are filled first so they do not
  poison their neighbours' coefficients: ``FILL_PASSES`` passes, each setting the pixels
  not yet filled to the mean of the pixels already filled in their
  ``(2 FILL_R + 1)**2`` window (clipped to the block). The fill reaches
  ``FILL_R * FILL_PASSES >= K`` pixels from the valid ones, so every pixel a valid
  coefficient reads is filled; the rest is set to 0 and never reaches a valid output.
  The output validity rule is unchanged (every tap must be a valid original pixel).
* A coefficient depends on source pixels within ``MARGIN = K + FILL_R * FILL_PASSES``;
  block edges that are not frame edges are cropped by ``MARGIN``, so the kernel's halo
  check counts a tap on a coefficient that could differ between blocks as a violation.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from rastalign._kernels.methods import FILL_PASSES, FILL_R, K, MARGIN
from rastalign.runtime.pools import split_rows
from rastalign._kernels.jit import announce

announce(__file__)

Z1 = math.sqrt(3.0) - 2.0
_H = math.sqrt(3.0) * Z1 ** np.arange(K + 1, dtype=np.float64)
H = _H / (_H[0] + 2.0 * _H[1:].sum())  # h[0..K], unit sum over -K..K


@njit(nogil=True, cache=True)
def _row_counts(have, r, rc, rows=None):
    """``rc[y, x]`` = number of ``have`` pixels in row y, columns x-r..x+r (on ``rows`` only if given)."""
    h, w = have.shape
    for y in range(h):
        if rows is not None and not rows[y]:
            continue
        c = 0
        for x in range(min(r + 1, w)):
            c += have[y, x]
        for x in range(w):
            rc[y, x] = c
            if x + r + 1 < w:
                c += have[y, x + r + 1]
            if x - r >= 0:
                c -= have[y, x - r]


@njit(nogil=True, cache=True)
def _fill(data, ok, radius, passes):
    """Copy of ``data`` (bands, rows, cols) with the pixels where ``ok == 0`` filled (see module doc).

    Jacobi passes over the unfilled pixels in row-major order: a pass reads only pixels
    filled before it, in row-major window order, so a filled value depends only on the
    pixels within ``radius * pass`` of it.
    """
    nb, h, w = data.shape
    out = data.copy()
    have = ok.copy()
    # pixels with no valid pixel within radius * passes are never reached: 0 now, and out of the list
    reach = radius * passes
    rc = np.zeros((h, w), np.int32)
    _row_counts(have, reach, rc)
    col = np.zeros(w, np.int32)
    for y in range(min(reach, h)):
        col += rc[y]
    n_bad = 0
    for y in range(h):
        for x in range(w):
            n_bad += 1 - have[y, x]
    ly = np.empty(n_bad, np.int64)
    lx = np.empty_like(ly)
    n_left = 0
    for y in range(h):
        if y + reach < h:
            col += rc[y + reach]
        for x in range(w):
            if not have[y, x]:
                if col[x] > 0:
                    ly[n_left] = y
                    lx[n_left] = x
                    n_left += 1
                else:
                    for b in range(nb):
                        out[b, y, x] = 0.0
        if y - reach >= 0:
            col -= rc[y - reach]
    need = np.zeros(h, np.uint8)
    done = np.zeros(n_left, np.uint8)
    acc = np.zeros(nb)
    for _ in range(passes):
        if n_left == 0:
            break
        # filled pixels per row window (integers: exact), on the rows a remaining pixel looks at
        need[:] = 0
        for i in range(n_left):
            for yy in range(max(0, ly[i] - radius), min(h, ly[i] + radius + 1)):
                need[yy] = 1
        _row_counts(have, radius, rc, need)
        for i in range(n_left):
            y, x = ly[i], lx[i]
            ya, yb = max(0, y - radius), min(h, y + radius + 1)
            n = 0
            for yy in range(ya, yb):
                n += rc[yy, x]
            done[i] = n > 0
            if n == 0:
                continue
            for b in range(nb):
                acc[b] = 0.0
            for yy in range(ya, yb):
                for xx in range(max(0, x - radius), min(w, x + radius + 1)):
                    if have[yy, xx]:
                        for b in range(nb):
                            acc[b] += out[b, yy, xx]
            for b in range(nb):
                out[b, y, x] = acc[b] / n
        k = 0
        for i in range(n_left):  # mark this pass's pixels filled; keep the rest, in order
            if done[i]:
                have[ly[i], lx[i]] = 1
            else:
                ly[k] = ly[i]
                lx[k] = lx[i]
                k += 1
        n_left = k
    for i in range(n_left):  # none expected (the reach test above is exact): kept as a guard
        for b in range(nb):
            out[b, ly[i], lx[i]] = 0.0
    return out


@njit(nogil=True, cache=True)
def _rows(data, h, xmap, y0, y1, tmp, trow0):
    """Filter along x: ``tmp[b, y - trow0, i] = sum_k h[|k|] data[b, y, xmap[i + K + k]]`` for rows y0:y1."""
    nb = data.shape[0]
    cw = tmp.shape[2]
    kk = h.shape[0] - 1
    ext = np.empty(cw + 2 * kk)
    acc = np.empty(cw)
    for b in range(nb):
        for y in range(y0, y1):
            for j in range(cw + 2 * kk):
                ext[j] = data[b, y, xmap[j]]
            hk = h[kk]
            for i in range(cw):
                acc[i] = hk * (ext[i] + ext[i + 2 * kk])
            for k in range(kk - 1, 0, -1):  # smallest taps first
                hk = h[k]
                e1 = ext[kk - k:kk - k + cw]
                e2 = ext[kk + k:kk + k + cw]
                for i in range(cw):
                    acc[i] += hk * (e1[i] + e2[i])
            hk = h[0]
            for i in range(cw):
                tmp[b, y - trow0, i] = acc[i] + hk * ext[i + kk]


@njit(nogil=True, cache=True)
def _usable(src, valid, check, ok, y0, y1):
    """``ok = valid & finite in every band`` (uint8) on rows y0:y1; returns the number of unusable pixels."""
    nb, h, w = src.shape
    bad = 0
    for y in range(y0, y1):
        for x in range(w):
            u = 1 if (not check or valid[y, x]) else 0
            for b in range(nb):
                if not math.isfinite(src[b, y, x]):
                    u = 0
            ok[y, x] = u
            bad += 1 - u
    return bad


@njit(nogil=True, cache=True)
def _cols(tmp, trow0, h, ymap, ya, yb, coef):
    """Filter along y: ``coef[b, y] = sum_k h[|k|] tmp[b, ymap[y + K + k] - trow0]`` for coef rows ya:yb."""
    nb = tmp.shape[0]
    cw = tmp.shape[2]
    kk = h.shape[0] - 1
    acc = np.empty(cw)
    for b in range(nb):
        for y in range(ya, yb):
            ra = ymap[y] - trow0
            rb = ymap[y + 2 * kk] - trow0
            hk = h[kk]
            for i in range(cw):
                acc[i] = hk * (tmp[b, ra, i] + tmp[b, rb, i])
            for k in range(kk - 1, 0, -1):
                ra = ymap[y + kk - k] - trow0
                rb = ymap[y + kk + k] - trow0
                hk = h[k]
                for i in range(cw):
                    acc[i] += hk * (tmp[b, ra, i] + tmp[b, rb, i])
            ra = ymap[y + kk] - trow0
            hk = h[0]
            for i in range(cw):
                coef[b, y, i] = acc[i] + hk * tmp[b, ra, i]


def _index_map(origin, n, full, a, m):
    """Block-local source index for coefficient indices ``a - K .. a + m + K - 1`` of a block
    ``[origin, origin + n)`` of a frame ``[0, full)``: mirrored at the frame edges, clamped
    at the block edges (the coefficients that read clamped pixels are cropped off)."""
    g = np.arange(origin + a - K, origin + a + m + K, dtype=np.int64)
    if full > 1:
        p = 2 * full - 2
        g = np.mod(g, p)
        g = np.where(g >= full, p - g, g)
    else:
        g = np.zeros_like(g)
    return np.clip(g - origin, 0, n - 1)


def coefficients(src, valid, origin, source_shape, threads=1):
    """B-spline coefficients of a source block (bands, rows, cols), float64 computed, ``src.dtype`` stored.

    ``origin = (row, col)`` of the block in the full source of shape ``source_shape``;
    ``valid`` its mask (None = all valid). Returns ``(coef, ok, origin)``: the
    coefficients of the part of the block that does not depend on where the block was cut
    (block edges that are not frame edges cropped by :data:`MARGIN`), the validity of the
    same pixels (mask and finite in every band), and the top-left of that part.
    """
    nb, bh, bw = src.shape
    oy, ox = int(origin[0]), int(origin[1])
    ny, nx = int(source_shape[0]), int(source_shape[1])
    threads = max(1, int(threads or 1))
    ok = np.empty((bh, bw), np.uint8)
    check = valid is not None
    vm = np.ascontiguousarray(valid, dtype=np.uint8) if check else ok
    bad = sum(split_rows(lambda a, b: _usable(src, vm, check, ok, a, b), bh, threads))
    data = _fill(src, ok, FILL_R, FILL_PASSES) if bad else src
    r0 = 0 if oy <= 0 else MARGIN
    r1 = bh if oy + bh >= ny else bh - MARGIN
    c0 = 0 if ox <= 0 else MARGIN
    c1 = bw if ox + bw >= nx else bw - MARGIN
    r1, c1 = max(r1, r0), max(c1, c0)
    coef = np.empty((nb, r1 - r0, c1 - c0), src.dtype)
    if coef.size:
        ymap = _index_map(oy, bh, ny, r0, r1 - r0)
        xmap = _index_map(ox, bw, nx, c0, c1 - c0)
        lo, hi = int(ymap.min()), int(ymap.max()) + 1
        tmp = np.empty((nb, hi - lo, c1 - c0))
        split_rows(lambda a, b: _rows(data, H, xmap, lo + a, lo + b, tmp, lo), hi - lo, threads)
        split_rows(lambda a, b: _cols(tmp, lo, H, ymap, a, b, coef), r1 - r0, threads)
    return coef, ok[r0:r1, c0:c1].view(bool), (oy + r0, ox + c0)

"""The exact-interpolation prefilter of the cubic B-spline warp (``resampling="bspline"``); the loops are
compiled (:mod:`rastalign._kernels._prefilter`).

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

from rastalign._kernels import _prefilter
from rastalign._kernels.methods import FILL_PASSES, FILL_R, K, MARGIN
from rastalign.runtime.pools import split_rows

Z1 = math.sqrt(3.0) - 2.0
_H = math.sqrt(3.0) * Z1 ** np.arange(K + 1, dtype=np.float64)
H = _H / (_H[0] + 2.0 * _H[1:].sum())  # h[0..K], unit sum over -K..K


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
    bad = sum(split_rows(lambda a, b: _prefilter.usable(src, vm, check, ok, a, b), bh, threads))
    data = _prefilter.fill(src, ok, FILL_R, FILL_PASSES) if bad else src
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
        split_rows(lambda a, b: _prefilter.rows(data, H, xmap, lo + a, lo + b, tmp, lo), hi - lo, threads)
        split_rows(lambda a, b: _prefilter.cols(tmp, lo, H, ymap, a, b, coef), r1 - r0, threads)
    return coef, ok[r0:r1, c0:c1].view(bool), (oy + r0, ox + c0)

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Valid-pixel block sums, compiled (see :mod:`rastalign._kernels.blocks`)."""
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t

import numpy as np

ctypedef fused pixel:
    uint8_t
    uint16_t
    int16_t
    int32_t
    float
    double


def block_sums(const pixel[:, ::1] data, const uint8_t[:, ::1] valid, Py_ssize_t f, double[:, ::1] s,
               double[:, ::1] n, double[:, ::1] m):
    """Per ``f x f`` block: ``m`` pixels, ``n`` valid pixels, ``s`` the sum of the valid ones (float64, in row
    order within the block). ``s``, ``n``, ``m`` start at zero. Each row of the image adds its block sums in
    one pass, without a division per pixel."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], y, x, by, bx, x0, x1
    cdef double acc, cnt
    with nogil:
        for y in range(ny):
            by = y // f
            for bx in range(s.shape[1]):
                x0 = bx * f
                x1 = x0 + f if x0 + f < nx else nx
                acc = s[by, bx]
                cnt = 0.0
                for x in range(x0, x1):  # branch-free: adding 0.0 for an invalid pixel changes no sum
                    acc = acc + (<double>data[y, x] if valid[y, x] else 0.0)
                    cnt += valid[y, x]
                s[by, bx] = acc
                n[by, bx] += cnt
                m[by, bx] += <double>(x1 - x0)


def equalise(const float[:, ::1] x, const uint8_t[:, ::1] valid, float lo, float hi, int bins, float[:, ::1] out):
    """``x`` through its own cumulative histogram over the valid pixels (``bins`` equal bins over
    ``[lo, hi]``, the valid range; linear within a bin; 0 where invalid), in float32, the operations of
    :func:`rastalign._kernels.pixels.equalised` in its order. Three passes, no GIL."""
    cdef Py_ssize_t ny = x.shape[0], nx = x.shape[1], r, c, total = 0, k
    cdef float scale = <float>(bins / (<double>hi - <double>lo)), top = <float>(bins - 1e-3), t, below
    cdef int i
    cdef long long[::1] counts = np.zeros(bins, np.int64)
    cdef float[::1] cdf = np.zeros(bins + 1, np.float32)
    with nogil:
        for r in range(ny):
            for c in range(nx):
                if valid[r, c]:
                    t = (x[r, c] - lo) * scale
                    t = 0.0 if t < 0.0 else (top if t > top else t)
                    counts[<int>t] += 1
                    total += 1
        for k in range(bins):
            counts[k] += counts[k - 1] if k > 0 else 0
            cdf[k + 1] = <float>(<double>counts[k] / <double>total)
        for r in range(ny):
            for c in range(nx):
                if not valid[r, c]:
                    out[r, c] = 0.0
                    continue
                t = (x[r, c] - lo) * scale
                t = 0.0 if t < 0.0 else (top if t > top else t)
                i = <int>t
                below = cdf[i]
                t = t - <float>i
                t = t * (cdf[i + 1] - below)
                out[r, c] = t + below

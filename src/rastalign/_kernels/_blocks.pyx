# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Valid-pixel block means, and the pixel kernels of the proxies (erosion, edges, equalisation), compiled (see
:mod:`rastalign._kernels.blocks` and :mod:`rastalign._kernels.pixels`)."""
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t
from libc.math cimport INFINITY, sqrtf
from libc.stdlib cimport free, malloc

import numpy as np

ctypedef fused pixel:
    uint8_t
    uint16_t
    int16_t
    int32_t
    float
    double


def block_means(const pixel[:, ::1] data, const uint8_t[:, ::1] valid, Py_ssize_t f, float[:, ::1] mean,
                uint8_t[:, ::1] ok):
    """Per ``f x f`` block (partial edge blocks included): the mean of the valid pixels (their sum in float64,
    in row order within the block, over their count or 1; then float32) and whether at least half of the
    block's pixels are valid. A row of blocks is summed in buffers that stay in cache, without a division per
    pixel. Integer pixels are summed as integers (a short dependency chain, no conversion per pixel): their
    sums are exact either way, so the result is the same."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], nb = mean.shape[1], y, x, by, bx, x0, x1, y0, rows
    cdef double* acc = <double*>malloc(nb * sizeof(double))
    cdef long long* iacc = <long long*>malloc(nb * sizeof(long long))
    cdef long long* cnt = <long long*>malloc(nb * sizeof(long long))
    cdef double a, n
    cdef long long ia, c
    if acc == NULL or iacc == NULL or cnt == NULL:
        free(acc)
        free(iacc)
        free(cnt)
        raise MemoryError()
    with nogil:
        for by in range(mean.shape[0]):
            y0 = by * f
            rows = (y0 + f if y0 + f < ny else ny) - y0
            for bx in range(nb):
                acc[bx] = 0.0
                iacc[bx] = 0
                cnt[bx] = 0
            for y in range(y0, y0 + rows):
                for bx in range(nb):
                    x0 = bx * f
                    x1 = x0 + f if x0 + f < nx else nx
                    c = 0
                    if pixel is float or pixel is double:
                        a = acc[bx]
                        for x in range(x0, x1):  # branch-free: adding 0.0 for an invalid pixel changes no sum
                            a = a + (<double>data[y, x] if valid[y, x] else 0.0)
                            c += valid[y, x]
                        acc[bx] = a
                    else:
                        ia = 0
                        for x in range(x0, x1):
                            ia += <long long>data[y, x] * valid[y, x]
                            c += valid[y, x]
                        iacc[bx] += ia
                    cnt[bx] += c
            for bx in range(nb):
                x0 = bx * f
                a = acc[bx] if (pixel is float or pixel is double) else <double>iacc[bx]
                n = <double>cnt[bx]
                mean[by, bx] = <float>(a / (n if n > 1.0 else 1.0))
                ok[by, bx] = n >= 0.5 * <double>(rows * ((x0 + f if x0 + f < nx else nx) - x0))
    free(acc)
    free(iacc)
    free(cnt)


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


def erode3(const uint8_t[:, ::1] valid, uint8_t[:, ::1] out):
    """``out``: the 3x3 binary erosion of ``valid`` with invalid borders (a pixel and its 8 neighbours all
    set). No GIL."""
    cdef Py_ssize_t ny = valid.shape[0], nx = valid.shape[1], r, c
    with nogil:
        for r in range(ny):
            for c in range(nx):
                out[r, c] = 0
            if r == 0 or r == ny - 1:
                continue
            for c in range(1, nx - 1):
                out[r, c] = (valid[r - 1, c - 1] & valid[r - 1, c] & valid[r - 1, c + 1] & valid[r, c - 1]
                             & valid[r, c] & valid[r, c + 1] & valid[r + 1, c - 1] & valid[r + 1, c]
                             & valid[r + 1, c + 1]) != 0


def edges(const float[:, ::1] img, const uint8_t[:, ::1] near, float[:, ::1] out):
    """``out``: the gradient magnitude of ``img`` by central differences, in float32 (``sqrt(gx^2 + gy^2)``,
    correctly rounded), where ``near`` (:func:`erode3` of the valid pixels: every difference's pixels are
    valid) and 0 elsewhere. No GIL."""
    cdef Py_ssize_t ny = img.shape[0], nx = img.shape[1], r, c
    cdef float gx, gy
    with nogil:
        for r in range(ny):
            for c in range(nx):
                if near[r, c]:
                    gx = img[r, c + 1] - img[r, c - 1]
                    gy = img[r + 1, c] - img[r - 1, c]
                    out[r, c] = sqrtf(gx * gx + gy * gy)
                else:
                    out[r, c] = 0.0


def valid_range(const float[:, ::1] x, const uint8_t[:, ::1] valid):
    """``(lo, hi)``: the smallest and largest of ``x`` over ``valid`` (``(inf, -inf)`` where none is). No GIL."""
    cdef Py_ssize_t r, c
    cdef float lo = INFINITY, hi = -INFINITY, v
    with nogil:
        for r in range(x.shape[0]):
            for c in range(x.shape[1]):
                if valid[r, c]:
                    v = x[r, c]
                    lo = v if v < lo else lo
                    hi = v if v > hi else hi
    return float(lo), float(hi)

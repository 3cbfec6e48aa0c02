# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The B-spline prefilter's loops, compiled (see :mod:`rastalign._kernels.prefilter` for the maths): the
usable-pixel mask, the gap fill, and the separable FIR filter along rows then columns, in float64 with a
fixed summation order. Row-range functions release the GIL, so the caller's threads split a block. And the
exact recursive filter of a whole small image (:func:`prefilter`: the estimation's proxies)."""
from libc.math cimport isfinite, sqrt
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc
import numpy as np

cdef extern from "_fir.h" nogil:
    void ra_fir_first(double* acc, const double* a, const double* b, double h, Py_ssize_t n)
    void ra_fir_add(double* acc, const double* a, const double* b, double h, Py_ssize_t n)
    void ra_fir_last_d(double* out, const double* acc, const double* c, double h, Py_ssize_t n)
    void ra_fir_last_f(float* out, const double* acc, const double* c, double h, Py_ssize_t n)

ctypedef fused floating:
    float
    double


def usable(const floating[:, :, ::1] src, const uint8_t[:, ::1] valid, bint check, uint8_t[:, ::1] ok,
           Py_ssize_t y0, Py_ssize_t y1):
    """``ok = valid & finite in every band`` on rows ``y0:y1``; returns the number of unusable pixels."""
    cdef Py_ssize_t nb = src.shape[0], w = src.shape[2], y, x, b, bad = 0
    cdef uint8_t u
    with nogil:
        for y in range(y0, y1):
            for x in range(w):
                u = 1 if (not check or valid[y, x]) else 0
                for b in range(nb):
                    if not isfinite(src[b, y, x]):
                        u = 0
                ok[y, x] = u
                bad += 1 - u
    return bad


cdef void _row_counts(const uint8_t[:, ::1] have, Py_ssize_t r, int32_t[:, ::1] rc,
                      const uint8_t* rows) noexcept nogil:
    """``rc[y, x]`` = number of ``have`` pixels in row y, columns x-r..x+r (on ``rows`` only if not NULL)."""
    cdef Py_ssize_t h = have.shape[0], w = have.shape[1], y, x
    cdef int32_t c
    for y in range(h):
        if rows != NULL and not rows[y]:
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


def fill(const floating[:, :, ::1] data, const uint8_t[:, ::1] ok, Py_ssize_t radius, Py_ssize_t passes):
    """Copy of ``data`` (bands, rows, cols) with the pixels where ``ok == 0`` filled (see the module doc of
    :mod:`rastalign._kernels.prefilter`). Jacobi passes over the unfilled pixels in row-major order: a pass
    reads only pixels filled before it, in row-major window order, so a filled value depends only on the
    pixels within ``radius * pass`` of it."""
    cdef Py_ssize_t nb = data.shape[0], h = data.shape[1], w = data.shape[2]
    cdef Py_ssize_t reach = radius * passes, y, x, b, i, k, yy, xx, ya, yb, n_bad = 0, n_left = 0, npass
    cdef int64_t n
    out_a = np.array(data, copy=True)
    have_a = np.array(ok, copy=True)
    rc_a = np.zeros((h, w), np.int32)
    cdef floating[:, :, ::1] out = out_a
    cdef uint8_t[:, ::1] have = have_a
    cdef int32_t[:, ::1] rc = rc_a
    cdef int32_t* col = <int32_t*>malloc((w + 1) * sizeof(int32_t))
    cdef uint8_t* need = <uint8_t*>malloc((h + 1) * sizeof(uint8_t))
    cdef double* acc = <double*>malloc((nb + 1) * sizeof(double))
    cdef int64_t* ly = NULL
    cdef int64_t* lx = NULL
    cdef uint8_t* done = NULL
    try:
        with nogil:
            for y in range(h):
                for x in range(w):
                    n_bad += 1 - have[y, x]
            ly = <int64_t*>malloc((2 * n_bad + 1) * sizeof(int64_t))
            lx = ly + n_bad
            done = <uint8_t*>malloc((n_bad + 1) * sizeof(uint8_t))
            # pixels with no valid pixel within radius * passes are never reached: 0 now, and out of the list
            _row_counts(have, reach, rc, NULL)
            for x in range(w):
                col[x] = 0
            for y in range(min(reach, h)):
                for x in range(w):
                    col[x] += rc[y, x]
            for y in range(h):
                if y + reach < h:
                    for x in range(w):
                        col[x] += rc[y + reach, x]
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
                    for x in range(w):
                        col[x] -= rc[y - reach, x]
            for npass in range(passes):
                if n_left == 0:
                    break
                # filled pixels per row window (integers: exact), on the rows a remaining pixel looks at
                for y in range(h):
                    need[y] = 0
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
                        out[b, y, x] = <floating>(acc[b] / n)
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
    finally:
        free(col)
        free(need)
        free(acc)
        free(ly)
        free(done)
    return out_a


def rows(const floating[:, :, ::1] data, const double[::1] h, const int64_t[::1] xmap, Py_ssize_t y0, Py_ssize_t y1,
         double[:, :, ::1] tmp, Py_ssize_t trow0):
    """Filter along x: ``tmp[b, y - trow0, i] = sum_k h[|k|] data[b, y, xmap[i + K + k]]`` for rows y0:y1,
    the smallest taps first."""
    cdef Py_ssize_t nb = data.shape[0], cw = tmp.shape[2], kk = h.shape[0] - 1, b, y, j, i, k
    cdef double* ext = <double*>malloc((cw + 2 * kk + 1) * sizeof(double))
    cdef double* acc = <double*>malloc((cw + 1) * sizeof(double))
    with nogil:
        for b in range(nb):
            for y in range(y0, y1):
                for j in range(cw + 2 * kk):
                    ext[j] = data[b, y, xmap[j]]
                ra_fir_first(acc, ext, ext + 2 * kk, h[kk], cw)
                for k in range(kk - 1, 0, -1):  # the smallest taps first
                    ra_fir_add(acc, ext + kk - k, ext + kk + k, h[k], cw)
                ra_fir_last_d(&tmp[b, y - trow0, 0], acc, ext + kk, h[0], cw)
    free(ext)
    free(acc)


def cols(const double[:, :, ::1] tmp, Py_ssize_t trow0, const double[::1] h, const int64_t[::1] ymap,
         Py_ssize_t ya, Py_ssize_t yb, floating[:, :, ::1] coef):
    """Filter along y: ``coef[b, y] = sum_k h[|k|] tmp[b, ymap[y + K + k] - trow0]`` for coefficient rows
    ``ya:yb``, the smallest taps first."""
    cdef Py_ssize_t nb = tmp.shape[0], cw = tmp.shape[2], kk = h.shape[0] - 1, b, y, i, k, ra, rb
    cdef double* acc = <double*>malloc((cw + 1) * sizeof(double))
    with nogil:
        for b in range(nb):
            for y in range(ya, yb):
                ra = ymap[y] - trow0
                rb = ymap[y + 2 * kk] - trow0
                ra_fir_first(acc, &tmp[b, ra, 0], &tmp[b, rb, 0], h[kk], cw)
                for k in range(kk - 1, 0, -1):
                    ra = ymap[y + kk - k] - trow0
                    rb = ymap[y + kk + k] - trow0
                    ra_fir_add(acc, &tmp[b, ra, 0], &tmp[b, rb, 0], h[k], cw)
                ra = ymap[y + kk] - trow0
                if floating is float:
                    ra_fir_last_f(&coef[b, y, 0], acc, &tmp[b, ra, 0], h[0], cw)
                else:
                    ra_fir_last_d(&coef[b, y, 0], acc, &tmp[b, ra, 0], h[0], cw)
    free(acc)


cdef inline double _mirror_start(const double* p, Py_ssize_t n, Py_ssize_t stride, double z) noexcept nogil:
    """The causal filter's first value on a mirrored line ``p[-k] = p[k]``: the sum of ``z^|k| p[k]`` over the
    mirrored line, exact for short lines, over the terms above 1e-16 for long ones."""
    cdef Py_ssize_t k
    cdef double s = 0.0, zk = 1.0, zn, zr
    if n > 28:
        for k in range(28):
            s += zk * p[k * stride]
            zk *= z
        return s
    zn = z ** (n - 1)
    zr = z ** (2 * n - 2)
    s = p[0] + zn * p[(n - 1) * stride]
    for k in range(1, n - 1):
        zk *= z
        s += (zk + zr / zk) * p[k * stride]
    return s / (1.0 - zr)


def prefilter(double[:, ::1] c):
    """In place: the cubic B-spline coefficients of the image ``c`` (float64), interpolating it exactly, with
    mirror boundaries (``scipy.ndimage.spline_filter(order=3, mode="mirror")`` up to rounding): the recursive
    filter along each row, then down the columns, a row of columns at a time (vectorised). No GIL."""
    cdef Py_ssize_t ny = c.shape[0], nx = c.shape[1], i, j, k
    cdef double z = sqrt(3.0) - 2.0, last = z / (z * z - 1.0)
    cdef double* p
    cdef double* row
    cdef double* prev
    if ny == 0 or nx == 0:
        return
    with nogil:
        if nx > 1:
            for i in range(ny):
                p = &c[i, 0]
                for k in range(nx):
                    p[k] *= 6.0
                p[0] = _mirror_start(p, nx, 1, z)
                for k in range(1, nx):
                    p[k] += z * p[k - 1]
                p[nx - 1] = last * (p[nx - 1] + z * p[nx - 2])
                for k in range(nx - 2, -1, -1):
                    p[k] = z * (p[k + 1] - p[k])
        if ny > 1:
            for i in range(ny):
                row = &c[i, 0]
                for j in range(nx):
                    row[j] *= 6.0
            for j in range(nx):
                c[0, j] = _mirror_start(&c[0, j], ny, nx, z)
            for i in range(1, ny):
                row = &c[i, 0]
                prev = &c[i - 1, 0]
                for j in range(nx):
                    row[j] += z * prev[j]
            row = &c[ny - 1, 0]
            prev = &c[ny - 2, 0]
            for j in range(nx):
                row[j] = last * (row[j] + z * prev[j])
            for i in range(ny - 2, -1, -1):
                row = &c[i, 0]
                prev = &c[i + 1, 0]
                for j in range(nx):
                    row[j] = z * (prev[j] - row[j])

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The warp's inner loop, compiled (the GIL released, so the caller's threads run row ranges in parallel).

See :mod:`rastalign._kernels.resample` for the maths and the contract. A row is done in passes: its
moving coordinates (:func:`_row_coords`), then one pass computing each pixel's top-left tap, its tap
weights and whether its whole support lies in the block (``ra_prep`` of ``_rows.h``), then with a mask one
look-up in the window mask of :func:`window_valid`, then a branch-free pass of fixed-tap sums per band
(``ra_sum``), and last the pixels left over (frame and block edges, invalid neighbourhoods,
non-finite coordinates) by :func:`_generic`. Every path sums in float64, columns of taps first (weighted
by the y weights, top to bottom), then the row of column sums (by the x weights, left to right), with a
zero-weight tap's value taken as 0 on the generic path: a pixel gets the same bits whichever path and
whichever block it falls in.
"""
from libc.math cimport floor, fabs, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, int16_t
from libc.stdlib cimport malloc, free

from rastalign._kernels._weights cimport bspline3, keys3, lanczos3

cdef extern from "_rows.h" nogil:
    void _prep "ra_prep"(int method, const double* xs, const double* ys, Py_ssize_t sx0, Py_ssize_t sy0,
                         Py_ssize_t bw, Py_ssize_t bh, int32_t* ixs, int32_t* iys, double* w, uint8_t* ov,
                         Py_ssize_t ow)
    void _sum "ra_sum"(int n, int kind, const void* p, size_t bw, const int32_t* ixs, const int32_t* iys,
                       const double* w, Py_ssize_t ow, void* o)

cdef enum:
    NEAREST = 0
    BILINEAR = 1
    CUBIC = 2
    LANCZOS = 3
    BSPLINE = 4
    PENDING = 2
    FAIL = 0
    GOOD = 1
    HALO = 2

ctypedef fused srct:
    uint8_t
    uint16_t
    int16_t
    float
    double

ctypedef fused outt:
    float
    double

cdef inline int _weights(int method, double x, double* w, Py_ssize_t* first) noexcept nogil:
    """The 1-D tap weights of coordinate ``x`` into ``w[0:n]``; ``first`` tap; returns ``n``."""
    cdef double x0 = floor(x)
    cdef double t = x - x0
    if method == BILINEAR:
        w[0] = 1.0 - t
        w[1] = t
        first[0] = <Py_ssize_t>x0
        return 2
    if method == CUBIC:
        keys3(t, w, 1)
        first[0] = <Py_ssize_t>x0 - 1
        return 4
    if method == BSPLINE:
        bspline3(t, w, 1)
        first[0] = <Py_ssize_t>x0 - 1
        return 4
    lanczos3(t, w, 1)
    first[0] = <Py_ssize_t>x0 - 2
    return 6


def window_valid(const uint8_t[:, ::1] valid, int ntap, Py_ssize_t row0, Py_ssize_t row1, uint8_t[:, ::1] win):
    """``win[y, x] = 1`` where the ``ntap x ntap`` window with top-left ``(y, x)`` lies in the block and is
    all valid, for ``y`` in ``row0:row1`` (0 elsewhere): the fast paths' mask test in one look-up."""
    cdef Py_ssize_t bh = valid.shape[0], bw = valid.shape[1], y, x, jj, ii, nx
    cdef uint8_t* colmin
    with nogil:
        colmin = <uint8_t*>malloc((bw + 1) * sizeof(uint8_t))
        nx = bw - ntap + 1 if bw - ntap + 1 > 0 else 0
        for y in range(row0, row1):
            if y + ntap > bh:
                for x in range(bw):
                    win[y, x] = 0
                continue
            for x in range(bw):
                colmin[x] = valid[y, x] != 0
            for jj in range(1, ntap):
                for x in range(bw):
                    colmin[x] &= valid[y + jj, x] != 0
            for x in range(nx):
                win[y, x] = colmin[x]
            for ii in range(1, ntap):
                for x in range(nx):
                    win[y, x] &= colmin[x + ii]
            for x in range(nx, bw):
                win[y, x] = 0
        free(colmin)


cdef inline void _lattice_row(const double[:, ::1] lat, Py_ssize_t lj, int64_t* colli, double* colt, double* f,
                              Py_ssize_t ow) noexcept nogil:
    """The field along lattice row ``lj`` at every column of the box (linear between nodes)."""
    cdef Py_ssize_t c, li
    cdef double t
    for c in range(ow):
        li = colli[c]
        t = colt[c]
        f[c] = (1.0 - t) * lat[lj, li] + t * lat[lj, li + 1]


cdef inline Py_ssize_t _floordiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t q = a / b
    return q - 1 if (a % b != 0) and ((a < 0) != (b < 0)) else q



cdef void _row_coords(const double[:, ::1] lin, Py_ssize_t gy, const double* gxs, bint has_field,
                      const double[:, ::1] lat_dx, const double[:, ::1] lat_dy, Py_ssize_t lat_iy0, Py_ssize_t step,
                      int64_t* colli, double* colt, double* fcache, Py_ssize_t* fj, double* xs, double* ys,
                      Py_ssize_t ow) noexcept nogil:
    """Moving coordinates of output row ``gy``, columns ``gxs``, into ``xs, ys``. The field is the lattice
    interpolated along its rows first (``fcache``: those rows at every column, kept for the ``step`` output
    rows between two lattice rows; ``fj``: the lattice row they belong to), then between the two rows around
    ``gy``: the same numbers in any chunk (``colli, colt``: each column's lattice cell and fraction)."""
    cdef double a00 = lin[0, 0], a10 = lin[1, 0]
    cdef double cx = lin[0, 1] * gy + lin[0, 2]
    cdef double cy = lin[1, 1] * gy + lin[1, 2]
    cdef Py_ssize_t c, j, lj
    cdef double ty, uy
    cdef double* fx0 = fcache
    cdef double* fx1 = fcache + ow
    cdef double* fy0 = fcache + 2 * ow
    cdef double* fy1 = fcache + 3 * ow
    if not has_field:
        for c in range(ow):
            xs[c] = a00 * gxs[c] + cx
            ys[c] = a10 * gxs[c] + cy
        return
    j = _floordiv(gy, step)
    lj = j - lat_iy0
    if fj[0] != lj:
        if fj[0] == lj - 1:  # the next pair of lattice rows: one is already there
            for c in range(ow):
                fx0[c] = fx1[c]
                fy0[c] = fy1[c]
        else:
            _lattice_row(lat_dx, lj, colli, colt, fx0, ow)
            _lattice_row(lat_dy, lj, colli, colt, fy0, ow)
        _lattice_row(lat_dx, lj + 1, colli, colt, fx1, ow)
        _lattice_row(lat_dy, lj + 1, colli, colt, fy1, ow)
        fj[0] = lj
    ty = (<double>(gy - j * step)) / <double>step
    uy = 1.0 - ty
    for c in range(ow):
        xs[c] = (a00 * gxs[c] + cx) + (uy * fx0[c] + ty * fx1[c])
        ys[c] = (a10 * gxs[c] + cy) + (uy * fy0[c] + ty * fy1[c])


cdef inline int _tap(const uint8_t[:, ::1] valid, bint check_valid, Py_ssize_t ix, Py_ssize_t iy, Py_ssize_t sx0,
                     Py_ssize_t sy0, Py_ssize_t full_w, Py_ssize_t full_h, Py_ssize_t bw,
                     Py_ssize_t bh) noexcept nogil:
    """The source pixel ``(ix, iy)`` as a tap of a block at ``(sx0, sy0)`` of ``bw`` x ``bh``: ``FAIL`` outside
    the source or invalid, ``HALO`` inside the source but outside the block, else ``GOOD``."""
    if ix < 0 or iy < 0 or ix >= full_w or iy >= full_h:
        return FAIL
    if ix - sx0 < 0 or iy - sy0 < 0 or ix - sx0 >= bw or iy - sy0 >= bh:
        return HALO
    if check_valid and valid[iy - sy0, ix - sx0] == 0:
        return FAIL
    return GOOD


cdef int _generic(const srct[:, :, ::1] src, const uint8_t[:, ::1] valid, bint check_valid, double x, double y,
                  Py_ssize_t sx0, Py_ssize_t sy0, Py_ssize_t full_w, Py_ssize_t full_h, int method, double* acc,
                  ) noexcept nogil:
    """Any pixel, any method: the taps with a non-zero weight must be inside and valid. Returns ``GOOD``
    (the sum per band in ``acc``, in the fast paths' order, each zero-weight tap's value taken as 0),
    ``FAIL``, or ``HALO`` (a tap inside the source but outside the block)."""
    cdef Py_ssize_t nb = src.shape[0], bh = src.shape[1], bw = src.shape[2]
    cdef Py_ssize_t ix, iy, fx, fy, b, jj, ii
    cdef int n, status
    cdef double w[12]
    cdef double s, cs, tap
    cdef bint use
    if not (isfinite(x) and isfinite(y)) or fabs(x) > 1e15 or fabs(y) > 1e15:
        return FAIL  # (no integer conversion of a coordinate so far out)
    if method == NEAREST:
        ix = <Py_ssize_t>floor(x + 0.5)
        iy = <Py_ssize_t>floor(y + 0.5)
        status = _tap(valid, check_valid, ix, iy, sx0, sy0, full_w, full_h, bw, bh)
        if status != GOOD:
            return status
        for b in range(nb):
            acc[b] = <double>src[b, iy - sy0, ix - sx0]
        return GOOD
    n = _weights(method, x, w, &fx)
    _weights(method, y, w + n, &fy)
    for jj in range(n):  # every tap with a non-zero weight first
        if w[n + jj] == 0.0:
            continue
        for ii in range(n):
            if w[ii] == 0.0:
                continue
            status = _tap(valid, check_valid, fx + ii, fy + jj, sx0, sy0, full_w, full_h, bw, bh)
            if status != GOOD:
                return status
    for b in range(nb):
        s = 0.0
        for ii in range(n):
            cs = 0.0
            for jj in range(n):
                use = w[ii] != 0.0 and w[n + jj] != 0.0
                tap = <double>src[b, fy + jj - sy0, fx + ii - sx0] if use else 0.0
                cs = w[n] * tap if jj == 0 else cs + w[n + jj] * tap
            s = w[0] * cs if ii == 0 else s + w[ii] * cs
        acc[b] = s
    return GOOD


def warp_rows(const srct[:, :, ::1] src, const uint8_t[:, ::1] valid, const uint8_t[:, ::1] win, bint check_valid,
              outt[:, :, ::1] out, uint8_t[:, ::1] out_valid, const double[:, ::1] lin, Py_ssize_t ox0,
              Py_ssize_t oy0, Py_ssize_t row0, Py_ssize_t row1, Py_ssize_t sx0, Py_ssize_t sy0, Py_ssize_t full_w,
              Py_ssize_t full_h, const double[:, ::1] lat_dx, const double[:, ::1] lat_dy, bint has_field,
              Py_ssize_t step, Py_ssize_t lat_ix0, Py_ssize_t lat_iy0, int method):
    """Fill output rows ``row0:row1``; returns the number of halo violations. ``win``: :func:`window_valid`
    of ``valid`` for the method's taps (read when ``check_valid``)."""
    cdef Py_ssize_t nb = src.shape[0], bh = src.shape[1], bw = src.shape[2], ow = out.shape[2]
    cdef int n = 1 if method == NEAREST else (2 if method == BILINEAR else (6 if method == LANCZOS else 4))
    cdef Py_ssize_t nviol = 0, fj = -2, r, c, b, i
    cdef int status, kind = 1 if outt is double else 0
    cdef bint fast = bh > 0 and bw > 0
    cdef uint8_t k
    cdef uint8_t* ov
    cdef double* buf
    cdef double* w
    cdef double* xs
    cdef double* ys
    cdef double* colt
    cdef double* gxs
    cdef double* fcache
    cdef double* acc
    cdef int32_t* ibuf
    cdef int64_t* colli
    if ow == 0 or row1 <= row0:
        return 0
    if srct is uint16_t:  # the source type's index in _rows.h's table
        kind += 2
    elif srct is int16_t:
        kind += 4
    elif srct is float:
        kind += 6
    elif srct is double:
        kind += 8
    buf = <double*>malloc((2 * n + 9) * ow * sizeof(double) + nb * sizeof(double))
    ibuf = <int32_t*>malloc(2 * ow * sizeof(int32_t))
    colli = <int64_t*>malloc(ow * sizeof(int64_t))  # each column's lattice cell and fraction
    if buf == NULL or ibuf == NULL or colli == NULL:
        free(buf); free(ibuf); free(colli)
        raise MemoryError()
    w, xs, ys, colt = buf, buf + 2 * n * ow, buf + (2 * n + 1) * ow, buf + (2 * n + 2) * ow
    gxs, fcache, acc = buf + (2 * n + 3) * ow, buf + (2 * n + 4) * ow, buf + (2 * n + 8) * ow
    with nogil:
        for c in range(2 * n * ow):
            w[c] = 0.0
        for c in range(ow):
            gxs[c] = <double>(ox0 + c)  # the columns as floats
            i = _floordiv(ox0 + c, step)
            colli[c] = i - lat_ix0
            colt[c] = (<double>(ox0 + c - i * step)) / <double>step
        for r in range(row0, row1):
            _row_coords(lin, oy0 + r, gxs, has_field, lat_dx, lat_dy, lat_iy0, step, colli, colt, fcache, &fj,
                        xs, ys, ow)
            ov = &out_valid[r, 0]
            _prep(method, xs, ys, sx0, sy0, bw, bh, ibuf, ibuf + ow, w, ov, ow)
            if fast:
                if check_valid:  # a window with an invalid tap: PENDING (2 - 0), else unchanged (max with 2 - 1)
                    for c in range(ow):
                        k = PENDING - win[ibuf[ow + c], ibuf[c]]
                        ov[c] = k if k > ov[c] else ov[c]
                for b in range(nb):
                    _sum(n, kind, &src[b, 0, 0], bw, ibuf, ibuf + ow, w, ow, &out[b, r, 0])
            for c in range(ow):  # edges, invalid neighbourhoods, non-finite coordinates
                if ov[c] != PENDING:
                    continue
                status = _generic(src, valid, check_valid, xs[c], ys[c], sx0, sy0, full_w, full_h, method, acc)
                if status == HALO:
                    nviol += 1
                for b in range(nb):
                    out[b, r, c] = <outt>acc[b] if status == GOOD else 0
                ov[c] = 1 if status == GOOD else 0
    free(buf)
    free(ibuf)
    free(colli)
    return nviol

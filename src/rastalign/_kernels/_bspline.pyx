# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cubic B-spline sampling of prefiltered coefficients, its gradient, the moving coordinates of a grid
(``Geometry``) and the Lucas-Kanade matcher of the estimation windows, compiled (see
:mod:`rastalign._kernels.bspline`).
Arrays are flat and C-contiguous here; masks are uint8. The weights are :mod:`._weights`', the warp's."""
from libc.math cimport exp, fabs, floor, hypot, isfinite, log, sqrt
from libc.stdint cimport uint8_t
from libc.stdlib cimport free, malloc

import numpy as np

from rastalign._kernels._weights cimport bspline3

cdef extern from "_lk.h" nogil:
    void sample_grad "ra_sample_grad"(const double* coef, Py_ssize_t ny, Py_ssize_t nx, const uint8_t* mask,
                                      const double* lx, const double* ly, Py_ssize_t n, double ox, double oy,
                                      const double* jac, double* val, double* gx, double* gy, uint8_t* ok)
    Py_ssize_t normal4 "ra_normal4"(Py_ssize_t n, const uint8_t* ok, const uint8_t* fvalid, const double* fixed,
                                    const double* val, const double* gx, const double* gy, double* a, double* b,
                                    double* m)

cdef inline Py_ssize_t _clip(Py_ssize_t v, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    return lo if v < lo else (hi if v > hi else v)


def sample(const double[:, ::1] coef, const uint8_t[:, ::1] mask, const double[::1] lx, const double[::1] ly,
           double[::1] out, uint8_t[::1] ok):
    """``out[i]``: the spline at ``(lx[i], ly[i])`` (taps outside the coefficients count as 0, scipy's
    ``mode="constant"``); ``ok[i]``: the mask at the nearest pixel (0 outside or at a non-finite point)."""
    cdef Py_ssize_t ny = coef.shape[0], nx = coef.shape[1], i, ix, iy, rx, ry, jj, ii, yy, xx
    cdef double x, y, acc, row
    cdef double wx[4]
    cdef double wy[4]
    with nogil:
        for i in range(lx.shape[0]):
            x = lx[i]
            y = ly[i]
            if not (isfinite(x) and isfinite(y)) or fabs(x) > 1e15 or fabs(y) > 1e15:
                out[i] = 0.0
                ok[i] = 0
                continue
            ix = <Py_ssize_t>floor(x)
            iy = <Py_ssize_t>floor(y)
            rx = <Py_ssize_t>floor(x + 0.5)
            ry = <Py_ssize_t>floor(y + 0.5)
            ok[i] = 0 <= rx < nx and 0 <= ry < ny and mask[_clip(ry, 0, ny - 1), _clip(rx, 0, nx - 1)] != 0
            bspline3(x - ix, wx, 1)
            bspline3(y - iy, wy, 1)
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
            out[i] = acc


cdef bint _solve4(double* a, double* b) noexcept nogil:
    """``b <- a^-1 b`` for the 4 x 4 normal matrix ``a`` (row-major) by Gaussian elimination with partial
    pivoting (the first largest pivot, as LAPACK's): false where ``a`` or ``b`` is not finite or
    ``|det a| < 1e-30`` (det from the pivots, as numpy's slogdet). No LAPACK: estimation imports no scipy."""
    cdef double m[16]
    cdef double t, acc = 0.0
    cdef int i, j, k, piv
    for k in range(16):
        if not isfinite(a[k]):
            return False
        m[k] = a[k]
    for k in range(4):
        if not isfinite(b[k]):
            return False
    for k in range(4):
        piv = k
        for i in range(k + 1, 4):
            if fabs(m[4 * i + k]) > fabs(m[4 * piv + k]):
                piv = i
        if m[4 * piv + k] == 0.0:
            return False
        if piv != k:
            for j in range(4):
                t = m[4 * k + j]
                m[4 * k + j] = m[4 * piv + j]
                m[4 * piv + j] = t
            t = b[k]
            b[k] = b[piv]
            b[piv] = t
        for i in range(k + 1, 4):
            t = m[4 * i + k] / m[4 * k + k]
            for j in range(k + 1, 4):
                m[4 * i + j] = m[4 * i + j] - t * m[4 * k + j]
            b[i] = b[i] - t * b[k]
        acc = acc + log(fabs(m[4 * k + k]))
    if exp(acc) < 1e-30:
        return False
    for k in range(3, -1, -1):
        t = b[k]
        for j in range(k + 1, 4):
            t = t - m[4 * k + j] * b[j]
        b[k] = t / m[4 * k + k]
    return True


cdef bint _lk(const double* fixed, const uint8_t* fvalid, const double* coef, Py_ssize_t ny, Py_ssize_t nx,
              const uint8_t* mask, const double* lx, const double* ly, Py_ssize_t n, const double* jac, double* s,
              int iterations, double tol, double* val, double* gx, double* gy, uint8_t* ok,
              double* ncc) noexcept nogil:
    """Iterated least-squares matching of one window of ``n`` points (shift + gain + offset) from the shift
    ``s`` (updated in place); ``val``, ``gx``, ``gy``, ``ok`` are scratch of ``n``. True when it converged or
    ran out of iterations without failing; ``ncc`` the normalised cross correlation at the last step's
    samples (one step, below ``tol`` once converged, before the final shift: no resampling for it)."""
    cdef Py_ssize_t cnt = 0, it
    cdef double a[16]
    cdef double b[4]
    cdef double m[5]
    cdef double c11, c12, c22
    cdef bint good = False
    ncc[0] = 0.0
    for it in range(iterations):
        sample_grad(coef, ny, nx, mask, lx, ly, n, jac[0] * s[0] + jac[1] * s[1], jac[2] * s[0] + jac[3] * s[1],
                    jac, val, gx, gy, ok)
        cnt = normal4(n, ok, fvalid, fixed, val, gx, gy, a, b, m)
        if cnt < n // 4 or not _solve4(a, b) or not (isfinite(b[0]) and isfinite(b[1])) or hypot(b[0], b[1]) > 3.0:
            return False
        s[0] += b[0]
        s[1] += b[1]
        good = True
        if hypot(b[0], b[1]) < tol:
            break
    if cnt < 16:
        return False
    c12 = m[4] - m[0] * m[1] / cnt
    c11 = m[2] - m[0] * m[0] / cnt
    c22 = m[3] - m[1] * m[1] / cnt
    ncc[0] = c12 / sqrt(c11 * c22) if c11 > 0 and c22 > 0 else 0.0
    return good


cdef struct Geom:
    double a[6]  # grid pixel (c, r) -> moving px, row-major 2 x 3
    double sx, sy  # the field's scale to moving px
    Py_ssize_t nx, ny, nk  # the grid's columns and rows; the field's coefficient columns (0: no field)
    const double* cx
    const double* cy
    const Py_ssize_t* ix  # per column: the field's node interval and its 4 basis weights
    const double* wx
    const Py_ssize_t* iy  # per row: the same
    const double* wy


cdef class Geometry:
    """The moving coordinates of every pixel ``(c, r)`` of a grid of ``shape`` (rows, cols): the affine
    ``affine`` (2 x 3) of ``(c, r)``, plus the residual field (coefficients ``coef_x``, ``coef_y``) scaled by
    ``scale`` ``(sx, sy)``, its basis taps given per column (``ix`` (cols,), ``wx`` (cols, 4)) and per row
    (``iy``, ``wy``). Computed where needed, a window at a time, not held as two arrays of the grid's shape
    (:func:`window_coords`, :func:`lk_windows`): ``(a00 c + (a01 r + a02)) + sx dx``, the field's value
    ``dx`` combined down the rows (once per row), then across the columns."""
    cdef Geom g
    cdef object _keep

    def __init__(self, affine, shape, field=None):
        cdef const double[:, ::1] a = np.ascontiguousarray(affine, np.float64)
        cdef const double[:, ::1] cx, cy, wx, wy
        cdef const Py_ssize_t[::1] ix, iy
        cdef Py_ssize_t k
        if a.shape[0] != 2 or a.shape[1] != 3:
            raise ValueError(f"a geometry's affine is 2 x 3, got {a.shape[0]} x {a.shape[1]}")
        for k in range(6):
            self.g.a[k] = a[k // 3, k % 3]
        self.g.ny, self.g.nx = int(shape[0]), int(shape[1])
        if self.g.ny < 1 or self.g.nx < 1:
            raise ValueError(f"a geometry's grid has at least one pixel, got {tuple(shape)}")
        self.g.nk = 0
        self._keep = (a.base, tuple(shape), field)  # the arrays the pointers below see, and how to pickle it
        if field is None:
            return
        coef_x, coef_y, ix_, wx_, iy_, wy_, (self.g.sx, self.g.sy) = field
        keep = [np.ascontiguousarray(v, t) for v, t in ((coef_x, np.float64), (coef_y, np.float64), (ix_, np.intp),
                                                        (wx_, np.float64), (iy_, np.intp), (wy_, np.float64))]
        cx, cy, ix, wx, iy, wy = keep
        if ix.shape[0] != self.g.nx or iy.shape[0] != self.g.ny or wx.shape[1] != 4 or wy.shape[1] != 4 \
                or cy.shape[1] != cx.shape[1] or cy.shape[0] != cx.shape[0]:
            raise ValueError("a geometry's field taps must match its grid")
        for k in range(self.g.nx):
            if ix[k] < 0 or ix[k] + 4 > cx.shape[1]:
                raise ValueError("a geometry's column taps leave the field's coefficients")
        for k in range(self.g.ny):
            if iy[k] < 0 or iy[k] + 4 > cx.shape[0]:
                raise ValueError("a geometry's row taps leave the field's coefficients")
        self.g.nk = cx.shape[1]
        self.g.cx, self.g.cy, self.g.ix, self.g.wx = &cx[0, 0], &cy[0, 0], &ix[0], &wx[0, 0]
        self.g.iy, self.g.wy = &iy[0], &wy[0, 0]
        self._keep = (a.base, tuple(shape), field, keep)

    def __reduce__(self):
        return Geometry, self._keep[:3]

    @property
    def shape(self):
        return (self.g.ny, self.g.nx)


cdef void _coords(const Geom* g, Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t w, Py_ssize_t h, double* lx, double* ly,
                  double* rx) noexcept nogil:
    """The moving coordinates of the ``w`` x ``h`` box of ``g``'s grid at ``(x0, y0)``, row-major; ``rx``
    scratch of ``2 nk``."""
    cdef Py_ssize_t r, c, k, j, nk = g.nk
    cdef double bx, by, ax, ay, x, y
    cdef const double* wy
    cdef const double* wx
    cdef double* ry = rx + nk
    for r in range(h):
        y = <double>(y0 + r)
        bx = g.a[1] * y + g.a[2]
        by = g.a[4] * y + g.a[5]
        if nk:
            j = g.iy[y0 + r] * nk
            wy = g.wy + 4 * (y0 + r)
            for k in range(nk):
                rx[k] = ((wy[0] * g.cx[j + k] + wy[1] * g.cx[j + nk + k]) + wy[2] * g.cx[j + 2 * nk + k]) \
                    + wy[3] * g.cx[j + 3 * nk + k]
                ry[k] = ((wy[0] * g.cy[j + k] + wy[1] * g.cy[j + nk + k]) + wy[2] * g.cy[j + 2 * nk + k]) \
                    + wy[3] * g.cy[j + 3 * nk + k]
        for c in range(w):
            x = <double>(x0 + c)
            ax = g.a[0] * x + bx
            ay = g.a[3] * x + by
            if nk:
                k = g.ix[x0 + c]
                wx = g.wx + 4 * (x0 + c)
                ax = ax + (((wx[0] * rx[k] + wx[1] * rx[k + 1]) + wx[2] * rx[k + 2]) + wx[3] * rx[k + 3]) * g.sx
                ay = ay + (((wx[0] * ry[k] + wx[1] * ry[k + 1]) + wx[2] * ry[k + 2]) + wx[3] * ry[k + 3]) * g.sy
            lx[r * w + c] = ax
            ly[r * w + c] = ay


cdef _check_boxes(Geometry geom, const Py_ssize_t[:, ::1] corners, Py_ssize_t w, Py_ssize_t h):
    cdef Py_ssize_t k
    for k in range(corners.shape[0]):
        if corners[k, 0] < 0 or corners[k, 1] < 0 or corners[k, 0] + w > geom.g.nx or corners[k, 1] + h > geom.g.ny:
            raise ValueError(f"window {k} at ({corners[k, 0]}, {corners[k, 1]}) leaves the {geom.g.ny} x "
                             f"{geom.g.nx} grid")


def window_coords(Geometry geom, const Py_ssize_t[:, ::1] corners, Py_ssize_t h, Py_ssize_t w, double[:, :, ::1] lx,
                  double[:, :, ::1] ly):
    """The moving coordinates of the ``h`` x ``w`` boxes of ``geom``'s grid whose top-left pixels are
    ``corners`` (k, 2) ``(x, y)``, into ``lx``, ``ly`` (k, h, w). No GIL."""
    cdef Py_ssize_t k
    cdef double* rx = <double*>malloc((2 * geom.g.nk + 1) * sizeof(double))
    if rx == NULL:
        raise MemoryError()
    _check_boxes(geom, corners, w, h)
    with nogil:
        for k in range(corners.shape[0]):
            _coords(&geom.g, corners[k, 0], corners[k, 1], w, h, &lx[k, 0, 0], &ly[k, 0, 0], rx)
    free(rx)


def lk_windows(const float[:, ::1] fixed, const uint8_t[:, ::1] fvalid, const double[:, ::1] coef,
               const uint8_t[:, ::1] mask, Geometry geom, const Py_ssize_t[:, ::1] corners, Py_ssize_t window,
               const double[:, ::1] jac, double[:, ::1] shift, double[::1] ncc, uint8_t[::1] good, int iterations,
               double tol):
    """Least-squares matching (:func:`_lk`) of every ``window`` x ``window`` window of ``fixed`` whose top-left
    pixel is ``corners[k]`` ``(x, y)`` and whose ``good[k]`` is set on entry, with the moving level's
    coordinates of its pixels at zero shift from ``geom`` (a grid of the fixed image's shape), from
    ``shift[k]``. Writes ``shift``, ``ncc`` and ``good`` (false: too flat, too little valid data, or the
    matching failed)."""
    cdef Py_ssize_t m = window * window, k, r, c, x0, y0, i, cnt
    cdef double mean, var
    cdef double s[2]
    if geom.g.ny != fixed.shape[0] or geom.g.nx != fixed.shape[1]:
        raise ValueError("the geometry's grid is not the fixed image's")
    _check_boxes(geom, corners, window, window)
    cdef double* buf = <double*>malloc((6 * m + 2 * geom.g.nk + 1) * sizeof(double))
    cdef uint8_t* vbuf = <uint8_t*>malloc(2 * m)
    if buf == NULL or vbuf == NULL:
        free(buf)
        free(vbuf)
        raise MemoryError()
    cdef double* fw = buf
    cdef double* lx = buf + m
    cdef double* ly = buf + 2 * m
    cdef double* work = buf + 3 * m
    cdef double* rx = buf + 6 * m
    cdef uint8_t* fv = vbuf
    cdef uint8_t* ok = vbuf + m
    with nogil:
        for k in range(corners.shape[0]):
            ncc[k] = 0.0
            if not good[k]:
                continue
            x0 = corners[k, 0]
            y0 = corners[k, 1]
            mean = 0.0
            cnt = 0
            for r in range(window):
                for c in range(window):
                    i = r * window + c
                    fw[i] = fixed[y0 + r, x0 + c]
                    fv[i] = fvalid[y0 + r, x0 + c]
                    if fv[i]:
                        mean += fw[i]
                        cnt += 1
            var = 0.0
            if cnt > 0:
                mean /= cnt
                for i in range(m):
                    if fv[i]:
                        var += (fw[i] - mean) * (fw[i] - mean)
                var /= cnt
            if cnt < m // 4 or var < 1e-18:  # a flat window (std below 1e-9) or mostly invalid: no match
                good[k] = 0
                continue
            _coords(&geom.g, x0, y0, window, window, lx, ly, rx)
            s[0] = shift[k, 0]
            s[1] = shift[k, 1]
            good[k] = _lk(fw, fv, &coef[0, 0], coef.shape[0], coef.shape[1], &mask[0, 0], lx, ly, m, &jac[0, 0],
                          s, iterations, tol, work, work + m, work + 2 * m, ok, &ncc[k])
            shift[k, 0] = s[0]
            shift[k, 1] = s[1]
    free(buf)
    free(vbuf)


cdef inline double _round_even(double v) noexcept nogil:
    """``rint(v)`` (to the nearest integer, halves to even) without a call to libm: adding and subtracting
    1.5 * 2^52 leaves the rounded value for ``|v| < 2^51`` (larger values, already integers, and NaN pass)."""
    if fabs(v) < 2251799813685248.0:
        return (v + 6755399441055744.0) - 6755399441055744.0
    return v


def footprint(Geometry geom, const uint8_t[:, ::1] valid, double offset, double f, uint8_t[:, ::1] inside,
              uint8_t[:, ::1] ok):
    """For every pixel of ``geom``'s grid: the nearest pixel ``rint((coordinate - offset) / f)`` of an image
    whose validity is ``valid`` (a level of factor ``f`` of the moving image, ``offset = (f - 1) / 2``):
    ``inside`` whether it lies in the image, ``ok`` whether it is also valid. No GIL."""
    cdef Py_ssize_t ny = geom.g.ny, nx = geom.g.nx, my = valid.shape[0], mx = valid.shape[1], r, c, ix, iy
    cdef double x, y
    cdef double* buf = <double*>malloc((2 * nx + 2 * geom.g.nk + 1) * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    if inside.shape[0] != ny or inside.shape[1] != nx or ok.shape[0] != ny or ok.shape[1] != nx:
        free(buf)
        raise ValueError("the footprint's outputs must have the geometry's shape")
    with nogil:
        for r in range(ny):
            _coords(&geom.g, 0, r, nx, 1, buf, buf + nx, buf + 2 * nx)
            for c in range(nx):
                x = _round_even((buf[c] - offset) / f)
                y = _round_even((buf[nx + c] - offset) / f)
                if x >= 0 and y >= 0 and x < mx and y < my:
                    ix = <Py_ssize_t>x
                    iy = <Py_ssize_t>y
                    inside[r, c] = 1
                    ok[r, c] = valid[iy, ix] != 0
                else:
                    inside[r, c] = 0
                    ok[r, c] = 0
    free(buf)

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cubic B-spline sampling of prefiltered coefficients, its gradient, the Lucas-Kanade matcher of the
estimation windows and the residual field's evaluation, compiled (see :mod:`rastalign._kernels.bspline`).
Arrays are flat and C-contiguous here; masks are uint8. The weights are :mod:`._weights`', the warp's."""
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.math cimport exp, fabs, floor, hypot, isfinite, log, sqrt
from libc.stdint cimport uint8_t

from rastalign._kernels._weights cimport bspline3, bspline3_d

# LAPACK's LU factorisation and solver, scipy's (the routines numpy.linalg in the numba kernels called):
# looked up on the first match, so importing this module does not import scipy
ctypedef void (*getrf_t)(int* m, int* n, double* a, int* lda, int* ipiv, int* info) noexcept nogil
ctypedef void (*gesv_t)(int* n, int* nrhs, double* a, int* lda, int* ipiv, double* b, int* ldb,
                        int* info) noexcept nogil
cdef getrf_t _getrf = NULL
cdef gesv_t _gesv = NULL


cdef _load_lapack():
    global _getrf, _gesv
    from scipy.linalg import cython_lapack
    caps = cython_lapack.__pyx_capi__
    _getrf = <getrf_t>PyCapsule_GetPointer(caps["dgetrf"], PyCapsule_GetName(caps["dgetrf"]))
    _gesv = <gesv_t>PyCapsule_GetPointer(caps["dgesv"], PyCapsule_GetName(caps["dgesv"]))


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


cdef void _sample_grad(const double[:, ::1] coef, const uint8_t[:, ::1] mask, const double[::1] lx,
                       const double[::1] ly, double sx, double sy, const double[:, ::1] jac, double* val,
                       double* gx, double* gy, uint8_t* ok) noexcept nogil:
    """Value and gradient (with respect to the fixed-grid shift) of the spline at the shifted window."""
    cdef Py_ssize_t ny = coef.shape[0], nx = coef.shape[1], i, ix, iy, rx, ry, jj, ii, yy, xx
    cdef double x, y, v, dvx, dvy, r, rd, c
    cdef double wx[4]
    cdef double wy[4]
    cdef double dwx[4]
    cdef double dwy[4]
    cdef double ox = jac[0, 0] * sx + jac[0, 1] * sy
    cdef double oy = jac[1, 0] * sx + jac[1, 1] * sy
    for i in range(lx.shape[0]):
        x = lx[i] + ox
        y = ly[i] + oy
        if not (fabs(x) < 1e15 and fabs(y) < 1e15):  # NaN too: no integer conversion of such a point
            ok[i] = 0
            val[i] = gx[i] = gy[i] = 0.0
            continue
        rx = <Py_ssize_t>floor(x + 0.5)
        ry = <Py_ssize_t>floor(y + 0.5)
        if rx < 1 or ry < 1 or rx >= nx - 1 or ry >= ny - 1 or not mask[ry, rx]:
            ok[i] = 0
            val[i] = gx[i] = gy[i] = 0.0
            continue
        ok[i] = 1
        ix = <Py_ssize_t>floor(x)
        iy = <Py_ssize_t>floor(y)
        bspline3(x - ix, wx, 1)
        bspline3_d(x - ix, dwx)
        bspline3(y - iy, wy, 1)
        bspline3_d(y - iy, dwy)
        v = dvx = dvy = 0.0
        for jj in range(4):
            yy = _clip(iy - 1 + jj, 0, ny - 1)
            r = rd = 0.0
            for ii in range(4):
                xx = _clip(ix - 1 + ii, 0, nx - 1)
                c = coef[yy, xx]
                r += wx[ii] * c
                rd += dwx[ii] * c
            v += wy[jj] * r
            dvx += wy[jj] * rd
            dvy += dwy[jj] * r
        val[i] = v
        # chain rule: moving-level gradient -> fixed-level shift
        gx[i] = dvx * jac[0, 0] + dvy * jac[1, 0]
        gy[i] = dvx * jac[0, 1] + dvy * jac[1, 1]


cdef bint _solve4(double* a, double* b) noexcept nogil:
    """``b <- a^-1 b`` for the symmetric 4 x 4 normal matrix ``a`` (so its C and Fortran orders agree): false
    where ``a`` is not finite or ``|det a| < 1e-30`` (det from the LU factors' diagonal, as numpy's slogdet)."""
    cdef double lu[16]
    cdef int ipiv[4]
    cdef int n = 4, one = 1, info = 0, k
    cdef double acc = 0.0
    for k in range(16):
        if not isfinite(a[k]):
            return False
        lu[k] = a[k]
    for k in range(4):
        if not isfinite(b[k]):
            return False
    _getrf(&n, &n, lu, &n, ipiv, &info)
    if info > 0:
        return False
    for k in range(4):
        acc = acc + log(fabs(lu[5 * k]))
    if exp(acc) < 1e-30:
        return False
    _gesv(&n, &one, a, &n, ipiv, b, &n, &info)
    return info == 0


def lk_bspline3(const double[::1] fixed, const uint8_t[::1] fvalid, const double[:, ::1] coef,
                const uint8_t[:, ::1] mask, const double[::1] lx, const double[::1] ly, const double[:, ::1] jac,
                double sx, double sy, int iterations, double tol, double[:, ::1] work, uint8_t[::1] ok):
    """Iterated least-squares matching of one window (shift + gain + offset); ``work`` (3, n) and ``ok``
    (n) are scratch. Returns ``(sx, sy, ncc, ok)`` with ``moving(T(p + s)) ~ fixed(p)``."""
    cdef Py_ssize_t n = lx.shape[0], i, cnt, it
    cdef int p, q
    cdef double a[16]
    cdef double b[4]
    cdef double rr[4]
    cdef double d, u, v, s1, s2, s11, s22, s12, c11, c12, c22, ncc
    cdef double* val = &work[0, 0]
    cdef double* gx = &work[1, 0]
    cdef double* gy = &work[2, 0]
    cdef bint good = False, failed = False
    if _getrf == NULL:
        _load_lapack()
    with nogil:
        for it in range(iterations):
            _sample_grad(coef, mask, lx, ly, sx, sy, jac, val, gx, gy, &ok[0])
            for p in range(16):
                a[p] = 0.0
            for p in range(4):
                b[p] = 0.0
            cnt = 0
            for i in range(n):
                if not (ok[i] and fvalid[i]):
                    continue
                cnt += 1
                rr[0], rr[1], rr[2], rr[3] = gx[i], gy[i], val[i], 1.0
                d = fixed[i] - val[i]
                for p in range(4):
                    b[p] += rr[p] * d
                    for q in range(4):
                        a[4 * p + q] += rr[p] * rr[q]
            if cnt < n // 4 or not _solve4(a, b) or not (isfinite(b[0]) and isfinite(b[1])) \
                    or hypot(b[0], b[1]) > 3.0:
                failed = True
                break
            sx += b[0]
            sy += b[1]
            good = True
            if hypot(b[0], b[1]) < tol:
                break
    if failed:
        return sx, sy, 0.0, False
    with nogil:
        _sample_grad(coef, mask, lx, ly, sx, sy, jac, val, gx, gy, &ok[0])
        # normalised cross-correlation over the common valid pixels
        s1 = s2 = s11 = s22 = s12 = 0.0
        cnt = 0
        for i in range(n):
            if ok[i] and fvalid[i]:
                u = fixed[i]
                v = val[i]
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
    ncc = c12 / sqrt(c11 * c22) if c11 > 0 and c22 > 0 else 0.0
    return sx, sy, ncc, good


def eval_field(const double[:, ::1] coef_x, const double[:, ::1] coef_y, double ox, double oy, double sx, double sy,
               Py_ssize_t nx_nodes, Py_ssize_t ny_nodes, const double[::1] x, const double[::1] y, double[::1] outx,
               double[::1] outy):
    """Tensor cubic B-spline displacement field at points (see :class:`rastalign.model.residual.SplineField`)."""
    cdef Py_ssize_t i, ix, iy, jj, ii
    cdef double ux, uy, ax, ay, rx, ry, hx = nx_nodes - 1.0, hy = ny_nodes - 1.0
    cdef double wx[4]
    cdef double wy[4]
    with nogil:
        for i in range(x.shape[0]):
            ux = (x[i] - ox) / sx
            ux = ux if ux >= 0.0 else 0.0  # (NaN -> 0: no integer conversion of NaN)
            ux = hx if hx < ux else ux
            uy = (y[i] - oy) / sy
            uy = uy if uy >= 0.0 else 0.0
            uy = hy if hy < uy else uy
            ix = <Py_ssize_t>floor(ux)
            iy = <Py_ssize_t>floor(uy)
            ix = nx_nodes - 2 if nx_nodes - 2 < ix else ix
            iy = ny_nodes - 2 if ny_nodes - 2 < iy else iy
            bspline3(ux - ix, wx, 1)
            bspline3(uy - iy, wy, 1)
            ax = ay = 0.0
            for jj in range(4):
                rx = ry = 0.0
                for ii in range(4):
                    rx += wx[ii] * coef_x[iy + jj, ix + ii]
                    ry += wx[ii] * coef_y[iy + jj, ix + ii]
                ax += wy[jj] * rx
                ay += wy[jj] * ry
            outx[i] = ax
            outy[i] = ay

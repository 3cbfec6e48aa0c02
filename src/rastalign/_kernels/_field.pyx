# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The residual field's evaluation (a tensor cubic B-spline), at points and on a grid, compiled (see
:class:`rastalign.model.residual.SplineField`)."""
from libc.math cimport floor
from libc.stdlib cimport free, malloc

from rastalign._kernels._weights cimport bspline3


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


def field_grid(const double[:, ::1] coef_x, const double[:, ::1] coef_y, const Py_ssize_t[::1] iy,
               const double[:, ::1] wy, const Py_ssize_t[::1] ix, const double[:, ::1] wx, double[:, ::1] outx,
               double[:, ::1] outy):
    """The tensor cubic B-spline field on a grid: row ``r`` of the outputs at the rows' node interval ``iy[r]``
    with weights ``wy[r]`` (4), column ``c`` at ``ix[c]``, ``wx[c]``; the coefficients are first combined
    down the rows (once per row), then across the columns. No GIL."""
    cdef Py_ssize_t ny = outx.shape[0], nx = outx.shape[1], nk = coef_x.shape[1], r, c, k, j
    cdef double* rx = <double*>malloc(2 * nk * sizeof(double))
    cdef double* ry
    cdef double ax, ay
    if rx == NULL:
        raise MemoryError()
    ry = rx + nk
    with nogil:
        for r in range(ny):
            j = iy[r]
            for k in range(nk):
                rx[k] = ((wy[r, 0] * coef_x[j, k] + wy[r, 1] * coef_x[j + 1, k]) + wy[r, 2] * coef_x[j + 2, k]) \
                    + wy[r, 3] * coef_x[j + 3, k]
                ry[k] = ((wy[r, 0] * coef_y[j, k] + wy[r, 1] * coef_y[j + 1, k]) + wy[r, 2] * coef_y[j + 2, k]) \
                    + wy[r, 3] * coef_y[j + 3, k]
            for c in range(nx):
                k = ix[c]
                ax = ((wx[c, 0] * rx[k] + wx[c, 1] * rx[k + 1]) + wx[c, 2] * rx[k + 2]) + wx[c, 3] * rx[k + 3]
                ay = ((wx[c, 0] * ry[k] + wx[c, 1] * ry[k + 1]) + wx[c, 2] * ry[k + 2]) + wx[c, 3] * ry[k + 3]
                outx[r, c] = ax
                outy[r, c] = ay
    free(rx)

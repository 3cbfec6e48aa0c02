# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The residual field's evaluation (a tensor cubic B-spline) at points, compiled (see
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

# cython: language_level=3
# The 1-D tap weights (_weights.h), declared for the Cython kernels: one implementation of each basis for
# the warp and the estimation code alike.
cdef extern from "_weights.h" nogil:
    void bspline3 "ra_bspline3"(double t, double* w, Py_ssize_t stride)
    void bspline3_d "ra_bspline3_d"(double t, double* dw)
    void keys3 "ra_keys3"(double t, double* w, Py_ssize_t stride)
    void lanczos3 "ra_lanczos3"(double t, double* w, Py_ssize_t stride)

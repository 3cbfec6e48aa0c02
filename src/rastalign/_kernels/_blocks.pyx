# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Valid-pixel block sums, compiled (see :mod:`rastalign._kernels.blocks`)."""
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t

ctypedef fused pixel:
    uint8_t
    uint16_t
    int16_t
    int32_t
    float
    double


def block_sums(const pixel[:, ::1] data, const uint8_t[:, ::1] valid, Py_ssize_t f, double[:, ::1] s,
               double[:, ::1] n, double[:, ::1] m):
    """Per ``f x f`` block: ``m`` pixels, ``n`` valid pixels, ``s`` the sum of the valid ones (float64)."""
    cdef Py_ssize_t ny = data.shape[0], nx = data.shape[1], y, x, by, bx
    with nogil:
        for y in range(ny):
            by = y // f
            for x in range(nx):
                bx = x // f
                m[by, bx] += 1.0
                if valid[y, x]:
                    s[by, bx] += <double>data[y, x]
                    n[by, bx] += 1.0

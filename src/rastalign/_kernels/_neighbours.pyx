# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The nearest points of a small set, compiled (see :mod:`rastalign._kernels.neighbours`)."""
from libc.math cimport INFINITY


def nearest(const double[:, ::1] p, const double[:, ::1] at, Py_ssize_t k, Py_ssize_t[:, ::1] out):
    """``out[i]``: the indices of the ``k`` points of ``p`` (N, 2) nearest ``at[i]`` (by squared distance, nearest
    first; of equally near points the first in ``p``), by comparing every pair: N is a few thousand tie points.
    ``k <= N``. No GIL."""
    cdef Py_ssize_t n = p.shape[0], i, j, m
    cdef double dx, dy, d
    cdef double best[64]
    if k > 64 or k > n or k < 1:
        raise ValueError(f"nearest: k must be in [1, min(64, {n})], got {k}")
    with nogil:
        for i in range(at.shape[0]):
            for m in range(k):
                best[m] = INFINITY
            for j in range(n):
                dx = p[j, 0] - at[i, 0]
                dy = p[j, 1] - at[i, 1]
                d = dx * dx + dy * dy
                if d < best[k - 1]:  # insert, keeping best (and out[i]) sorted
                    m = k - 1
                    while m > 0 and best[m - 1] > d:
                        best[m] = best[m - 1]
                        out[i, m] = out[i, m - 1]
                        m -= 1
                    best[m] = d
                    out[i, m] = j

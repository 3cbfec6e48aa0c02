# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Warped float values to the output type in one pass, compiled (see :mod:`rastalign._kernels.convert`)."""
from libc.math cimport nextafter, nextafterf, rint, INFINITY
from libc.stdint cimport int8_t, int16_t, uint8_t, uint16_t

ctypedef fused floating:
    float
    double

ctypedef fused integer:
    uint8_t
    int8_t
    uint16_t
    int16_t

ctypedef fused real:
    float
    double


def to_int(const floating[:, :, ::1] values, const uint8_t[:, ::1] valid, integer[:, :, ::1] out, double lo,
           double hi, long long fill_value, long long nudge_value, bint clash):
    """Round half to even, clip to ``[lo, hi]``, cast; a valid value equal to ``fill`` becomes ``nudge`` when
    ``clash``; invalid pixels ``fill``."""
    cdef Py_ssize_t nb = values.shape[0], h = values.shape[1], w = values.shape[2], b, y, x
    cdef double v
    cdef integer fill = <integer>fill_value, nudge = <integer>nudge_value
    with nogil:
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    if valid[y, x]:
                        v = rint(values[b, y, x])
                        v = lo if lo > v else v
                        v = hi if hi < v else v
                        out[b, y, x] = <integer>v
                        if clash and out[b, y, x] == fill:
                            out[b, y, x] = nudge
                    else:
                        out[b, y, x] = fill


def to_float(const floating[:, :, ::1] values, const uint8_t[:, ::1] valid, real[:, :, ::1] out, double fill_value,
             bint clash):
    """Cast; a valid value equal to ``fill`` moves one step up when ``clash``; invalid pixels ``fill``."""
    cdef Py_ssize_t nb = values.shape[0], h = values.shape[1], w = values.shape[2], b, y, x
    cdef real fill = <real>fill_value
    with nogil:
        for b in range(nb):
            for y in range(h):
                for x in range(w):
                    if valid[y, x]:
                        out[b, y, x] = <real>values[b, y, x]
                        if clash and out[b, y, x] == fill:
                            if real is float:
                                out[b, y, x] = nextafterf(out[b, y, x], INFINITY)
                            else:
                                out[b, y, x] = nextafter(out[b, y, x], INFINITY)
                    else:
                        out[b, y, x] = fill

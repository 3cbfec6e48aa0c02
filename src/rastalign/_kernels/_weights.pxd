# cython: language_level=3
from libc.math cimport sin, cos, fabs, M_PI

"""The 1-D tap weights, in one place: Lanczos-3, the cubic B-spline basis (and its derivative) that both the warp
(``bspline`` on prefiltered coefficients, :mod:`._warp`) and the estimation windows, the Lucas-Kanade
matcher and the residual field (:mod:`._bspline`) use, and Keys' cubic. ``cimport``-ed, so each is
inlined where it is used. The arithmetic order is written out (no reassociation: the extensions are
built with ``-ffp-contract=off``), so a weight has the same bits in every caller and on every path."""

cdef inline void bspline3(double t, double* w) noexcept nogil:
    """Cubic B-spline basis at the taps at offsets -1, 0, 1, 2 for fraction ``t``."""
    cdef double u = 1.0 - t
    cdef double t2 = t * t
    cdef double t3 = t2 * t
    w[0] = u * (u * u) / 6.0
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w[3] = t3 / 6.0


cdef inline void bspline3_d(double t, double* dw) noexcept nogil:
    """The derivative of :func:`bspline3` with respect to ``t``."""
    cdef double u = 1.0 - t
    cdef double t2 = t * t
    dw[0] = -0.5 * (u * u)
    dw[1] = 1.5 * t2 - 2.0 * t
    dw[2] = -1.5 * t2 + t + 0.5
    dw[3] = 0.5 * t2


cdef inline void keys3(double t, double* w) noexcept nogil:
    """Keys' cubic (a = -0.5) at the taps at offsets -1, 0, 1, 2 (Horner form; exactly 0, 1, 0, 0 at
    ``t = 0``)."""
    cdef double t2 = t * t
    w[0] = ((-0.5 * t + 1.0) * t - 0.5) * t
    w[1] = (1.5 * t - 2.5) * t2 + 1.0
    w[2] = ((-1.5 * t + 2.0) * t + 0.5) * t
    w[3] = (0.5 * t - 0.5) * t2


cdef inline void lanczos3(double t, double* w, Py_ssize_t stride) noexcept nogil:
    """Lanczos (a = 3) weights of the taps at offsets -2..3, normalised to unit sum, into ``w[k * stride]``.
    With d = t + 2 - k, sin(pi d) = (-1)^k sin(pi t) and sin(pi d / 3) follows from sin/cos(pi t / 3) by
    the angle-sum rule: three transcendental calls per axis, not twelve."""
    cdef int k
    cdef double st, sa, ca, s, d, v, sign, pd
    cdef double lz_cos[6]  # cos and sin of pi (2 - k) / 3: numpy's values (the numba kernels' bits), as literals
    cdef double lz_sin[6]
    if t == 0.0:  # an integer position: exactly the pixel itself
        for k in range(6):
            w[k * stride] = 1.0 if k == 2 else 0.0
        return
    lz_cos[:] = [-0.4999999999999998, 0.5000000000000001, 1.0, 0.5000000000000001, -0.4999999999999998, -1.0]
    lz_sin[:] = [0.8660254037844387, 0.8660254037844386, 0.0, -0.8660254037844386, -0.8660254037844387,
                 -1.2246467991473532e-16]
    st = sin(M_PI * t)
    sa = sin(M_PI * t / 3.0)
    ca = cos(M_PI * t / 3.0)
    s = 0.0
    for k in range(6):
        d = t + 2.0 - k
        if fabs(d) < 1e-100:
            v = 1.0  # the limit at 0 (a fraction like 1e-221 made pd * pd underflow to 0)
        else:
            sign = 1.0 if k % 2 == 0 else -1.0
            pd = M_PI * d
            v = 3.0 * sign * st * (sa * lz_cos[k] + ca * lz_sin[k]) / (pd * pd)
        w[k * stride] = v
        s += v
    for k in range(6):
        w[k * stride] /= s

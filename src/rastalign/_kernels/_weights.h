/* The 1-D tap weights, in one place: the cubic B-spline basis (and its derivative) that both the warp
 * (`bspline` on prefiltered coefficients) and the estimation windows, the Lucas-Kanade matcher and the
 * residual field use; Keys' cubic; Lanczos-3. Declared for Cython in _weights.pxd. The arithmetic order is
 * written out and the extensions are built without contraction (-ffp-contract=off), so a weight has the
 * same bits in every caller, on every path and on every machine. */
#ifndef RASTALIGN_WEIGHTS_H
#define RASTALIGN_WEIGHTS_H
#include <math.h>
#include <stddef.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* cubic B-spline basis at the taps at offsets -1, 0, 1, 2 for fraction t, into w[k * stride] */
static inline void ra_bspline3(double t, double *w, ptrdiff_t stride) {
    double u = 1.0 - t, t2 = t * t, t3 = t2 * t;
    w[0] = u * (u * u) / 6.0;
    w[stride] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0;
    w[2 * stride] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0;
    w[3 * stride] = t3 / 6.0;
}

/* its derivative with respect to t */
static inline void ra_bspline3_d(double t, double *dw) {
    double u = 1.0 - t, t2 = t * t;
    dw[0] = -0.5 * (u * u);
    dw[1] = 1.5 * t2 - 2.0 * t;
    dw[2] = -1.5 * t2 + t + 0.5;
    dw[3] = 0.5 * t2;
}

/* Keys' cubic (a = -0.5) at the taps at offsets -1, 0, 1, 2 (Horner form; exactly 0, 1, 0, 0 at t = 0), into
 * w[k * stride] */
static inline void ra_keys3(double t, double *w, ptrdiff_t stride) {
    double t2 = t * t;
    w[0] = ((-0.5 * t + 1.0) * t - 0.5) * t;
    w[stride] = (1.5 * t - 2.5) * t2 + 1.0;
    w[2 * stride] = ((-1.5 * t + 2.0) * t + 0.5) * t;
    w[3 * stride] = (0.5 * t - 0.5) * t2;
}

/* Lanczos (a = 3) weights of the taps at offsets -2..3, normalised to unit sum, into w[k * stride].
 * With d = t + 2 - k, sin(pi d) = (-1)^k sin(pi t) and sin(pi d / 3) follows from sin/cos(pi t / 3) by the
 * angle-sum rule: three transcendental calls per axis, not twelve. The constant angles cos and sin of
 * pi (2 - k) / 3 are numpy's values (those the numba kernels used), as literals. */
static inline void ra_lanczos3(double t, double *w, ptrdiff_t stride) {
    static const double lz_cos[6] = {-0.4999999999999998, 0.5000000000000001, 1.0, 0.5000000000000001,
                                     -0.4999999999999998, -1.0};
    static const double lz_sin[6] = {0.8660254037844387, 0.8660254037844386, 0.0, -0.8660254037844386,
                                     -0.8660254037844387, -1.2246467991473532e-16};
    double st, sa, ca, s = 0.0, d, v, pd;
    int k;
    if (t == 0.0) { /* an integer position: exactly the pixel itself */
        for (k = 0; k < 6; k++) w[k * stride] = k == 2 ? 1.0 : 0.0;
        return;
    }
    st = sin(M_PI * t);
    sa = sin(M_PI * t / 3.0);
    ca = cos(M_PI * t / 3.0);
    for (k = 0; k < 6; k++) {
        d = t + 2.0 - k;
        if (fabs(d) < 1e-100) {
            v = 1.0; /* the limit at 0 (a fraction like 1e-221 made pd * pd underflow to 0) */
        } else {
            pd = M_PI * d;
            v = 3.0 * (k % 2 == 0 ? 1.0 : -1.0) * st * (sa * lz_cos[k] + ca * lz_sin[k]) / (pd * pd);
        }
        w[k * stride] = v;
        s += v;
    }
    for (k = 0; k < 6; k++) w[k * stride] /= s;
}
#endif

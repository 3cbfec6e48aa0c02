/* The B-spline prefilter's FIR passes over one row (called from _prefilter.pyx), as plain C so the compiler
 * knows the rows do not alias and vectorises them (AVX2 too, see _compat.h). The taps are summed from the
 * smallest to the largest, each pair of mirrored taps added before it is weighted: the order of the numba
 * kernels, so the same bits. */
#ifndef RASTALIGN_FIR_H
#define RASTALIGN_FIR_H
#include <stddef.h>
#include "_compat.h"

/* acc = h (a + b) */
RA_CLONES static void ra_fir_first(double *RA_RESTRICT acc, const double *RA_RESTRICT a, const double *RA_RESTRICT b,
                                   double h, ptrdiff_t n) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) acc[i] = h * (a[i] + b[i]);
}

/* acc += h (a + b) */
RA_CLONES static void ra_fir_add(double *RA_RESTRICT acc, const double *RA_RESTRICT a, const double *RA_RESTRICT b,
                                 double h, ptrdiff_t n) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) acc[i] += h * (a[i] + b[i]);
}

/* out = acc + h c, stored as float64 or float32 */
RA_CLONES static void ra_fir_last_d(double *RA_RESTRICT out, const double *RA_RESTRICT acc, const double *RA_RESTRICT c,
                                    double h, ptrdiff_t n) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) out[i] = acc[i] + h * c[i];
}

RA_CLONES static void ra_fir_last_f(float *RA_RESTRICT out, const double *RA_RESTRICT acc, const double *RA_RESTRICT c,
                                    double h, ptrdiff_t n) {
    ptrdiff_t i;
    for (i = 0; i < n; i++) out[i] = (float)(acc[i] + h * c[i]);
}
#endif

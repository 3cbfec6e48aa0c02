/* The warp's fast paths over one row of precomputed coordinates, in two branch-free passes (called from
 * _warp.pyx, which does the rest of a row). Plain C so the pointers can be declared unaliased (restrict) and
 * the loops vectorise; on x86-64 Linux with GCC each hot function is also built for AVX2 and picked at load
 * time (target_clones): the same operations in the same order, so the same bits either way.
 *
 * ra_prep: for each pixel of a row, whether its whole n x n support lies inside the block (ov: 1, else
 * RA_PENDING), the block column and row of its top-left tap (from the coordinates clamped into the block
 * where the support is not inside, so the second pass never reads out of bounds) and its 2n tap weights
 * (w, (2n, ow): the x weights, then the y weights, from the exact fraction).
 * ra_sum: the weighted sum of one band's taps in float64, columns of taps first (weighted by the y weights,
 * top to bottom), then the row of column sums (by the x weights, left to right): the order of the generic
 * path in _warp.pyx, so a pixel gets the same bits whichever path and whichever block it falls in. */
#ifndef RASTALIGN_ROWS_H
#define RASTALIGN_ROWS_H
#include <stddef.h>
#include <stdint.h>
#include "_weights.h"

#include "_compat.h"

enum { RA_NEAREST = 0, RA_BILINEAR = 1, RA_CUBIC = 2, RA_LANCZOS = 3, RA_BSPLINE = 4, RA_PENDING = 2 };

/* Whether the taps floor - first .. floor - first + n - 1 of (x, y) lie in the block (false for NaN); the
 * block column and row of the top-left tap and the fractions, from the coordinates clamped into the block
 * where they do not (then non-negative: truncation is floor; int32 so it vectorises). */
static inline int ra_inside(double x, double y, int first, int n, int64_t sx0, int64_t sy0, int64_t bw,
                            int64_t bh, double *tx, double *ty, int32_t *ix, int32_t *iy) {
    double xlo = (double)(sx0 + first), ylo = (double)(sy0 + first);
    int ok = (x >= xlo) & (x < xlo + (double)(bw - n + 1)) & (y >= ylo) & (y < ylo + (double)(bh - n + 1));
    double xc = ok ? x : xlo, yc = ok ? y : ylo;
    int32_t jx = (int32_t)xc, jy = (int32_t)yc;
    *tx = xc - jx;
    *ty = yc - jy;
    *ix = jx - (int32_t)(first + sx0);
    *iy = jy - (int32_t)(first + sy0);
    return ok;
}

/* the 4-tap methods: each row of weights through its own pointer, so the compiler sees no aliasing */
#define RA_PREP4(NAME, BASIS)                                                                                 \
static inline void NAME(const double *RA_RESTRICT xs, const double *RA_RESTRICT ys, int64_t sx0, int64_t sy0, \
                        int64_t bw, int64_t bh, int32_t *RA_RESTRICT ixs, int32_t *RA_RESTRICT iys,           \
                        uint8_t *RA_RESTRICT ov, double *RA_RESTRICT x0, double *RA_RESTRICT x1,              \
                        double *RA_RESTRICT x2, double *RA_RESTRICT x3, double *RA_RESTRICT y0,               \
                        double *RA_RESTRICT y1, double *RA_RESTRICT y2, double *RA_RESTRICT y3, ptrdiff_t ow) { \
    ptrdiff_t c;                                                                                              \
    for (c = 0; c < ow; c++) {                                                                                \
        double tx, ty, wx[4], wy[4];                                                                          \
        ov[c] = ra_inside(xs[c], ys[c], 1, 4, sx0, sy0, bw, bh, &tx, &ty, ixs + c, iys + c) ? 1 : RA_PENDING; \
        BASIS(tx, wx, 1);                                                                                     \
        BASIS(ty, wy, 1);                                                                                     \
        x0[c] = wx[0]; x1[c] = wx[1]; x2[c] = wx[2]; x3[c] = wx[3];                                           \
        y0[c] = wy[0]; y1[c] = wy[1]; y2[c] = wy[2]; y3[c] = wy[3];                                           \
    }                                                                                                         \
}
RA_PREP4(ra_prep_keys3, ra_keys3)
RA_PREP4(ra_prep_bspline3, ra_bspline3)
#define RA_W8 w, w + ow, w + 2 * ow, w + 3 * ow, w + 4 * ow, w + 5 * ow, w + 6 * ow, w + 7 * ow

RA_CLONES static void ra_prep(int method, const double *RA_RESTRICT xs, const double *RA_RESTRICT ys, int64_t sx0,
                              int64_t sy0, int64_t bw, int64_t bh, int32_t *RA_RESTRICT ixs,
                              int32_t *RA_RESTRICT iys, double *RA_RESTRICT w, uint8_t *RA_RESTRICT ov,
                              ptrdiff_t ow) {
    ptrdiff_t c;
    double tx, ty;
    switch (method) {
    case RA_NEAREST:
        for (c = 0; c < ow; c++)
            ov[c] = ra_inside(xs[c] + 0.5, ys[c] + 0.5, 0, 1, sx0, sy0, bw, bh, &tx, &ty, ixs + c, iys + c)
                        ? 1 : RA_PENDING;
        break;
    case RA_BILINEAR:
        for (c = 0; c < ow; c++) {
            ov[c] = ra_inside(xs[c], ys[c], 0, 2, sx0, sy0, bw, bh, &tx, &ty, ixs + c, iys + c) ? 1 : RA_PENDING;
            w[c] = 1.0 - tx;
            w[ow + c] = tx;
            w[2 * ow + c] = 1.0 - ty;
            w[3 * ow + c] = ty;
        }
        break;
    case RA_CUBIC:
        ra_prep_keys3(xs, ys, sx0, sy0, bw, bh, ixs, iys, ov, RA_W8, ow);
        break;
    case RA_BSPLINE:
        ra_prep_bspline3(xs, ys, sx0, sy0, bw, bh, ixs, iys, ov, RA_W8, ow);
        break;
    default:
        for (c = 0; c < ow; c++) {
            int good = ra_inside(xs[c], ys[c], 2, 6, sx0, sy0, bw, bh, &tx, &ty, ixs + c, iys + c);
            ov[c] = good ? 1 : RA_PENDING;
            if (good) {
                ra_lanczos3(tx, w + c, ow);
                ra_lanczos3(ty, w + 6 * ow + c, ow);
            }
        }
    }
}

/* A pixel's 2 x 2 and 4 x 4 sums: each row of taps is one vector of 2 or 4 (GCC and Clang vector extensions;
 * 4 x float64 in one AVX2 register), the columns summed 2 or 4 at a time, then the row of column sums left
 * to right: lane for lane the scalar order of the generic path. */
#if defined(__GNUC__)
typedef double ra_d4 __attribute__((vector_size(32)));
typedef double ra_d2 __attribute__((vector_size(16)));
#define RA_V4(q) ((ra_d4){(double)(q)[0], (double)(q)[1], (double)(q)[2], (double)(q)[3]})
#define RA_V2(q) ((ra_d2){(double)(q)[0], (double)(q)[1]})
#define RA_PIXEL4(q0, q1, q2, q3, v0, v1, v2, v3, w0, w1, w2, w3, out) do {                      \
        ra_d4 acc_ = ((RA_V4(q0) * (v0) + RA_V4(q1) * (v1)) + RA_V4(q2) * (v2)) + RA_V4(q3) * (v3);  \
        ra_d4 fin_ = acc_ * (ra_d4){w0, w1, w2, w3};                                              \
        out = ((fin_[0] + fin_[1]) + fin_[2]) + fin_[3];                                          \
    } while (0)
#define RA_PIXEL2(q0, q1, v0, v1, w0, w1, out) do {                                              \
        ra_d2 fin_ = (RA_V2(q0) * (v0) + RA_V2(q1) * (v1)) * (ra_d2){w0, w1};                     \
        out = fin_[0] + fin_[1];                                                                  \
    } while (0)
#else
#define RA_COL4(q0, q1, q2, q3, v0, v1, v2, v3, k)                                                \
    (((v0) * (double)(q0)[k] + (v1) * (double)(q1)[k]) + (v2) * (double)(q2)[k]) + (v3) * (double)(q3)[k]
#define RA_PIXEL4(q0, q1, q2, q3, v0, v1, v2, v3, w0, w1, w2, w3, out)                            \
    out = (((w0) * (RA_COL4(q0, q1, q2, q3, v0, v1, v2, v3, 0)) + (w1) * (RA_COL4(q0, q1, q2, q3, v0, v1, v2, v3, 1))) \
           + (w2) * (RA_COL4(q0, q1, q2, q3, v0, v1, v2, v3, 2))) + (w3) * (RA_COL4(q0, q1, q2, q3, v0, v1, v2, v3, 3))
#define RA_PIXEL2(q0, q1, v0, v1, w0, w1, out)                                                    \
    out = (w0) * ((v0) * (double)(q0)[0] + (v1) * (double)(q1)[0]) + (w1) * ((v0) * (double)(q0)[1] + (v1) * (double)(q1)[1])
#endif

/* the sums of one band over a row, per source type ST and output type OT (unsigned flat indices: the
 * indices of ra_prep are never negative) */
#define RA_SUMS(SUF, ST, OT)                                                                              \
RA_CLONES static void ra_sum1_##SUF(const void *pv, size_t bw, const int32_t *RA_RESTRICT ixs,           \
                                    const int32_t *RA_RESTRICT iys, const double *RA_RESTRICT w,           \
                                    ptrdiff_t ow, void *ovp) {                                             \
    const ST *RA_RESTRICT p = (const ST *)pv; OT *RA_RESTRICT o = (OT *)ovp; ptrdiff_t c;                  \
    (void)w;                                                                                              \
    for (c = 0; c < ow; c++) o[c] = (OT)p[(size_t)iys[c] * bw + (size_t)ixs[c]];                         \
}                                                                                                         \
RA_CLONES static void ra_sum2_##SUF(const void *pv, size_t bw, const int32_t *RA_RESTRICT ixs,           \
                                    const int32_t *RA_RESTRICT iys, const double *RA_RESTRICT w,           \
                                    ptrdiff_t ow, void *ovp) {                                             \
    const ST *RA_RESTRICT p = (const ST *)pv; OT *RA_RESTRICT o = (OT *)ovp; ptrdiff_t c;                  \
    for (c = 0; c < ow; c++) {                                                                            \
        const ST *q = p + ((size_t)iys[c] * bw + (size_t)ixs[c]);                                         \
        double s;                                                                                         \
        RA_PIXEL2(q, q + bw, w[2 * ow + c], w[3 * ow + c], w[c], w[ow + c], s);                           \
        o[c] = (OT)s;                                                                                     \
    }                                                                                                     \
}                                                                                                         \
RA_CLONES static void ra_sum4_##SUF(const void *pv, size_t bw, const int32_t *RA_RESTRICT ixs,           \
                                    const int32_t *RA_RESTRICT iys, const double *RA_RESTRICT w,           \
                                    ptrdiff_t ow, void *ovp) {                                             \
    const ST *RA_RESTRICT p = (const ST *)pv; OT *RA_RESTRICT o = (OT *)ovp; ptrdiff_t c;                  \
    for (c = 0; c < ow; c++) {                                                                            \
        const ST *q0 = p + ((size_t)iys[c] * bw + (size_t)ixs[c]);                                        \
        const ST *q1 = q0 + bw, *q2 = q1 + bw, *q3 = q2 + bw;                                             \
        double s;                                                                                         \
        RA_PIXEL4(q0, q1, q2, q3, w[4 * ow + c], w[5 * ow + c], w[6 * ow + c], w[7 * ow + c],             \
                  w[c], w[ow + c], w[2 * ow + c], w[3 * ow + c], s);                                      \
        o[c] = (OT)s;                                                                                     \
    }                                                                                                     \
}                                                                                                         \
RA_CLONES static void ra_sum6_##SUF(const void *pv, size_t bw, const int32_t *RA_RESTRICT ixs,           \
                                    const int32_t *RA_RESTRICT iys, const double *RA_RESTRICT w,           \
                                    ptrdiff_t ow, void *ovp) {                                             \
    const ST *RA_RESTRICT p = (const ST *)pv; OT *RA_RESTRICT o = (OT *)ovp; ptrdiff_t c; int ii, jj;      \
    for (c = 0; c < ow; c++) {                                                                            \
        const ST *q = p + ((size_t)iys[c] * bw + (size_t)ixs[c]);                                         \
        double s = 0.0, cs;                                                                               \
        for (ii = 0; ii < 6; ii++) {                                                                      \
            cs = w[6 * ow + c] * (double)q[ii];                                                           \
            for (jj = 1; jj < 6; jj++) cs = cs + w[(6 + jj) * ow + c] * (double)q[jj * bw + ii];          \
            s = ii == 0 ? w[c] * cs : s + w[ii * ow + c] * cs;                                           \
        }                                                                                                 \
        o[c] = (OT)s;                                                                                     \
    }                                                                                                     \
}

RA_SUMS(u8_f, uint8_t, float)
RA_SUMS(u8_d, uint8_t, double)
RA_SUMS(u16_f, uint16_t, float)
RA_SUMS(u16_d, uint16_t, double)
RA_SUMS(i16_f, int16_t, float)
RA_SUMS(i16_d, int16_t, double)
RA_SUMS(f_f, float, float)
RA_SUMS(f_d, float, double)
RA_SUMS(d_f, double, float)
RA_SUMS(d_d, double, double)

typedef void (*ra_sum_fn)(const void *, size_t, const int32_t *, const int32_t *, const double *, ptrdiff_t,
                          void *);
#define RA_ROW(N) {ra_sum##N##_u8_f, ra_sum##N##_u8_d, ra_sum##N##_u16_f, ra_sum##N##_u16_d, ra_sum##N##_i16_f, \
                   ra_sum##N##_i16_d, ra_sum##N##_f_f, ra_sum##N##_f_d, ra_sum##N##_d_f, ra_sum##N##_d_d}

/* One band of one row: n taps per axis (1, 2, 4 or 6); kind = 2 * source type (uint8, uint16, int16, float32,
 * float64: 0..4) + output type (float32, float64: 0, 1). */
static void ra_sum(int n, int kind, const void *p, size_t bw, const int32_t *ixs, const int32_t *iys,
                   const double *w, ptrdiff_t ow, void *o) {
    static const ra_sum_fn table[4][10] = {RA_ROW(1), RA_ROW(2), RA_ROW(4), RA_ROW(6)};
    table[n == 1 ? 0 : (n == 2 ? 1 : (n == 4 ? 2 : 3))][kind](p, bw, ixs, iys, w, ow, o);
}
#endif

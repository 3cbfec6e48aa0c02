/* The estimation windows' hot loop: value and gradient of a cubic spline at a window's points, four points at
 * a time in vector lanes (called from _bspline.pyx's least-squares matcher). Each lane does the scalar path's
 * operations in the scalar path's order, so a point gets the same bits in a lane or alone, on every machine
 * (no contraction into fused multiply-adds, -ffp-contract=off); four independent points in flight instead of
 * one long chain of dependent additions is what makes it faster. Built for AVX2 too where the compiler can
 * (target_clones, _compat.h). */
#ifndef RASTALIGN_LK_H
#define RASTALIGN_LK_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "_weights.h"

#include "_compat.h"

typedef double ra_v4d __attribute__((vector_size(32)));

/* the cubic B-spline basis and its derivative (_weights.h's, operation for operation) in four lanes */
static inline void ra_bspline3_v(ra_v4d t, ra_v4d *w, ra_v4d *dw) {
    ra_v4d u = 1.0 - t, t2 = t * t, t3 = t2 * t;
    w[0] = u * (u * u) / 6.0;
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0;
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0;
    w[3] = t3 / 6.0;
    dw[0] = -0.5 * (u * u);
    dw[1] = 1.5 * t2 - 2.0 * t;
    dw[2] = -1.5 * t2 + t + 0.5;
    dw[3] = 0.5 * t2;
}

static inline ptrdiff_t ra_clamp(ptrdiff_t v, ptrdiff_t lo, ptrdiff_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* One point: whether it is usable (finite, its nearest pixel one inside the border and valid in mask) and,
 * if so, its value and gradient (taps beyond the coefficients take the edge's). */
static inline int ra_point(const double *RA_RESTRICT coef, ptrdiff_t ny, ptrdiff_t nx, const uint8_t *RA_RESTRICT mask,
                           double x, double y, const double *jac, double *val, double *gx, double *gy) {
    ptrdiff_t rx, ry, ix, iy, jj, ii, yy, xx;
    double wx[4], wy[4], dwx[4], dwy[4], v = 0.0, dvx = 0.0, dvy = 0.0, r, rd, c;
    *val = *gx = *gy = 0.0;
    if (!(fabs(x) < 1e15 && fabs(y) < 1e15)) return 0; /* NaN too: no integer conversion of such a point */
    rx = (ptrdiff_t)floor(x + 0.5);
    ry = (ptrdiff_t)floor(y + 0.5);
    if (rx < 1 || ry < 1 || rx >= nx - 1 || ry >= ny - 1 || !mask[ry * nx + rx]) return 0;
    ix = (ptrdiff_t)floor(x);
    iy = (ptrdiff_t)floor(y);
    ra_bspline3(x - ix, wx, 1);
    ra_bspline3_d(x - ix, dwx);
    ra_bspline3(y - iy, wy, 1);
    ra_bspline3_d(y - iy, dwy);
    for (jj = 0; jj < 4; jj++) {
        yy = ra_clamp(iy - 1 + jj, 0, ny - 1);
        r = rd = 0.0;
        for (ii = 0; ii < 4; ii++) {
            xx = ra_clamp(ix - 1 + ii, 0, nx - 1);
            c = coef[yy * nx + xx];
            r += wx[ii] * c;
            rd += dwx[ii] * c;
        }
        v += wy[jj] * r;
        dvx += wy[jj] * rd;
        dvy += dwy[jj] * r;
    }
    *val = v;
    /* chain rule: moving-level gradient -> fixed-level shift */
    *gx = dvx * jac[0] + dvy * jac[2];
    *gy = dvx * jac[1] + dvy * jac[3];
    return 1;
}

/* The four lanes' sums over the 4 x 4 taps (row weights wy, dwy; column weights wx, dwx): value v and
 * derivatives dvx, dvy. Lane k's taps start at base[k] or, without base, at row + k (adjacent points). */
static inline __attribute__((always_inline)) void ra_lanes_taps(const double *row, const double *const *base,
                                                                 ptrdiff_t nx, const ra_v4d *wx, const ra_v4d *dwx,
                                                                 const ra_v4d *wy, const ra_v4d *dwy, ra_v4d *v,
                                                                 ra_v4d *dvx, ra_v4d *dvy) {
    ptrdiff_t jj, ii;
    for (jj = 0; jj < 4; jj++) {
        ra_v4d r = {0.0, 0.0, 0.0, 0.0}, rd = r, c;
        for (ii = 0; ii < 4; ii++) {
            ptrdiff_t o = jj * nx + ii;
            if (base) {
                ra_v4d g = {base[0][o], base[1][o], base[2][o], base[3][o]};
                c = g;
            } else {
                memcpy(&c, row + o, sizeof c);
            }
            r += wx[ii] * c;
            rd += dwx[ii] * c;
        }
        *v += wy[jj] * r;
        *dvx += wy[jj] * rd;
        *dvy += dwy[jj] * r;
    }
}

/* Value and gradient (with respect to the fixed-grid shift; jac the 2 x 2 d(moving px) / d(fixed px),
 * row-major) of the spline of coef (ny x nx) at the n points (lx + ox, ly + oy), and whether each is usable
 * (ok). Groups of four points whose 16 taps all lie inside the coefficients go through the lanes; the rest,
 * one by one, through ra_point. */
RA_CLONES static void ra_sample_grad(const double *RA_RESTRICT coef, ptrdiff_t ny, ptrdiff_t nx,
                                     const uint8_t *RA_RESTRICT mask, const double *RA_RESTRICT lx,
                                     const double *RA_RESTRICT ly, ptrdiff_t n, double ox, double oy,
                                     const double *RA_RESTRICT jac, double *RA_RESTRICT val,
                                     double *RA_RESTRICT gx, double *RA_RESTRICT gy, uint8_t *RA_RESTRICT ok) {
    ptrdiff_t i = 0, k;
    for (; i + 4 <= n; i += 4) {
        double x[4], y[4], fx[4], fy[4];
        const double *base[4];
        int fast = 1;
        for (k = 0; k < 4; k++) {
            ptrdiff_t rx, ry, ix, iy;
            x[k] = lx[i + k] + ox;
            y[k] = ly[i + k] + oy;
            if (!(fabs(x[k]) < 1e15 && fabs(y[k]) < 1e15)) { fast = 0; break; }
            /* truncation: floor wherever the test below passes (there x, y >= 1) */
            rx = (ptrdiff_t)(x[k] + 0.5);
            ry = (ptrdiff_t)(y[k] + 0.5);
            ix = (ptrdiff_t)x[k];
            iy = (ptrdiff_t)y[k];
            if (x[k] < 1.0 || y[k] < 1.0 || rx < 1 || ry < 1 || rx >= nx - 1 || ry >= ny - 1 || !mask[ry * nx + rx] || ix < 1 || iy < 1 ||
                ix + 2 >= nx || iy + 2 >= ny) { fast = 0; break; }
            fx[k] = x[k] - ix;
            fy[k] = y[k] - iy;
            base[k] = coef + (iy - 1) * nx + (ix - 1);
        }
        if (!fast) {
            for (k = 0; k < 4; k++)
                ok[i + k] = (uint8_t)ra_point(coef, ny, nx, mask, lx[i + k] + ox, ly[i + k] + oy, jac, val + i + k,
                                              gx + i + k, gy + i + k);
            continue;
        }
        {
            ra_v4d tx = {fx[0], fx[1], fx[2], fx[3]}, ty = {fy[0], fy[1], fy[2], fy[3]};
            ra_v4d wx[4], dwx[4], wy[4], dwy[4], v = {0.0, 0.0, 0.0, 0.0}, dvx = v, dvy = v, gxv, gyv;
            ra_bspline3_v(tx, wx, dwx);
            ra_bspline3_v(ty, wy, dwy);
            /* four consecutive points of a row whose taps are consecutive columns of the same rows (a geometry
             * close to the grid's, the common case): each tap of the four lanes is one load of four adjacent
             * coefficients; else gathered lane by lane. The same values either way. */
            if (base[1] == base[0] + 1 && base[2] == base[0] + 2 && base[3] == base[0] + 3)
                ra_lanes_taps(base[0], 0, nx, wx, dwx, wy, dwy, &v, &dvx, &dvy);
            else
                ra_lanes_taps(base[0], base, nx, wx, dwx, wy, dwy, &v, &dvx, &dvy);
            gxv = dvx * jac[0] + dvy * jac[2];
            gyv = dvx * jac[1] + dvy * jac[3];
            for (k = 0; k < 4; k++) {
                ok[i + k] = 1;
                val[i + k] = v[k];
                gx[i + k] = gxv[k];
                gy[i + k] = gyv[k];
            }
        }
    }
    for (; i < n; i++)
        ok[i] = (uint8_t)ra_point(coef, ny, nx, mask, lx[i] + ox, ly[i] + oy, jac, val + i, gx + i, gy + i);
}

/* The normal equations of one matching step over the points usable in both images: a (4 x 4, row-major,
 * symmetric) and b (4) of the unknowns (shift x, shift y, gain, offset), the derivatives being (gx, gy, val,
 * 1) and the residual fixed - val; and m, the sums of fixed, val, fixed^2, val^2 and fixed val for their
 * correlation. Four lanes of partial sums (lane k: the points i = k mod 4, unusable ones as zeros), added
 * pairwise at the end: the same order for a window whatever else is matched. Returns the number of points. */
static inline double ra_hsum(ra_v4d x) { return (x[0] + x[1]) + (x[2] + x[3]); }

RA_CLONES static ptrdiff_t ra_normal4(ptrdiff_t n, const uint8_t *RA_RESTRICT ok, const uint8_t *RA_RESTRICT fvalid,
                                      const double *RA_RESTRICT fixed, const double *RA_RESTRICT val,
                                      const double *RA_RESTRICT gx, const double *RA_RESTRICT gy,
                                      double *RA_RESTRICT a, double *RA_RESTRICT b, double *RA_RESTRICT m) {
    const ra_v4d zero = {0.0, 0.0, 0.0, 0.0};
    ra_v4d a00 = zero, a01 = zero, a02 = zero, a03 = zero, a11 = zero, a12 = zero, a13 = zero, a33 = zero,
           b0 = zero, b1 = zero, b2 = zero, b3 = zero, s1 = zero, s2 = zero, s11 = zero, s22 = zero, s12 = zero;
    ptrdiff_t i, k, cnt = 0;
    for (i = 0; i < n; i += 4) {
        ra_v4d u, w, v, f, use, d;
        for (k = 0; k < 4; k++) {
            int on = i + k < n && ok[i + k] && fvalid[i + k];
            cnt += on;
            use[k] = on ? 1.0 : 0.0;
            u[k] = on ? gx[i + k] : 0.0;
            w[k] = on ? gy[i + k] : 0.0;
            v[k] = on ? val[i + k] : 0.0;
            f[k] = on ? fixed[i + k] : 0.0;
        }
        d = f - v;
        s1 += f;
        s2 += v;
        s11 += f * f;
        s22 += v * v;
        s12 += f * v;
        b0 += u * d;
        a00 += u * u;
        a01 += u * w;
        a02 += u * v;
        a03 += u;
        b1 += w * d;
        a11 += w * w;
        a12 += w * v;
        a13 += w;
        b2 += v * d;
        b3 += d;
        a33 += use;
    }
    a[0] = ra_hsum(a00); a[1] = ra_hsum(a01); a[2] = ra_hsum(a02); a[3] = ra_hsum(a03);
    a[4] = a[1]; a[5] = ra_hsum(a11); a[6] = ra_hsum(a12); a[7] = ra_hsum(a13);
    a[8] = a[2]; a[9] = a[6]; a[10] = ra_hsum(s22); a[11] = ra_hsum(s2);
    a[12] = a[3]; a[13] = a[7]; a[14] = a[11]; a[15] = ra_hsum(a33);
    b[0] = ra_hsum(b0); b[1] = ra_hsum(b1); b[2] = ra_hsum(b2); b[3] = ra_hsum(b3);
    m[0] = ra_hsum(s1); m[1] = a[11]; m[2] = ra_hsum(s11); m[3] = a[10]; m[4] = ra_hsum(s12);
    return cnt;
}
#endif

/* Float64 separable 'valid' filters for the fusion metrics (CPU).
 *
 * Why this exists: VIF, SSIM and MS-SSIM spend most of their time filtering
 * float64 maps (x, y, x², y², x·y) with small Gaussian or box windows and then
 * running a per-pixel formula over the five moment maps. PyTorch has no fast
 * float64 convolution on CPU, and the banded-GEMM path in functional.py writes
 * and re-reads every product map, filter pass and formula step, so it is bound
 * by memory traffic. These kernels read each input row once per window row,
 * form the products on the fly, keep one image row of vertical sums in cache,
 * and either write the moments or evaluate VIF's or SSIM's formula in registers
 * and return one sum per output row.
 *
 * Built at run time by native.py with the system C compiler (no torch headers,
 * about a second), loaded with ctypes. The GIL is released during every call,
 * so native.py splits the output rows over threads; each row's sums are made
 * by one thread in a fixed order, so the values do not depend on the split. On
 * x86-64 GCC compiles each function for AVX-512, AVX2 and baseline and picks one
 * when the library loads.
 *
 * Arithmetic: the same float64 sums as a direct correlation, in a fixed order
 * (window rows, then window columns), with fused multiply-adds where the CPU
 * has them; the formulas are functional.py's, operation for operation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LFL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LFL_CLONES
#endif

/* Eight doubles, one AVX-512 register; the compiler splits it where lanes are narrower.
 * Macros, not functions: every clone must inline them with its own instruction set. */
typedef double v8 __attribute__((vector_size(64)));
typedef long long v8i __attribute__((vector_size(64)));
#define LANES 8
#define LOAD(p) ({ v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define STORE(p, v) do { v8 t_ = (v); memcpy((p), &t_, sizeof t_); } while (0)
#define SPLAT(a) ((v8){0} + (a))
#define MASK(cond) ((v8i)(cond))                     /* lane comparison -> all-ones / zero */
#define SELECT(m, a, b) ((v8)((MASK_OF(a) & (m)) | (MASK_OF(b) & ~(m))))
#define MASK_OF(a) ((v8i)(v8)(a))
#define MAX(a, b) SELECT(MASK((a) >= (b)), a, b)

enum { LFL_MOMENT_MAPS = 0, LFL_VIF_LOG_SUMS = 1, LFL_SSIM_SUMS = 2 };

/* Local moments of x [B, S, H, W] against y [B, 1, H, W] under the separable window
 * w (K taps per axis), 'valid' (Ho = H - K + 1, Wo = W - K + 1), for the flattened
 * output rows [r0, r1) of B x Ho. With m = w*m the filtered map:
 *   mu_x = w*x, mu_y = w*y, var_x = w*(x²) - mu_x², var_y = w*(y²) - mu_y²,
 *   cov = w*(x·y) - mu_x·mu_y.
 * Inputs may be strided views with unit column stride (sxb, sxs, sxh: batch, channel
 * and row strides of x; syb, syh: of y). What the call returns depends on mode:
 *
 * LFL_MOMENT_MAPS: the maps, contiguous [B, S, Ho, Wo] (var_y, mu_y: [B, 1, Ho, Wo]);
 *   mu_x and mu_y may be NULL. params and row_sums are unused.
 * LFL_VIF_LOG_SUMS (params: sigma_nsq, eps): per output row and channel of x,
 *   row_sums[(r·S + s)·2 + 0] = sum of log10(1 + g²·σ1²/(sv² + σn²)) and
 *   row_sums[(r·S + s)·2 + 1] = sum of log10(1 + σ1²/σn²), with x the reference,
 *   y the distorted image and information.vif_levels' masks (see there).
 *   The logs are taken of running products, renormalised by their binary exponent
 *   at every tile (every term is >= 1), so log10 runs 8 times per row.
 * LFL_SSIM_SUMS (params: c1, c2, cov_norm): row_sums[(r·S + s)·2 + 0] = sum of
 *   cs = (2σxy + c2) / (σx² + σy² + c2) and [.. + 1] = sum of
 *   (2μxμy + c1)(2σxy + c2) / ((μx² + μy² + c1)(σx² + σy² + c2)), every σ scaled
 *   by cov_norm (sample covariance for scikit-image, 1 for pytorch_msssim).
 *
 * Returns 0, or -1 when the row buffers cannot be allocated. */
LFL_CLONES
int lfl_local_moments(const double *x, long sxb, long sxs, long sxh,
                      const double *y, long syb, long syh,
                      long B, long S, long H, long W, const double *w, long K,
                      long r0, long r1, int mode, const double *params,
                      double *mu_x, double *mu_y, double *var_x, double *var_y, double *cov,
                      double *row_sums) {
    (void)B;
    const long Ho = H - K + 1, Wo = W - K + 1, Wb = W + LANES;
    /* Vertical sums of x, x², x·y, y, y², then y's horizontal sums (kept for s > 0).
     * calloc: the LANES entries past W stay zero for the last, partial tile. */
    double *buffer = calloc(7 * (size_t)Wb, sizeof(double));
    if (!buffer) return -1;
    double *vx = buffer, *vxx = vx + Wb, *vxy = vxx + Wb, *vy = vxy + Wb, *vyy = vy + Wb;
    double *hy = vyy + Wb, *hyy = hy + Wb;
    const v8 p0 = SPLAT(params ? params[0] : 0.0), p1 = SPLAT(params ? params[1] : 0.0);
    const v8 p2 = SPLAT(params && mode == LFL_SSIM_SUMS ? params[2] : 0.0);
    const v8 one = SPLAT(1.0), zero = SPLAT(0.0);
    v8 lane;
    for (int l = 0; l < LANES; l++) lane[l] = l;

    for (long r = r0; r < r1; r++) {
        const long b = r / Ho, i = r % Ho;
        const double *yb = y + b * syb + i * syh;
        for (long s = 0; s < S; s++) {
            const double *xb = x + b * sxb + s * sxs + i * sxh;
            const int first = (s == 0); /* y's own sums once per row */
            long j = 0;
            for (; j + LANES <= W; j += LANES) {
                v8 ax = zero, axx = zero, axy = zero, ay = zero, ayy = zero;
                for (long k = 0; k < K; k++) {
                    const v8 xv = LOAD(xb + k * sxh + j), yv = LOAD(yb + k * syh + j);
                    const v8 wx = SPLAT(w[k]) * xv, wy = SPLAT(w[k]) * yv;
                    ax += wx; axx += wx * xv; axy += wx * yv;
                    ay += wy; ayy += wy * yv;
                }
                STORE(vx + j, ax); STORE(vxx + j, axx); STORE(vxy + j, axy);
                if (first) { STORE(vy + j, ay); STORE(vyy + j, ayy); }
            }
            for (; j < W; j++) {
                double ax = 0, axx = 0, axy = 0, ay = 0, ayy = 0;
                for (long k = 0; k < K; k++) {
                    const double xv = xb[k * sxh + j], yv = yb[k * syh + j];
                    const double wx = w[k] * xv, wy = w[k] * yv;
                    ax += wx; axx += wx * xv; axy += wx * yv;
                    ay += wy; ayy += wy * yv;
                }
                vx[j] = ax; vxx[j] = axx; vxy[j] = axy;
                if (first) { vy[j] = ay; vyy[j] = ayy; }
            }

            const long o = ((b * S + s) * Ho + i) * Wo, oy = (b * Ho + i) * Wo;
            v8 acc0 = zero, acc1 = zero;      /* SSIM: sums of cs and ssim */
            v8 prod0 = one, prod1 = one;      /* VIF: running products of the terms */
            v8i exp0 = {0}, exp1 = {0};       /* ... and their binary exponents */
            for (j = 0; j < Wo; j += LANES) {
                v8 mx = zero, mxx = zero, mxy = zero, my = zero, myy = zero;
                for (long k = 0; k < K; k++) {
                    const v8 wk = SPLAT(w[k]);
                    mx += wk * LOAD(vx + j + k); mxx += wk * LOAD(vxx + j + k);
                    mxy += wk * LOAD(vxy + j + k);
                    if (first) { my += wk * LOAD(vy + j + k); myy += wk * LOAD(vyy + j + k); }
                }
                if (first) { STORE(hy + j, my); STORE(hyy + j, myy); }
                else { my = LOAD(hy + j); myy = LOAD(hyy + j); }
                const v8i valid = MASK(lane < SPLAT((double)(Wo - j)));
                if (mode == LFL_MOMENT_MAPS) {
                    const v8 out[5] = {mxx - mx * mx, mxy - mx * my, mx, myy - my * my, my};
                    double *dst[5] = {var_x + o + j, cov + o + j, mu_x ? mu_x + o + j : NULL,
                                      first ? var_y + oy + j : NULL, first && mu_y ? mu_y + oy + j : NULL};
                    const long n = Wo - j < LANES ? Wo - j : LANES;
                    for (int m = 0; m < 5; m++) {
                        if (!dst[m]) continue;
                        if (n == LANES) STORE(dst[m], out[m]);
                        else { double t[LANES]; memcpy(t, &out[m], sizeof t); memcpy(dst[m], t, n * sizeof(double)); }
                    }
                } else if (mode == LFL_VIF_LOG_SUMS) {
                    /* information.vif_levels, lane by lane (p0 = σn², p1 = eps). */
                    const v8 s1 = MAX(mxx - mx * mx, zero), s2 = MAX(myy - my * my, zero);
                    const v8 s12 = mxy - mx * my;
                    v8 g = s12 / (s1 + p1);
                    const v8i keep = MASK(s1 >= p1) & MASK(s2 >= p1) & MASK(g >= zero);
                    g = SELECT(keep, g, zero);
                    const v8 sv = MAX(s2 - g * s12, p1);
                    /* Lanes past the row's end get no signal, so both terms are 1 there. */
                    const v8 signal = SELECT(MASK(s1 >= p1) & valid, s1, zero);
                    prod0 *= g * g * signal / (sv + p0) + one;
                    prod1 *= signal / p0 + one;
                    /* Keep the products in [1, 2): move their exponents out, exactly. */
                    const v8i mantissa = (v8i){0} + 0x000FFFFFFFFFFFFFLL, unit = (v8i){0} + 0x3FF0000000000000LL;
                    exp0 += ((v8i)prod0 >> 52) - 1023; prod0 = (v8)(((v8i)prod0 & mantissa) | unit);
                    exp1 += ((v8i)prod1 >> 52) - 1023; prod1 = (v8)(((v8i)prod1 & mantissa) | unit);
                } else {
                    /* structural.ssim_levels / ms_ssim_levels (p0 = c1, p1 = c2, p2 = cov_norm). */
                    const v8 sx = (mxx - mx * mx) * p2, sy = (myy - my * my) * p2, sxy = (mxy - mx * my) * p2;
                    const v8 cs_num = sxy * 2.0 + p1, cs_den = sx + sy + p1;
                    const v8 l_num = mx * my * 2.0 + p0, l_den = mx * mx + my * my + p0;
                    acc0 += SELECT(valid, cs_num / cs_den, zero);
                    acc1 += SELECT(valid, l_num * cs_num / (l_den * cs_den), zero);
                }
            }
            if (mode != LFL_MOMENT_MAPS) {
                double sum0 = 0, sum1 = 0;
                for (int l = 0; l < LANES; l++) {
                    if (mode == LFL_VIF_LOG_SUMS) {
                        sum0 += log10(prod0[l]) + (double)exp0[l] * 0.30102999566398119521;  /* log10(2) */
                        sum1 += log10(prod1[l]) + (double)exp1[l] * 0.30102999566398119521;
                    } else {
                        sum0 += acc0[l];
                        sum1 += acc1[l];
                    }
                }
                row_sums[(r * S + s) * 2] = sum0;
                row_sums[(r * S + s) * 2 + 1] = sum1;
            }
        }
    }
    free(buffer);
    return 0;
}

/* 'valid' separable correlation of x [N, H, W] (strides sxn, sxh, 1) with w (K taps),
 * keeping every stride-th output row and column: out[n, i, j] = sum_{k,l} w[k] w[l]
 * x[n, i·stride + k, j·stride + l], out contiguous [N, Ho, Wo] with
 * Ho = (H - K) / stride + 1 (likewise Wo), for the flattened output rows [r0, r1).
 * Returns 0, or -1 when the row buffers cannot be allocated. */
LFL_CLONES
int lfl_filter_valid(const double *x, long sxn, long sxh, long N, long H, long W,
                     const double *w, long K, long stride, long r0, long r1, double *out) {
    (void)N;
    const long Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1, Wf = W - K + 1;
    double *buffer = malloc(2 * (size_t)W * sizeof(double));
    if (!buffer) return -1;
    double *v = buffer, *h = buffer + W;
    for (long r = r0; r < r1; r++) {
        const long n = r / Ho, i = r % Ho;
        const double *xr = x + n * sxn + i * stride * sxh;
        long j = 0;
        for (; j + LANES <= W; j += LANES) {
            v8 a = SPLAT(0.0);
            for (long k = 0; k < K; k++) a += SPLAT(w[k]) * LOAD(xr + k * sxh + j);
            STORE(v + j, a);
        }
        for (; j < W; j++) {
            double a = 0;
            for (long k = 0; k < K; k++) a += w[k] * xr[k * sxh + j];
            v[j] = a;
        }
        /* Every column at full resolution, then every stride-th one: the strided
         * gather would not vectorise, and this pass is the cheaper of the two. */
        double *row = stride == 1 ? out + r * Wo : h;
        j = 0;
        for (; j + LANES <= Wf; j += LANES) {
            v8 a = SPLAT(0.0);
            for (long k = 0; k < K; k++) a += SPLAT(w[k]) * LOAD(v + j + k);
            STORE(row + j, a);
        }
        for (; j < Wf; j++) {
            double a = 0;
            for (long k = 0; k < K; k++) a += w[k] * v[j + k];
            row[j] = a;
        }
        if (stride != 1)
            for (j = 0; j < Wo; j++) out[r * Wo + j] = h[j * stride];
    }
    free(buffer);
    return 0;
}

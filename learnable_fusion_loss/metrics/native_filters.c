/* Float64 separable 'valid' filters for the fusion metrics (CPU).
 *
 * Why this exists: VIF, SSIM and MS-SSIM spend most of their time filtering
 * float64 maps (x, y, x², y², x·y) with small Gaussian or box windows. PyTorch
 * has no fast float64 convolution on CPU, and the banded-GEMM path in
 * functional.py writes and re-reads every intermediate map, so it is bound by
 * memory traffic. These kernels read each input row once per window row, form
 * the products on the fly, keep one image row of vertical sums in cache and
 * write only the moments a metric asks for: 4-6x less time than the GEMM path.
 *
 * Built at run time by native.py with the system C compiler (no torch headers,
 * about a second), loaded with ctypes. The GIL is released during every call,
 * so native.py splits the output rows over threads. On x86-64 each function is
 * compiled for AVX-512, AVX2 and baseline and picked when the library loads.
 *
 * Arithmetic: the same sums as a direct correlation, in a fixed order (window
 * rows, then window columns), with fused multiply-adds where the CPU has them.
 */
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LFL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LFL_CLONES
#endif

/* Eight doubles, one AVX-512 register; the compiler splits it where lanes are narrower.
 * Macros, not inline functions: every clone must inline them with its own ISA. */
typedef double v8 __attribute__((vector_size(64)));
#define LANES 8
#define LOAD(p) ({ v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define STORE(p, v) do { v8 t_ = (v); memcpy((p), &t_, sizeof t_); } while (0)
#define SPLAT(a) ((v8){0} + (a))

/* Local moments of x [B, S, H, W] against y [B, 1, H, W] under the separable window
 * w (K taps per axis), 'valid' (Ho = H - K + 1, Wo = W - K + 1), for the flattened
 * output rows [r0, r1) of B x Ho:
 *   mu_x = w*x, mu_y = w*y, var_x = w*(x²) - mu_x², var_y = w*(y²) - mu_y²,
 *   cov = w*(x·y) - mu_x·mu_y.
 * Outputs are contiguous [B, S, Ho, Wo] (var_y, mu_y: [B, 1, Ho, Wo]); mu_x and
 * mu_y may be NULL. Inputs may be strided views with unit column stride
 * (sxb, sxs, sxh: batch, channel, row strides of x; syb, syh: of y).
 * Returns 0, or -1 when the row buffers cannot be allocated. */
LFL_CLONES
int lfl_local_moments(const double *x, long sxb, long sxs, long sxh,
                      const double *y, long syb, long syh,
                      long B, long S, long H, long W, const double *w, long K,
                      long r0, long r1, double *mu_x, double *mu_y,
                      double *var_x, double *var_y, double *cov) {
    (void)B;
    const long Ho = H - K + 1, Wo = W - K + 1;
    double *buffer = malloc(5 * (size_t)W * sizeof(double));
    if (!buffer) return -1;
    double *vx = buffer, *vxx = vx + W, *vxy = vxx + W, *vy = vxy + W, *vyy = vy + W;
    for (long r = r0; r < r1; r++) {
        const long b = r / Ho, i = r % Ho;
        const double *yb = y + b * syb + i * syh;
        for (long s = 0; s < S; s++) {
            const double *xb = x + b * sxb + s * sxs + i * sxh;
            const int first = (s == 0); /* y's own moments once per row */
            long j = 0;
            for (; j + LANES <= W; j += LANES) {
                v8 ax = SPLAT(0.0), axx = ax, axy = ax, ay = ax, ayy = ax;
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
            j = 0;
            for (; j + LANES <= Wo; j += LANES) {
                v8 mx = SPLAT(0.0), mxx = mx, mxy = mx, my = mx, myy = mx;
                for (long k = 0; k < K; k++) {
                    const v8 wk = SPLAT(w[k]);
                    mx += wk * LOAD(vx + j + k); mxx += wk * LOAD(vxx + j + k);
                    mxy += wk * LOAD(vxy + j + k);
                    my += wk * LOAD(vy + j + k); myy += wk * LOAD(vyy + j + k);
                }
                STORE(var_x + o + j, mxx - mx * mx);
                STORE(cov + o + j, mxy - mx * my);
                if (mu_x) STORE(mu_x + o + j, mx);
                if (first) {
                    STORE(var_y + oy + j, myy - my * my);
                    if (mu_y) STORE(mu_y + oy + j, my);
                }
            }
            for (; j < Wo; j++) {
                double mx = 0, mxx = 0, mxy = 0, my = 0, myy = 0;
                for (long k = 0; k < K; k++) {
                    mx += w[k] * vx[j + k]; mxx += w[k] * vxx[j + k]; mxy += w[k] * vxy[j + k];
                    my += w[k] * vy[j + k]; myy += w[k] * vyy[j + k];
                }
                var_x[o + j] = mxx - mx * mx;
                cov[o + j] = mxy - mx * my;
                if (mu_x) mu_x[o + j] = mx;
                if (first) {
                    var_y[oy + j] = myy - my * my;
                    if (mu_y) mu_y[oy + j] = my;
                }
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

/* gpu_ew.h - the residual stream's passes of the GPU policy: the token
 * embedding and its backward, the residual adds fused with the next RMSNorm
 * (and the MoE combine), the RMSNorm backward with its weight gradient
 * (internal to policy/; round 8, issue 10; POLICY_GPU_EW=old in gpu.cu
 * restores gpu.cu's k_embed, k_embed_bwd, k_add_rms, k_add_rms_moe,
 * k_rms_fwd, k_rms_bwd_dw / k_rms_bwd).
 *
 * Every pass is a warp per row of C fp32 columns: each lane loads its
 * chunks of 4 columns (16-byte loads) before any use, the row's sums by warp
 * shuffles, no block barrier per row. C must be a multiple of 4, at most
 * 1024 (policy_ew_supported); the (T, C) activations 16-byte aligned; the
 * weights (w, emb, dw, demb) may sit anywhere in the arena (scalar or
 * checked accesses). Same results as the old kernels up to the order of
 * the row sums (and the atomics' order). All calls are asynchronous on the
 * legacy default stream and return 0 or a negative code with a message. */
#ifndef SWERVE_POLICY_GPU_EW_H
#define SWERVE_POLICY_GPU_EW_H

#include <stdint.h>

/* 1 when these passes take rows of C columns */
int policy_ew_supported(int C);

/* x[t] = emb[tok[t]] (T, C) */
int policy_ew_embed(float *x, const float *emb, const int *tok, int T, int C);

/* demb[tok[t]] += dx[t] (atomics) */
int policy_ew_embed_bwd(float *demb, const float *dx, const int *tok, int T, int C);

/* the residual add fused with the next RMSNorm, per row t:
 *   v = a[t] (or emb[tok[t]] where a is NULL)
 *       + b[t] (where b is not NULL)
 *       + sum_j gate[t K + j] yp[t K + j] (where yp is not NULL; the MoE's
 *         combine, j in order, summed before it is added to a)
 *   out[t] = v (where out is not NULL), rstd[t] = 1 / rms(v),
 *   y[t] = v rstd w in bf16 (y_bf16) or fp32, and yb[t] the same in bf16
 *   (where yb is not NULL).
 * With a only (b, yp NULL) it is the plain RMSNorm forward. */
int policy_ew_add_rms(float *out, void *y, int y_bf16, uint16_t *yb, float *rstd, const float *a,
                      const float *emb, const int *tok, const float *b, const float *yp,
                      const float *gate, int K, const float *w, int T, int C, float eps);

/* the RMSNorm backward, per row: v = r dy w - r^3 x (sum dy w x) / C; dx = v
 * (acc 0) or dx += v (acc 1) where dx is not NULL, v in bf16 to xb where xb
 * is not NULL; dw += sum_t dy x r where dw is not NULL (per block partial
 * sums, one atomic add per column and block) */
int policy_ew_rms_bwd(float *dx, uint16_t *xb, int acc, float *dw, const float *dy, const float *x,
                      const float *w, const float *rstd, int T, int C);

/* round 16 (issue 10, POLICY_GPU_ACT16, opt-in): policy_ew_add_rms with the
 * residual stream (a, out) in bf16 where x16 (the row's value rounded to
 * nearest even as stored, then normalised: the norm sees what the backward
 * reads) and the slots yp in bf16 where yp16 (fp32 sums in registers); x16
 * with fp32 slots is refused; neither: policy_ew_add_rms */
int policy_ew_add_rms16(void *out, int x16, void *y, int y_bf16, uint16_t *yb, float *rstd,
                        const void *a, const float *emb, const int *tok, const float *b,
                        const void *yp, int yp16, const float *gate, int K, const float *w, int T,
                        int C, float eps);
/* round 16: policy_ew_rms_bwd with the residual stream's value x in bf16 */
int policy_ew_rms_bwd16(float *dx, uint16_t *xb, int acc, float *dw, const float *dy,
                        const uint16_t *x, const float *w, const float *rstd, int T, int C);

/* round 19 (issue 10, POLICY_GPU_ACT16=all): the RMSNorm backward with the
 * residual gradient dx in bf16 as well as x: dx = v (acc 0) or dx += v (acc
 * 1; the sum in fp32, rounded to nearest even once as stored), xf (where not
 * NULL) the stored value as fp32 (for the fp32 readers: the softmax
 * attention's backward); dx required */
int policy_ew_rms_bwd16g(uint16_t *dx, float *xf, int acc, float *dw, const float *dy,
                         const uint16_t *x, const float *w, const float *rstd, int T, int C);
/* round 25 (issue 10, POLICY_GPU_DN16): policy_ew_rms_bwd16g with the
 * incoming gradient dy in bf16 where dy16 (fp32 otherwise); the arithmetic
 * is the same on dy's values, so dy16 on a bf16-rounded dy gives the fp32
 * kernel's bits. POLICY_GPU_EW20's pipelined form takes fp32 dy only: with
 * dy16 the round-19 kernel runs */
int policy_ew_rms_bwd16gy(uint16_t *dx, float *xf, int acc, float *dw, const void *dy, int dy16,
                          const uint16_t *x, const float *w, const float *rstd, int T, int C);
/* round 19: demb[tok[t]] += dx[t] with dx in bf16 */
int policy_ew_embed_bwd16(float *demb, const uint16_t *dx, const int *tok, int T, int C);

/* round 20 (issue 10, POLICY_GPU_EW20, opt-in), as bits: "off" (0, the
 * default: round 19's kernels) | "rms" (1: policy_ew_rms_bwd16g pipelined,
 * a persistent grid whose warps keep two rows' loads in flight; dx and its
 * fp32 copy bit for bit, dw within fp32 rounding) | "comb" (2:
 * policy_moe_combine_bwd2_b16g a warp per token, pipelined, bit for bit) |
 * "bwd" (3: both) | "fwd" (4: policy_ew_add_rms16's layer forms, a bf16
 * stream plus b or K <= 2 bf16 slots, pipelined, bit for bit) | "all" (7);
 * a misspelt value is SWERVE_EINVAL with a message naming it. Read at each
 * call. */
int policy_ew20_mode(void);
/* round 20: a persistent grid for kern: the blocks of threads with smem
 * bytes of dynamic shared memory an SM holds times the SMs, at most want
 * (at least 1), in *nb; raises kern's shared-memory limit (once) */
int policy_ew20_grid(const void *kern, int threads, size_t smem, int want, unsigned *nb);

#endif

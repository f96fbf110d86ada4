/* gpu_moe.h - the MoE experts of the GPU policy as grouped GEMMs (internal
 * to policy/; gpu.cu calls them in bf16 mode unless POLICY_GPU_MOE=lt).
 *
 * Every expert of a projection runs in ONE launch: the segment offsets
 * (offs, E + 1 ints: expert e owns the compact rows [offs[e], offs[e + 1])
 * of the T K assignments sorted by expert) are read on the device, the grid
 * is sized for any routing (R / 128 + E row tiles; tiles past an expert's
 * rows exit), so no offsets come back to the host. perm[row] is the
 * assignment t K + j of a row (its token t = perm[row] / K). bf16 operands
 * (uint16_t), fp32 accumulation (mma.sync m16n8k16, ldmatrix, a 3-stage
 * cp.async pipeline). The row gather, SwiGLU and the backward SwiGLU are
 * fused into the GEMMs; the projections' outputs that feed the combine and
 * the scatter are written per assignment slot (row perm[row]), so the K
 * slots of a token are summed by one deterministic pass.
 *
 * Shapes: x (T, D) bf16 normed input; W1, W3 (E, F, D), W2 (E, D, F) bf16;
 * h1, h3, hh (R, F) bf16 in row order; yp, dxp (R, D) fp32 in slot order;
 * dyp (R, D) bf16 in row order; dh13 (R, 2F) bf16 = [dh1 | dh3]; dW fp32
 * (accumulated: +=, or stored: beta 0). D and F must be multiples of 8 and every pointer
 * 16-byte aligned (policy_moe_supported). All calls are asynchronous on the
 * legacy default stream (the products: see policy_moe_stream) and return 0
 * or a negative code with a message. */
#ifndef SWERVE_POLICY_GPU_MOE_H
#define SWERVE_POLICY_GPU_MOE_H

#include <stdint.h>

struct policy_moe_dims {
	int T, K, E, D, F; /* tokens, top-k, experts, width, expert hidden */
	const int *offs;   /* (E + 1) device */
	const int *perm;   /* (T K) device: row -> assignment */
	/* round 7: 1 when the x of policy_moe_up and policy_moe_up_dw is the
	 * gathered copy xg (T K, D) in row order (policy_moe_gather), so both
	 * read contiguous rows (by TMA in wgt / wgtd); 0: x (T, D) by token,
	 * gathered inside the GEMMs (cp.async by perm[row] / K) */
	int gathered;
	/* round 24 (POLICY_GPU_MOE_DW_WIN, the weight gradients only:
	 * policy_moe_down_dw, _down_dw_pair, _up_dw with the default kernel):
	 * nseg > 1 sums nseg micro-batches' rows in one launch, micro-batch s's
	 * rows at s rstride.. of A and B (dyp / dh13, hh / xg) and its offsets
	 * at offs + s ostride; 0: one (T K rows, offs; the one-micro-batch
	 * kernels); 1: one, in the window's kernels */
	int nseg, rstride, ostride;
	/* round 24 (nseg >= 1): where not NULL, each dW tile's sum of squares of
	 * the values it leaves (the launch's tile order; down dW: E x ceil(D /
	 * 128) x ceil(F / 256) tiles a layer, up dW: E x ceil(2F / 128) x
	 * ceil(D / 256)), the global norm's share of the experts */
	float *sq;
};

/* POLICY_GPU_MOE_GATHER: "copy" (1, the default since round 7: one pass
 * writes xg after the routing sort) or "load" (0: round 6's row gather
 * inside the GEMMs); an unknown value is SWERVE_EINVAL with a message */
int policy_moe_gather_mode(void);
/* xg[row] = x[perm[row] / K] (bf16, (T K, D) in row order) */
int policy_moe_gather(const struct policy_moe_dims *d, uint16_t *xg, const uint16_t *x);

/* the kernel variant POLICY_GPU_MOE_KERNEL selects: 0 = mma.sync ("mma"),
 * 1 = wgmma on 128 x 128 tiles ("wg"), 2 = wgmma on 128 x 256
 * tiles with one k block's products in flight ("wg256"); round 5 (each
 * measured slower than wg, kept selectable): 3 = "wgp", wg's tiles with a
 * k block's products in flight across the barrier and m64n128k16; 4 =
 * "wgm", the stages handed over by mbarriers, every thread loading two
 * blocks ahead; 5 = "ws2", two producer warps and mbarriers; round 6: 6 =
 * "wgt", wg with the operands that are not gathered (the weights, A of
 * down, down dX, up dX) loaded by TMA from one thread (F % 64 == 0; else
 * wg); 7 = "wgtd" (the default in rounds 6-9), wgt and the weight gradients' contiguous
 * operands (dyp, dh13, hh rows) by TMA too (see gpu_moe.cu); round 9
 * (opt-in; correct on an H100, -1% a layer): 9 = "wgtdp", wgtd with policy_moe_up
 * (gathered x) and policy_moe_down_dx in persistent CTAs (k_mgp: a tile's
 * TMA stores left in flight while the CTA's next tile starts; needs the TMA
 * epilogues, POLICY_GPU_MOE_EPI=tma; POLICY_GPU_MOE_CTAS=n caps its grid,
 * for tests); round 10 (policy/gpu_moe_ws.h): 10 = "wsb", 11 = "wsb2" (the
 * default since round 10), 12 = "wsb3"; an unknown name is SWERVE_EINVAL
 * with a message, and every product refuses to run */
int policy_moe_variant(void);
/* POLICY_GPU_MOE_EPI (round 8): "tma" (1, the default since round 8: in wgtd, the bf16
 * outputs of policy_moe_up and policy_moe_down_dx written from the
 * accumulators by stmatrix and TMA tensor stores, DOWN_DX's h1 / h3 tiles
 * loaded by TMA; mg_epi's rounding) or "smem" (0, round 7: every epilogue
 * through an fp32 tile in shared memory); an unknown value is SWERVE_EINVAL
 * with a message, and every product refuses to run */
int policy_moe_epi(void);
/* 1 when the grouped kernels take these dimensions */
int policy_moe_supported(int D, int F);

/* the cudaStream_t (as void *) that policy_moe_up, _down, _down_dx,
 * _up_dx, _down_dw and _up_dw launch on from now on (NULL: the legacy
 * default stream, the default); returns the previous one. The other passes
 * (combine, scatter, gather, to_bf16) stay on the legacy default stream. */
void *policy_moe_stream(void *stream);

/* forward up projection: h1 = x[tok] W1_e^T, h3 = x[tok] W3_e^T (bf16),
 * hh = SiLU(h1) h3, from one GEMM per launch over [W1_e | W3_e]; x (T, D),
 * or xg (T K, D) in row order when d->gathered */
int policy_moe_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                  const uint16_t *x, const uint16_t *w1, const uint16_t *w3);
/* forward down projection: yp[perm[row]] = hh[row] W2_e^T (fp32) */
int policy_moe_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                    const uint16_t *w2);
/* y[t] = sum_j gate[t, j] yp[t K + j] (fp32) */
int policy_moe_combine(float *y, const float *yp, const float *gate, int T, int K, int D);
/* dyp[row] = gate[perm[row]] dy[tok] (bf16), dgate[t K + j] = dy[t] . yp[t K + j] */
int policy_moe_combine_bwd(const struct policy_moe_dims *d, uint16_t *dyp, float *dgate,
                           const float *dy, const float *yp, const float *gate);
/* backward through W2 and SwiGLU: dh = dyp W2_e, dh13 = [dh h3 SiLU'(h1) | dh SiLU(h1)] */
int policy_moe_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                       const uint16_t *w2, const uint16_t *h1, const uint16_t *h3);
/* dW2_e += dyp_e^T hh_e (beta 1), or = (beta 0: stored without reading dW,
 * for an arena just cleared; an expert without rows gets zeros) */
int policy_moe_down_dw(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                       const uint16_t *hh, int beta);
/* round 23 (POLICY_GPU_MOE_DW_PAIR): policy_moe_down_dw of two layers (the
 * same T, K, E, D, F; d2's routing, dw2b, dyp2, hh2 the second's) in one
 * launch, so the two layers' 2 x 192 dW tiles fill 3 waves of 132 SMs
 * instead of 2 + 2; bit for bit the two launches */
int policy_moe_down_dw_pair(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                            const uint16_t *hh, const struct policy_moe_dims *d2, float *dw2b,
                            const uint16_t *dyp2, const uint16_t *hh2, int beta);
/* round 24: 1 when the variant's weight gradients (policy_moe_down_dw,
 * _down_dw_pair, _up_dw from xg) take a window of micro-batches
 * (policy_moe_dims's nseg > 1): POLICY_GPU_MOE_KERNEL=wsb3w, wsb3 and the
 * forms built on wsb3w (wsb9d, the default since round 27, among them) */
int policy_moe_dw_window_supported(void);
/* dxp[perm[row]] = dh13[row] [W1_e; W3_e] (fp32) */
int policy_moe_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                     const uint16_t *w1, const uint16_t *w3);
/* round 16 (issue 10, POLICY_GPU_ACT16=slots / resid, resid the default): policy_moe_down and
 * policy_moe_up_dx with yp / dxp (R, D) stored in bf16 (fp32 accumulation,
 * rounded once to nearest even); only the variants that run wsb2's kernel
 * for these products (wsb2, wsb3, wsb5, wsb6u, wsb3w and the forms built on
 * it, wsb9d the default; up dX:
 * F % 64 == 0); others are SWERVE_EINVAL with a message */
int policy_moe_slots16_supported(int F); /* 1 when the variant and F take them */
int policy_moe_down_b16(const struct policy_moe_dims *d, uint16_t *yp, const uint16_t *hh,
                        const uint16_t *w2);
int policy_moe_up_dx_b16(const struct policy_moe_dims *d, uint16_t *dxp, const uint16_t *dh13,
                         const uint16_t *w1, const uint16_t *w3);
/* dW1_e += dh1_e^T x[tok], dW3_e += dh3_e^T x[tok] (beta as down_dw; x as
 * policy_moe_up's: by token, or the gathered copy when d->gathered) */
int policy_moe_up_dw(const struct policy_moe_dims *d, float *dw1, float *dw3, const uint16_t *dh13,
                     const uint16_t *x, int beta);
/* dx[t] = sum_j dxp[t K + j] (fp32; beta 1 adds to dx) */
int policy_moe_scatter(float *dx, const float *dxp, int T, int K, int D, int beta);
/* out (n) bf16 = in (n) fp32 */
int policy_moe_to_bf16(uint16_t *out, const float *in, size_t n);

#endif

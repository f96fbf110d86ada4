/* gpu_moe_ws.h - round 10 (wsb2, the default in rounds 10-15; round 16's wsb3w and round 27's
 * default wsb9d also run both weight gradients here): the warp-specialised, persistent 128 x
 * 256-tile grouped GEMM of the MoE up projection (policy/gpu_moe_ws.cu; internal to policy/).
 * policy/gpu_moe.cu calls it for policy_moe_up when POLICY_GPU_MOE_KERNEL=wsb and x is the gathered
 * copy xg; every other product of that variant runs wgtd's kernels. POLICY_GPU_MOE_KERNEL=wsb2 also
 * runs policy_moe_down and policy_moe_up_dx (F % 64 == 0) here; round 11's wsb3 also
 * policy_moe_down_dx, policy_moe_down_dw and policy_moe_up_dw (from xg). */
#ifndef SWERVE_POLICY_GPU_MOE_WS_H
#define SWERVE_POLICY_GPU_MOE_WS_H

#include "policy/gpu_moe.h"

#include <stdint.h>

/* h1 = xg W1_e^T, h3 = xg W3_e^T (bf16), hh = SiLU(h1) h3, the rows of
 * expert e = [offs[e], offs[e + 1]) of xg (T K, D) in row order
 * (d->gathered must be 1); cap > 0: at most cap persistent CTAs (tests),
 * else one an SM. D, F multiples of 8, pointers 16-byte aligned; 0 or a
 * negative code with a message; asynchronous on stream (a cudaStream_t;
 * NULL: the legacy default stream). Round 15 (opt-in, measurements):
 * POLICY_GPU_MOE_WSB_SILU=fast | stsm | fastshfl picks a cheaper epilogue
 * (stmatrix stores and / or half the SiLU reciprocals on the FMA pipe; hh
 * within 1 bf16 ulp, stsm bit for bit; H100: none faster, see
 * gpu_moe_ws.cu); ftz: e^-x without the denormal fix-up (bit for bit; not
 * yet run on a GPU); unset or exact: the default; anything else is
 * refused */
int policy_moe_ws_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                     const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                     void *stream);
/* "wsb2" (round 10, the default): the same kernel for the plain products:
 * yp[perm[row]] = hh[row] W2_e^T (fp32, slot order) and dxp[perm[row]] =
 * dh13[row] [W1_e; W3_e] (fp32, slot order; F a multiple of 64); 128 x 256
 * tiles of D columns */
int policy_moe_ws_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                       const uint16_t *w2, int cap, void *stream);
int policy_moe_ws_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                        const uint16_t *w1, const uint16_t *w3, int cap, void *stream);
/* round 16 (issue 10, POLICY_GPU_ACT16=slots, opt-in): the same products
 * with the slot rows stored in bf16 (rounded once, to nearest even; the
 * accumulation fp32 as above): yp, dxp (R, D) bf16 in slot order */
int policy_moe_ws_down_b16(const struct policy_moe_dims *d, uint16_t *yp, const uint16_t *hh,
                           const uint16_t *w2, int cap, void *stream);
int policy_moe_ws_up_dx_b16(const struct policy_moe_dims *d, uint16_t *dxp, const uint16_t *dh13,
                            const uint16_t *w1, const uint16_t *w3, int cap, void *stream);
/* "wsb3" (round 11, opt-in): wsb2 with the other three products in the
 * same kernel: dh13 = [dh h3 SiLU'(h1) | dh SiLU(h1)] (bf16, (R, 2F)) with
 * dh = dyp W2_e (128 x 256 tiles of F; h1, h3 the forward's (R, F));
 * dW2_e (D, F) and [dW1_e; dW3_e] (F, D) each (+)= the expert's rows'
 * products (dyp^T hh, dh13^T xg: d->gathered must be 1), added to when
 * beta, else stored (an expert without rows: zeros); one CTA a 128 x 256
 * dW tile over the expert's whole segment (deterministic; the opt-in
 * POLICY_GPU_MOE_WSB_KCH split adds its pieces in a fixed order, no
 * atomics on dW); at most 256 experts for the weight gradients */
int policy_moe_ws_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                          const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                          void *stream);
int policy_moe_ws_down_dw(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                          const uint16_t *hh, int beta, int cap, void *stream);
int policy_moe_ws_up_dw(const struct policy_moe_dims *d, float *dw1, float *dw3,
                        const uint16_t *dh13, const uint16_t *xg, int beta, int cap, void *stream);
/* round 23: policy_moe_ws_down_dw of two layers in one launch (gpu_moe.h's
 * policy_moe_down_dw_pair): the tiles of both in one list, largest
 * segment first; at most 128 experts a layer */
int policy_moe_ws_down_dw_pair(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                               const uint16_t *hh, const struct policy_moe_dims *d2, float *dw2b,
                               const uint16_t *dyp2, const uint16_t *hh2, int beta, int cap,
                               void *stream);
/* "wsb4" (round 12, opt-in): up (from xg), down, up dX and down dX with
 * ping-pong consumers: each consumer warpgroup computes whole 64 x 256
 * tiles, the two alternating, so one's epilogue runs under the other's
 * MMAs; arguments and results as the functions above (H100: down 12%
 * faster than wsb2's, up and up dX 10-20% slower: B loaded per 64 rows;
 * see gpu_moe_ws.cu) */
int policy_moe_ws4_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                      const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                      void *stream);
int policy_moe_ws4_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                        const uint16_t *w2, int cap, void *stream);
int policy_moe_ws4_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                         const uint16_t *w1, const uint16_t *w3, int cap, void *stream);
int policy_moe_ws4_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream);
/* "wsb5" (round 13, opt-in): wsb2 with down dX here too, the tile's h1 / h3
 * fetched by TMA into the ring's slots after its k blocks (the epilogue
 * reads them from shared memory); arguments and results as
 * policy_moe_ws_down_dx (h1 and h3 2^40 bytes apart or more: that function
 * runs instead, said once on stderr) */
int policy_moe_ws5_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream);
/* "wsb8" (round 19, opt-in): down dX as wsb5 with the tile's h1 / h3
 * prefetched into L2 before its main loop (POLICY_GPU_MOE_WSB8_PF=tile, the
 * default; next: one tile ahead; none: no prefetch; misspelt: refused) */
int policy_moe_ws8_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream);
/* "wsb8r" (round 19, opt-in): round 11's down dX (h1 / h3 loaded into
 * registers by the epilogue) with the same L2 prefetch */
int policy_moe_ws8r_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                            const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                            void *stream);
/* "wsb8k" (round 19, opt-in): wsb5's down dX with L2 eviction priorities (W2
 * evict_last; h1 / h3 and dh13 evict_first) */
int policy_moe_ws8k_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                            const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                            void *stream);
/* "wsb6" (round 14, opt-in): up (from xg), down and up dX in the same
 * cooperative kernel, each tile's epilogue deferred under the next tile's
 * main loop (the outputs kept in registers, stored in 8 chunks between the
 * next tile's first k blocks' MMAs; fp32 products: half the rows' stores);
 * arguments and results (bit for bit) as policy_moe_ws_up / _down / _up_dx
 * (H100: each 3-5% faster than wsb2's, a layer's products 2%; end to end
 * within noise; see gpu_moe_ws.cu) */
int policy_moe_ws6_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                      const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                      void *stream);
int policy_moe_ws6_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                        const uint16_t *w2, int cap, void *stream);
int policy_moe_ws6_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                         const uint16_t *w1, const uint16_t *w3, int cap, void *stream);
/* "wsb6r" (round 14, opt-in, not yet run on a GPU): as the three above, each
 * deferred chunk run after the previous k block's stage is released rather
 * than before (the ring is not held longer by the chunks) */
int policy_moe_ws6r_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                       const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                       void *stream);
int policy_moe_ws6r_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                         const uint16_t *w2, int cap, void *stream);
int policy_moe_ws6r_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                          const uint16_t *w1, const uint16_t *w3, int cap, void *stream);
/* "wsb7" (round 16, opt-in): up (from xg), down and up dX in the ping-pong
 * kernel (each consumer warpgroup whole 64 x 256 tiles) run by clusters of
 * 2 CTAs on the two 64-row halves of the same 128 x 256 tile, each CTA
 * loading half of the tile's B block by TMA multicast into both, so B is
 * read from L2 once per 128 rows; arguments and results as policy_moe_ws_up
 * / _down / _up_dx (cap: at most cap CTAs, rounded down to whole clusters,
 * at least one; up dX: D % 64 == 0); POLICY_GPU_MOE_WSB_ST=3|4|5 stages
 * (default 5); POLICY_GPU_MOE_WSB7_ARRIVE=cluster|cta the release form (see
 * gpu_moe_ws.cu; cta the default since round 25). H100 (2026-11-27): up
 * and down correct, 2.2-2.4x slower than wsb2's under cluster, near them
 * under cta; policy_moe_ws7_up_dx gives WRONG results (one 8 KB
 * quarter of B stale in one CTA of each pair), kept for the next attempt */
int policy_moe_ws7_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                      const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                      void *stream);
int policy_moe_ws7_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                        const uint16_t *w2, int cap, void *stream);
int policy_moe_ws7_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                         const uint16_t *w1, const uint16_t *w3, int cap, void *stream);

#endif

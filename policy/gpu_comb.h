/* gpu_comb.h - round 10 (issue 10): the grouped MoE's passes around its
 * GEMMs in the backward, token-major (internal to policy/; gpu.cu selects
 * them by default, POLICY_GPU_MOE_COMB=new; "old" restores gpu_moe.cu's
 * k_mg_combine_bwd and k_mg_scatter).
 *
 * policy_moe_combine_bwd2: a block per token reads dy[t] once for its K
 * slots (gpu_moe.cu's k_mg_combine_bwd, a block per sorted row, read it K
 * times): dyp[rowof[t K + j]] = bf16(gate[t K + j] dy[t]) and dgate[t K + j]
 * = dy[t] . yp[t K + j], with k_mg_combine_bwd's arithmetic (128 threads,
 * thread i takes columns i + 128 n in order, the warps' sums added in warp
 * order), so the results are bit for bit the same. D <= 1024.
 *
 * policy_moe_scatter2: dx[t] (+)= sum_j dxp[t K + j], 16 bytes a thread (D
 * a multiple of 4, 16-byte aligned buffers), k_mg_scatter's order (bit for
 * bit the same). Under POLICY_GPU_ROUTE=v3 / v4 gpu.cu does not call it: the
 * route backward sums the slots (policy_route_bwd_slots).
 *
 * All calls are asynchronous on the legacy default stream and return 0 or a
 * negative code with a message. */
#ifndef SWERVE_POLICY_GPU_COMB_H
#define SWERVE_POLICY_GPU_COMB_H

#include <stdint.h>

#define COMB_DMAX 1024

/* POLICY_GPU_MOE_COMB: "old" (0) | "new" (1, the default); an unknown
 * value is SWERVE_EINVAL with a message */
int policy_moe_comb_mode(void);
/* 1 when the token-major passes take D */
int policy_moe_comb_supported(int D);
int policy_moe_combine_bwd2(uint16_t *dyp, float *dgate, const float *dy, const float *yp,
                            const float *gate, const int *rowof, int T, int K, int D);
/* round 16 (issue 10, POLICY_GPU_ACT16=slots, opt-in): the same with the
 * slots yp (T K, D) in bf16 (dgate's products and sums in fp32) */
int policy_moe_combine_bwd2_b16(uint16_t *dyp, float *dgate, const float *dy, const uint16_t *yp,
                                const float *gate, const int *rowof, int T, int K, int D);
/* round 19 (POLICY_GPU_ACT16=all): the same with dy (the residual
 * gradient) in bf16 too; the same sums as the fp32 kernel on the same
 * values (its bits) */
int policy_moe_combine_bwd2_b16g(uint16_t *dyp, float *dgate, const uint16_t *dy,
                                 const uint16_t *yp, const float *gate, const int *rowof, int T,
                                 int K, int D);
int policy_moe_scatter2(float *dx, const float *dxp, int T, int K, int D, int beta);

#endif

/* gpu_route.h - the MoE routing of the GPU policy in three short passes
 * (internal to policy/; round 7, issue 10; POLICY_GPU_ROUTE=old in gpu.cu
 * restores the router GEMM + k_route + one-block sort + router GEMMs).
 *
 * Forward, two launches over blocks of ROUTE_FWD_TOKENS tokens:
 * policy_route_fwd computes the router logits (a warp per token, the (E, D)
 * fp32 router weight in shared memory), softmax, top-k and gates exactly as
 * gpu.cu's k_route (ties to the lower index), and per block the expert
 * counts, each assignment's rank among its block's assignments of that
 * expert (stable: assignment order t K + j) and the block's sum of the
 * probabilities; policy_route_sort then turns them into the stable counting
 * sort of the T K assignments by expert (rowof, perm, offs; identical to the
 * one-block k_route_sort: rows within an expert in assignment order, padded
 * segments when not compact) and the balance loss (aux, auxc) from the
 * per-block sums in block order (deterministic).
 *
 * Backward, two launches: policy_route_bwd computes d logits per token (as
 * k_route_bwd), adds d logits . Wr into dn (T, D) and writes each block's
 * part of the router's weight gradient; policy_route_dw sums those parts in
 * block order into dW (+=; deterministic).
 *
 * Shapes: x (T, D) fp32 (the normed MoE input), Wr (E, D) fp32, prob (T, E),
 * sel (T K), gate (T K), dgate (T K), perm (rows), rowof (T K), offs (E + 2:
 * offsets, then the capacity, 0 for compact segments), auxc (E). Scratch:
 * policy_route_scratch_floats(T, E, D) floats (shared by the forward's
 * counts and the backward's weight-gradient parts; both live only inside
 * one call pair).
 *
 * v2 (1; gpu.cu's default in rounds 7-9, POLICY_GPU_ROUTE=v2; v1 for the first version): the
 * same results from kernels that keep more loads in flight (see
 * gpu_route.cu); the forward and the sort of one layer must use the same
 * variant (their per-block counts differ in block size). All calls are asynchronous on the legacy
 * default stream and return 0 or a negative code with a message.
 *
 * The last argument v2 of policy_route_fwd, _sort and _bwd names the
 * variant: 0 = v1, 1 = v2, 2 = v3 (round 10, POLICY_GPU_ROUTE=v3: the same
 * results as v2 bit for bit but aux, which is summed in another order in
 * double; a lighter forward, a sort without v2's serial tail, and
 * policy_route_bwd_slots, which folds the MoE backward's slot sum into the
 * route backward; see gpu_route.cu). v3's backward without slots is v2's.
 * 3 = v4 (POLICY_GPU_ROUTE=v4, gpu.cu's default since round 10; its test
 * cases passed on an H100 on 2026-11-27): v3 with a forward whose softmax /
 * top-k runs once per token instead of on every lane of a warp; the same
 * results. */
#ifndef SWERVE_POLICY_GPU_ROUTE_H
#define SWERVE_POLICY_GPU_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define ROUTE_EMAX 8 /* experts the fused kernels take (else: the old path) */

/* 1 when the fused routing takes these dimensions */
int policy_route_supported(int E, int K, int D);
/* 1 when variant v2 takes them too (D a multiple of 4, at most 1024) */
int policy_route_v2_supported(int E, int K, int D);
/* 1 when variant v3 (and v4) takes them (as v2) */
int policy_route_v3_supported(int E, int K, int D);
/* floats of scratch the routing needs for T tokens */
size_t policy_route_scratch_floats(int T, int E, int D);

int policy_route_fwd(float *prob, int *sel, float *gate, int *rowof, float *scratch, const float *x,
                     const float *Wr, int T, int E, int K, int D, int v2);
/* Rp: rows of the MoE buffers; compact: no padding; rnd: the capacity's
 * granularity; coef: the balance loss coefficient */
int policy_route_sort(int *perm, int *rowof, int *offs, float *auxc, double *aux,
                      const float *scratch, const int *sel, int T, int E, int K, int Rp,
                      int compact, int rnd, double coef, int v2);
int policy_route_bwd(float *dn, float *scratch, const float *x, const float *Wr, const float *prob,
                     const int *sel, const float *gate, const float *dgate, const float *auxc,
                     int T, int E, int K, int D, int v2);
/* v3: policy_route_bwd with dn (T, D) written as sum_j slots[t K + j] +
 * d logits Wr (slots (T K, D) fp32: the MoE's per-slot input gradient, in
 * gpu_moe.cu's k_mg_scatter order), not added to; the dW parts as
 * policy_route_bwd (then policy_route_dw) */
int policy_route_bwd_slots(float *dn, float *scratch, const float *slots, const float *x,
                           const float *Wr, const float *prob, const int *sel, const float *gate,
                           const float *dgate, const float *auxc, int T, int E, int K, int D);
int policy_route_dw(float *dW, const float *scratch, int T, int E, int D);

/* round 16 (issue 10, POLICY_GPU_ACT16, opt-in; v4 / v3 only):
 * policy_route_fwd (v4) with the router's input x (T, D) the experts' bf16
 * copy (level resid), and policy_route_bwd_slots with the slots (T K, D) in
 * bf16 (level slots) and x in bf16 where x16; fp32 arithmetic inside */
int policy_route_fwd_b16(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                         const uint16_t *x, const float *Wr, int T, int E, int K, int D);
/* round 26 (issue 10, POLICY_GPU_NORM_ROUTE=fused): the ffn RMSNorm of the
 * bf16 rows a (T, D; no add) into y (bf16) and rstd, as policy_ew_add_rms16
 * writes them, and policy_route_fwd_b16 on y, in one pass over a: every
 * output bit for bit the two calls' (a, y and Wr 16-byte aligned; nw the
 * norm's weight). _supported: the shapes it takes (else SWERVE_EINVAL) */
int policy_route_fwd_norm_supported(int E, int K, int D);
int policy_route_fwd_norm_b16(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                              uint16_t *y, float *rstd, const uint16_t *a, const float *nw,
                              const float *Wr, int T, int E, int K, int D, float eps);
int policy_route_bwd_slots_b16(float *dn, float *scratch, const uint16_t *slots, const void *x,
                               int x16, const float *Wr, const float *prob, const int *sel,
                               const float *gate, const float *dgate, const float *auxc, int T,
                               int E, int K, int D);
/* round 25 (issue 10, POLICY_GPU_DN16): policy_route_bwd_slots_b16 with dn
 * stored in bf16 where dn16 (each value rounded to nearest even once: the
 * fp32 kernel's values rounded); dn16 needs the staged kernel
 * (policy_route_bwd_norm_supported's conditions), else SWERVE_EINVAL */
int policy_route_bwd_slots_b16o(void *dn, int dn16, float *scratch, const uint16_t *slots,
                                const void *x, int x16, const float *Wr, const float *prob,
                                const int *sel, const float *gate, const float *dgate,
                                const float *auxc, int T, int E, int K, int D);
/* round 23 (POLICY_GPU_RT_NORM=fused): policy_route_bwd_slots_b16 with the
 * ffn norm's backward (policy_ew_rms_bwd16g's, acc 1, no fp32 copy) on each
 * row of dn in registers instead of dn written: dx (T, D) bf16 += the norm
 * backward of dn at the norm's input x (bf16), weight w and rstd; dw (D)
 * += its weight gradient (one atomic add a column and block). The row sum
 * is a block's (8 warps) rather than a warp's, so dx may differ from the
 * two passes in the last bit. policy_route_bwd_norm_supported says where it
 * runs (K 1 or 2, D % 8 == 0, the staged path); elsewhere the caller runs
 * the two passes. */
struct policy_route_nb {
	uint16_t *dx;
	float *dw;
	const uint16_t *x;
	const float *w, *rstd;
};
int policy_route_bwd_norm_supported(int E, int K, int D, const void *slots, const void *x);
int policy_route_bwd_slots_b16n(float *scratch, const uint16_t *slots, const void *x, int x16,
                                const float *Wr, const float *prob, const int *sel,
                                const float *gate, const float *dgate, const float *auxc, int T,
                                int E, int K, int D, const struct policy_route_nb *nb);
/* round 17 (issue 10): POLICY_GPU_RT16=old|new|rt18|rt18_32 (default new):
 * new stages the bf16 rows the two functions above (and
 * policy_moe_combine_bwd2_b16) read into shared memory by 16-byte cp.async
 * (same arithmetic, same bits); old is round 16's loads (2 or 8 bytes a
 * thread); rt18 (round 18, opt-in: measured slower) is new with the route
 * forward taking 64 tokens a block (k_rt_fwd5: the router weight copied once
 * for 4 groups of 16, the groups' softmax / top-k tails in parallel) and the
 * combine backward's dyp rows staged for 16-byte stores; rt18_32: rt18 with
 * 32 tokens a block. Same bits in every mode. Returns 0 old, 1 new, 2 rt18,
 * 3 rt18_32, SWERVE_EINVAL for another value */
int policy_route_rt16_mode(void);

#endif

/* lightning.h - lightning attention (MiniMax-M1's linear attention with decay):
 * forward, backward and single-token decode, on the GPU (lightning.cu) and as
 * a plain-C CPU reference (lightning.c).
 *
 * The function (SPEC.md section 3), per sequence and head h, t = 0..T-1:
 *
 *     S_t = lambda_h S_{t-1} + k_t^T v_t      S_{-1} = S0 (initial state, or 0)
 *     o_t = q_t S_t                           lambda_h = exp(-slope_h)
 *
 * S is D x D (rows index q/k, columns index v), fp32 on the GPU. No 1/sqrt(D).
 *
 * Layouts (every tensor row-major):
 *   q, k, v, o, dq, dk, dv, dout   [total_tokens, H, D]   packed varlen: the
 *       rows of sequence b are cu_seqlens[b] .. cu_seqlens[b+1]-1
 *   cu_seqlens                     [B + 1] int32, cu_seqlens[0] = 0, non-decreasing
 *   slopes                         [H] float, already scaled for the layer
 *                                  (swerve_lightning_slope), lambda = exp(-slope)
 *   initial_state, final_state     [B, H, D, D] fp32 (optional: NULL)
 *   decode's state                 [B, H, D, D] fp32, the same layout, so decode
 *                                  continues from the forward's final state
 *
 * GPU functions take device pointers (bf16 tensors as uint16_t bit patterns),
 * run on `stream` (cudaStream_t is `struct CUstream_st *`), are asynchronous,
 * and need no CUDA headers here. Tensors and states must be 16-byte aligned
 * (cudaMalloc's are, and rows of D = 64 or 128 keep it). Launch-time failures
 * are returned; faults inside a kernel surface at the caller's next
 * synchronisation. D must be 64 or 128 on the GPU. Workspace is explicit: ask
 * swerve_lightning_*_workspace() for the bytes (0 is possible) and pass a device buffer at least
 * that large; the same dims and the same current device must be used for both calls.
 *
 * Every function returns 0 or a negative SWERVE_E* code (sandbox/error.h)
 * with a one-line message in swerve_error_last(). */
#ifndef SWERVE_KERNELS_LIGHTNING_H
#define SWERVE_KERNELS_LIGHTNING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

struct swerve_lightning_dims {
	int batch;      /* B: number of sequences */
	int heads;      /* H */
	int dim;        /* D: head dim of q, k and v (GPU: 64 or 128) */
	int max_seqlen; /* GPU: the longest sequence, to size the grid (a smaller
	                 * value stays correct but runs slower); the CPU
	                 * reference ignores it */
};

/* The layer-scaled slope of SPEC.md section 3 for head h of H in layer l of L
 * (global layer index, softmax layers counted):
 *   s_h = (2^(-8/H))^(h+1),  s_{h,l} = s_h * (1 - l/(L-1) + 1e-5)  (l/(L-1) = 0 if L = 1).
 * The decay is lambda = exp(-s_{h,l}). Can't fail (returns 0 for bad input). */
float swerve_lightning_slope(int h, int heads, int layer, int layers);

/* ---- CPU reference: float in/out, recurrent form accumulated in double ---- */

/* o [N, H, D] (and final_state [B, H, D, D] if not NULL) from q, k, v [N, H, D],
 * cu_seqlens [B+1] (host), slopes [H], initial_state [B, H, D, D] or NULL. */
int swerve_lightning_ref_forward(float *o, float *final_state, const float *q, const float *k,
                                 const float *v, const int32_t *cu_seqlens, const float *slopes,
                                 const float *initial_state,
                                 const struct swerve_lightning_dims *dims);

/* Gradients of the forward's outputs: dq, dk, dv [N, H, D] from dout [N, H, D]
 * and, if not NULL, dfinal_state [B, H, D, D] (the gradient reaching the final
 * state). dinitial_state [B, H, D, D] may be NULL; initial_state may be NULL (0). */
int swerve_lightning_ref_backward(float *dq, float *dk, float *dv, float *dinitial_state,
                                  const float *q, const float *k, const float *v, const float *dout,
                                  const float *dfinal_state, const int32_t *cu_seqlens,
                                  const float *slopes, const float *initial_state,
                                  const struct swerve_lightning_dims *dims);

/* One token for each of B sequences: state [B, H, D, D] is updated in place,
 * S = lambda S + k^T v, and o = q S (after the update). q, k, v, o are [B, H, D]. */
int swerve_lightning_ref_decode(float *o, float *state, const float *q, const float *k,
                                const float *v, const float *slopes, int batch, int heads, int dim);

/* ---- GPU (sm_90): bf16 tensors, fp32 accumulation and fp32 state ---------- */

/* Device bytes of workspace swerve_lightning_forward needs for dims (may be 0). */
size_t swerve_lightning_forward_workspace(const struct swerve_lightning_dims *dims);

/* o [N, H, D] bf16 (and final_state [B, H, D, D] fp32 if not NULL) from q, k, v
 * [N, H, D] bf16, cu_seqlens [B+1] int32, slopes [H] fp32, initial_state
 * [B, H, D, D] fp32 or NULL. All pointers are device pointers. Long sequences
 * cut into segments start each segment from a state that leaves out the
 * tokens t at distances E - 1 - t >= W_h before its start E, W_h the least
 * with lambda_h^W_h / (1 - lambda_h) <= 2^-32: at most 2^-32 max_t |k_t| |v_t|
 * per state element (the backward likewise with its operands). */
int swerve_lightning_forward(uint16_t *o, float *final_state, const uint16_t *q, const uint16_t *k,
                             const uint16_t *v, const int32_t *cu_seqlens, const float *slopes,
                             const float *initial_state, const struct swerve_lightning_dims *dims,
                             void *workspace, size_t workspace_bytes, struct CUstream_st *stream);

/* Device bytes of workspace swerve_lightning_backward needs for dims (may be 0). */
size_t swerve_lightning_backward_workspace(const struct swerve_lightning_dims *dims);

/* dq, dk, dv [N, H, D] bf16 (and dinitial_state [B, H, D, D] fp32 if not NULL)
 * from dout [N, H, D] bf16 and optionally dfinal_state [B, H, D, D] fp32. Only
 * q, k, v (and the initial state) are needed: the states are recomputed. */
int swerve_lightning_backward(uint16_t *dq, uint16_t *dk, uint16_t *dv, float *dinitial_state,
                              const uint16_t *q, const uint16_t *k, const uint16_t *v,
                              const uint16_t *dout, const float *dfinal_state,
                              const int32_t *cu_seqlens, const float *slopes,
                              const float *initial_state, const struct swerve_lightning_dims *dims,
                              void *workspace, size_t workspace_bytes, struct CUstream_st *stream);

/* ---- GPU, round 14 (opt-in): the lightning layer's SiLU folded in ---------
 *
 * pre [N, ld] bf16 (ld >= 3 H D, a multiple of 8): row t holds the
 * pre-activations of q | k | v (H D columns each, head-major as above; the
 * columns past 3 H D are neither read nor written), q = SiLU(pre[:, 0, HD)),
 * k = SiLU(pre[:, HD, 2HD)), v = SiLU(pre[:, 2HD, 3HD)). The SiLU is applied
 * as the core loads its tiles (recomputed in the backward; tanh.approx: the
 * activated values can differ from an fp32 SiLU rounded to bf16 by ~1 bf16
 * ulp). V3 form 9 only (V4, SWERVE_LIGHTNING_KERNEL and _WG_FORM do not
 * apply); SWERVE_LIGHTNING_BWD_SPLIT does. Workspace: the _silu_workspace
 * functions (may differ from the unfused ones at D = 128). */
size_t swerve_lightning_forward_silu_workspace(const struct swerve_lightning_dims *dims);
size_t swerve_lightning_backward_silu_workspace(const struct swerve_lightning_dims *dims);

/* swerve_lightning_forward of the SiLU of pre's q, k, v columns: o [N, H, D];
 * act_q, act_k, act_v [N, H, D] (all set, or all NULL: not written) receive
 * the activated q, k, v as the core computed them (for
 * swerve_lightning_backward_dsilu) */
int swerve_lightning_forward_silu(uint16_t *o, float *final_state, uint16_t *act_q, uint16_t *act_k,
                                  uint16_t *act_v, const uint16_t *pre, int ld,
                                  const int32_t *cu_seqlens, const float *slopes,
                                  const float *initial_state,
                                  const struct swerve_lightning_dims *dims, void *workspace,
                                  size_t workspace_bytes, struct CUstream_st *stream);

/* swerve_lightning_backward through the SiLU: dpre [N, ld] (same layout as
 * pre; only its q, k, v columns are written) = d(q, k, v) * SiLU'(pre), from
 * dout [N, H, D]; dpre must not be pre */
int swerve_lightning_backward_silu(uint16_t *dpre, float *dinitial_state, const uint16_t *pre,
                                   int ld, const uint16_t *dout, const float *dfinal_state,
                                   const int32_t *cu_seqlens, const float *slopes,
                                   const float *initial_state,
                                   const struct swerve_lightning_dims *dims, void *workspace,
                                   size_t workspace_bytes, struct CUstream_st *stream);

/* swerve_lightning_backward of the activated q, k, v [N, H, D] (as
 * swerve_lightning_forward_silu's act_*), through the SiLU: dpre's q, k, v
 * columns = d(q, k, v) * SiLU'(pre) (the SiLU' in the epilogue, no SiLU on
 * the loads; POLICY_GPU_LW_SILU=keep); workspace: the _backward_silu one */
int swerve_lightning_backward_dsilu(uint16_t *dpre, float *dinitial_state, const uint16_t *q,
                                    const uint16_t *k, const uint16_t *v, const uint16_t *pre,
                                    int ld, const uint16_t *dout, const float *dfinal_state,
                                    const int32_t *cu_seqlens, const float *slopes,
                                    const float *initial_state,
                                    const struct swerve_lightning_dims *dims, void *workspace,
                                    size_t workspace_bytes, struct CUstream_st *stream);

/* One token for each of B sequences, on the GPU: state [B, H, D, D] fp32 is
 * updated in place (S = lambda S + k^T v) and o = q S, with q, k, v, o [B, H, D]
 * bf16. Needs no workspace. */
int swerve_lightning_decode(uint16_t *o, float *state, const uint16_t *q, const uint16_t *k,
                            const uint16_t *v, const float *slopes, int batch, int heads, int dim,
                            struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif

#endif

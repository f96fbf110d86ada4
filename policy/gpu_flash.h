/* gpu_flash.h - tiled (flash) causal softmax attention with grouped KV
 * heads over packed variable-length sequences, for the GPU policy's softmax
 * layers (internal to policy/; gpu.cu calls it in bf16 mode when
 * head_dim == POLICY_FLASH_HEAD_DIM).
 *
 * Layouts are the cuBLAS path's, so the two are interchangeable: q, o
 * (T, H, 64) fp32, k, v (T, KV, 64) fp32, lse (T, H) = log-sum-exp of the
 * scaled scores of each query row, cu the sequence offsets (n_seqs + 1, on
 * the device), maxlen the longest sequence. The products run on bf16 tensor
 * cores with fp32 accumulation. Backward: Dsum (T, H) = rowsum(dout * o);
 * dq, dk, dv are written, not accumulated. All calls are asynchronous on the
 * legacy default stream and return 0 or a negative code with a message.
 * The fa2 kernels take the bf16 copies of their inputs in a per-device
 * scratch buffer that grows on demand (cudaMalloc, synchronising, on the
 * first call of a new largest shape); they need the packed layout (cu[0] = 0,
 * sequences back to back, none longer than maxlen). The buffer is shared by
 * every caller in the process: calls from several threads are serialised
 * on the host (a lock held while a call queues its kernels). */
#ifndef SWERVE_POLICY_GPU_FLASH_H
#define SWERVE_POLICY_GPU_FLASH_H

#define POLICY_FLASH_HEAD_DIM 64

/* The kernels behind the calls: FA2 (mma.sync, register-resident S and P;
 * 128-row query tiles of 8 warps in the forward; the default), FA2_64 (the
 * same with 64-row forward tiles of 4 warps), WMMA (the first, shared-memory
 * version: the baseline). Bitwise-different results, the same function. */
enum policy_flash_impl {
	POLICY_FLASH_FA2 = 0,
	POLICY_FLASH_FA2_64 = 1,
	POLICY_FLASH_WMMA = 2,
	/* round 19: fa2's kernels, the backward's dQ kernel queued on a second
	 * stream so that it runs beside the dK/dV kernel (bit for bit fa2) */
	POLICY_FLASH_FA2_PAR = 3,
};

/* once per process, before the first call: the kernels' shared-memory limits,
 * the implementation from POLICY_GPU_FLASH (fa2, fa2_64, fa2_par or wmma;
 * unset: fa2) and the rotary form from POLICY_GPU_FLASH_ROPE (fused or elem;
 * unset: fused); an unknown value is SWERVE_EINVAL naming it */
int policy_flash_setup(void);
/* the implementation the next calls use (process-wide) */
int policy_flash_select(enum policy_flash_impl impl);
enum policy_flash_impl policy_flash_selected(void);
/* Round 19: the rotary embedding of the softmax layer's q and k.
 * policy_flash_rope_fused() is 1 where POLICY_GPU_FLASH_ROPE=fused (gpu.cu
 * then calls policy_flash_rope, once for q and k together; the default
 * since round 19: bit for bit elem, 3.4-3.7x faster), 0 for elem
 * (policy_flash_rope_elem, one launch per tensor). policy_flash_rope rotates, in place, the first
 * rd dims of every head of q (T, H, d) and k (T, KV, d) fp32, rotate-half, angle pos[t]
 * theta^(-2j/rd) (inverse: by the negated angle, R^T): bit for bit gpu.cu's
 * k_rotary (the same double-precision angle, cos and sin, the same float
 * products), but cos and sin evaluated once per (token, pair) instead of
 * once per (token, head, pair), and one launch for both tensors. q or k may
 * be NULL (that tensor is skipped). pos: T ints on the device. */
int policy_flash_rope_fused(void);
int policy_flash_rope(float *q, float *k, const int *pos, int T, int H, int KV, int d, int rd,
                      float theta, int inverse);
/* the elem form, the same arguments: a thread per (token, head, pair), a
 * launch per tensor (policy/gpu.cu's k_rotary until round 19; the
 * reference policy_flash_rope must equal bit for bit) */
int policy_flash_rope_elem(float *q, float *k, const int *pos, int T, int H, int KV, int d, int rd,
                           float theta, int inverse);
int policy_flash_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int *cu, int n_seqs, int maxlen, int H, int KV);
int policy_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *Dsum,
                     const float *q, const float *k, const float *v, const float *lse,
                     const int *cu, int n_seqs, int maxlen, int H, int KV);

#endif

/* gpu_gate.h - round 14 (issue 10): the lightning layer's output norm and
 * gate, forward and backward, toward their byte floors (internal to
 * policy/; POLICY_GPU_LW_GATE=v3, the default since round 14; v2 is
 * gpu_linew.cu's k_lw_rms_gate2 / k_lw_gate_rms_bwd2, rounds 7-13).
 *
 * Same contract as policy_lin_rms_gate / policy_lin_gate_rms_bwd of
 * gpu_linew.h: pre (T, 4 Hd) is the interleaved [q | k | v | gate]
 * pre-activation in the activation type (a_bf16: bf16, else fp32), the
 * core output o (T, Hd) in o's type (o_bf16), dO written in o's type, dgn
 * fp32 (or bf16: v4), the norm weight w and its gradient dw fp32 anywhere in
 * the arena.
 * Hd a multiple of 8, at most 1024; the activations 16-byte aligned.
 *
 * Every element is computed with v2's expressions in v2's order (gn, rstd
 * and dpre's gate columns bit for bit equal to v2's; dO within one
 * rounding: r^3 dot / C is formed once a row); the weight
 * gradient is summed deterministically (per block in shared memory, then
 * over blocks in block order by a second small kernel: no float atomics),
 * so it differs from v2's atomics only by summation order and is the same
 * on every run. The backward's per-block partial sums live in a scratch
 * buffer this file owns (one per device, grown on demand with cudaMalloc,
 * or ahead by policy_gate_reserve): calls must not run concurrently on two
 * streams. Launches go to gpu_util.h's step stream where it has one (PST),
 * else the legacy default stream; each call returns 0 or a negative code
 * with a message. */
#ifndef SWERVE_POLICY_GPU_GATE_H
#define SWERVE_POLICY_GPU_GATE_H

/* POLICY_GPU_LW_GATE: v2 0 | v3 (unset or empty: the default) 1 | v3a 2 |
 * v4 3 | v5 4; a misspelt value is SWERVE_EINVAL naming the variable. v3:
 * the forward a one-wave grid of warps striding over the rows (the next
 * row's loads in flight), the backward 2 blocks an SM; v3a: v3 with round
 * 14's first forward (2 rows a warp, one block per 16 rows); v4: v3 with
 * dgn in bf16 (gpu.cu has the dX GEMM write it in bf16 in bf16 mode); v5
 * (NOT YET RUN on a GPU): v3 with the gate's sigmoid by __expf and
 * __fdividef (a few ulp from v2's; both kernels) */
int policy_gate_mode(void);

/* 1 when the v3 kernels take T rows of Hd columns */
int policy_gate_supported(int T, int Hd);

/* the backward's scratch sized for any T at Hd (call before a CUDA graph
 * captures a step: the backward then never allocates) */
int policy_gate_reserve(int Hd);

/* gn = o rstd w sigmoid(pre gate) in the activation type, rstd = 1 /
 * rms(o); var: the mode (1..4) */
int policy_gate_fwd(void *gn, float *rstd, const void *o, int o_bf16, const float *w,
                    const void *pre, int a_bf16, int T, int Hd, float eps, int var);

/* the gate's and the norm's backward in one pass: dpre's gate columns, dO
 * (o's type), dw += the norm weight's gradient (deterministic); dgn fp32,
 * or bf16 (dgn_bf16, with a_bf16 only); fast: v5's sigmoid */
int policy_gate_bwd(void *dO, float *dw, void *dpre, int a_bf16, const void *dgn, int dgn_bf16,
                    const void *o, int o_bf16, const void *pre, const float *w, const float *rstd,
                    int T, int Hd, int fast);

#endif

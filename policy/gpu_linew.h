/* gpu_linew.h - the lightning layer's elementwise passes of the GPU policy
 * (internal to policy/; round 7, issue 10; POLICY_GPU_LIN_EW=old in gpu.cu
 * restores gpu.cu's k_silu/k_silu_bf16, k_to_f32, k_rms_gate, k_gate_bwd +
 * rms_bwd and k_dsilu).
 *
 * pre (T, 4 Hd) is the interleaved [q | k | v | gate] pre-activation of
 * the fused projection, in the activation type (a_bf16: bf16, else fp32);
 * q, k, v after SiLU and their gradients are planar (3, T, Hd). The core
 * output o (T, Hd) is read in the type the core wrote it (o_bf16: bf16 from
 * kernels/lightning, which removes gpu.cu's bf16 -> fp32 copy; else fp32
 * from the fp32 kernel), and the gradient dO of the core output is written
 * in that same type. Hd must be a multiple of 8 and at most 1024
 * (policy_lin_ew_supported); pointers 16-byte aligned (the norm weight w
 * excepted). v2 (gpu.cu's default; POLICY_GPU_LIN_EW=v1 for the first
 * version): the norm + gate and its backward as a warp per row with all of
 * a row's loads in flight (same results up to summation order). All calls are
 * asynchronous on the legacy default stream and return 0 or a negative
 * code with a message. */
#ifndef SWERVE_POLICY_GPU_LINEW_H
#define SWERVE_POLICY_GPU_LINEW_H

/* 1 when these passes take Hd (and 3 T Hd fits a 32-bit index) */
int policy_lin_ew_supported(int T, int Hd);

/* planar q, k, v = SiLU(pre[:, :3 Hd]) into out (out_bf16: bf16, else
 * fp32); 8 elements a thread */
int policy_lin_silu(void *out, int out_bf16, const void *pre, int a_bf16, int T, int Hd);

/* the output norm and gate: gn = o rstd w sigmoid(pre gate) (gn in the
 * activation type), rstd = 1 / rms(o) */
int policy_lin_rms_gate(void *gn, float *rstd, const void *o, int o_bf16, const float *w,
                        const void *pre, int a_bf16, int T, int Hd, float eps, int v2);

/* backward of the gate and the output norm in one pass (gpu.cu's
 * k_gate_bwd and rms_bwd): from dgn (fp32), dpre's gate columns (activation
 * type), dO = d o (o's type) and dw += the norm weight's gradient; the
 * normalised o is recomputed (o rstd w) instead of gn / sigmoid */
int policy_lin_gate_rms_bwd(void *dO, float *dw, void *dpre, int a_bf16, const float *dgn,
                            const void *o, int o_bf16, const void *pre, const float *w,
                            const float *rstd, int T, int Hd, int v2);

/* dpre[:, :3 Hd] = dpost (planar; post_bf16: bf16, else fp32) silu'(pre) */
int policy_lin_dsilu(void *dpre, int a_bf16, const void *dpost, int post_bf16, const void *pre,
                     int T, int Hd);

/* round 14: POLICY_GPU_LW_SILU: 0 pass (rounds 7-13: policy_lin_silu /
 * policy_lin_dsilu run), 1 core (kernels/lightning's fused SiLU, recomputed
 * in the backward), 2 keep (rounds 14-25's default; fused, the forward also
 * writes the activated q, k, v for the backward), 3 auto (unset: round 26's
 * default, keep or core by the micro-batch's tokens: policy_lin_silu_pick),
 * or a negative code with a message naming the variable and its values */
int policy_lin_silu_mode(void);
/* round 26: the form a micro-batch of T tokens runs under mode (0, 1 or 2;
 * auto: core from POLICY_LIN_SILU_CORE_T tokens, where the 302 MB a layer the
 * kept activations write and read back cost more than recomputing the SiLU
 * (H100: 65,536 tokens 0.8% faster a step with core, 8192 tokens 2% slower),
 * keep below) */
#define POLICY_LIN_SILU_CORE_T 65536
int policy_lin_silu_pick(int mode, int T);

#endif

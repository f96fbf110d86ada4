/* ref.h - the CPU reference model's layers, in double precision (internal to
 * policy/ and its tests; the public entry points are in policy.h).
 *
 * Every layer is a pair of pure functions: fwd(out, in, params) and
 * bwd(d_in, d_params, d_out, in, params), where bwd recomputes the
 * intermediates it needs from the inputs and ACCUMULATES (+=) into d_in and
 * d_params. Shapes: activations (T, C) row-major; q/k/v (T, H, d). */
#ifndef SWERVE_POLICY_REF_H
#define SWERVE_POLICY_REF_H

#include "policy/policy.h"

/* y (T,O) = x (T,I) W^T, W (O,I) */
void ref_linear_fwd(double *y, const double *x, const double *W, int T, int I, int O);
/* dx (T,I) += dy W (dx may be NULL); dW (O,I) += dy^T x */
void ref_linear_bwd(double *dx, double *dW, const double *dy, const double *x, const double *W,
                    int T, int I, int O);

/* y = x / sqrt(mean(x^2) + eps) * w, per row of C */
void ref_rmsnorm_fwd(double *y, const double *x, const double *w, int T, int C, double eps);
void ref_rmsnorm_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                     int T, int C, double eps);

/* Lightning decay of head h in layer l (SPEC section 3): exp(-s_{h,l}). */
double ref_lightning_lambda(int h, int n_heads, int layer, int n_layers);

/* Lightning attention core over packed sequences: per head,
 * o_t = q_t S_t, S_t = lambda S_{t-1} + k_t^T v_t (S reset at each sequence
 * start). q, k, v, o: (T, H, d); lambda: (H). */
void ref_lightning_core_fwd(double *o, const double *q, const double *k, const double *v,
                            const double *lambda, int T, int H, int d, const int *cu_seqlens,
                            int n_seqs);
void ref_lightning_core_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q,
                            const double *k, const double *v, const double *lambda, int T, int H,
                            int d, const int *cu_seqlens, int n_seqs);

/* Rotary (rotate-half on the first rd dims of each head) in place; x is
 * (T, H, d); positions restart at each sequence. inverse=1 applies R^T
 * (the backward). */
void ref_rotary(double *x, int T, int H, int d, int rd, double theta, const int *cu_seqlens,
                int n_seqs, int inverse);

/* One layer's attention block (input already normalised): y (T, D). */
void ref_lightning_fwd(double *y, const double *x, const double *P,
                       const struct policy_layer_params *lp, const struct policy_config *cfg,
                       int layer, const struct policy_batch *b);
void ref_lightning_bwd(double *dx, double *dP, const double *dy, const double *x, const double *P,
                       const struct policy_layer_params *lp, const struct policy_config *cfg,
                       int layer, const struct policy_batch *b);
void ref_softmax_attn_fwd(double *y, const double *x, const double *P,
                          const struct policy_layer_params *lp, const struct policy_config *cfg,
                          const struct policy_batch *b);
void ref_softmax_attn_bwd(double *dx, double *dP, const double *dy, const double *x,
                          const double *P, const struct policy_layer_params *lp,
                          const struct policy_config *cfg, const struct policy_batch *b);

/* MoE feed-forward: y (T, D); returns the balance loss times aux_loss_coef:
 * coef * E * sum_e f_e P_e (f_e: share of the T*k assignments, P_e: mean
 * router probability). Ties in top-k go to the lower expert index. */
double ref_moe_fwd(double *y, const double *x, const double *P,
                   const struct policy_layer_params *lp, const struct policy_config *cfg, int T);
/* Backward of (dy . y + aux_scale * aux). */
void ref_moe_bwd(double *dx, double *dP, const double *dy, double aux_scale, const double *x,
                 const double *P, const struct policy_layer_params *lp,
                 const struct policy_config *cfg, int T);

#endif

/* policy_bf16.h - test-only, header-only: the GPU policy test's fixture
 * (tests/gpu/test_policy_model.c) and a copy of the CPU reference model's
 * forward and backward (policy/ref.c, double) that rounds to bf16 where the
 * GPU's bf16 mode rounds in the lightning layers, so that a test can tell
 * bf16 rounding from a bug (issue 10). policy/ref.c itself is untouched.
 *
 * Rounding points (PB_* flags), as policy/gpu.cu's bf16 mode and
 * kernels/lightning.cu do them in a lightning layer:
 *   PB_GEMM  the GEMM operands: the normed input, wq/wk/wv/wgate/wo, the
 *            gated norm output gn, the incoming gradient dy, dpre
 *   PB_PRE   the q/k/v/gate pre-activations (stored bf16)
 *   PB_QKV   q, k, v = SiLU(pre) (kernels/lightning's bf16 inputs)
 *   PB_P     inside kernels/lightning: the decayed C x C block of scores
 *            (P = (Q K^T) .* Dec, and its backward runs' analogues) rounded
 *            to bf16 before the product with the third operand, for pairs of
 *            tokens in one chunk of 64 (forward walks: chunks from the
 *            sequence start; the reversed dk/dv walks: from its end). Pairs
 *            in different chunks go through the kernel's state, whose bf16
 *            copy is not emulated (the fixture's sequences fit one chunk)
 *   PB_O     the core's output o (bf16)
 *   PB_DO    d o, from the output norm's backward, rounded for the kernel
 *   PB_DQKV  the kernel's dq, dk, dv (bf16)
 *   PB_DRES  (round 19, POLICY_GPU_ACT16=all; not in PB_ALL) the residual
 *            stream's gradient dx, rounded where each RMSNorm backward
 *            stores it (the final norm's, then the ffn and attention norms'
 *            dx += v of every layer): what the MoE's combine backward, the
 *            attention's backward and the embedding's gradient read
 *   PB_RESID (round 19, POLICY_GPU_ACT16=resid / stream / all; not in
 *            PB_ALL) the residual stream's value, rounded where it is
 *            stored (x_0 from the embedding, then after each residual add:
 *            xin, hmid, xf) AFTER the RMSNorm that follows it reads the
 *            unrounded sum, as gpu_ew.cu's add + norm kernels do (fp32 sum
 *            in registers, one rounding a store)
 *   PB_DNF, PB_DNA (round 25, POLICY_GPU_DN16; not in PB_ALL) the gradient
 *            an RMSNorm backward reads, as it is stored: the ffn norm's (the
 *            MoE's, route backward) and a lightning layer's attention
 *            norm's (its projection's dX)
 * Softmax layers, the MoE and the head stay exact (double): they are not
 * where issue 10's error is. Layer functions other than the lightning
 * layer are policy/ref.c's. */
#ifndef SWERVE_TESTS_POLICY_BF16_H
#define SWERVE_TESTS_POLICY_BF16_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"
#include "policy/ref.h"

/* ---- the fixture's generator and fixture (shared with test_policy_model) -- */

static uint64_t seed;
static double urand(void)
{
	seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((seed >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void)
{
	return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}
/* the generator's state n draws before s (the LCG is invertible mod 2^64):
 * turns a seed printed after a fixture was drawn into the one before it */
static inline uint64_t pb_seed_back(uint64_t s, unsigned long n)
{
	const uint64_t a = 6364136223846793005ULL, c = 1442695040888963407ULL;
	uint64_t inv = a; /* Newton: a inv = 1 mod 2^64 */
	for (int i = 0; i < 6; i++)
		inv *= 2 - a * inv;
	while (n--)
		s = (s - c) * inv;
	return s;
}

static inline void gpu_config(struct policy_config *c)
{
	policy_config_default(c);
	c->vocab_size = 300;
	c->dim = 128;
	c->n_layers = 2;
	c->n_heads = 2;
	c->head_dim = 64;
	c->n_kv_heads = 1;
	c->rotary_dim = 32;
	c->softmax_every = 2; /* layer 0 lightning, layer 1 softmax */
	c->n_experts = 4;
	c->top_k = 2;
	c->expert_hidden = 96;
	c->max_seq_len = 256;
	c->aux_loss_coef = 0.01;
	policy_config_validate(c);
}

struct fixture {
	struct policy_config c;
	struct policy_layout L;
	float *p;
	double *pd;
	int T, S, tok[512], tgt[512], cu[8];
};

/* the weights from policy_params_init(seed), then norms 1 +- 0.2 and every
 * matrix 4x larger; 3 sequences (45, 64, 19 tokens), every 7th target
 * masked. Draws 2 per norm element and 1 per token from the generator.
 * hidden > 0: that many expert hidden units; experts > 0: that many
 * experts, every token routed to all of them (top-k = E). */
static inline void fixture_init_cfg(struct fixture *f, int hidden, int experts)
{
	int lens[3] = {45, 64, 19};
	gpu_config(&f->c);
	if (hidden > 0)
		f->c.expert_hidden = hidden;
	if (experts > 0)
		f->c.n_experts = f->c.top_k = experts;
	if (hidden > 0 || experts > 0)
		policy_config_validate(&f->c);
	policy_layout_init(&f->L, &f->c);
	f->p = calloc(f->L.total, 4);
	f->pd = calloc(f->L.total, sizeof(double));
	policy_params_init(f->p, &f->L, seed);
	for (int i = 0; i < f->L.n; i++) /* norms away from 1, matrices larger */
		for (size_t j = 0; j < f->L.t[i].numel; j++) {
			float *x = &f->p[f->L.t[i].offset + j];
			*x = f->L.t[i].ndim == 1 ? (float)(1 + 0.2 * nrand()) : *x * 4.0f;
		}
	for (size_t i = 0; i < f->L.total; i++)
		f->pd[i] = f->p[i];
	f->S = 3;
	f->cu[0] = 0;
	for (int s = 0; s < 3; s++)
		f->cu[s + 1] = f->cu[s] + lens[s];
	f->T = f->cu[3];
	for (int t = 0; t < f->T; t++)
		f->tok[t] = (int)(urand() * f->c.vocab_size);
	for (int s = 0; s < 3; s++)
		for (int t = f->cu[s]; t < f->cu[s + 1]; t++)
			f->tgt[t] = t + 1 < f->cu[s + 1] && t % 7 != 3 ? f->tok[t + 1] : -1;
}

static inline void fixture_init(struct fixture *f)
{
	fixture_init_cfg(f, 0, 0);
}

/* draws fixture_init takes from the generator (for pb_seed_back) */
static inline unsigned long fixture_draws(const struct fixture *f)
{
	unsigned long n = (unsigned long)f->T;
	for (int i = 0; i < f->L.n; i++)
		if (f->L.t[i].ndim == 1)
			n += 2 * f->L.t[i].numel;
	return n;
}

static inline void fixture_dispose(struct fixture *f)
{
	free(f->p);
	free(f->pd);
	policy_layout_dispose(&f->L);
}

/* ---- bf16 rounding and the emulated lightning layer ----------------------- */

enum {
	PB_GEMM = 1,
	PB_PRE = 2,
	PB_QKV = 4,
	PB_P = 8,
	PB_O = 16,
	PB_DO = 32,
	PB_DQKV = 64,
	PB_ALL = 127,
	PB_DRES = 128,
	PB_RESID = 256,
	PB_DNF = 512,
	PB_DNA = 1024,
};

/* round to the nearest bf16 (ties to even) via float, as the GPU rounds its
 * fp32 values */
static inline double pb_bf16(double x)
{
	float f = (float)x;
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7f800000u) != 0x7f800000u)
		u += 0x7fffu + ((u >> 16) & 1u);
	u &= 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}
static inline void pb_round(double *x, size_t n, int on)
{
	if (on)
		for (size_t i = 0; i < n; i++)
			x[i] = pb_bf16(x[i]);
}
static inline double *pb_dup(const double *x, size_t n, int round)
{
	double *y = malloc(n * sizeof(double));
	memcpy(y, x, n * sizeof(double));
	pb_round(y, n, round);
	return y;
}
static inline double pb_sigmoid(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

/* out_t = sum over s of the same sequence, s <= t (rev: s >= t), of
 * P(t, s) c_s with P(t, s) = lambda^|t-s| (a_t . b_s), P rounded to bf16
 * when roundp and t, s share a chunk of 64 counted from the sequence start
 * (rev: from its end). a, b, c, out: (T, H, d) */
static inline void pb_core(double *out, const double *a, const double *b, const double *c,
                           const double *lambda, int T, int H, int d, const int *cu, int nseq,
                           int rev, int roundp)
{
	memset(out, 0, (size_t)T * H * d * sizeof(double));
	for (int sq = 0; sq < nseq; sq++)
		for (int h = 0; h < H; h++)
			for (int t = cu[sq]; t < cu[sq + 1]; t++) {
				int lo = rev ? t : cu[sq], hi = rev ? cu[sq + 1] - 1 : t;
				int ct = rev ? (cu[sq + 1] - 1 - t) / 64 : (t - cu[sq]) / 64;
				const double *at = a + ((size_t)t * H + h) * d;
				double *ot = out + ((size_t)t * H + h) * d;
				for (int s = lo; s <= hi; s++) {
					const double *bs = b + ((size_t)s * H + h) * d;
					const double *cs = c + ((size_t)s * H + h) * d;
					int cs_ =
					        rev ? (cu[sq + 1] - 1 - s) / 64 : (s - cu[sq]) / 64;
					double p = 0;
					for (int i = 0; i < d; i++)
						p += at[i] * bs[i];
					p *= pow(lambda[h], abs(t - s));
					if (roundp && ct == cs_)
						p = pb_bf16(p);
					for (int j = 0; j < d; j++)
						ot[j] += p * cs[j];
				}
			}
}

struct pb_lin {
	double *x, *W; /* the layer input and wq|wk|wv|wgate|wo as the GEMMs see them */
	double *pre;   /* (4, T, Hd): q, k, v, gate pre-activations */
	double *q, *k, *v, *o, *g, *n, *gn, lambda[64];
};

static inline void pb_lin_free(struct pb_lin *f)
{
	free(f->x);
	free(f->W);
	free(f->pre);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->o);
	free(f->g);
	free(f->n);
	free(f->gn);
}

/* wq, wk, wv, wgate, wo as one buffer (the layout keeps each (Hd, D) or
 * (D, Hd); their offsets need not be adjacent) */
static inline void pb_lin_forward(struct pb_lin *f, const double *x, const double *P,
                                  const struct policy_layer_params *lp,
                                  const struct policy_config *c, int layer,
                                  const struct policy_batch *b, int flags)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, d = c->head_dim, Hd = H * d;
	size_t n = (size_t)T * Hd, wn = (size_t)Hd * D;
	size_t offs[5] = {lp->wq, lp->wk, lp->wv, lp->wgate, lp->wo};
	f->x = pb_dup(x, (size_t)T * D, flags & PB_GEMM);
	f->W = malloc(5 * wn * sizeof(double));
	for (int m = 0; m < 5; m++) {
		memcpy(f->W + m * wn, P + offs[m], wn * sizeof(double));
		pb_round(f->W + m * wn, wn, flags & PB_GEMM);
	}
	f->pre = malloc(4 * n * sizeof(double));
	for (int m = 0; m < 4; m++)
		ref_linear_fwd(f->pre + m * n, f->x, f->W + m * wn, T, D, Hd);
	pb_round(f->pre, 4 * n, flags & PB_PRE);
	f->q = malloc(n * sizeof(double));
	f->k = malloc(n * sizeof(double));
	f->v = malloc(n * sizeof(double));
	f->o = malloc(n * sizeof(double));
	f->g = malloc(n * sizeof(double));
	f->n = malloc(n * sizeof(double));
	f->gn = malloc(n * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		f->q[i] = f->pre[i] * pb_sigmoid(f->pre[i]);
		f->k[i] = f->pre[n + i] * pb_sigmoid(f->pre[n + i]);
		f->v[i] = f->pre[2 * n + i] * pb_sigmoid(f->pre[2 * n + i]);
		f->g[i] = pb_sigmoid(f->pre[3 * n + i]);
	}
	pb_round(f->q, n, flags & PB_QKV);
	pb_round(f->k, n, flags & PB_QKV);
	pb_round(f->v, n, flags & PB_QKV);
	for (int h = 0; h < H; h++)
		f->lambda[h] = ref_lightning_lambda(h, H, layer, c->n_layers);
	pb_core(f->o, f->q, f->k, f->v, f->lambda, T, H, d, b->cu_seqlens, b->n_seqs, 0,
	        flags & PB_P);
	pb_round(f->o, n, flags & PB_O);
	ref_rmsnorm_fwd(f->n, f->o, P + lp->out_norm, T, Hd, c->norm_eps);
	for (size_t i = 0; i < n; i++)
		f->gn[i] = f->g[i] * f->n[i];
	pb_round(f->gn, n, flags & PB_GEMM);
}

static inline void pb_lin_fwd(double *y, const double *x, const double *P,
                              const struct policy_layer_params *lp, const struct policy_config *c,
                              int layer, const struct policy_batch *b, int flags)
{
	struct pb_lin f;
	int Hd = c->n_heads * c->head_dim;
	pb_lin_forward(&f, x, P, lp, c, layer, b, flags);
	ref_linear_fwd(y, f.gn, f.W + 4 * (size_t)Hd * c->dim, b->n_tokens, Hd, c->dim);
	pb_lin_free(&f);
}

static inline void pb_lin_bwd(double *dx, double *dP, const double *dy, const double *x,
                              const double *P, const struct policy_layer_params *lp,
                              const struct policy_config *c, int layer,
                              const struct policy_batch *b, int flags)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, d = c->head_dim, Hd = H * d;
	size_t n = (size_t)T * Hd, wn = (size_t)Hd * D;
	size_t offs[4] = {lp->wq, lp->wk, lp->wv, lp->wgate};
	struct pb_lin f;
	double *dyr = pb_dup(dy, (size_t)T * D, flags & PB_GEMM);
	double *dgn = calloc(n, sizeof(double)), *dn = calloc(n, sizeof(double));
	double *dO = calloc(n, sizeof(double)), *dpre = calloc(4 * n, sizeof(double));
	double *tmp = malloc(3 * n * sizeof(double));

	pb_lin_forward(&f, x, P, lp, c, layer, b, flags);
	ref_linear_bwd(dgn, dP + lp->wo, dyr, f.gn, f.W + 4 * wn, T, Hd, D);
	for (size_t i = 0; i < n; i++) {
		dn[i] = dgn[i] * f.g[i];
		dpre[3 * n + i] = dgn[i] * f.n[i] * f.g[i] * (1.0 - f.g[i]);
	}
	ref_rmsnorm_bwd(dO, dP + lp->out_norm, dn, f.o, P + lp->out_norm, T, Hd, c->norm_eps);
	pb_round(dO, n, flags & PB_DO);
	/* the kernel's three runs: dq forward in time, dv and dk reversed */
	pb_core(tmp, dO, f.v, f.k, f.lambda, T, H, d, b->cu_seqlens, b->n_seqs, 0, flags & PB_P);
	pb_core(tmp + n, f.v, dO, f.q, f.lambda, T, H, d, b->cu_seqlens, b->n_seqs, 1,
	        flags & PB_P);
	pb_core(tmp + 2 * n, f.k, f.q, dO, f.lambda, T, H, d, b->cu_seqlens, b->n_seqs, 1,
	        flags & PB_P);
	pb_round(tmp, 3 * n, flags & PB_DQKV);
	for (size_t i = 0; i < 3 * n; i++) {
		double a = f.pre[i], s = pb_sigmoid(a);
		dpre[i] = tmp[i] * s * (1.0 + a * (1.0 - s));
	}
	pb_round(dpre, 4 * n, flags & PB_GEMM);
	for (int m = 0; m < 4; m++)
		ref_linear_bwd(dx, dP + offs[m], dpre + m * n, f.x, f.W + m * wn, T, D, Hd);
	pb_lin_free(&f);
	free(dyr);
	free(dgn);
	free(dn);
	free(dO);
	free(dpre);
	free(tmp);
}

/* ---- the whole model (policy_ref_forward + policy_ref_backward, with the
 * lightning layers above) ------------------------------------------------- */

/* logits (T, V) out; grads (L.total, zeroed by the caller) += d(loss +
 * aux)/dP of params P under flags (0: policy/ref.c's numbers); the loss is
 * cross-entropy (old NULL) or policy_loss_pg's with old, adv, o; *loss and
 * *aux set (aux may be NULL) */
static inline void pb_model(double *logits, double *grads, double *loss, double *aux,
                            const struct policy_config *c, const struct policy_layout *L,
                            const double *P, const struct policy_batch *b, const int *tgt,
                            const double *old, const double *adv, const struct policy_loss_opts *o,
                            int flags)
{
	int T = b->n_tokens, D = c->dim, V = c->vocab_size, NL = c->n_layers;
	size_t TD = (size_t)T * D;
	double *xin = calloc((size_t)NL * TD, sizeof(double));
	double *hmid = calloc((size_t)NL * TD, sizeof(double));
	double *x = calloc(TD, sizeof(double)), *nrm = calloc(TD, sizeof(double));
	double *tmp = calloc(TD, sizeof(double)), *dn = calloc(TD, sizeof(double));
	double *dl = calloc((size_t)T * V, sizeof(double)), *xf = calloc(TD, sizeof(double));
	struct policy_loss_stats st;
	double a = 0;

	for (int t = 0; t < T; t++)
		memcpy(x + (size_t)t * D, P + L->tok_emb + (size_t)b->tokens[t] * D,
		       (size_t)D * sizeof(double));
	for (int l = 0; l < NL; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		ref_rmsnorm_fwd(nrm, x, P + lp->attn_norm, T, D, c->norm_eps);
		pb_round(x, TD, flags & PB_RESID);
		memcpy(xin + l * TD, x, TD * sizeof(double));
		if (lp->softmax)
			ref_softmax_attn_fwd(tmp, nrm, P, lp, c, b);
		else
			pb_lin_fwd(tmp, nrm, P, lp, c, l, b, flags);
		for (size_t i = 0; i < TD; i++)
			x[i] += tmp[i];
		ref_rmsnorm_fwd(nrm, x, P + lp->ffn_norm, T, D, c->norm_eps);
		pb_round(x, TD, flags & PB_RESID);
		memcpy(hmid + l * TD, x, TD * sizeof(double));
		a += ref_moe_fwd(tmp, nrm, P, lp, c, T);
		for (size_t i = 0; i < TD; i++)
			x[i] += tmp[i];
	}
	ref_rmsnorm_fwd(nrm, x, P + L->final_norm, T, D, c->norm_eps);
	pb_round(x, TD, flags & PB_RESID);
	memcpy(xf, x, TD * sizeof(double));
	ref_linear_fwd(logits, nrm, P + L->lm_head, T, D, V);
	if (old)
		policy_loss_pg(&st, dl, logits, T, V, tgt, old, adv, o);
	else
		policy_loss_xent(&st, dl, logits, T, V, tgt);
	*loss = st.loss;
	if (aux)
		*aux = a;
	/* backward */
	memset(dn, 0, TD * sizeof(double));
	memset(x, 0, TD * sizeof(double)); /* x is dx from here */
	ref_linear_bwd(dn, grads + L->lm_head, dl, nrm, P + L->lm_head, T, D, V);
	ref_rmsnorm_bwd(x, grads + L->final_norm, dn, xf, P + L->final_norm, T, D, c->norm_eps);
	pb_round(x, TD, flags & PB_DRES);
	for (int l = NL - 1; l >= 0; l--) {
		const struct policy_layer_params *lp = &L->layers[l];
		const double *h = hmid + l * TD, *xi = xin + l * TD;
		ref_rmsnorm_fwd(nrm, h, P + lp->ffn_norm, T, D, c->norm_eps);
		memset(dn, 0, TD * sizeof(double));
		ref_moe_bwd(dn, grads, x, 1.0, nrm, P, lp, c, T);
		pb_round(dn, TD, flags & PB_DNF);
		ref_rmsnorm_bwd(x, grads + lp->ffn_norm, dn, h, P + lp->ffn_norm, T, D,
		                c->norm_eps);
		pb_round(x, TD, flags & PB_DRES);
		ref_rmsnorm_fwd(nrm, xi, P + lp->attn_norm, T, D, c->norm_eps);
		memset(dn, 0, TD * sizeof(double));
		if (lp->softmax)
			ref_softmax_attn_bwd(dn, grads, x, nrm, P, lp, c, b);
		else {
			pb_lin_bwd(dn, grads, x, nrm, P, lp, c, l, b, flags);
			pb_round(dn, TD, flags & PB_DNA);
		}
		ref_rmsnorm_bwd(x, grads + lp->attn_norm, dn, xi, P + lp->attn_norm, T, D,
		                c->norm_eps);
		pb_round(x, TD, flags & PB_DRES);
	}
	for (int t = 0; t < T; t++)
		for (int i = 0; i < D; i++)
			grads[L->tok_emb + (size_t)b->tokens[t] * D + i] += x[(size_t)t * D + i];
	free(xin);
	free(hmid);
	free(x);
	free(nrm);
	free(tmp);
	free(dn);
	free(dl);
	free(xf);
}

/* relative L2 distance of a from r over n elements */
static inline double pb_rel(const double *a, const double *r, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		num += (a[i] - r[i]) * (a[i] - r[i]);
		den += r[i] * r[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif

/* ref.c - the CPU reference model: every layer's forward and backward in
 * plain C, double precision, written for clarity (naive loops) rather than
 * speed. It is the ground truth the GPU path is compared against and what CI
 * gradient-checks against finite differences. It runs small configs only.
 *
 * Block l (pre-norm residual):
 *   h = x + Attn_l(RMSNorm(x))      Attn = lightning or softmax attention
 *   x = h + MoE_l(RMSNorm(h))
 * logits = lm_head RMSNorm(x) (the LM head is never cast below fp32). */
#include "policy/ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sigmoid(double x)
{
	return 1.0 / (1.0 + exp(-x));
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		abort(); /* the reference runs small configs; allocation failure is fatal */
	return p;
}

/* ---- linear and RMSNorm --------------------------------------------------- */

void ref_linear_fwd(double *y, const double *x, const double *W, int T, int I, int O)
{
	for (int t = 0; t < T; t++)
		for (int o = 0; o < O; o++) {
			const double *w = W + (size_t)o * I, *xt = x + (size_t)t * I;
			double s = 0;
			for (int i = 0; i < I; i++)
				s += w[i] * xt[i];
			y[(size_t)t * O + o] = s;
		}
}

void ref_linear_bwd(double *dx, double *dW, const double *dy, const double *x, const double *W,
                    int T, int I, int O)
{
	for (int t = 0; t < T; t++)
		for (int o = 0; o < O; o++) {
			double g = dy[(size_t)t * O + o];
			const double *w = W + (size_t)o * I, *xt = x + (size_t)t * I;
			double *dw = dW + (size_t)o * I;
			if (g == 0)
				continue;
			for (int i = 0; i < I; i++)
				dw[i] += g * xt[i];
			if (dx)
				for (int i = 0; i < I; i++)
					dx[(size_t)t * I + i] += g * w[i];
		}
}

void ref_rmsnorm_fwd(double *y, const double *x, const double *w, int T, int C, double eps)
{
	for (int t = 0; t < T; t++) {
		const double *xt = x + (size_t)t * C;
		double ss = 0, r;
		for (int i = 0; i < C; i++)
			ss += xt[i] * xt[i];
		r = 1.0 / sqrt(ss / C + eps);
		for (int i = 0; i < C; i++)
			y[(size_t)t * C + i] = xt[i] * r * w[i];
	}
}

void ref_rmsnorm_bwd(double *dx, double *dw, const double *dy, const double *x, const double *w,
                     int T, int C, double eps)
{
	for (int t = 0; t < T; t++) {
		const double *xt = x + (size_t)t * C, *gt = dy + (size_t)t * C;
		double ss = 0, r, dot = 0;
		for (int i = 0; i < C; i++)
			ss += xt[i] * xt[i];
		r = 1.0 / sqrt(ss / C + eps);
		for (int i = 0; i < C; i++) {
			dw[i] += gt[i] * xt[i] * r;
			dot += gt[i] * w[i] * xt[i];
		}
		/* y_i = x_i r w_i; dr/dx_j = -r^3 x_j / C */
		for (int i = 0; i < C; i++)
			dx[(size_t)t * C + i] += r * gt[i] * w[i] - r * r * r * xt[i] * dot / C;
	}
}

/* ---- lightning attention -------------------------------------------------- */

double ref_lightning_lambda(int h, int H, int l, int L)
{
	double s = pow(pow(2.0, -8.0 / H), h + 1);
	double depth = L > 1 ? (double)l / (L - 1) : 0.0;
	return exp(-s * (1.0 - depth + 1e-5));
}

void ref_lightning_core_fwd(double *o, const double *q, const double *k, const double *v,
                            const double *lambda, int T, int H, int d, const int *cu, int n_seqs)
{
	double *S = xcalloc((size_t)d * d, sizeof(double));
	(void)T;
	for (int sq = 0; sq < n_seqs; sq++)
		for (int h = 0; h < H; h++) {
			memset(S, 0, (size_t)d * d * sizeof(double));
			for (int t = cu[sq]; t < cu[sq + 1]; t++) {
				const double *qt = q + ((size_t)t * H + h) * d;
				const double *kt = k + ((size_t)t * H + h) * d;
				const double *vt = v + ((size_t)t * H + h) * d;
				double *ot = o + ((size_t)t * H + h) * d;
				for (int i = 0; i < d; i++)
					for (int j = 0; j < d; j++)
						S[i * d + j] =
						        lambda[h] * S[i * d + j] + kt[i] * vt[j];
				for (int j = 0; j < d; j++) {
					double s = 0;
					for (int i = 0; i < d; i++)
						s += qt[i] * S[i * d + j];
					ot[j] = s;
				}
			}
		}
	free(S);
}

/* The quadratic form: o_t = sum_{s<=t} lambda^(t-s) (q_t . k_s) v_s. */
void ref_lightning_core_bwd(double *dq, double *dk, double *dv, const double *dout, const double *q,
                            const double *k, const double *v, const double *lambda, int T, int H,
                            int d, const int *cu, int n_seqs)
{
	(void)T;
	for (int sq = 0; sq < n_seqs; sq++)
		for (int h = 0; h < H; h++)
			for (int t = cu[sq]; t < cu[sq + 1]; t++) {
				const double *qt = q + ((size_t)t * H + h) * d;
				const double *gt = dout + ((size_t)t * H + h) * d;
				for (int s = cu[sq]; s <= t; s++) {
					const double *ks = k + ((size_t)s * H + h) * d;
					const double *vs = v + ((size_t)s * H + h) * d;
					double decay = pow(lambda[h], t - s), qk = 0, gv = 0;
					for (int i = 0; i < d; i++) {
						qk += qt[i] * ks[i];
						gv += gt[i] * vs[i];
					}
					for (int i = 0; i < d; i++) {
						dq[((size_t)t * H + h) * d + i] +=
						        decay * gv * ks[i];
						dk[((size_t)s * H + h) * d + i] +=
						        decay * gv * qt[i];
						dv[((size_t)s * H + h) * d + i] +=
						        decay * qk * gt[i];
					}
				}
			}
}

/* Scratch of one lightning layer's forward, recomputed by the backward. */
struct lin_fwd {
	double *pre; /* (T, 3, Hd): q, k, v projections before SiLU */
	double *q, *k, *v, *o, *gpre, *g, *n, *gn;
	double *lambda; /* (H) */
};

static void lightning_forward(struct lin_fwd *f, const double *x, const double *P,
                              const struct policy_layer_params *lp, const struct policy_config *c,
                              int layer, const struct policy_batch *b)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, d = c->head_dim, Hd = H * d;
	size_t n = (size_t)T * Hd;
	f->lambda = xcalloc((size_t)H, sizeof(double));
	f->pre = xcalloc(3 * n, sizeof(double));
	f->q = xcalloc(n, sizeof(double));
	f->k = xcalloc(n, sizeof(double));
	f->v = xcalloc(n, sizeof(double));
	f->o = xcalloc(n, sizeof(double));
	f->gpre = xcalloc(n, sizeof(double));
	f->g = xcalloc(n, sizeof(double));
	f->n = xcalloc(n, sizeof(double));
	f->gn = xcalloc(n, sizeof(double));
	ref_linear_fwd(f->pre, x, P + lp->wq, T, D, Hd);
	ref_linear_fwd(f->pre + n, x, P + lp->wk, T, D, Hd);
	ref_linear_fwd(f->pre + 2 * n, x, P + lp->wv, T, D, Hd);
	for (size_t i = 0; i < n; i++) {
		f->q[i] = f->pre[i] * sigmoid(f->pre[i]);
		f->k[i] = f->pre[n + i] * sigmoid(f->pre[n + i]);
		f->v[i] = f->pre[2 * n + i] * sigmoid(f->pre[2 * n + i]);
	}
	for (int h = 0; h < H; h++)
		f->lambda[h] = ref_lightning_lambda(h, H, layer, c->n_layers);
	ref_lightning_core_fwd(f->o, f->q, f->k, f->v, f->lambda, T, H, d, b->cu_seqlens,
	                       b->n_seqs);
	ref_linear_fwd(f->gpre, x, P + lp->wgate, T, D, Hd);
	for (size_t i = 0; i < n; i++)
		f->g[i] = sigmoid(f->gpre[i]);
	ref_rmsnorm_fwd(f->n, f->o, P + lp->out_norm, T, Hd, c->norm_eps);
	for (size_t i = 0; i < n; i++)
		f->gn[i] = f->g[i] * f->n[i];
}

static void lin_free(struct lin_fwd *f)
{
	free(f->pre);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->o);
	free(f->gpre);
	free(f->g);
	free(f->n);
	free(f->gn);
	free(f->lambda);
}

void ref_lightning_fwd(double *y, const double *x, const double *P,
                       const struct policy_layer_params *lp, const struct policy_config *c,
                       int layer, const struct policy_batch *b)
{
	struct lin_fwd f;
	lightning_forward(&f, x, P, lp, c, layer, b);
	ref_linear_fwd(y, f.gn, P + lp->wo, b->n_tokens, c->n_heads * c->head_dim, c->dim);
	lin_free(&f);
}

static double dsilu(double a)
{
	double s = sigmoid(a);
	return s * (1.0 + a * (1.0 - s));
}

void ref_lightning_bwd(double *dx, double *dP, const double *dy, const double *x, const double *P,
                       const struct policy_layer_params *lp, const struct policy_config *c,
                       int layer, const struct policy_batch *b)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, d = c->head_dim, Hd = H * d;
	size_t n = (size_t)T * Hd;
	struct lin_fwd f;
	double *dgn = xcalloc(n, sizeof(double)), *dn = xcalloc(n, sizeof(double));
	double *dgpre = xcalloc(n, sizeof(double)), *dO = xcalloc(n, sizeof(double));
	double *dqkv = xcalloc(3 * n, sizeof(double));

	lightning_forward(&f, x, P, lp, c, layer, b);
	ref_linear_bwd(dgn, dP + lp->wo, dy, f.gn, P + lp->wo, T, Hd, D);
	for (size_t i = 0; i < n; i++) {
		dn[i] = dgn[i] * f.g[i];
		dgpre[i] = dgn[i] * f.n[i] * f.g[i] * (1.0 - f.g[i]);
	}
	ref_linear_bwd(dx, dP + lp->wgate, dgpre, x, P + lp->wgate, T, D, Hd);
	ref_rmsnorm_bwd(dO, dP + lp->out_norm, dn, f.o, P + lp->out_norm, T, Hd, c->norm_eps);
	ref_lightning_core_bwd(dqkv, dqkv + n, dqkv + 2 * n, dO, f.q, f.k, f.v, f.lambda, T, H, d,
	                       b->cu_seqlens, b->n_seqs);
	for (size_t i = 0; i < 3 * n; i++)
		dqkv[i] *= dsilu(f.pre[i]);
	ref_linear_bwd(dx, dP + lp->wq, dqkv, x, P + lp->wq, T, D, Hd);
	ref_linear_bwd(dx, dP + lp->wk, dqkv + n, x, P + lp->wk, T, D, Hd);
	ref_linear_bwd(dx, dP + lp->wv, dqkv + 2 * n, x, P + lp->wv, T, D, Hd);
	lin_free(&f);
	free(dgn);
	free(dn);
	free(dgpre);
	free(dO);
	free(dqkv);
}

/* ---- softmax attention ---------------------------------------------------- */

void ref_rotary(double *x, int T, int H, int d, int rd, double theta, const int *cu, int n_seqs,
                int inverse)
{
	int half = rd / 2;
	(void)T;
	for (int sq = 0; sq < n_seqs; sq++)
		for (int t = cu[sq]; t < cu[sq + 1]; t++) {
			int pos = t - cu[sq];
			for (int h = 0; h < H; h++) {
				double *v = x + ((size_t)t * H + h) * d;
				for (int i = 0; i < half; i++) {
					double ang = pos * pow(theta, -2.0 * i / rd);
					double cs = cos(ang), sn = inverse ? -sin(ang) : sin(ang);
					double a = v[i], bb = v[i + half];
					v[i] = a * cs - bb * sn;
					v[i + half] = bb * cs + a * sn;
				}
			}
		}
}

struct sm_fwd {
	double *q, *k, *v, *o; /* q (T,H,d) rotated; k, v (T,KV,d), k rotated; o (T,H,d) */
};

static void softmax_forward(struct sm_fwd *f, const double *x, const double *P,
                            const struct policy_layer_params *lp, const struct policy_config *c,
                            const struct policy_batch *b)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim;
	int grp = H / KV;
	double scale = 1.0 / sqrt((double)d);
	double *p = xcalloc((size_t)(T > 0 ? T : 1), sizeof(double));
	f->q = xcalloc((size_t)T * H * d, sizeof(double));
	f->k = xcalloc((size_t)T * KV * d, sizeof(double));
	f->v = xcalloc((size_t)T * KV * d, sizeof(double));
	f->o = xcalloc((size_t)T * H * d, sizeof(double));
	ref_linear_fwd(f->q, x, P + lp->wq, T, D, H * d);
	ref_linear_fwd(f->k, x, P + lp->wk, T, D, KV * d);
	ref_linear_fwd(f->v, x, P + lp->wv, T, D, KV * d);
	ref_rotary(f->q, T, H, d, c->rotary_dim, c->rope_theta, b->cu_seqlens, b->n_seqs, 0);
	ref_rotary(f->k, T, KV, d, c->rotary_dim, c->rope_theta, b->cu_seqlens, b->n_seqs, 0);
	for (int sq = 0; sq < b->n_seqs; sq++) {
		int s0 = b->cu_seqlens[sq];
		for (int t = s0; t < b->cu_seqlens[sq + 1]; t++)
			for (int h = 0; h < H; h++) {
				const double *qt = f->q + ((size_t)t * H + h) * d;
				double mx = -INFINITY, z = 0;
				double *ot = f->o + ((size_t)t * H + h) * d;
				for (int s = s0; s <= t; s++) {
					const double *ks = f->k + ((size_t)s * KV + h / grp) * d;
					double dot = 0;
					for (int i = 0; i < d; i++)
						dot += qt[i] * ks[i];
					p[s - s0] = dot * scale;
					if (p[s - s0] > mx)
						mx = p[s - s0];
				}
				for (int s = s0; s <= t; s++)
					z += (p[s - s0] = exp(p[s - s0] - mx));
				for (int s = s0; s <= t; s++) {
					const double *vs = f->v + ((size_t)s * KV + h / grp) * d;
					for (int i = 0; i < d; i++)
						ot[i] += p[s - s0] / z * vs[i];
				}
			}
	}
	free(p);
}

static void sm_free(struct sm_fwd *f)
{
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->o);
}

void ref_softmax_attn_fwd(double *y, const double *x, const double *P,
                          const struct policy_layer_params *lp, const struct policy_config *c,
                          const struct policy_batch *b)
{
	struct sm_fwd f;
	softmax_forward(&f, x, P, lp, c, b);
	ref_linear_fwd(y, f.o, P + lp->wo, b->n_tokens, c->n_heads * c->head_dim, c->dim);
	sm_free(&f);
}

void ref_softmax_attn_bwd(double *dx, double *dP, const double *dy, const double *x,
                          const double *P, const struct policy_layer_params *lp,
                          const struct policy_config *c, const struct policy_batch *b)
{
	int T = b->n_tokens, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim;
	int grp = H / KV;
	double scale = 1.0 / sqrt((double)d);
	struct sm_fwd f;
	double *dO = xcalloc((size_t)T * H * d, sizeof(double));
	double *dq = xcalloc((size_t)T * H * d, sizeof(double));
	double *dk = xcalloc((size_t)T * KV * d, sizeof(double));
	double *dv = xcalloc((size_t)T * KV * d, sizeof(double));
	double *p = xcalloc((size_t)(T > 0 ? T : 1), sizeof(double));
	double *dp = xcalloc((size_t)(T > 0 ? T : 1), sizeof(double));

	softmax_forward(&f, x, P, lp, c, b);
	ref_linear_bwd(dO, dP + lp->wo, dy, f.o, P + lp->wo, T, H * d, D);
	for (int sq = 0; sq < b->n_seqs; sq++) {
		int s0 = b->cu_seqlens[sq];
		for (int t = s0; t < b->cu_seqlens[sq + 1]; t++)
			for (int h = 0; h < H; h++) {
				const double *qt = f.q + ((size_t)t * H + h) * d;
				const double *gt = dO + ((size_t)t * H + h) * d;
				double mx = -INFINITY, z = 0, sum = 0;
				for (int s = s0; s <= t; s++) {
					const double *ks = f.k + ((size_t)s * KV + h / grp) * d;
					double dot = 0;
					for (int i = 0; i < d; i++)
						dot += qt[i] * ks[i];
					p[s - s0] = dot * scale;
					if (p[s - s0] > mx)
						mx = p[s - s0];
				}
				for (int s = s0; s <= t; s++)
					z += (p[s - s0] = exp(p[s - s0] - mx));
				for (int s = s0; s <= t; s++) {
					const double *vs = f.v + ((size_t)s * KV + h / grp) * d;
					double *dvs = dv + ((size_t)s * KV + h / grp) * d;
					double g = 0;
					p[s - s0] /= z;
					for (int i = 0; i < d; i++) {
						g += gt[i] * vs[i];
						dvs[i] += p[s - s0] * gt[i];
					}
					dp[s - s0] = g;
					sum += p[s - s0] * g;
				}
				for (int s = s0; s <= t; s++) {
					const double *ks = f.k + ((size_t)s * KV + h / grp) * d;
					double *dks = dk + ((size_t)s * KV + h / grp) * d;
					double ds = p[s - s0] * (dp[s - s0] - sum) * scale;
					for (int i = 0; i < d; i++) {
						dq[((size_t)t * H + h) * d + i] += ds * ks[i];
						dks[i] += ds * qt[i];
					}
				}
			}
	}
	ref_rotary(dq, T, H, d, c->rotary_dim, c->rope_theta, b->cu_seqlens, b->n_seqs, 1);
	ref_rotary(dk, T, KV, d, c->rotary_dim, c->rope_theta, b->cu_seqlens, b->n_seqs, 1);
	ref_linear_bwd(dx, dP + lp->wq, dq, x, P + lp->wq, T, D, H * d);
	ref_linear_bwd(dx, dP + lp->wk, dk, x, P + lp->wk, T, D, KV * d);
	ref_linear_bwd(dx, dP + lp->wv, dv, x, P + lp->wv, T, D, KV * d);
	sm_free(&f);
	free(dO);
	free(dq);
	free(dk);
	free(dv);
	free(p);
	free(dp);
}

/* ---- MoE ------------------------------------------------------------------ */

/* Router probabilities (T, E) and the top-k choice (T, k) of every token. */
static void route(double *prob, int *sel, const double *x, const double *P,
                  const struct policy_layer_params *lp, const struct policy_config *c, int T)
{
	int D = c->dim, E = c->n_experts, K = c->top_k;
	ref_linear_fwd(prob, x, P + lp->router, T, D, E);
	for (int t = 0; t < T; t++) {
		double *pt = prob + (size_t)t * E, mx = -INFINITY, z = 0;
		for (int e = 0; e < E; e++)
			mx = pt[e] > mx ? pt[e] : mx;
		for (int e = 0; e < E; e++)
			z += (pt[e] = exp(pt[e] - mx));
		for (int e = 0; e < E; e++)
			pt[e] /= z;
		for (int j = 0; j < K; j++) {
			int best = -1;
			for (int e = 0; e < E; e++) {
				int taken = 0;
				for (int i = 0; i < j; i++)
					taken |= sel[(size_t)t * K + i] == e;
				if (!taken && (best < 0 || pt[e] > pt[best]))
					best = e;
			}
			sel[(size_t)t * K + j] = best;
		}
	}
}

/* One expert on one token: a = W1 x, b = W3 x, h = silu(a) * b, y = W2 h. */
static void expert_fwd(double *a, double *bb, double *hh, double *y, const double *x,
                       const double *P, const struct policy_layer_params *lp,
                       const struct policy_config *c, int e)
{
	int D = c->dim, F = c->expert_hidden;
	const double *w1 = P + lp->w1 + (size_t)e * F * D, *w3 = P + lp->w3 + (size_t)e * F * D;
	const double *w2 = P + lp->w2 + (size_t)e * D * F;
	ref_linear_fwd(a, x, w1, 1, D, F);
	ref_linear_fwd(bb, x, w3, 1, D, F);
	for (int i = 0; i < F; i++)
		hh[i] = a[i] * sigmoid(a[i]) * bb[i];
	ref_linear_fwd(y, hh, w2, 1, F, D);
}

double ref_moe_fwd(double *y, const double *x, const double *P,
                   const struct policy_layer_params *lp, const struct policy_config *c, int T)
{
	int D = c->dim, E = c->n_experts, K = c->top_k, F = c->expert_hidden;
	double *prob = xcalloc((size_t)T * E, sizeof(double));
	int *sel = xcalloc((size_t)T * K, sizeof(int));
	double *a = xcalloc((size_t)F, sizeof(double)), *bb = xcalloc((size_t)F, sizeof(double));
	double *hh = xcalloc((size_t)F, sizeof(double)), *ye = xcalloc((size_t)D, sizeof(double));
	double *cnt = xcalloc((size_t)E, sizeof(double)), *pm = xcalloc((size_t)E, sizeof(double));
	double aux = 0;

	route(prob, sel, x, P, lp, c, T);
	for (int t = 0; t < T; t++) {
		double S = 0;
		for (int j = 0; j < K; j++)
			S += prob[(size_t)t * E + sel[(size_t)t * K + j]];
		for (int i = 0; i < D; i++)
			y[(size_t)t * D + i] = 0;
		for (int j = 0; j < K; j++) {
			int e = sel[(size_t)t * K + j];
			double g = prob[(size_t)t * E + e] / S;
			expert_fwd(a, bb, hh, ye, x + (size_t)t * D, P, lp, c, e);
			for (int i = 0; i < D; i++)
				y[(size_t)t * D + i] += g * ye[i];
			cnt[e] += 1;
		}
		for (int e = 0; e < E; e++)
			pm[e] += prob[(size_t)t * E + e];
	}
	for (int e = 0; e < E && T > 0; e++)
		aux += (cnt[e] / ((double)T * K)) * (pm[e] / T);
	aux *= c->aux_loss_coef * E;
	free(prob);
	free(sel);
	free(a);
	free(bb);
	free(hh);
	free(ye);
	free(cnt);
	free(pm);
	return aux;
}

void ref_moe_bwd(double *dx, double *dP, const double *dy, double aux_scale, const double *x,
                 const double *P, const struct policy_layer_params *lp,
                 const struct policy_config *c, int T)
{
	int D = c->dim, E = c->n_experts, K = c->top_k, F = c->expert_hidden;
	double *prob = xcalloc((size_t)T * E, sizeof(double));
	int *sel = xcalloc((size_t)T * K, sizeof(int));
	double *a = xcalloc((size_t)F, sizeof(double)), *bb = xcalloc((size_t)F, sizeof(double));
	double *hh = xcalloc((size_t)F, sizeof(double)), *ye = xcalloc((size_t)D, sizeof(double));
	double *dh = xcalloc((size_t)F, sizeof(double)), *da = xcalloc((size_t)F, sizeof(double));
	double *db = xcalloc((size_t)F, sizeof(double)), *dyg = xcalloc((size_t)D, sizeof(double));
	double *cnt = xcalloc((size_t)E, sizeof(double)), *dp = xcalloc((size_t)E, sizeof(double));
	double *dg = xcalloc((size_t)K, sizeof(double)), *dlog = xcalloc((size_t)E, sizeof(double));

	route(prob, sel, x, P, lp, c, T);
	for (int t = 0; t < T; t++)
		for (int j = 0; j < K; j++)
			cnt[sel[(size_t)t * K + j]] += 1;
	for (int t = 0; t < T; t++) {
		const double *xt = x + (size_t)t * D, *gt = dy + (size_t)t * D;
		double *pt = prob + (size_t)t * E, S = 0, sdg = 0, sp = 0;
		for (int j = 0; j < K; j++)
			S += pt[sel[(size_t)t * K + j]];
		for (int j = 0; j < K; j++) {
			int e = sel[(size_t)t * K + j];
			double g = pt[e] / S;
			const double *w1 = P + lp->w1 + (size_t)e * F * D;
			const double *w3 = P + lp->w3 + (size_t)e * F * D;
			const double *w2 = P + lp->w2 + (size_t)e * D * F;
			expert_fwd(a, bb, hh, ye, xt, P, lp, c, e);
			dg[j] = 0;
			for (int i = 0; i < D; i++) {
				dg[j] += gt[i] * ye[i];
				dyg[i] = g * gt[i];
			}
			memset(dh, 0, (size_t)F * sizeof(double));
			ref_linear_bwd(dh, dP + lp->w2 + (size_t)e * D * F, dyg, hh, w2, 1, F, D);
			for (int i = 0; i < F; i++) {
				double sa = a[i] * sigmoid(a[i]);
				da[i] = dh[i] * bb[i] * dsilu(a[i]);
				db[i] = dh[i] * sa;
			}
			ref_linear_bwd(dx + (size_t)t * D, dP + lp->w1 + (size_t)e * F * D, da, xt,
			               w1, 1, D, F);
			ref_linear_bwd(dx + (size_t)t * D, dP + lp->w3 + (size_t)e * F * D, db, xt,
			               w3, 1, D, F);
			sdg += dg[j] * g;
		}
		/* g_j = p_j / S over the selected experts; f_e is a constant */
		for (int e = 0; e < E; e++)
			dp[e] = aux_scale * c->aux_loss_coef * E * (cnt[e] / ((double)T * K)) / T;
		for (int j = 0; j < K; j++)
			dp[sel[(size_t)t * K + j]] += (dg[j] - sdg) / S;
		for (int e = 0; e < E; e++)
			sp += pt[e] * dp[e];
		for (int e = 0; e < E; e++)
			dlog[e] = pt[e] * (dp[e] - sp);
		ref_linear_bwd(dx + (size_t)t * D, dP + lp->router, dlog, xt, P + lp->router, 1, D,
		               E);
	}
	free(prob);
	free(sel);
	free(a);
	free(bb);
	free(hh);
	free(ye);
	free(dh);
	free(da);
	free(db);
	free(dyg);
	free(cnt);
	free(dp);
	free(dg);
	free(dlog);
}

/* ---- the whole model ------------------------------------------------------ */

struct policy_ref_tape {
	const struct policy_config *cfg;
	const struct policy_layout *layout;
	const double *P;
	struct policy_batch batch;
	double *xin;  /* (L, T, D): each block's input */
	double *hmid; /* (L, T, D): after the attention residual */
	double *xf;   /* (T, D): the last block's output */
	double *logits;
	double aux;
};

int policy_ref_forward(struct policy_ref_tape **out, const struct policy_config *c,
                       const struct policy_layout *L, const double *P, const struct policy_batch *b)
{
	int T = b->n_tokens, D = c->dim, V = c->vocab_size;
	size_t TD = (size_t)T * D;
	struct policy_ref_tape *tp;
	double *x, *nrm, *tmp;

	if (T < 1 || b->n_seqs < 1 || b->cu_seqlens[0] != 0 || b->cu_seqlens[b->n_seqs] != T)
		return swerve_error_set(SWERVE_EINVAL,
		                        "batch: cu_seqlens must run from 0 to n_tokens (%d)", T);
	for (int s = 0; s < b->n_seqs; s++)
		if (b->cu_seqlens[s + 1] < b->cu_seqlens[s] ||
		    b->cu_seqlens[s + 1] - b->cu_seqlens[s] > c->max_seq_len)
			return swerve_error_set(SWERVE_EINVAL,
			                        "batch: sequence %d: length must be 0..%d", s,
			                        c->max_seq_len);
	for (int t = 0; t < T; t++)
		if (b->tokens[t] < 0 || b->tokens[t] >= V)
			return swerve_error_set(
			        SWERVE_EINVAL, "batch: token %d: id %d outside the vocabulary (%d)",
			        t, b->tokens[t], V);
	tp = xcalloc(1, sizeof(*tp));
	tp->cfg = c;
	tp->layout = L;
	tp->P = P;
	tp->batch = *b;
	tp->xin = xcalloc((size_t)c->n_layers * TD, sizeof(double));
	tp->hmid = xcalloc((size_t)c->n_layers * TD, sizeof(double));
	tp->xf = xcalloc(TD, sizeof(double));
	tp->logits = xcalloc((size_t)T * V, sizeof(double));
	x = xcalloc(TD, sizeof(double));
	nrm = xcalloc(TD, sizeof(double));
	tmp = xcalloc(TD, sizeof(double));
	for (int t = 0; t < T; t++)
		memcpy(x + (size_t)t * D, P + L->tok_emb + (size_t)b->tokens[t] * D,
		       (size_t)D * sizeof(double));
	for (int l = 0; l < c->n_layers; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		memcpy(tp->xin + l * TD, x, TD * sizeof(double));
		ref_rmsnorm_fwd(nrm, x, P + lp->attn_norm, T, D, c->norm_eps);
		if (lp->softmax)
			ref_softmax_attn_fwd(tmp, nrm, P, lp, c, b);
		else
			ref_lightning_fwd(tmp, nrm, P, lp, c, l, b);
		for (size_t i = 0; i < TD; i++)
			x[i] += tmp[i];
		memcpy(tp->hmid + l * TD, x, TD * sizeof(double));
		ref_rmsnorm_fwd(nrm, x, P + lp->ffn_norm, T, D, c->norm_eps);
		tp->aux += ref_moe_fwd(tmp, nrm, P, lp, c, T);
		for (size_t i = 0; i < TD; i++)
			x[i] += tmp[i];
	}
	memcpy(tp->xf, x, TD * sizeof(double));
	ref_rmsnorm_fwd(nrm, x, P + L->final_norm, T, D, c->norm_eps);
	ref_linear_fwd(tp->logits, nrm, P + L->lm_head, T, D, V);
	free(x);
	free(nrm);
	free(tmp);
	*out = tp;
	return 0;
}

const double *policy_ref_logits(const struct policy_ref_tape *tp)
{
	return tp->logits;
}

double policy_ref_aux_loss(const struct policy_ref_tape *tp)
{
	return tp->aux;
}

int policy_ref_backward(struct policy_ref_tape *tp, const double *dlogits, double aux_scale,
                        double *G)
{
	const struct policy_config *c = tp->cfg;
	const struct policy_layout *L = tp->layout;
	const struct policy_batch *b = &tp->batch;
	const double *P = tp->P;
	int T = b->n_tokens, D = c->dim, V = c->vocab_size;
	size_t TD = (size_t)T * D;
	double *nrm = xcalloc(TD, sizeof(double)), *dn = xcalloc(TD, sizeof(double));
	double *dx = xcalloc(TD, sizeof(double));

	ref_rmsnorm_fwd(nrm, tp->xf, P + L->final_norm, T, D, c->norm_eps);
	ref_linear_bwd(dn, G + L->lm_head, dlogits, nrm, P + L->lm_head, T, D, V);
	ref_rmsnorm_bwd(dx, G + L->final_norm, dn, tp->xf, P + L->final_norm, T, D, c->norm_eps);
	for (int l = c->n_layers - 1; l >= 0; l--) {
		const struct policy_layer_params *lp = &L->layers[l];
		const double *h = tp->hmid + l * TD, *xi = tp->xin + l * TD;
		/* x_out = h + MoE(norm(h)): dx flows to h directly and through the MoE */
		ref_rmsnorm_fwd(nrm, h, P + lp->ffn_norm, T, D, c->norm_eps);
		memset(dn, 0, TD * sizeof(double));
		ref_moe_bwd(dn, G, dx, aux_scale, nrm, P, lp, c, T);
		ref_rmsnorm_bwd(dx, G + lp->ffn_norm, dn, h, P + lp->ffn_norm, T, D, c->norm_eps);
		/* h = x + Attn(norm(x)) */
		ref_rmsnorm_fwd(nrm, xi, P + lp->attn_norm, T, D, c->norm_eps);
		memset(dn, 0, TD * sizeof(double));
		if (lp->softmax)
			ref_softmax_attn_bwd(dn, G, dx, nrm, P, lp, c, b);
		else
			ref_lightning_bwd(dn, G, dx, nrm, P, lp, c, l, b);
		ref_rmsnorm_bwd(dx, G + lp->attn_norm, dn, xi, P + lp->attn_norm, T, D,
		                c->norm_eps);
	}
	for (int t = 0; t < T; t++)
		for (int i = 0; i < D; i++)
			G[L->tok_emb + (size_t)b->tokens[t] * D + i] += dx[(size_t)t * D + i];
	free(nrm);
	free(dn);
	free(dx);
	return 0;
}

void policy_ref_tape_free(struct policy_ref_tape *tp)
{
	if (!tp)
		return;
	free(tp->xin);
	free(tp->hmid);
	free(tp->xf);
	free(tp->logits);
	free(tp);
}

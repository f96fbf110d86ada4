/* test_ref.c - gradient checks of the CPU reference model against central
 * finite differences in double precision: every layer alone (linear,
 * RMSNorm, lightning core and layer, rotary, softmax attention with GQA and
 * packed sequences, MoE with its balance loss) and the whole model, plus
 * checks that the layers compute what SPEC.md says (decay recurrence,
 * sequence isolation). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy/ref.h"

static uint64_t rs = 12345;
static double urand(void)
{
	rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((rs >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void)
{
	return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}
static double *rvec(size_t n, double scale)
{
	double *v = calloc(n, sizeof(double));
	for (size_t i = 0; i < n; i++)
		v[i] = scale * nrand();
	return v;
}

/* the worst relative error of analytic vs numeric gradients over n entries */
struct worst {
	double rel;
	size_t at;
	double a, n;
};
static double floor_ = 1e-7; /* denominators below this count as this */
static void track(struct worst *w, size_t i, double a, double n)
{
	double rel = fabs(a - n) / fmax(floor_, fabs(a) + fabs(n));
	if (rel > w->rel) {
		w->rel = rel;
		w->at = i;
		w->a = a;
		w->n = n;
	}
}

static void tiny_config(struct policy_config *c)
{
	policy_config_default(c);
	c->vocab_size = 11;
	c->dim = 8;
	c->n_layers = 2;
	c->n_heads = 4;
	c->head_dim = 4;
	c->n_kv_heads = 2;
	c->rotary_dim = 2;
	c->softmax_every = 2; /* layer 1 softmax, layer 0 lightning */
	c->n_experts = 3;
	c->top_k = 2;
	c->expert_hidden = 6;
	c->max_seq_len = 16;
	c->aux_loss_coef = 0.05; /* large enough that its gradient shows */
	cr_assert_eq(policy_config_validate(c), 0, "%s", swerve_error_last());
}

static int cu_two[] = {0, 3, 7};
static int toks7[] = {1, 5, 2, 9, 0, 3, 10};
static struct policy_batch batch7 = {7, toks7, 2, cu_two};

static double *params_for(const struct policy_layout *L)
{
	double *P = rvec(L->total, 0.4);
	for (int i = 0; i < L->n; i++)
		if (L->t[i].ndim == 1)
			for (size_t j = 0; j < L->t[i].numel; j++)
				P[L->t[i].offset + j] = 1.0 + 0.2 * nrand();
	return P;
}

/* ---- generic layer checker: f(y, x, P), g(dx, dP, dy, x, P) ------------- */

typedef void (*fwd_fn)(double *y, const double *x, const double *P, void *ctx);
typedef void (*bwd_fn)(double *dx, double *dP, const double *dy, const double *x, const double *P,
                       void *ctx);

static double objective(fwd_fn f, const double *R, size_t ny, double *y, const double *x,
                        const double *P, void *ctx)
{
	double s = 0;
	f(y, x, P, ctx);
	for (size_t i = 0; i < ny; i++)
		s += R[i] * y[i];
	return s;
}

static void check_layer(const char *name, fwd_fn f, bwd_fn g, size_t nx, size_t ny, size_t np,
                        void *ctx, double tol)
{
	double *x = rvec(nx, 1.0), *P = rvec(np, 0.5), *R = rvec(ny, 1.0);
	double *y = calloc(ny, sizeof(double)), *dx = calloc(nx, sizeof(double));
	double *dP = calloc(np, sizeof(double));
	struct worst wx = {0}, wp = {0};
	const double h = 1e-6;

	g(dx, dP, R, x, P, ctx);
	for (size_t i = 0; i < nx; i++) {
		double s = x[i], up, dn;
		x[i] = s + h;
		up = objective(f, R, ny, y, x, P, ctx);
		x[i] = s - h;
		dn = objective(f, R, ny, y, x, P, ctx);
		x[i] = s;
		track(&wx, i, dx[i], (up - dn) / (2 * h));
	}
	for (size_t i = 0; i < np; i++) {
		double s = P[i], up, dn;
		P[i] = s + h;
		up = objective(f, R, ny, y, x, P, ctx);
		P[i] = s - h;
		dn = objective(f, R, ny, y, x, P, ctx);
		P[i] = s;
		track(&wp, i, dP[i], (up - dn) / (2 * h));
	}
	cr_log_info("%s: worst rel error dx %.2e at %zu (%.6g vs %.6g), dP %.2e at %zu (%.6g vs "
	            "%.6g)",
	            name, wx.rel, wx.at, wx.a, wx.n, wp.rel, wp.at, wp.a, wp.n);
	cr_expect(wx.rel < tol, "%s: dx worst rel error %.3e at %zu: analytic %.9g numeric %.9g",
	          name, wx.rel, wx.at, wx.a, wx.n);
	cr_expect(wp.rel < tol, "%s: dP worst rel error %.3e at %zu: analytic %.9g numeric %.9g",
	          name, wp.rel, wp.at, wp.a, wp.n);
	free(x);
	free(P);
	free(R);
	free(y);
	free(dx);
	free(dP);
}

/* linear: P = W (5 x 4), x (3 x 4) */
static void lin_f(double *y, const double *x, const double *P, void *c)
{
	(void)c;
	ref_linear_fwd(y, x, P, 3, 4, 5);
}
static void lin_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                  void *c)
{
	(void)c;
	ref_linear_bwd(dx, dP, dy, x, P, 3, 4, 5);
}
Test(ref_grad, linear)
{
	check_layer("linear", lin_f, lin_g, 12, 15, 20, NULL, 1e-6);
}

static void rms_f(double *y, const double *x, const double *P, void *c)
{
	(void)c;
	ref_rmsnorm_fwd(y, x, P, 3, 6, 1e-6);
}
static void rms_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                  void *c)
{
	(void)c;
	ref_rmsnorm_bwd(dx, dP, dy, x, P, 3, 6, 1e-6);
}
Test(ref_grad, rmsnorm)
{
	check_layer("rmsnorm", rms_f, rms_g, 18, 18, 6, NULL, 1e-6);
}

/* lightning core: x packs q, k, v (T=7, H=2, d=3); P packs the 2 decays */
static void core_f(double *y, const double *x, const double *P, void *c)
{
	size_t n = 7 * 2 * 3;
	double lam[2] = {0.9, 0.6};
	(void)P;
	(void)c;
	memset(y, 0, n * sizeof(double));
	ref_lightning_core_fwd(y, x, x + n, x + 2 * n, lam, 7, 2, 3, cu_two, 2);
}
static void core_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                   void *c)
{
	size_t n = 7 * 2 * 3;
	double lam[2] = {0.9, 0.6};
	(void)P;
	(void)dP;
	(void)c;
	ref_lightning_core_bwd(dx, dx + n, dx + 2 * n, dy, x, x + n, x + 2 * n, lam, 7, 2, 3,
	                       cu_two, 2);
}
Test(ref_grad, lightning_core)
{
	check_layer("lightning core", core_f, core_g, 3 * 42, 42, 1, NULL, 1e-6);
}

static void rot_f(double *y, const double *x, const double *P, void *c)
{
	(void)P;
	(void)c;
	memcpy(y, x, 7 * 2 * 6 * sizeof(double));
	ref_rotary(y, 7, 2, 6, 4, 100.0, cu_two, 2, 0);
}
static void rot_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                  void *c)
{
	double t[84];
	(void)x;
	(void)P;
	(void)dP;
	(void)c;
	memcpy(t, dy, sizeof(t));
	ref_rotary(t, 7, 2, 6, 4, 100.0, cu_two, 2, 1);
	for (int i = 0; i < 84; i++)
		dx[i] += t[i];
}
Test(ref_grad, rotary)
{
	check_layer("rotary", rot_f, rot_g, 84, 84, 1, NULL, 1e-6);
}

/* whole attention / MoE layers on the tiny config's layout */
struct lctx {
	struct policy_config c;
	struct policy_layout L;
	int layer;
	double aux_scale;
};

static void lightning_f(double *y, const double *x, const double *P, void *v)
{
	struct lctx *c = v;
	ref_lightning_fwd(y, x, P, &c->L.layers[c->layer], &c->c, c->layer, &batch7);
}
static void lightning_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                        void *v)
{
	struct lctx *c = v;
	ref_lightning_bwd(dx, dP, dy, x, P, &c->L.layers[c->layer], &c->c, c->layer, &batch7);
}
static void softmax_f(double *y, const double *x, const double *P, void *v)
{
	struct lctx *c = v;
	ref_softmax_attn_fwd(y, x, P, &c->L.layers[c->layer], &c->c, &batch7);
}
static void softmax_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                      void *v)
{
	struct lctx *c = v;
	ref_softmax_attn_bwd(dx, dP, dy, x, P, &c->L.layers[c->layer], &c->c, &batch7);
}

static void lctx_init(struct lctx *c, int layer)
{
	tiny_config(&c->c);
	cr_assert_eq(policy_layout_init(&c->L, &c->c), 0);
	c->layer = layer;
	c->aux_scale = 1.0;
}

Test(ref_grad, lightning_layer)
{
	struct lctx c;
	lctx_init(&c, 0);
	cr_assert_eq(c.L.layers[0].softmax, 0);
	check_layer("lightning layer", lightning_f, lightning_g, 7 * 8, 7 * 8, c.L.total, &c, 1e-5);
	policy_layout_dispose(&c.L);
}

Test(ref_grad, softmax_attention_gqa_rotary_varlen)
{
	struct lctx c;
	lctx_init(&c, 1);
	cr_assert_eq(c.L.layers[1].softmax, 1);
	check_layer("softmax attention", softmax_f, softmax_g, 7 * 8, 7 * 8, c.L.total, &c, 1e-5);
	policy_layout_dispose(&c.L);
}

/* MoE: the objective is R.y + aux_scale * aux */
static void moe_f(double *y, const double *x, const double *P, void *v)
{
	struct lctx *c = v;
	double aux = ref_moe_fwd(y, x, P, &c->L.layers[0], &c->c, 7);
	y[7 * 8] = aux; /* the extra output slot carries aux; R[56] = aux_scale */
}
static void moe_g(double *dx, double *dP, const double *dy, const double *x, const double *P,
                  void *v)
{
	struct lctx *c = v;
	ref_moe_bwd(dx, dP, dy, dy[7 * 8], x, P, &c->L.layers[0], &c->c, 7);
}
Test(ref_grad, moe_router_topk_swiglu_aux)
{
	struct lctx c;
	lctx_init(&c, 0);
	check_layer("moe", moe_f, moe_g, 7 * 8, 7 * 8 + 1, c.L.total, &c, 1e-5);
	policy_layout_dispose(&c.L);
}

/* ---- the whole model ------------------------------------------------------ */

static double model_loss(const struct policy_config *c, const struct policy_layout *L,
                         const double *P, const int *targets)
{
	struct policy_ref_tape *tp;
	struct policy_loss_stats st;
	double l;
	cr_assert_eq(policy_ref_forward(&tp, c, L, P, &batch7), 0, "%s", swerve_error_last());
	cr_assert_eq(policy_loss_xent(&st, NULL, policy_ref_logits(tp), 7, c->vocab_size, targets),
	             0);
	l = st.loss + policy_ref_aux_loss(tp);
	policy_ref_tape_free(tp);
	return l;
}

Test(ref_grad, whole_model_every_parameter)
{
	struct policy_config c;
	struct policy_layout L;
	struct policy_ref_tape *tp;
	int targets[7] = {5, 2, -1, 0, 3, 10, 4};
	double *P, *G, *dl;
	struct worst w = {0};
	const double h = 1e-5;

	/* the loss is O(1) and summed over layers: central differences carry
	 * ~1e-11 rounding, so gradients below 1e-6 are compared absolutely */
	floor_ = 1e-6;
	tiny_config(&c);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	P = params_for(&L);
	G = calloc(L.total, sizeof(double));
	dl = calloc(7 * (size_t)c.vocab_size, sizeof(double));
	cr_assert_eq(policy_ref_forward(&tp, &c, &L, P, &batch7), 0);
	cr_assert_eq(policy_loss_xent(NULL, dl, policy_ref_logits(tp), 7, c.vocab_size, targets),
	             0);
	cr_assert_eq(policy_ref_backward(tp, dl, 1.0, G), 0);
	policy_ref_tape_free(tp);
	for (size_t i = 0; i < L.total; i++) {
		double s = P[i], up, dn;
		P[i] = s + h;
		up = model_loss(&c, &L, P, targets);
		P[i] = s - h;
		dn = model_loss(&c, &L, P, targets);
		P[i] = s;
		track(&w, i, G[i], (up - dn) / (2 * h));
	}
	for (int i = 0; i < L.n; i++)
		if (w.at >= L.t[i].offset && w.at < L.t[i].offset + L.t[i].numel)
			cr_log_info("whole model: %zu params, worst rel error %.2e in %s", L.total,
			            w.rel, L.t[i].name);
	cr_expect(w.rel < 1e-5, "whole model: worst rel error %.3e at %zu: %.9g vs %.9g", w.rel,
	          w.at, w.a, w.n);
	free(P);
	free(G);
	free(dl);
	policy_layout_dispose(&L);
}

/* ---- what the layers compute ---------------------------------------------- */

Test(ref, lightning_core_matches_quadratic_form_and_resets_per_sequence)
{
	int T = 7, H = 2, d = 3;
	size_t n = (size_t)T * H * d;
	double *q = rvec(n, 1), *k = rvec(n, 1), *v = rvec(n, 1), *o = calloc(n, sizeof(double));
	double lam[2] = {0.8, 0.5}, worst = 0;
	ref_lightning_core_fwd(o, q, k, v, lam, T, H, d, cu_two, 2);
	for (int s = 0; s < 2; s++)
		for (int t = cu_two[s]; t < cu_two[s + 1]; t++)
			for (int h = 0; h < H; h++)
				for (int j = 0; j < d; j++) {
					double e = 0;
					for (int u = cu_two[s]; u <= t; u++) {
						double qk = 0;
						for (int i = 0; i < d; i++)
							qk += q[(t * H + h) * d + i] *
							      k[(u * H + h) * d + i];
						e += pow(lam[h], t - u) * qk *
						     v[(u * H + h) * d + j];
					}
					worst = fmax(worst, fabs(e - o[(t * H + h) * d + j]));
				}
	cr_expect(worst < 1e-12, "worst %.3e", worst);
	free(q);
	free(k);
	free(v);
	free(o);
}

Test(ref, lightning_decay_follows_spec)
{
	/* s_h = (2^(-8/H))^(h+1), s_{h,l} = s_h (1 - l/(L-1) + 1e-5) */
	double s0 = pow(2.0, -8.0 / 8);
	cr_expect(fabs(ref_lightning_lambda(0, 8, 0, 4) - exp(-s0 * (1 + 1e-5))) < 1e-15);
	cr_expect(fabs(ref_lightning_lambda(2, 8, 3, 4) - exp(-pow(s0, 3) * 1e-5)) < 1e-15);
	cr_expect(ref_lightning_lambda(1, 8, 1, 1) > 0); /* one layer: no division by zero */
}

Test(ref, packed_sequences_do_not_see_each_other)
{
	/* the logits of sequence 2 are the same packed or alone */
	struct policy_config c;
	struct policy_layout L;
	struct policy_ref_tape *a, *b;
	int cu1[] = {0, 4};
	struct policy_batch alone = {4, toks7 + 3, 1, cu1};
	double *P, worst = 0;
	tiny_config(&c);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	P = params_for(&L);
	c.aux_loss_coef = 0;
	cr_assert_eq(policy_ref_forward(&a, &c, &L, P, &batch7), 0);
	cr_assert_eq(policy_ref_forward(&b, &c, &L, P, &alone), 0);
	for (int i = 0; i < 4 * c.vocab_size; i++)
		worst = fmax(worst, fabs(policy_ref_logits(a)[3 * c.vocab_size + i] -
		                         policy_ref_logits(b)[i]));
	cr_expect(worst < 1e-12, "worst %.3e", worst);
	policy_ref_tape_free(a);
	policy_ref_tape_free(b);
	free(P);
	policy_layout_dispose(&L);
}

Test(ref, rejects_bad_batches)
{
	struct policy_config c;
	struct policy_layout L;
	struct policy_ref_tape *tp = NULL;
	int bad_tok[] = {1, 99}, cu[] = {0, 2}, cu_bad[] = {0, 3};
	struct policy_batch b1 = {2, bad_tok, 1, cu}, b2 = {2, toks7, 1, cu_bad};
	double *P;
	tiny_config(&c);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	P = params_for(&L);
	cr_expect_eq(policy_ref_forward(&tp, &c, &L, P, &b1), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "token 1") != NULL, "%s", swerve_error_last());
	cr_expect_eq(policy_ref_forward(&tp, &c, &L, P, &b2), SWERVE_EINVAL);
	free(P);
	policy_layout_dispose(&L);
}

/* ---- agreement with kernels/lightning.h's CPU reference ------------------- */

#include "kernels/lightning.h"

Test(ref, lightning_core_agrees_with_the_kernels_reference)
{
	int T = 7, H = 2, d = 4;
	size_t n = (size_t)T * H * d;
	double *q = rvec(n, 1), *k = rvec(n, 1), *v = rvec(n, 1), *g = rvec(n, 1);
	double *o = calloc(n, sizeof(double)), *dq = calloc(3 * n, sizeof(double));
	float *fq = calloc(n, 4), *fk = calloc(n, 4), *fv = calloc(n, 4), *fg = calloc(n, 4);
	float *fo = calloc(n, 4), *fd = calloc(3 * n, 4), slopes[2];
	double lam[2], worst_o = 0, worst_d = 0;
	struct swerve_lightning_dims dims = {2, H, d, 4};
	for (int h = 0; h < H; h++) {
		slopes[h] = swerve_lightning_slope(h, H, 1, 3);
		lam[h] = ref_lightning_lambda(h, H, 1, 3);
		cr_expect(fabs(exp(-(double)slopes[h]) - lam[h]) < 1e-6, "head %d decay", h);
		lam[h] = exp(-(double)slopes[h]); /* same decay for the comparison */
	}
	for (size_t i = 0; i < n; i++) {
		fq[i] = (float)q[i];
		fk[i] = (float)k[i];
		fv[i] = (float)v[i];
		fg[i] = (float)g[i];
		q[i] = fq[i];
		k[i] = fk[i];
		v[i] = fv[i];
		g[i] = fg[i];
	}
	ref_lightning_core_fwd(o, q, k, v, lam, T, H, d, cu_two, 2);
	ref_lightning_core_bwd(dq, dq + n, dq + 2 * n, g, q, k, v, lam, T, H, d, cu_two, 2);
	cr_assert_eq(
	        swerve_lightning_ref_forward(fo, NULL, fq, fk, fv, cu_two, slopes, NULL, &dims), 0,
	        "%s", swerve_error_last());
	cr_assert_eq(swerve_lightning_ref_backward(fd, fd + n, fd + 2 * n, NULL, fq, fk, fv, fg,
	                                           NULL, cu_two, slopes, NULL, &dims),
	             0, "%s", swerve_error_last());
	for (size_t i = 0; i < n; i++)
		worst_o = fmax(worst_o, fabs(o[i] - fo[i]) / (1 + fabs(o[i])));
	for (size_t i = 0; i < 3 * n; i++)
		worst_d = fmax(worst_d, fabs(dq[i] - fd[i]) / (1 + fabs(dq[i])));
	cr_log_info("lightning vs kernels reference: worst o %.2e, worst dq/dk/dv %.2e", worst_o,
	            worst_d);
	cr_expect(worst_o < 1e-5 && worst_d < 1e-5, "o %.3e d %.3e", worst_o, worst_d);
	free(q), free(k), free(v), free(g), free(o), free(dq);
	free(fq), free(fk), free(fv), free(fg), free(fo), free(fd);
}

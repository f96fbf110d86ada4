/* test_policy_loss.c - the CPU reference of the fused policy loss
 * (kernels/policy_loss.c): values against hand computation, gradients against
 * central finite differences, normalisation, masks, variants, bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/policy_loss.h"
#include "sandbox/error.h"

/* A small random problem with every buffer the reference reads or writes. */
struct prob {
	int N, d, V, S;
	float *X, *W, *logp_old, *adv, *logp, *ent, *ratio, *loss, *dX, *dW;
	int32_t *y, *seq;
	uint8_t *mask, *clipped;
	struct swerve_pl_batch b;
	struct swerve_pl_out out;
};

static uint64_t rng = 88172645463325252ull;
static double urand(void) /* [0, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static void prob_init(struct prob *p, int N, int d, int V, int S)
{
	memset(p, 0, sizeof(*p));
	p->N = N, p->d = d, p->V = V, p->S = S;
	p->X = calloc((size_t)N * d, sizeof(float));
	p->W = calloc((size_t)V * d, sizeof(float));
	p->dX = calloc((size_t)N * d, sizeof(float));
	p->dW = calloc((size_t)V * d, sizeof(float));
	p->logp_old = calloc(N, sizeof(float));
	p->adv = calloc(N > S ? N : S, sizeof(float));
	p->logp = calloc(N, sizeof(float));
	p->ent = calloc(N, sizeof(float));
	p->ratio = calloc(N, sizeof(float));
	p->loss = calloc(1, sizeof(float));
	p->y = calloc(N, sizeof(int32_t));
	p->seq = calloc(N, sizeof(int32_t));
	p->mask = calloc(N, 1);
	p->clipped = calloc(N, 1);
	for (int i = 0; i < N * d; i++)
		p->X[i] = (float)(2.0 * urand() - 1.0);
	for (int i = 0; i < V * d; i++)
		p->W[i] = (float)(urand() - 0.5);
	for (int t = 0; t < N; t++) {
		p->y[t] = (int32_t)(urand() * V);
		p->seq[t] = (int32_t)((long)t * S / N); /* contiguous sequences */
		p->mask[t] = 1;
		p->adv[t] = (float)(2.0 * urand() - 1.0);
	}
	p->b = (struct swerve_pl_batch){.n_tokens = N,
	                                .d = d,
	                                .vocab = V,
	                                .targets = p->y,
	                                .logp_old = p->logp_old,
	                                .advantages = p->adv,
	                                .seq_idx = p->seq,
	                                .n_seqs = S,
	                                .mask = p->mask};
	p->out = (struct swerve_pl_out){.logp = p->logp,
	                                .entropy = p->ent,
	                                .ratio = p->ratio,
	                                .clipped = p->clipped,
	                                .loss = p->loss,
	                                .dX = p->dX,
	                                .dW = p->dW};
}

static void prob_free(struct prob *p)
{
	free(p->X), free(p->W), free(p->dX), free(p->dW), free(p->logp_old), free(p->adv);
	free(p->logp), free(p->ent), free(p->ratio), free(p->loss), free(p->y), free(p->seq);
	free(p->mask), free(p->clipped);
}

/* Sets logp_old = logp + one of the offsets, so ratios land where wanted. */
static void set_old(struct prob *p, const double *offs, int noffs)
{
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.logprob_only = 1;
	cr_assert_eq(swerve_policy_loss_cpu(&p->out, &p->b, p->X, p->W, &o), 0, "%s",
	             swerve_error_last());
	for (int t = 0; t < p->N; t++)
		p->logp_old[t] = (float)(p->logp[t] + offs[(int)(urand() * noffs)]);
}

static double run_loss(struct prob *p, const struct swerve_pl_opts *o)
{
	cr_assert_eq(swerve_policy_loss_cpu(&p->out, &p->b, p->X, p->W, o), 0, "%s",
	             swerve_error_last());
	return *p->loss;
}

/* Objective whose gradient the loss's gradient must equal. For GRPO/DAPO
 * that is the loss itself; for CISPO it is the surrogate with the weights
 * w0 (and mask) frozen at the base point: sum norm * (-w0 A logp). */
struct frozen {
	int cispo;
	double *coef; /* dlogp at the base point (norm, w, M, A folded in) */
};

static double objective(struct prob *p, const struct swerve_pl_opts *o, const struct frozen *fz)
{
	if (!fz->cispo)
		return run_loss(p, o);
	struct swerve_pl_opts lo = *o;
	lo.logprob_only = 1;
	cr_assert_eq(swerve_policy_loss_cpu(&p->out, &p->b, p->X, p->W, &lo), 0);
	double s = 0.0;
	for (int t = 0; t < p->N; t++)
		s += fz->coef[t] * p->logp[t];
	return s;
}

/* Checks every element of dX and dW against central differences. */
static void check_fd(struct prob *p, const struct swerve_pl_opts *o)
{
	struct frozen fz = {o->variant == SWERVE_PL_CISPO, calloc(p->N, sizeof(double))};
	run_loss(p, o);
	float *gX = malloc(sizeof(float) * p->N * p->d), *gW = malloc(sizeof(float) * p->V * p->d);
	memcpy(gX, p->dX, sizeof(float) * p->N * p->d);
	memcpy(gW, p->dW, sizeof(float) * p->V * p->d);
	if (fz.cispo) {
		/* dlogp_t from the outputs: -norm * w * M * A; rebuilt from the shared math */
		long total = 0, *cnt = calloc(p->S, sizeof(long));
		for (int t = 0; t < p->N; t++)
			if (p->mask[t])
				total++, cnt[p->seq[t]]++;
		for (int t = 0; t < p->N; t++) {
			double norm = !p->mask[t] ? 0.0
			              : o->norm == SWERVE_PL_NORM_TOKENS
			                      ? 1.0 / total
			                      : 1.0 / ((double)p->S * cnt[p->seq[t]]);
			double A = p->adv[p->b.adv_per_seq ? p->seq[t] : t];
			fz.coef[t] =
			        swerve_pl_token_eval(o, p->logp[t], p->logp_old[t], A, norm).dlogp;
		}
		free(cnt);
	}
	double gmax = 0.0;
	for (int i = 0; i < p->N * p->d; i++)
		gmax = fmax(gmax, fabs(gX[i]));
	for (int i = 0; i < p->V * p->d; i++)
		gmax = fmax(gmax, fabs(gW[i]));
	cr_assert_gt(gmax, 1e-4, "the gradient is (nearly) zero: the test would prove nothing");

	const float h = 1.0f / 256;
	double worst = 0.0;
	for (int which = 0; which < 2; which++) {
		float *x = which ? p->W : p->X;
		const float *g = which ? gW : gX;
		int n = which ? p->V * p->d : p->N * p->d;
		for (int i = 0; i < n; i++) {
			float x0 = x[i];
			x[i] = x0 + h;
			double fp = objective(p, o, &fz);
			double up = (double)x[i] - x0;
			x[i] = x0 - h;
			double fm = objective(p, o, &fz);
			double dn = (double)x0 - x[i];
			x[i] = x0;
			double fd = (fp - fm) / (up + dn);
			double err = fabs(fd - g[i]);
			worst = fmax(worst, err);
			cr_assert_leq(err, 2e-3 * gmax + 1e-3 * fabs(g[i]),
			              "%s[%d]: analytic %.9g, finite difference %.9g",
			              which ? "dW" : "dX", i, g[i], fd);
		}
	}
	cr_log_info("finite differences: worst |error| %.3g of max |grad| %.3g", worst, gmax);
	free(gX), free(gW), free(fz.coef);
}

Test(policy_loss_cpu, hand_computed_values)
{
	/* N = 2, d = 2, V = 3: logits are easy to write down */
	float X[] = {1, 0, 0.5f, -1};
	float W[] = {1, 2, -1, 0.5f, 0, 1};
	int32_t y[] = {0, 2};
	float old[] = {-0.5f, -3.0f};
	float adv[] = {1.0f, -0.5f};
	float logp[2], ent[2], ratio[2], loss, dX[4], dW[6];
	uint8_t clipped[2];
	struct swerve_pl_batch b = {.n_tokens = 2,
	                            .d = 2,
	                            .vocab = 3,
	                            .targets = y,
	                            .logp_old = old,
	                            .advantages = adv};
	struct swerve_pl_out out = {logp, ent, ratio, clipped, &loss, dX, dW};
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.eps_high = 0.5f; /* cap 1.5 */
	cr_assert_eq(swerve_policy_loss_cpu(&out, &b, X, W, &o), 0, "%s", swerve_error_last());

	double z[2][3] = {{1, -1, 0}, {0.5 - 2, -0.5 - 0.5, -1}};
	double want_loss = 0;
	for (int t = 0; t < 2; t++) {
		double s = 0, sz = 0;
		for (int v = 0; v < 3; v++)
			s += exp(z[t][v]);
		double lse = log(s);
		for (int v = 0; v < 3; v++)
			sz += exp(z[t][v] - lse) * (z[t][v] - lse);
		double lp = z[t][y[t]] - lse;
		cr_assert_float_eq(logp[t], lp, 1e-6);
		cr_assert_float_eq(ent[t], -sz, 1e-6);
		double r = exp(lp - old[t]);
		cr_assert_float_eq(ratio[t], r, 1e-5 * r);
		double w = r < 1.5 ? r : 1.5;
		cr_assert_eq(clipped[t], w != r);
		want_loss += -w * adv[t] * lp / 2;
	}
	/* token 1: logp = -1 - log(e^-1.5 + 2 e^-1) ~ -0.96, old -3: ratio ~ 7.7, capped */
	cr_assert_eq(clipped[0], 0);
	cr_assert_eq(clipped[1], 1);
	cr_assert_float_eq(loss, want_loss, 1e-6);

	/* the unified mask drops token 1 (A < 0 and r < lo? no: A < 0, r > hi: kept) */
	o.cispo_mask = 1;
	cr_assert_eq(swerve_policy_loss_cpu(&out, &b, X, W, &o), 0);
	cr_assert_float_eq(loss, want_loss, 1e-6);
	/* with A > 0 on token 1, r > 1 + eps_high is masked out: only token 0 remains */
	adv[1] = 0.5f;
	cr_assert_eq(swerve_policy_loss_cpu(&out, &b, X, W, &o), 0);
	cr_assert_float_eq(loss, -ratio[0] * adv[0] * logp[0] / 2, 1e-6);
	cr_assert_eq(clipped[1], 1);
}

Test(policy_loss_cpu, grpo_gradient_matches_finite_differences)
{
	struct prob p;
	prob_init(&p, 7, 5, 11, 3);
	const double offs[] = {-0.6, -0.05, 0.0, 0.05, 0.6}; /* ratios 1.8, 1.05, 1, 0.95, 0.55 */
	set_old(&p, offs, 5);
	p.mask[2] = 0;
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_GRPO);
	check_fd(&p, &o);
	int nclip = 0;
	for (int t = 0; t < p.N; t++)
		nclip += p.clipped[t];
	cr_log_info("grpo: %d of %d tokens clipped", nclip, p.N);
	prob_free(&p);
}

Test(policy_loss_cpu, dapo_gradient_matches_finite_differences)
{
	struct prob p;
	prob_init(&p, 6, 4, 9, 2);
	const double offs[] = {-0.5, 0.0, 0.1, 0.5};
	set_old(&p, offs, 4);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_DAPO);
	check_fd(&p, &o);
	prob_free(&p);
}

Test(policy_loss_cpu, cispo_gradient_matches_finite_differences_of_surrogate)
{
	struct prob p;
	prob_init(&p, 8, 5, 10, 3);
	const double offs[] = {-2.5, -0.3, 0.0, 0.4}; /* ratio 12 is capped at 5 */
	set_old(&p, offs, 4);
	p.mask[5] = 0;
	p.b.adv_per_seq = 1;
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.norm = SWERVE_PL_NORM_SEQUENCE;
	check_fd(&p, &o);
	o.norm = SWERVE_PL_NORM_TOKENS;
	o.cispo_lower_bound = 1;
	o.cispo_mask = 1;
	check_fd(&p, &o);
	prob_free(&p);
}

Test(policy_loss_cpu, cispo_all_capped_equals_plain_derivative)
{
	/* every ratio above the cap: w is the constant cap, so the gradient is
	 * the plain derivative of the loss value too */
	struct prob p;
	prob_init(&p, 5, 4, 8, 1);
	const double offs[] = {-3.0};
	set_old(&p, offs, 1);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	run_loss(&p, &o);
	for (int t = 0; t < p.N; t++)
		cr_assert_eq(p.clipped[t], 1);
	struct frozen fz = {0, NULL};
	float *g = malloc(sizeof(float) * p.V * p.d);
	memcpy(g, p.dW, sizeof(float) * p.V * p.d);
	for (int i = 0; i < p.V * p.d; i += 3) {
		float w0 = p.W[i], h = 1.0f / 256;
		p.W[i] = w0 + h;
		double fp = objective(&p, &o, &fz);
		p.W[i] = w0 - h;
		double fm = objective(&p, &o, &fz);
		p.W[i] = w0;
		cr_assert_float_eq((fp - fm) / (2 * h), g[i], 1e-4, "dW[%d]", i);
	}
	free(g);
	prob_free(&p);
}

Test(policy_loss_cpu, sequence_normalisation_is_mean_of_sequence_means)
{
	struct prob p;
	prob_init(&p, 9, 4, 7, 3);
	const double offs[] = {-0.2, 0.0, 0.3};
	set_old(&p, offs, 3);
	p.mask[0] = 0;
	p.mask[1] = 0; /* sequence 0 keeps one token of three */
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.norm = SWERVE_PL_NORM_SEQUENCE;
	double all = run_loss(&p, &o);
	double want = 0.0;
	for (int s = 0; s < 3; s++) {
		double sum = 0.0;
		int n = 0;
		for (int t = 0; t < p.N; t++) {
			if (p.seq[t] != s || !p.mask[t])
				continue;
			double r = exp((double)p.logp[t] - p.logp_old[t]);
			sum += -(r < 5.0 ? r : 5.0) * p.adv[t] * p.logp[t];
			n++;
		}
		want += sum / n / 3;
	}
	cr_assert_float_eq(all, want, 1e-6);
	/* masked rows of dX are exactly zero */
	for (int k = 0; k < p.d; k++)
		cr_assert_eq(p.dX[k], 0.0f);
	prob_free(&p);
}

Test(policy_loss_cpu, all_masked_is_zero_not_nan)
{
	struct prob p;
	prob_init(&p, 4, 3, 5, 2);
	memset(p.mask, 0, p.N);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_GRPO);
	cr_assert_eq(run_loss(&p, &o), 0.0);
	for (int i = 0; i < p.V * p.d; i++)
		cr_assert_eq(p.dW[i], 0.0f);
	prob_free(&p);
}

Test(policy_loss_cpu, accumulate_dw_adds)
{
	struct prob p;
	prob_init(&p, 4, 3, 6, 1);
	const double offs[] = {0.1};
	set_old(&p, offs, 1);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	run_loss(&p, &o);
	float *once = malloc(sizeof(float) * p.V * p.d);
	memcpy(once, p.dW, sizeof(float) * p.V * p.d);
	o.accumulate_dw = 1;
	run_loss(&p, &o);
	for (int i = 0; i < p.V * p.d; i++)
		cr_assert_float_eq(p.dW[i], 2 * once[i], 1e-6 + 1e-6 * fabsf(once[i]));
	free(once);
	prob_free(&p);
}

Test(policy_loss_cpu, logprob_only_leaves_gradients_alone)
{
	struct prob p;
	prob_init(&p, 3, 3, 5, 1);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.logprob_only = 1;
	p.dW[0] = 42.0f;
	*p.loss = 7.0f;
	p.b.logp_old = NULL;
	p.b.advantages = NULL;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(p.dW[0], 42.0f);
	cr_assert_eq(*p.loss, 7.0f);
	for (int t = 0; t < p.N; t++) {
		cr_assert_lt(p.logp[t], 0.0f);
		cr_assert_gt(p.ent[t], 0.0f);
		cr_assert_lt(p.ent[t], logf(5.0f) + 1e-6f);
	}
	prob_free(&p);
}

Test(policy_loss_cpu, bad_input_is_named)
{
	struct prob p;
	prob_init(&p, 4, 3, 5, 2);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	p.y[2] = 5;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "targets[2] = 5"), "%s", swerve_error_last());
	p.y[2] = 0;
	p.seq[3] = 2;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "seq_idx[3]"), "%s", swerve_error_last());
	p.seq[3] = 1;
	o.version = 0;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "version"), "%s", swerve_error_last());
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	p.b.vocab = 0;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	prob_free(&p);
}

Test(policy_loss_cpu, bf16_round_trip_and_rounding)
{
	cr_assert_eq(swerve_float_to_bf16(1.0f), 0x3f80);
	cr_assert_eq(swerve_bf16_to_float(0x3f80), 1.0f);
	/* 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1) */
	cr_assert_eq(swerve_float_to_bf16(1.0f + 1.0f / 256), 0x3f80);
	cr_assert_eq(swerve_float_to_bf16(1.0f + 3.0f / 256), 0x3f82);
	cr_assert(isnan(swerve_bf16_to_float(swerve_float_to_bf16(NAN))));
	for (int i = 0; i < 1000; i++) {
		float f = (float)(urand() * 200 - 100);
		float g = swerve_bf16_to_float(swerve_float_to_bf16(f));
		cr_assert_leq(fabsf(f - g), fabsf(f) / 256);
	}
}

Test(policy_loss_cpu, opts_defaults)
{
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_DAPO);
	cr_assert_float_eq(o.eps_low, 0.2f, 1e-7);
	cr_assert_float_eq(o.eps_high, 0.28f, 1e-7);
	cr_assert_eq(o.norm, SWERVE_PL_NORM_TOKENS);
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	cr_assert_float_eq(o.eps_high, 4.0f, 1e-7);
	cr_assert_eq(o.cispo_lower_bound, 0);
	cr_assert_eq(o.cispo_mask, 0);
	cr_assert_eq(o.precision, SWERVE_PL_FP32);
}

/* FP32_FWD changes only how the GPU computes the backward's products: the
 * CPU reference (double throughout) must accept it and give FP32's outputs
 * bit for bit; precisions past the last one and negative chunk/row sizes are
 * refused by name. */
Test(policy_loss_cpu, fp32_fwd_precision_is_the_fp32_reference)
{
	struct prob p;
	prob_init(&p, 6, 5, 9, 2);
	static const double offs[] = {-1.0, 0.0, 0.3};
	set_old(&p, offs, 3);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.row_tokens = 2;
	run_loss(&p, &o);
	float loss = *p.loss;
	float *lp = malloc(sizeof(float) * 6), *dX = malloc(sizeof(float) * 30),
	      *dW = malloc(sizeof(float) * 45);
	memcpy(lp, p.logp, sizeof(float) * 6);
	memcpy(dX, p.dX, sizeof(float) * 30);
	memcpy(dW, p.dW, sizeof(float) * 45);
	o.precision = SWERVE_PL_FP32_FWD;
	run_loss(&p, &o);
	cr_assert_eq(*p.loss, loss);
	cr_assert_eq(memcmp(lp, p.logp, sizeof(float) * 6), 0);
	cr_assert_eq(memcmp(dX, p.dX, sizeof(float) * 30), 0);
	cr_assert_eq(memcmp(dW, p.dW, sizeof(float) * 45), 0);
	cr_assert_neq(loss, 0.0f, "a zero loss would prove nothing");

	o.precision = (enum swerve_pl_precision)(SWERVE_PL_FP32_FWD + 1);
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "precision (4)"), "%s", swerve_error_last());
	o.precision = SWERVE_PL_FP32_FWD;
	o.row_tokens = -1;
	cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
	cr_assert(strstr(swerve_error_last(), "row_tokens (-1)"), "%s", swerve_error_last());
	free(lp), free(dX), free(dW);
	prob_free(&p);
}

/* opts.row_reread picks the GPU's row kernel: 0 to 5 (2 the prefetching
 * kernel, round 9; 3 to 5 the lean ones, round 19) are accepted and change nothing on the CPU;
 * anything else is refused by name, on the CPU as on the GPU (the same check). */
Test(policy_loss_cpu, row_kernel_choice_is_checked)
{
	struct prob p;
	prob_init(&p, 6, 5, 9, 2);
	static const double offs[] = {-1.0, 0.0, 0.3};
	set_old(&p, offs, 3);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	cr_assert_eq(o.row_reread, SWERVE_PL_ROWS_REG, "the default stays the register kernel");
	o.precision = SWERVE_PL_FP32_FWD;
	run_loss(&p, &o);
	const float loss = *p.loss;
	float lp[6];
	memcpy(lp, p.logp, sizeof(lp));
	cr_assert_neq(loss, 0.0f, "a zero loss would prove nothing");
	for (int k = SWERVE_PL_ROWS_TWOPASS; k <= SWERVE_PL_ROWS_STREAM_PLAIN; k++) {
		o.row_reread = k;
		run_loss(&p, &o);
		cr_assert_eq(*p.loss, loss, "row_reread %d", k);
		cr_assert_eq(memcmp(lp, p.logp, sizeof(lp)), 0, "row_reread %d", k);
	}
	static const int bad[] = {6, -1, 100};
	for (int i = 0; i < 3; i++) {
		o.row_reread = bad[i];
		cr_assert_eq(swerve_policy_loss_cpu(&p.out, &p.b, p.X, p.W, &o), SWERVE_EINVAL);
		char want[32];
		snprintf(want, sizeof(want), "row_reread (%d)", bad[i]);
		cr_assert(strstr(swerve_error_last(), want), "%s", swerve_error_last());
	}
	prob_free(&p);
}

/* The GPU's chunk and sub-chunk sizes (host rules, in policy_loss.c). */
Test(policy_loss_cpu, chunk_and_row_sizes)
{
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	/* FP32: 2^28 logits a chunk, 64..2048, the sub-chunk the chunk */
	cr_assert_eq(swerve_pl_chunk_tokens(8192, 32000, &o), 2048);
	cr_assert_eq(swerve_pl_row_tokens(8192, 32000, &o), 2048);
	cr_assert_eq(swerve_pl_chunk_tokens(16384, 131072, &o), 2048);
	cr_assert_eq(swerve_pl_chunk_tokens(16384, 1 << 24, &o), 64);
	cr_assert_eq(swerve_pl_chunk_tokens(100, 32000, &o), 100);
	/* FP32_FWD: the chunk holds only bf16 dZ: up to 8192 rows; logits 2048 */
	o.precision = SWERVE_PL_FP32_FWD;
	cr_assert_eq(swerve_pl_chunk_tokens(8192, 32000, &o), 8192);
	cr_assert_eq(swerve_pl_row_tokens(8192, 32000, &o), 2048);
	cr_assert_eq(swerve_pl_chunk_tokens(20000, 32000, &o), 8192);
	cr_assert_eq(swerve_pl_chunk_tokens(16384, 131072, &o), 2048);
	cr_assert_eq(swerve_pl_row_tokens(16384, 131072, &o), 2048);
	cr_assert_eq(swerve_pl_chunk_tokens(48, 32000, &o), 48);
	cr_assert_eq(swerve_pl_row_tokens(48, 32000, &o), 48);
	/* explicit sizes, the sub-chunk at most the chunk */
	o.chunk_tokens = 1000;
	o.row_tokens = 300;
	cr_assert_eq(swerve_pl_chunk_tokens(8192, 32000, &o), 1000);
	cr_assert_eq(swerve_pl_row_tokens(8192, 32000, &o), 300);
	o.row_tokens = 5000;
	cr_assert_eq(swerve_pl_row_tokens(8192, 32000, &o), 1000);
	cr_assert_eq(swerve_pl_row_tokens(700, 32000, &o), 700);
	/* TF32 writes dZ over the logits: no sub-chunks */
	o.precision = SWERVE_PL_TF32;
	o.row_tokens = 300;
	cr_assert_eq(swerve_pl_row_tokens(8192, 32000, &o), 1000);
}

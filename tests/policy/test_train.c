/* test_train.c - the trainer around the reference model: losses (CISPO,
 * GRPO/DAPO, cross-entropy) against finite differences and against the
 * fused-loss kernel's per-token math, group advantages, AdamW, a tiny model
 * overfitting a sequence, a CISPO step moving logprobs the right way,
 * checkpoint save/load/resume bit-exactly, config JSON, safetensors, and
 * the tokenizers. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/policy_loss.h"
#include "policy/policy.h"
#include "tests/support/support.h"

static uint64_t rs = 987654321;
static double urand(void)
{
	rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((rs >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void)
{
	return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}

/* ---- losses --------------------------------------------------------------- */

/* CISPO's w is a stop-gradient: its gradient is that of sum_t c_t logp_t with
 * c_t = -w_t A_t / N frozen; check that against finite differences of logp. */
Test(loss, cispo_gradient_is_weighted_logp_gradient)
{
	int T = 6, V = 9, y[6] = {1, 8, 0, -1, 4, 4};
	double z[54], dz[54], old[6], adv[6], lp[6], lp2[6], c[6];
	struct policy_loss_opts o = POLICY_LOSS_OPTS_INIT;
	struct policy_loss_stats st;
	double worst = 0;
	for (int i = 0; i < T * V; i++)
		z[i] = nrand();
	policy_logprobs(lp, z, T, V, y);
	for (int t = 0; t < T; t++) {
		old[t] = lp[t] +
		         (t == 1 ? -3.0 : 0.3 * nrand()); /* token 1: ratio e^3 > 5: capped */
		adv[t] = t < 3 ? 1.0 : -0.5;
	}
	cr_assert_eq(policy_loss_pg(&st, dz, z, T, V, y, old, adv, &o), 0);
	cr_expect_eq(st.n_tokens, 5);
	cr_expect_eq(st.clipped, 1, "clipped %g", st.clipped);
	for (int t = 0; t < T; t++) {
		double w = fmin(exp(lp[t] - old[t]), 5.0);
		c[t] = y[t] < 0 ? 0 : -w * adv[t] / 5.0;
	}
	for (int i = 0; i < T * V; i++) {
		double s = z[i], up = 0, dn = 0, h = 1e-6;
		z[i] = s + h;
		policy_logprobs(lp2, z, T, V, y);
		for (int t = 0; t < T; t++)
			up += c[t] * lp2[t];
		z[i] = s - h;
		policy_logprobs(lp2, z, T, V, y);
		for (int t = 0; t < T; t++)
			dn += c[t] * lp2[t];
		z[i] = s;
		worst = fmax(worst, fabs((up - dn) / (2 * h) - dz[i]));
	}
	cr_expect(worst < 1e-8, "worst abs error %.3e", worst);
}

Test(loss, grpo_and_xent_gradients_match_finite_differences)
{
	int T = 5, V = 7, y[5] = {0, 6, 3, 3, 2};
	double z[35], dz[35], old[5], adv[5], worst = 0;
	struct policy_loss_opts o = {POLICY_LOSS_GRPO, 0.2, 0.2};
	struct policy_loss_stats st;
	for (int i = 0; i < T * V; i++)
		z[i] = nrand();
	policy_logprobs(old, z, T, V, y);
	for (int t = 0; t < T; t++) {
		old[t] += 0.05 * nrand(); /* inside the clip range: differentiable */
		adv[t] = nrand();
	}
	for (int kind = 0; kind < 2; kind++) {
		if (kind == 0)
			cr_assert_eq(policy_loss_pg(&st, dz, z, T, V, y, old, adv, &o), 0);
		else
			cr_assert_eq(policy_loss_xent(&st, dz, z, T, V, y), 0);
		for (int i = 0; i < T * V; i++) {
			double s = z[i], up, dn, h = 1e-6;
			z[i] = s + h;
			if (kind == 0)
				policy_loss_pg(&st, NULL, z, T, V, y, old, adv, &o);
			else
				policy_loss_xent(&st, NULL, z, T, V, y);
			up = st.loss;
			z[i] = s - h;
			if (kind == 0)
				policy_loss_pg(&st, NULL, z, T, V, y, old, adv, &o);
			else
				policy_loss_xent(&st, NULL, z, T, V, y);
			dn = st.loss;
			z[i] = s;
			worst = fmax(worst, fabs((up - dn) / (2 * h) - dz[i]));
		}
	}
	cr_expect(worst < 1e-8, "worst abs error %.3e", worst);
}

/* The fused-loss kernel (kernels/policy_loss.h) shares its per-token math
 * with its CUDA version; this trainer's loss must agree with it token by
 * token, for every variant and across the clip boundaries. */
Test(loss, agrees_with_the_fused_loss_kernel_per_token)
{
	enum policy_loss_kind kinds[3] = {POLICY_LOSS_CISPO, POLICY_LOSS_GRPO, POLICY_LOSS_DAPO};
	enum swerve_pl_variant vars[3] = {SWERVE_PL_CISPO, SWERVE_PL_GRPO, SWERVE_PL_DAPO};
	int V = 5;
	for (int k = 0; k < 3; k++) {
		struct swerve_pl_opts ko;
		struct policy_loss_opts o;
		swerve_pl_opts_init(&ko, vars[k]);
		o.kind = kinds[k];
		o.eps_low = k == 0 ? 0.0 : ko.eps_low;
		o.eps_high = ko.eps_high;
		for (int trial = 0; trial < 200; trial++) {
			double z[5], dz[5], old, adv = nrand(), lp;
			int y = trial % V;
			struct policy_loss_stats st;
			struct swerve_pl_token tk;
			for (int v = 0; v < V; v++)
				z[v] = nrand();
			policy_logprobs(&lp, z, 1, V, &y);
			old = lp + 1.5 * nrand(); /* ratios on both sides of the clips */
			cr_assert_eq(policy_loss_pg(&st, dz, z, 1, V, &y, &old, &adv, &o), 0);
			tk = swerve_pl_token_eval(&ko, lp, old, adv, 1.0);
			cr_expect(fabs(tk.loss - st.loss) < 1e-12,
			          "variant %d: loss %.17g vs %.17g", k, tk.loss, st.loss);
			/* dz_y = dlogp (1 - p_y) */
			cr_expect(fabs(tk.dlogp * (1 - exp(lp)) - dz[y]) < 1e-12,
			          "variant %d: dlogit %.17g vs %.17g", k, tk.dlogp * (1 - exp(lp)),
			          dz[y]);
			cr_expect_eq(tk.clipped, st.clipped > 0, "variant %d trial %d", k, trial);
		}
	}
}

Test(loss, group_advantages_skip_equal_rewards)
{
	double r1[4] = {1, 0, 0, 1}, a[4], r2[3] = {0.5, 0.5, 0.5};
	cr_expect_eq(policy_group_advantages(a, r1, 4), 1);
	cr_expect(fabs(a[0] - 1.0) < 1e-12 && fabs(a[1] + 1.0) < 1e-12, "%g %g", a[0], a[1]);
	cr_expect_eq(policy_group_advantages(a, r2, 3), 0);
	cr_expect(a[0] == 0 && a[1] == 0 && a[2] == 0);
}

/* ---- optimizer ------------------------------------------------------------ */

Test(optim, adamw_first_step_and_clipping)
{
	struct policy_config c;
	struct policy_layout L;
	struct policy_adamw o = POLICY_ADAMW_INIT;
	float *p, *g, *m, *v;
	policy_config_default(&c);
	c.vocab_size = 4;
	c.dim = 2;
	c.n_layers = 1;
	c.n_heads = 1;
	c.head_dim = 2;
	c.n_kv_heads = 1;
	c.rotary_dim = 0;
	c.n_experts = 1;
	c.top_k = 1;
	c.expert_hidden = 2;
	cr_assert_eq(policy_config_validate(&c), 0);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	p = calloc(L.total, 4);
	g = calloc(L.total, 4);
	m = calloc(L.total, 4);
	v = calloc(L.total, 4);
	for (size_t i = 0; i < L.total; i++)
		g[i] = (i % 2 ? 3.0f : -4.0f);
	o.lr = 0.1;
	o.clip_norm = 1.0;
	double norm = policy_adamw_step(&o, p, g, m, v, &L);
	cr_expect(fabs(norm - 5.0 * sqrt(L.total / 2.0)) < 1e-3 * norm, "norm %g", norm);
	/* first bias-corrected Adam step is lr * sign(g) whatever the clipping */
	for (size_t i = 0; i < L.total; i++)
		cr_expect(fabs(p[i] - (i % 2 ? -0.1f : 0.1f)) < 1e-6, "p[%zu] = %g", i, p[i]);
	cr_expect_eq(o.step, 1);
	free(p);
	free(g);
	free(m);
	free(v);
	policy_layout_dispose(&L);
}

/* ---- trainer -------------------------------------------------------------- */

static void small_config(struct policy_config *c)
{
	policy_config_default(c);
	c->dim = 32;
	c->n_layers = 2;
	c->n_heads = 2;
	c->head_dim = 16;
	c->n_kv_heads = 1;
	c->rotary_dim = 8;
	c->softmax_every = 2;
	c->n_experts = 4;
	c->top_k = 2;
	c->expert_hidden = 32;
	c->max_seq_len = 64;
	cr_assert_eq(policy_config_validate(c), 0, "%s", swerve_error_last());
}

Test(trainer, tiny_model_overfits_a_fixed_sequence, .timeout = 120)
{
	const char *text = "hello swerve, hello policy";
	int T = (int)strlen(text), tok[64], tgt[64], cu[2] = {0, T};
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_step_stats st;
	struct policy_batch b = {T, tok, 1, cu};
	double first = 0;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 7), 0);
	tr->opt.lr = 1e-2;
	for (int t = 0; t < T; t++) {
		tok[t] = (unsigned char)text[t];
		tgt[t] = t + 1 < T ? (unsigned char)text[t + 1] : -1;
	}
	for (int step = 0; step < 60; step++) {
		cr_assert_eq(policy_trainer_sft_step(&st, tr, &b, tgt), 0, "%s",
		             swerve_error_last());
		if (step == 0)
			first = st.loss;
	}
	cr_log_info("overfit: loss %.4f -> %.4f", first, st.loss);
	cr_expect(first > 4.5, "initial loss %g should be near ln(261) = 5.56", first);
	cr_expect(st.loss < 0.1, "loss after 60 steps %g", st.loss);
	cr_expect(st.grad_norm > 0 && isfinite(st.grad_norm));
	policy_trainer_free(tr);
}

/* prompt "ab", two responses; returns the mean logprob of response r */
static double response_logp(struct policy_trainer *tr, int r)
{
	static int tok[2][6] = {{'a', 'b', 'x', 'y', 'z', 'w'}, {'a', 'b', 'q', 'r', 's', 't'}};
	int tgt[6], cu[2] = {0, 6};
	double lp[6], s = 0;
	struct policy_batch b = {6, tok[r], 1, cu};
	for (int t = 0; t < 6; t++)
		tgt[t] = t >= 1 && t < 5 ? tok[r][t + 1] : -1;
	cr_assert_eq(policy_trainer_logprobs(lp, tr, &b, tgt), 0);
	for (int t = 1; t < 5; t++)
		s += lp[t];
	return s / 4;
}

Test(trainer, cispo_step_moves_logprobs_with_the_advantage)
{
	/* packed batch: both responses, A = +1 for the first and -1 for the second */
	int tok[12] = {'a', 'b', 'x', 'y', 'z', 'w', 'a', 'b', 'q', 'r', 's', 't'};
	int tgt[12], cu[3] = {0, 6, 12};
	double old[12], adv[12], before0, before1, after0, after1;
	struct policy_batch b = {12, tok, 2, cu};
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_step_stats st;
	struct policy_loss_opts o = POLICY_LOSS_OPTS_INIT;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 11), 0);
	tr->opt.lr = 2e-3;
	for (int t = 0; t < 12; t++) {
		int p = t % 6;
		tgt[t] = p >= 1 && p < 5 ? tok[t + 1] : -1; /* response tokens only */
		adv[t] = t < 6 ? 1.0 : -1.0;
	}
	cr_assert_eq(policy_trainer_logprobs(old, tr, &b, tgt), 0);
	before0 = response_logp(tr, 0);
	before1 = response_logp(tr, 1);
	cr_assert_eq(policy_trainer_pg_step(&st, tr, &b, tgt, old, adv, &o), 0, "%s",
	             swerve_error_last());
	after0 = response_logp(tr, 0);
	after1 = response_logp(tr, 1);
	cr_log_info("cispo: A=+1 logp %.5f -> %.5f; A=-1 logp %.5f -> %.5f", before0, after0,
	            before1, after1);
	cr_expect(after0 > before0 + 1e-3, "positive advantage: %.6f -> %.6f", before0, after0);
	cr_expect(after1 < before1 - 1e-3, "negative advantage: %.6f -> %.6f", before1, after1);
	cr_expect_eq(st.clipped_frac, 0); /* ratio 1 on the first pass */
	cr_expect_eq(st.n_tokens, 8);
	policy_trainer_free(tr);
}

static int same_floats(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

Test(trainer, checkpoint_round_trip_resumes_bit_exactly)
{
	const char *text = "resume me exactly";
	int T = (int)strlen(text), tok[32], tgt[32], cu[2] = {0, T};
	struct policy_batch b = {T, tok, 1, cu};
	struct policy_config c;
	struct policy_trainer *tr, *tr2;
	struct policy_step_stats st;
	char *dir = ts_mkdtemp(), ck[4096];
	small_config(&c);
	for (int t = 0; t < T; t++) {
		tok[t] = (unsigned char)text[t];
		tgt[t] = t + 1 < T ? (unsigned char)text[t + 1] : -1;
	}
	cr_assert_eq(policy_trainer_new(&tr, &c, 3), 0);
	tr->opt.lr = 3e-3;
	tr->opt.weight_decay = 0.1;
	tr->rng = 0xdeadbeefcafef00dULL;
	for (int i = 0; i < 2; i++)
		cr_assert_eq(policy_trainer_sft_step(&st, tr, &b, tgt), 0);
	snprintf(ck, sizeof(ck), "%s/ck", dir);
	cr_assert_eq(policy_checkpoint_save(tr, ck), 0, "%s", swerve_error_last());
	cr_assert_eq(policy_checkpoint_load(&tr2, ck), 0, "%s", swerve_error_last());
	cr_expect(same_floats(tr->params, tr2->params, tr->layout.total));
	cr_expect(same_floats(tr->m, tr2->m, tr->layout.total));
	cr_expect(same_floats(tr->v, tr2->v, tr->layout.total));
	cr_expect_eq(tr2->opt.step, 2);
	cr_expect_eq(tr2->opt.lr, 3e-3);
	cr_expect_eq(tr2->opt.weight_decay, 0.1);
	cr_expect_eq(tr2->rng, 0xdeadbeefcafef00dULL);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(policy_trainer_sft_step(&st, tr, &b, tgt), 0);
		cr_assert_eq(policy_trainer_sft_step(&st, tr2, &b, tgt), 0);
	}
	cr_expect(same_floats(tr->params, tr2->params, tr->layout.total),
	          "resumed training diverged from uninterrupted training");
	policy_trainer_free(tr);
	policy_trainer_free(tr2);
	ts_rmtree(dir);
	free(dir);
}

/* gradient accumulation: two identical micro-batches make exactly the step
 * of one (the mean of equal gradients, halved and summed, is exact) */
Test(trainer, accumulating_identical_micro_batches_is_one_step)
{
	const char *text = "accumulate me";
	int T = (int)strlen(text), tok[32], tgt[32], cu[2] = {0, T};
	struct policy_batch b = {T, tok, 1, cu}, bs[2] = {b, b};
	const int *tg[2] = {tgt, tgt};
	struct policy_config c;
	struct policy_trainer *tr, *tr2;
	struct policy_step_stats st, st2;
	small_config(&c);
	for (int t = 0; t < T; t++) {
		tok[t] = (unsigned char)text[t];
		tgt[t] = t + 1 < T ? (unsigned char)text[t + 1] : -1;
	}
	cr_assert_eq(policy_trainer_new(&tr, &c, 5), 0);
	cr_assert_eq(policy_trainer_new(&tr2, &c, 5), 0);
	tr->opt.lr = tr2->opt.lr = 3e-3;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(policy_trainer_sft_step(&st, tr, &b, tgt), 0, "%s",
		             swerve_error_last());
		cr_assert_eq(policy_trainer_sft_step_accum(&st2, tr2, bs, tg, 2), 0, "%s",
		             swerve_error_last());
		cr_expect_eq(st.loss, st2.loss, "step %d: loss %.17g vs %.17g", i, st.loss,
		             st2.loss);
		cr_expect_eq(st.grad_norm, st2.grad_norm, "step %d: grad norm %.17g vs %.17g", i,
		             st.grad_norm, st2.grad_norm);
		cr_expect_eq(st2.n_tokens, 2 * st.n_tokens);
	}
	cr_expect_eq(tr2->opt.step, 3, "one optimizer step per accumulation window");
	cr_expect(same_floats(tr->params, tr2->params, tr->layout.total));
	cr_expect_eq(policy_trainer_sft_step_accum(&st2, tr2, bs, tg, 0), SWERVE_EINVAL);
	policy_trainer_free(tr);
	policy_trainer_free(tr2);
}

/* two different micro-batches: the loss is the mean of theirs and AdamW sees
 * the mean of their gradients (its clipping norm is that mean's) */
Test(trainer, accumulation_steps_on_the_mean_gradient)
{
	const char *text[2] = {"first micro-batch", "the second, longer micro-batch"};
	int tok[2][64], tgt[2][64], cu[2][2];
	struct policy_batch bs[2];
	const int *tg[2] = {tgt[0], tgt[1]};
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_step_stats st;
	struct policy_layout *L;
	double *pd, *gd[2], loss[2], ss = 0;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 9), 0);
	L = &tr->layout;
	pd = malloc(L->total * sizeof(double));
	for (size_t i = 0; i < L->total; i++)
		pd[i] = tr->params[i];
	for (int m = 0; m < 2; m++) {
		int T = (int)strlen(text[m]);
		struct policy_ref_tape *tape;
		struct policy_loss_stats ls;
		double *dl = malloc((size_t)T * c.vocab_size * sizeof(double));
		for (int t = 0; t < T; t++) {
			tok[m][t] = (unsigned char)text[m][t];
			tgt[m][t] = t + 1 < T ? (unsigned char)text[m][t + 1] : -1;
		}
		cu[m][0] = 0;
		cu[m][1] = T;
		bs[m] = (struct policy_batch){T, tok[m], 1, cu[m]};
		gd[m] = calloc(L->total, sizeof(double));
		cr_assert_eq(policy_ref_forward(&tape, &c, L, pd, &bs[m]), 0);
		cr_assert_eq(
		        policy_loss_xent(&ls, dl, policy_ref_logits(tape), T, c.vocab_size, tgt[m]),
		        0);
		cr_assert_eq(policy_ref_backward(tape, dl, 1.0, gd[m]), 0);
		loss[m] = ls.loss;
		policy_ref_tape_free(tape);
		free(dl);
	}
	for (size_t i = 0; i < L->total; i++) {
		double g = (double)(float)((gd[0][i] + gd[1][i]) / 2);
		ss += g * g;
	}
	cr_assert_eq(policy_trainer_sft_step_accum(&st, tr, bs, tg, 2), 0, "%s",
	             swerve_error_last());
	cr_expect(fabs(st.loss - (loss[0] + loss[1]) / 2) < 1e-12 * (loss[0] + loss[1]),
	          "loss %.17g vs the mean %.17g", st.loss, (loss[0] + loss[1]) / 2);
	cr_expect(fabs(st.grad_norm - sqrt(ss)) < 1e-6 * sqrt(ss), "grad norm %.10g vs %.10g",
	          st.grad_norm, sqrt(ss));
	cr_expect(ss > 0);
	cr_expect_eq(st.n_tokens, bs[0].n_tokens + bs[1].n_tokens - 2);
	free(pd);
	free(gd[0]);
	free(gd[1]);
	policy_trainer_free(tr);
}

Test(trainer, checkpoint_shape_mismatch_is_named)
{
	struct policy_config c;
	struct policy_trainer *tr, *tr2 = NULL;
	char *dir = ts_mkdtemp(), p[4096];
	FILE *f;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 1), 0);
	cr_assert_eq(policy_checkpoint_save(tr, dir), 0);
	snprintf(p, sizeof(p), "%s/config.json", dir);
	c.expert_hidden = 48; /* the config no longer matches the weights */
	cr_assert_eq(policy_config_save(&c, p), 0);
	cr_expect_eq(policy_checkpoint_load(&tr2, dir), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "moe.w1") != NULL, "%s", swerve_error_last());
	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	f = fopen(p, "wb");
	fwrite("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 1, 10, f);
	fclose(f);
	c.expert_hidden = 32;
	snprintf(p, sizeof(p), "%s/config.json", dir);
	cr_assert_eq(policy_config_save(&c, p), 0);
	cr_expect_eq(policy_checkpoint_load(&tr2, dir), SWERVE_ECORRUPT, "%s", swerve_error_last());
	policy_trainer_free(tr);
	ts_rmtree(dir);
	free(dir);
}

Test(safetensors, header_is_standard_and_sorted)
{
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_st_file f;
	char *dir = ts_mkdtemp(), p[4096], *raw;
	size_t len;
	uint64_t hlen = 0;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 1), 0);
	cr_assert_eq(policy_checkpoint_save(tr, dir), 0);
	snprintf(p, sizeof(p), "%s/model.safetensors", dir);
	raw = ts_read_file(p, &len);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | (unsigned char)raw[i];
	cr_expect_eq(hlen % 8, 0);
	cr_expect_eq(len, 8 + hlen + tr->layout.total * 4);
	cr_expect_eq(raw[8], '{');
	cr_assert_eq(policy_st_read(&f, p), 0, "%s", swerve_error_last());
	cr_expect_eq(f.n, tr->layout.n);
	for (int i = 1; i < f.n; i++) /* data laid out in name order, no gaps */
		cr_expect(f.e[i].begin >= f.e[i - 1].end || f.e[i].end <= f.e[i - 1].begin);
	const struct policy_st_entry *e = policy_st_find(&f, "lm_head");
	cr_assert(e);
	cr_expect_eq(e->shape[0], c.vocab_size);
	cr_expect_eq(e->shape[1], c.dim);
	cr_expect(!memcmp(f.data + e->begin, tr->params + tr->layout.lm_head, e->end - e->begin));
	policy_st_dispose(&f);
	free(raw);
	policy_trainer_free(tr);
	ts_rmtree(dir);
	free(dir);
}

/* ---- config --------------------------------------------------------------- */

Test(config, json_round_trip_and_errors)
{
	struct policy_config c, d;
	char *dir = ts_mkdtemp(), p[4096];
	cr_assert_eq(policy_config_parse(&c,
	                                 "{\"dim\": 48, \"n_layers\": 16, \"n_heads\": 6,"
	                                 " \"head_dim\": 8, \"n_kv_heads\": 2}",
	                                 "cfg"),
	             0, "%s", swerve_error_last());
	for (int l = 0; l < 16; l++)
		cr_expect_eq(c.softmax_layer[l], l == 7 || l == 15, "layer %d", l);
	snprintf(p, sizeof(p), "%s/c.json", dir);
	cr_assert_eq(policy_config_save(&c, p), 0);
	cr_assert_eq(policy_config_load(&d, p), 0, "%s", swerve_error_last());
	cr_expect(!memcmp(&c.softmax_layer, &d.softmax_layer, sizeof(c.softmax_layer)));
	cr_expect_eq(d.dim, 48);
	cr_expect_eq(d.rope_theta, 1e7);
	cr_expect_eq(policy_config_parse(&c, "{\"dimm\": 3}", "cfg"), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "dimm"), "%s", swerve_error_last());
	cr_expect_eq(policy_config_parse(&c, "{\"n_kv_heads\": 3}", "cfg"), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "n_kv_heads"), "%s", swerve_error_last());
	cr_expect_eq(policy_config_parse(&c, "{\"softmax_layers\": [0, 5]}", "cfg"), SWERVE_EINVAL);
	cr_expect_eq(policy_config_load(&c, "/nonexistent/c.json"), SWERVE_ENOTFOUND);
	ts_rmtree(dir);
	free(dir);
}

Test(config, flops_count_six_times_active_params)
{
	struct policy_config c;
	policy_config_default(&c);
	c.softmax_every = 0; /* all lightning */
	cr_assert_eq(policy_config_validate(&c), 0);
	double n = policy_config_active_params(&c);
	/* every lightning layer adds 12 H d^2 FLOPs per token for the state */
	double extra = 2 * 12.0 * c.n_heads * c.head_dim * c.head_dim;
	cr_expect(fabs(policy_config_flops_per_token(&c, 512) - (6 * n + extra)) < 1e-6);
}

/* ---- tokenizers ----------------------------------------------------------- */

Test(tokenizer, bytes_round_trip_with_specials)
{
	struct policy_tokenizer *t;
	const char *s = "héllo<|eos|>\x01";
	int *ids, n;
	char *back;
	size_t len;
	cr_assert_eq(policy_tokenizer_new_bytes(&t), 0);
	cr_expect_eq(policy_tokenizer_vocab_size(t), POLICY_BYTE_VOCAB);
	cr_assert_eq(policy_tokenizer_encode(&ids, &n, t, s, strlen(s)), 0);
	cr_expect_eq(n, 6 + 1 + 1);
	cr_expect_eq(ids[6], POLICY_TOK_EOS);
	cr_expect_eq(ids[1], 0xc3);
	cr_assert_eq(policy_tokenizer_decode(&back, &len, t, ids, n), 0);
	cr_expect_str_eq(back, s);
	free(ids);
	free(back);
	policy_tokenizer_free(t);
}

static int b2cp(int b)
{
	int n = 0;
	for (int i = 0; i < 256; i++) {
		int keep = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174;
		if (i == b)
			return keep ? i : 256 + n;
		n += !keep;
	}
	return -1;
}

static void sym(char *out, int b)
{
	int cp = b2cp(b);
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		out[2] = 0;
	}
}

Test(tokenizer, bpe_tokenizer_json)
{
	json_t *root = json_object(), *model = json_object(), *vocab = json_object();
	json_t *merges = json_array(), *added = json_array();
	char *dir = ts_mkdtemp(), p[4096], s[4];
	struct policy_tokenizer *t;
	const char *text = "hello world<|endoftext|>  hello\n";
	int *ids, n;
	char *back;
	size_t len;
	for (int b = 0; b < 256; b++) {
		sym(s, b);
		json_object_set_new(vocab, s, json_integer(b));
	}
	json_object_set_new(vocab, "he", json_integer(256));
	json_object_set_new(vocab, "ll", json_integer(257));
	json_object_set_new(vocab, "hell", json_integer(258));
	json_object_set_new(vocab, "hello", json_integer(259));
	json_object_set_new(vocab, "\xc4\xa0w", json_integer(260)); /* "Ġw" */
	json_array_append_new(merges, json_string("h e"));
	json_array_append_new(merges, json_string("l l"));
	json_array_append_new(merges, json_pack("[ss]", "he", "ll"));
	json_array_append_new(merges, json_string("hell o"));
	json_array_append_new(merges, json_string("\xc4\xa0 w"));
	json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", 261, "content",
	                                       "<|endoftext|>", "special", 1));
	json_object_set_new(model, "type", json_string("BPE"));
	json_object_set_new(model, "vocab", vocab);
	json_object_set_new(model, "merges", merges);
	json_object_set_new(root, "model", model);
	json_object_set_new(root, "added_tokens", added);
	snprintf(p, sizeof(p), "%s/tokenizer.json", dir);
	cr_assert_eq(json_dump_file(root, p, 0), 0);
	json_decref(root);

	cr_assert_eq(policy_tokenizer_load(&t, p), 0, "%s", swerve_error_last());
	cr_expect_eq(policy_tokenizer_vocab_size(t), 262);
	cr_expect_eq(policy_tokenizer_eos(t), 261);
	cr_assert_eq(policy_tokenizer_encode(&ids, &n, t, text, strlen(text)), 0);
	/* hello | Ġw o r l d | <|endoftext|> | Ġ (a space run leaves its last
	 * space to the next word) | Ġ hello | \n */
	int want[] = {259, 260, 'o', 'r', 'l', 'd', 261, ' ', ' ', 259, '\n'};
	cr_assert_eq(n, 11, "n = %d", n);
	for (int i = 0; i < 11; i++)
		cr_expect_eq(ids[i], want[i], "ids[%d] = %d, want %d", i, ids[i], want[i]);
	cr_assert_eq(policy_tokenizer_decode(&back, &len, t, ids, n), 0);
	cr_expect_str_eq(back, text);
	free(ids);
	free(back);
	policy_tokenizer_free(t);
	ts_rmtree(dir);
	free(dir);
}

Test(tokenizer, rejects_non_bpe_and_bad_merges)
{
	char *dir = ts_mkdtemp(), p[4096];
	struct policy_tokenizer *t;
	snprintf(p, sizeof(p), "%s/a.json", dir);
	ts_write_file(p, "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", 41);
	cr_expect_eq(policy_tokenizer_load(&t, p), SWERVE_EUNSUPPORTED);
	snprintf(p, sizeof(p), "%s/b.json", dir);
	const char *j = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a z\"]}}";
	ts_write_file(p, j, strlen(j));
	cr_expect_eq(policy_tokenizer_load(&t, p), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "merges[0]"), "%s", swerve_error_last());
	ts_rmtree(dir);
	free(dir);
}

/* ---- sampling ------------------------------------------------------------- */

Test(sample, greedy_reproduces_an_overfit_sequence_and_records_logprobs, .timeout = 120)
{
	const char *text = "hello swerve, hello policy";
	int T = (int)strlen(text), tok[64], tgt[64], cu[2] = {0, T}, P = 7;
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_step_stats st;
	struct policy_batch b = {T, tok, 1, cu};
	struct policy_sample_opts o = POLICY_SAMPLE_OPTS_INIT;
	struct policy_sample s;
	uint64_t rng = 1;
	double lp[64];
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 7), 0);
	tr->opt.lr = 1e-2;
	for (int t = 0; t < T; t++) {
		tok[t] = (unsigned char)text[t];
		tgt[t] = t + 1 < T ? (unsigned char)text[t + 1] : -1;
	}
	for (int step = 0; step < 60; step++)
		cr_assert_eq(policy_trainer_sft_step(&st, tr, &b, tgt), 0);
	o.temperature = 0;
	o.max_new = T - P;
	cr_assert_eq(policy_sample(&s, tr, tok, P, &o, &rng), 0, "%s", swerve_error_last());
	cr_assert_eq(s.n, T - P);
	cr_expect_eq(s.stop, POLICY_STOP_LENGTH);
	for (int i = 0; i < s.n; i++)
		cr_expect_eq(s.tokens[i], tok[P + i], "token %d: %c vs %c", i, s.tokens[i],
		             tok[P + i]);
	/* the recorded logprobs are the model's, as policy_trainer_logprobs gives */
	cr_assert_eq(policy_trainer_logprobs(lp, tr, &b, tgt), 0);
	for (int i = 0; i < s.n; i++)
		cr_expect(fabs(s.logp[i] - lp[P - 1 + i]) < 1e-9, "logp %d: %g vs %g", i, s.logp[i],
		          lp[P - 1 + i]);
	policy_sample_dispose(&s);

	/* the repetition guard: every token counts as confident at guard_prob 0 */
	o.guard_run = 3;
	o.guard_prob = 0.0;
	cr_assert_eq(policy_sample(&s, tr, tok, P, &o, &rng), 0);
	cr_expect_eq(s.n, 3);
	cr_expect_eq(s.stop, POLICY_STOP_GUARD);
	policy_sample_dispose(&s);

	/* a stop token ends the response and is included */
	o.guard_run = 0;
	o.stop_token = tok[P + 2];
	cr_assert_eq(policy_sample(&s, tr, tok, P, &o, &rng), 0);
	cr_expect_eq(s.n, 3);
	cr_expect_eq(s.stop, POLICY_STOP_TOKEN);
	policy_sample_dispose(&s);
	policy_trainer_free(tr);
}

Test(sample, temperature_sampling_follows_the_seed)
{
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_sample_opts o = POLICY_SAMPLE_OPTS_INIT;
	struct policy_sample a, b2, d;
	int prompt[3] = {'a', 'b', 'c'};
	uint64_t r1 = 42, r2 = 42, r3 = 43;
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 3), 0);
	o.max_new = 12;
	o.top_p = 0.9;
	cr_assert_eq(policy_sample(&a, tr, prompt, 3, &o, &r1), 0, "%s", swerve_error_last());
	cr_assert_eq(policy_sample(&b2, tr, prompt, 3, &o, &r2), 0);
	cr_assert_eq(policy_sample(&d, tr, prompt, 3, &o, &r3), 0);
	cr_expect(!memcmp(a.tokens, b2.tokens, sizeof(int) * 12), "same seed, same sample");
	cr_expect(memcmp(a.tokens, d.tokens, sizeof(int) * 12), "another seed, another sample");
	for (int i = 0; i < 12; i++)
		cr_expect(a.logp[i] < 0 && a.logp[i] > -20, "logp %g", a.logp[i]);
	policy_sample_dispose(&a);
	policy_sample_dispose(&b2);
	policy_sample_dispose(&d);
	o.max_new = 1000; /* past max_seq_len */
	cr_expect_eq(policy_sample(&a, tr, prompt, 3, &o, &r1), SWERVE_EINVAL);
	policy_trainer_free(tr);
}

/* test_decode.c - incremental decoding (policy/decode.c) against the full
 * forward pass of the CPU reference: after every push the logits equal the
 * last row of policy_ref_forward over the same prefix (to 1e-9 relative) on
 * small random configs (lightning only, mixed, softmax only; several heads,
 * GQA, partial and full rotary, top-k 1 and 2, odd sizes); policy_sample
 * (the decoder) gives the same tokens, logprobs and rng state as the old
 * full-forward loop (policy_sample_full_forward) with a fixed seed; and the
 * errors (bad token id, past max_seq_len) are named and leave the state
 * as it was. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

static uint64_t rs = 777;
static double urand(void)
{
	rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((rs >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void)
{
	return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand());
}

struct shape {
	const char *name;
	int vocab, dim, layers, heads, head_dim, kv, rotary, softmax_every, experts, top_k, hidden,
	        max_seq;
};

static const struct shape shapes[] = {
        /* name            V   D  L  H  d  KV rd  every E  k  F  max */
        {"lightning only", 13, 10, 2, 3, 5, 3, 2, 99, 3, 1, 7, 24},
        {"mixed GQA", 17, 12, 3, 4, 6, 2, 4, 2, 4, 2, 5, 24},
        {"softmax only", 11, 9, 2, 2, 4, 1, 4, 1, 2, 2, 3, 20},
        {"mixed MHA k1", 19, 14, 4, 2, 7, 2, 6, 4, 5, 1, 9, 24},
};

static void make_config(struct policy_config *c, const struct shape *s)
{
	policy_config_default(c);
	c->vocab_size = s->vocab;
	c->dim = s->dim;
	c->n_layers = s->layers;
	c->n_heads = s->heads;
	c->head_dim = s->head_dim;
	c->n_kv_heads = s->kv;
	c->rotary_dim = s->rotary;
	c->softmax_every = s->softmax_every;
	c->n_experts = s->experts;
	c->top_k = s->top_k;
	c->expert_hidden = s->hidden;
	c->max_seq_len = s->max_seq;
	cr_assert_eq(policy_config_validate(c), 0, "%s: %s", s->name, swerve_error_last());
}

/* random weights large enough that attention, decay and routing matter */
static double *random_params(const struct policy_layout *L)
{
	double *P = malloc(L->total * sizeof(double));
	for (size_t i = 0; i < L->total; i++)
		P[i] = 0.4 * nrand();
	for (int i = 0; i < L->n; i++)
		if (L->t[i].ndim == 1)
			for (size_t j = 0; j < L->t[i].numel; j++)
				P[L->t[i].offset + j] = 1.0 + 0.2 * nrand();
	return P;
}

/* the worst |a - b| / max_v |b_v| of one logits row */
static double row_rel(const double *a, const double *b, int V)
{
	double mx = 0, worst = 0;
	for (int v = 0; v < V; v++)
		mx = fmax(mx, fabs(b[v]));
	for (int v = 0; v < V; v++)
		worst = fmax(worst, fabs(a[v] - b[v]) / fmax(mx, 1e-300));
	return worst;
}

Test(decode, logits_after_every_push_equal_the_full_forward_of_the_prefix, .timeout = 60)
{
	for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
		const struct shape *sh = &shapes[si];
		struct policy_config c;
		struct policy_layout L;
		struct policy_decode *dec;
		int T = sh->max_seq, tok[64], V = sh->vocab, n_lin = 0, n_sm = 0;
		double *P, *z = malloc((size_t)V * sizeof(double)), worst = 0;
		make_config(&c, sh);
		cr_assert_eq(policy_layout_init(&L, &c), 0);
		for (int l = 0; l < c.n_layers; l++)
			*(L.layers[l].softmax ? &n_sm : &n_lin) += 1;
		cr_assert(si != 0 || (n_sm == 0 && n_lin > 0), "%s has no softmax layer", sh->name);
		cr_assert(si != 1 || (n_sm > 0 && n_lin > 0), "%s mixes both", sh->name);
		cr_assert(si != 2 || (n_sm > 0 && n_lin == 0), "%s is all softmax", sh->name);
		P = random_params(&L);
		for (int t = 0; t < T; t++)
			tok[t] = (int)(urand() * V);
		cr_assert_eq(policy_decode_new(&dec, &c, &L, P), 0, "%s", swerve_error_last());
		for (int t = 0; t < T; t++) {
			int cu[2] = {0, t + 1};
			struct policy_batch b = {t + 1, tok, 1, cu};
			struct policy_ref_tape *tape;
			double rel;
			cr_assert_eq(policy_decode_push(dec, tok[t], z), 0, "%s",
			             swerve_error_last());
			cr_assert_eq(policy_decode_pos(dec), t + 1);
			cr_assert_eq(policy_ref_forward(&tape, &c, &L, P, &b), 0);
			rel = row_rel(z, policy_ref_logits(tape) + (size_t)t * V, V);
			cr_expect(rel <= 1e-9, "%s: position %d: relative error %.3g", sh->name, t,
			          rel);
			worst = fmax(worst, rel);
			policy_ref_tape_free(tape);
		}
		cr_log_info("%s: worst relative error over %d pushes %.3g", sh->name, T, worst);

		/* reset starts a new sequence: the first logits come back */
		{
			int cu[2] = {0, 3};
			struct policy_batch b = {3, tok + 5, 1, cu};
			struct policy_ref_tape *tape;
			policy_decode_reset(dec);
			cr_assert_eq(policy_decode_pos(dec), 0);
			cr_assert_eq(policy_decode_push(dec, tok[5], NULL), 0);
			cr_assert_eq(policy_decode_push(dec, tok[6], NULL), 0);
			cr_assert_eq(policy_decode_push(dec, tok[7], z), 0);
			cr_assert_eq(policy_ref_forward(&tape, &c, &L, P, &b), 0);
			cr_expect(row_rel(z, policy_ref_logits(tape) + 2 * (size_t)V, V) <= 1e-9,
			          "%s: after reset", sh->name);
			policy_ref_tape_free(tape);
		}
		policy_decode_free(dec);
		policy_layout_dispose(&L);
		free(P);
		free(z);
	}
}

Test(decode, a_state_that_is_not_kept_would_show)
{
	/* the comparison above can fail: a decoder fed a different history
	 * (the same last token) gives other logits */
	struct policy_config c;
	struct policy_layout L;
	struct policy_decode *a, *b;
	double *P, za[32], zb[32];
	make_config(&c, &shapes[1]);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	P = random_params(&L);
	cr_assert_eq(policy_decode_new(&a, &c, &L, P), 0);
	cr_assert_eq(policy_decode_new(&b, &c, &L, P), 0);
	cr_assert_eq(policy_decode_push(a, 1, NULL), 0);
	cr_assert_eq(policy_decode_push(a, 4, za), 0);
	cr_assert_eq(policy_decode_push(b, 2, NULL), 0);
	cr_assert_eq(policy_decode_push(b, 4, zb), 0);
	cr_expect(row_rel(za, zb, c.vocab_size) > 1e-6, "history changes the logits");
	policy_decode_free(a);
	policy_decode_free(b);
	policy_layout_dispose(&L);
	free(P);
}

Test(decode, errors_are_named_and_leave_the_state_alone)
{
	struct policy_config c;
	struct policy_layout L;
	struct policy_decode *dec;
	double *P, z[32], ref[32];
	int tok[24];
	make_config(&c, &shapes[1]);
	cr_assert_eq(policy_layout_init(&L, &c), 0);
	P = random_params(&L);
	for (int t = 0; t < c.max_seq_len; t++)
		tok[t] = (t * 7 + 3) % c.vocab_size;
	cr_assert_eq(policy_decode_new(&dec, &c, &L, P), 0);
	cr_assert_eq(policy_decode_push(dec, tok[0], NULL), 0);
	cr_expect_eq(policy_decode_push(dec, c.vocab_size, z), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "outside the vocabulary"), "%s", swerve_error_last());
	cr_expect(strstr(swerve_error_last(), "id 17"), "%s", swerve_error_last());
	cr_expect_eq(policy_decode_push(dec, -1, z), SWERVE_EINVAL);
	cr_expect_eq(policy_decode_pos(dec), 1);
	for (int t = 1; t < c.max_seq_len; t++)
		cr_assert_eq(policy_decode_push(dec, tok[t], z), 0, "%s", swerve_error_last());
	{
		int cu[2] = {0, c.max_seq_len};
		struct policy_batch b = {c.max_seq_len, tok, 1, cu};
		struct policy_ref_tape *tape;
		cr_assert_eq(policy_ref_forward(&tape, &c, &L, P, &b), 0);
		memcpy(ref, policy_ref_logits(tape) + (size_t)(c.max_seq_len - 1) * c.vocab_size,
		       (size_t)c.vocab_size * sizeof(double));
		policy_ref_tape_free(tape);
	}
	cr_expect(row_rel(z, ref, c.vocab_size) <= 1e-9, "the bad pushes changed nothing");
	cr_expect_eq(policy_decode_push(dec, tok[0], z), SWERVE_ELIMIT);
	cr_expect(strstr(swerve_error_last(), "longer than max_seq_len (24)"), "%s",
	          swerve_error_last());
	cr_expect_eq(policy_decode_pos(dec), c.max_seq_len);
	policy_decode_free(dec);
	policy_layout_dispose(&L);
	free(P);
}

/* ---- policy_sample: the decoder against the old full-forward loop -------- */

static void expect_same_samples(struct policy_trainer *tr, const int *prompt, int n_prompt,
                                const struct policy_sample_opts *o, uint64_t seed, const char *what)
{
	struct policy_sample a, b;
	uint64_t r1 = seed, r2 = seed;
	cr_assert_eq(policy_sample(&a, tr, prompt, n_prompt, o, &r1), 0, "%s: %s", what,
	             swerve_error_last());
	cr_assert_eq(policy_sample_full_forward(&b, tr, prompt, n_prompt, o, &r2), 0, "%s: %s",
	             what, swerve_error_last());
	cr_expect_eq(a.n, b.n, "%s: %d vs %d tokens", what, a.n, b.n);
	cr_expect_eq(a.stop, b.stop, "%s: stop", what);
	cr_expect_eq(r1, r2, "%s: the same rng draws", what);
	for (int i = 0; i < a.n && i < b.n; i++) {
		cr_expect_eq(a.tokens[i], b.tokens[i], "%s: token %d: %d vs %d", what, i,
		             a.tokens[i], b.tokens[i]);
		cr_expect(fabs(a.logp[i] - b.logp[i]) <= 1e-9 * fmax(1.0, fabs(b.logp[i])),
		          "%s: logp %d: %.17g vs %.17g", what, i, a.logp[i], b.logp[i]);
	}
	policy_sample_dispose(&a);
	policy_sample_dispose(&b);
}

Test(decode, sample_gives_the_same_tokens_and_logprobs_as_the_full_forward, .timeout = 60)
{
	for (int si = 1; si < 4; si++) {
		struct policy_config c;
		struct policy_trainer *tr;
		struct policy_sample_opts o = POLICY_SAMPLE_OPTS_INIT;
		int prompt[5] = {3, 1, 4, 1, 5};
		char what[96];
		make_config(&c, &shapes[si]);
		cr_assert_eq(policy_trainer_new(&tr, &c, 11 + si), 0, "%s", swerve_error_last());
		/* sharpen the distributions: the default init gives near-uniform
		 * logits, where any sampler looks right */
		for (size_t i = 0; i < tr->layout.total; i++)
			tr->params[i] *= 15.0f;
		o.max_new = c.max_seq_len - 5; /* the sequence fills max_seq_len */
		o.guard_run = 0;
		snprintf(what, sizeof(what), "%s, temperature 1", shapes[si].name);
		expect_same_samples(tr, prompt, 5, &o, 42, what);
		o.top_p = 0.8;
		o.temperature = 0.7;
		snprintf(what, sizeof(what), "%s, top-p 0.8 at 0.7", shapes[si].name);
		expect_same_samples(tr, prompt, 5, &o, 7, what);
		o.temperature = 0;
		snprintf(what, sizeof(what), "%s, greedy", shapes[si].name);
		expect_same_samples(tr, prompt, 5, &o, 1, what);
		o.temperature = 1.3;
		o.top_p = 1.0;
		o.stop_token = 2;
		o.guard_run = 2;
		o.guard_prob = 0.5;
		snprintf(what, sizeof(what), "%s, stop token and guard", shapes[si].name);
		expect_same_samples(tr, prompt, 1, &o, 99, what);
		policy_trainer_free(tr);
	}
}

Test(decode, sample_rejects_a_bad_prompt_token)
{
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_sample_opts o = POLICY_SAMPLE_OPTS_INIT;
	struct policy_sample s;
	int prompt[3] = {1, 40, 2};
	uint64_t rng = 1;
	make_config(&c, &shapes[1]);
	cr_assert_eq(policy_trainer_new(&tr, &c, 5), 0);
	o.max_new = 4;
	cr_expect_eq(policy_sample(&s, tr, prompt, 3, &o, &rng), SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "prompt token 1: id 40"), "%s", swerve_error_last());
	policy_trainer_free(tr);
}

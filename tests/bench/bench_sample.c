/* bench_sample.c - `swerve-train sample`'s sampler on the CPU reference
 * (issue 10): tokens/s of incremental decoding (policy_sample: the
 * lightning layers' recurrent state and the softmax layers' KV cache, one
 * token's forward per step) against the old path, a full forward pass over
 * the whole prefix per token (policy_sample_full_forward), side by side in
 * one run on the same model, prompt and seed. Model: vocab 256, dim 64, 4
 * layers (layer 3 softmax, GQA 4/2 heads of 16, rotary 8), 4 experts top-2
 * of hidden 128. Prompt 32 tokens, then 64 and 256 new tokens (temperature
 * 1, no stop token, no guard: every run generates exactly max_new). Wall
 * time, best of several runs (the dev box is shared); both paths must
 * produce the same tokens or the benchmark fails.
 * Usage: bench_sample [max_new ...]   (default 64 256) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"

typedef int (*sample_fn)(struct policy_sample *, struct policy_trainer *, const int *, int,
                         const struct policy_sample_opts *, uint64_t *);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* best wall seconds of reps runs; *out keeps the last run's sample */
static double time_it(sample_fn f, struct policy_trainer *tr, const int *prompt, int n_prompt,
                      const struct policy_sample_opts *o, int reps, struct policy_sample *out)
{
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		uint64_t rng = 2026;
		double t0 = now(), dt;
		if (r)
			policy_sample_dispose(out);
		if (f(out, tr, prompt, n_prompt, o, &rng)) {
			fprintf(stderr, "bench_sample: %s\n", swerve_error_last());
			exit(1);
		}
		dt = now() - t0;
		best = dt < best ? dt : best;
	}
	return best;
}

int main(int argc, char **argv)
{
	int news[8] = {64, 256}, n_news = 2, n_prompt = 32, prompt[32];
	struct policy_config c;
	struct policy_trainer *tr;

	if (argc > 1) {
		n_news = 0;
		for (int i = 1; i < argc && n_news < 8; i++)
			if ((news[n_news++] = atoi(argv[i])) < 1) {
				fprintf(stderr, "usage: bench_sample [max_new ...]\n");
				return 2;
			}
	}
	policy_config_default(&c);
	c.vocab_size = 256;
	c.dim = 64;
	c.n_layers = 4;
	c.n_heads = 4;
	c.head_dim = 16;
	c.n_kv_heads = 2;
	c.rotary_dim = 8;
	c.softmax_every = 4;
	c.n_experts = 4;
	c.top_k = 2;
	c.expert_hidden = 128;
	c.max_seq_len = 0;
	for (int i = 0; i < n_news; i++)
		c.max_seq_len =
		        n_prompt + news[i] > c.max_seq_len ? n_prompt + news[i] : c.max_seq_len;
	if (policy_config_validate(&c) || policy_trainer_new(&tr, &c, 1)) {
		fprintf(stderr, "bench_sample: %s\n", swerve_error_last());
		return 1;
	}
	for (int i = 0; i < n_prompt; i++)
		prompt[i] = "swerve samples from its policy.."[i];
	printf("sampler on the CPU reference (double): vocab %d, dim %d, %d layers (1 softmax), "
	       "%d experts top-%d, %.0f active params/token\n",
	       c.vocab_size, c.dim, c.n_layers, c.n_experts, c.top_k,
	       policy_config_active_params(&c));
	printf("%-8s %-6s %14s %14s %14s %14s %8s %6s\n", "prompt", "new", "full s", "full tok/s",
	       "decode s", "decode tok/s", "speedup", "same");
	for (int i = 0; i < n_news; i++) {
		struct policy_sample_opts o = POLICY_SAMPLE_OPTS_INIT;
		struct policy_sample a, b;
		double tf, td;
		int same;
		o.max_new = news[i];
		o.guard_run = 0;
		tf = time_it(policy_sample_full_forward, tr, prompt, n_prompt, &o,
		             news[i] > 128 ? 1 : 3, &a);
		td = time_it(policy_sample, tr, prompt, n_prompt, &o, 5, &b);
		same = a.n == b.n && !memcmp(a.tokens, b.tokens, sizeof(int) * (size_t)a.n) &&
		       !memcmp(a.logp, b.logp, sizeof(double) * (size_t)a.n);
		printf("%-8d %-6d %14.4f %14.1f %14.4f %14.1f %7.1fx %6s\n", n_prompt, news[i], tf,
		       a.n / tf, td, b.n / td, tf / td, same ? "yes" : "NO");
		policy_sample_dispose(&a);
		policy_sample_dispose(&b);
		if (!same) {
			fprintf(stderr, "bench_sample: the decoder's sample differs from the full "
			                "forward's\n");
			return 1;
		}
	}
	policy_trainer_free(tr);
	return 0;
}

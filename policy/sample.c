/* sample.c - sampling responses from the CPU reference model: temperature,
 * nucleus (top-p), a stop token, and M1's repetition guard (stop once
 * guard_run consecutive tokens each had probability > guard_prob). The
 * logprob recorded per token is the model's at temperature 1, which is what
 * the trainer's importance ratio compares against. Decoding is incremental
 * (decode.c: the lightning layers' recurrent state and the softmax layers'
 * KV cache), one token's forward per step; the old path, a full forward
 * pass over the whole prefix per step, stays as policy_sample_full_forward
 * for the tests and the benchmark. Both draw the same random numbers and
 * pick from the same logits. This is a reference and a tool for small
 * models (double precision, one sequence), not a serving path. */
#include "policy/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double next_uniform(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

struct cand {
	double p;
	int id;
};

static int cand_desc(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	return x->p < y->p ? 1 : x->p > y->p ? -1 : x->id - y->id;
}

/* picks a token from logits z (V); *lp = log softmax(z)[pick], *pmax = its
 * probability at temperature 1 */
static int pick(const double *z, int V, const struct policy_sample_opts *o, uint64_t *rng,
                double *lp, double *prob, struct cand *c)
{
	double mx = -INFINITY, s = 0, lse, u, acc = 0, mass = 0;
	int best = 0, n = 0, k;
	for (int v = 0; v < V; v++)
		if (z[v] > mx) {
			mx = z[v];
			best = v;
		}
	for (int v = 0; v < V; v++)
		s += exp(z[v] - mx);
	lse = mx + log(s);
	if (o->temperature <= 0) {
		k = best;
	} else {
		double ts = 0;
		for (int v = 0; v < V; v++) {
			c[v].p = exp((z[v] - mx) / o->temperature);
			c[v].id = v;
			ts += c[v].p;
		}
		for (int v = 0; v < V; v++)
			c[v].p /= ts;
		qsort(c, (size_t)V, sizeof(*c), cand_desc);
		for (n = 0; n < V; n++) { /* the nucleus: smallest prefix with mass >= top_p */
			mass += c[n].p;
			if (mass >= o->top_p)
				break;
		}
		n = n < V ? n + 1 : V;
		u = next_uniform(rng) * (mass < 1.0 && n < V ? mass : 1.0);
		k = c[n - 1].id;
		for (int i = 0; i < n; i++) {
			acc += c[i].p;
			if (u < acc) {
				k = c[i].id;
				break;
			}
		}
	}
	*lp = z[k] - lse;
	*prob = exp(*lp);
	return k;
}

static int sample_run(struct policy_sample *out, struct policy_trainer *tr, const int *prompt,
                      int n_prompt, const struct policy_sample_opts *o, uint64_t *rng, int full)
{
	int V = tr->cfg.vocab_size, cap = n_prompt + o->max_new, rc = 0, run = 0;
	int *seq = NULL;
	double *pd = NULL, *z = NULL;
	struct cand *c = NULL;
	struct policy_decode *dec = NULL;
	struct policy_sample s;

	memset(&s, 0, sizeof(s));
	if (n_prompt < 1 || o->max_new < 1 || cap > tr->cfg.max_seq_len)
		return swerve_error_set(SWERVE_EINVAL,
		                        "sample: prompt of %d tokens + max_new %d must be 1..%d "
		                        "(max_seq_len)",
		                        n_prompt, o->max_new, tr->cfg.max_seq_len);
	if (!(o->top_p > 0 && o->top_p <= 1))
		return swerve_error_set(SWERVE_EINVAL, "sample: top_p must be in (0, 1]");
	for (int t = 0; t < n_prompt; t++)
		if (prompt[t] < 0 || prompt[t] >= V)
			return swerve_error_set(SWERVE_EINVAL,
			                        "sample: prompt token %d: id %d outside the "
			                        "vocabulary (%d)",
			                        t, prompt[t], V);
	if ((rc = policy_trainer_sync_host(tr)))
		return rc;
	seq = malloc((size_t)cap * sizeof(int));
	pd = malloc(tr->layout.total * sizeof(double));
	z = malloc((size_t)V * sizeof(double));
	c = malloc((size_t)V * sizeof(*c));
	s.tokens = malloc((size_t)o->max_new * sizeof(int));
	s.logp = malloc((size_t)o->max_new * sizeof(double));
	if (!seq || !pd || !z || !c || !s.tokens || !s.logp) {
		rc = swerve_error_set(SWERVE_ENOMEM, "sample: out of memory");
		goto done;
	}
	for (size_t i = 0; i < tr->layout.total; i++)
		pd[i] = tr->params[i];
	memcpy(seq, prompt, (size_t)n_prompt * sizeof(int));
	if (!full) { /* the prompt: only its last token's logits are needed */
		if ((rc = policy_decode_new(&dec, &tr->cfg, &tr->layout, pd)))
			goto done;
		for (int t = 0; t < n_prompt; t++)
			if ((rc = policy_decode_push(dec, prompt[t], t + 1 < n_prompt ? NULL : z)))
				goto done;
	}
	s.stop = POLICY_STOP_LENGTH;
	while (s.n < o->max_new) {
		int T = n_prompt + s.n, k;
		double lp, prob;
		if (full) {
			int cu[2] = {0, T};
			struct policy_batch b = {T, seq, 1, cu};
			struct policy_ref_tape *tape;
			if ((rc = policy_ref_forward(&tape, &tr->cfg, &tr->layout, pd, &b)))
				goto done;
			memcpy(z, policy_ref_logits(tape) + (size_t)(T - 1) * V,
			       (size_t)V * sizeof(double));
			policy_ref_tape_free(tape);
		}
		k = pick(z, V, o, rng, &lp, &prob, c);
		seq[T] = k;
		s.tokens[s.n] = k;
		s.logp[s.n] = lp;
		s.n++;
		if (k == o->stop_token) {
			s.stop = POLICY_STOP_TOKEN;
			break;
		}
		run = prob > o->guard_prob ? run + 1 : 0;
		if (o->guard_run > 0 && run >= o->guard_run) {
			s.stop = POLICY_STOP_GUARD;
			break;
		}
		if (!full && s.n < o->max_new && (rc = policy_decode_push(dec, k, z)))
			goto done;
	}
	*out = s;
	memset(&s, 0, sizeof(s));
done:
	policy_sample_dispose(&s);
	policy_decode_free(dec);
	free(seq);
	free(pd);
	free(z);
	free(c);
	return rc;
}

int policy_sample(struct policy_sample *out, struct policy_trainer *tr, const int *prompt,
                  int n_prompt, const struct policy_sample_opts *o, uint64_t *rng)
{
	return sample_run(out, tr, prompt, n_prompt, o, rng, 0);
}

int policy_sample_full_forward(struct policy_sample *out, struct policy_trainer *tr,
                               const int *prompt, int n_prompt, const struct policy_sample_opts *o,
                               uint64_t *rng)
{
	return sample_run(out, tr, prompt, n_prompt, o, rng, 1);
}

void policy_sample_dispose(struct policy_sample *s)
{
	free(s->tokens);
	free(s->logp);
	memset(s, 0, sizeof(*s));
}

/* rl.c - the RL training step driven by the db's consumer API: complete
 * groups of rollouts (prompt tokens, response tokens, behaviour logprobs,
 * rewards) become one packed batch with per-token advantages, trained with
 * CISPO (or GRPO/DAPO) for K passes, each pass optionally accumulated over
 * micro-batches of whole sequences; metrics go back to the db.
 *
 * Position p of a packed sequence s = prompt ++ response predicts s[p+1], so
 * response token j (at P + j) is the target of position P + j - 1. Groups
 * with all-equal rewards carry no signal and are skipped (DAPO's dynamic
 * sampling); a sample without a reward blocks nothing here: the db never
 * hands out groups with infrastructure failures. */
#include "db/db.h"
#include "policy/policy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct packed {
	int n, cap_seqs, n_seqs;
	int *tok, *tgt, *cu, *has_old;
	double *old, *adv;
};

static void packed_free(struct packed *p)
{
	free(p->tok);
	free(p->tgt);
	free(p->cu);
	free(p->has_old);
	free(p->old);
	free(p->adv);
}

int policy_rl_step_batch(struct policy_rl_stats *st, struct policy_trainer *tr,
                         const struct swerve_db_batch *batch, const struct policy_rl_opts *o)
{
	struct packed pk;
	size_t total = 0, nsamp = 0;
	double rsum = 0, t0 = now_s(), *cur = NULL;
	int rc = 0, need_recompute = 0, L = tr->cfg.max_seq_len, K = 1, *mcu = NULL;
	struct policy_batch *mb = NULL;
	const int **mt = NULL;
	const double **mo = NULL, **ma = NULL;

	memset(st, 0, sizeof(*st));
	memset(&pk, 0, sizeof(pk));
	if (o->passes < 1)
		return swerve_error_set(SWERVE_EINVAL, "rl: passes must be >= 1 (got %d)",
		                        o->passes);
	for (size_t g = 0; g < batch->n; g++)
		for (int i = 0; i < batch->groups[g].size; i++) {
			const struct swerve_db_sample *s = &batch->groups[g].samples[i];
			size_t len = s->n_prompt_tokens + s->n_response_tokens;
			total += len < (size_t)L ? len : (size_t)L;
			nsamp++;
		}
	pk.tok = calloc(total + 1, sizeof(int));
	pk.tgt = calloc(total + 1, sizeof(int));
	pk.has_old = calloc(total + 1, sizeof(int));
	pk.old = calloc(total + 1, sizeof(double));
	pk.adv = calloc(total + 1, sizeof(double));
	pk.cu = calloc(nsamp + 2, sizeof(int));
	if (!pk.tok || !pk.tgt || !pk.has_old || !pk.old || !pk.adv || !pk.cu) {
		rc = swerve_error_set(SWERVE_ENOMEM, "rl: out of memory");
		goto done;
	}
	for (size_t g = 0; g < batch->n; g++) {
		const struct swerve_db_group *gr = &batch->groups[g];
		double *R = calloc((size_t)gr->size + 1, sizeof(double));
		double *A = calloc((size_t)gr->size + 1, sizeof(double));
		int signal, ntok = 0;
		if (!R || !A) {
			free(R);
			free(A);
			rc = swerve_error_set(SWERVE_ENOMEM, "rl: out of memory");
			goto done;
		}
		for (int i = 0; i < gr->size; i++) {
			R[i] = gr->samples[i].has_reward ? gr->samples[i].reward : 0.0;
			rsum += R[i];
			ntok += (int)gr->samples[i].n_response_tokens;
		}
		signal = policy_group_advantages(A, R, gr->size);
		if (!signal || ntok == 0) {
			st->groups_skipped++;
			free(R);
			free(A);
			continue;
		}
		st->groups++;
		for (int i = 0; i < gr->size; i++) {
			const struct swerve_db_sample *s = &gr->samples[i];
			size_t P = s->n_prompt_tokens, Rn = s->n_response_tokens, cut = 0, len;
			int base = pk.n;
			if (Rn == 0)
				continue;
			if (P + Rn > (size_t)L) { /* keep the response, drop the prompt's head */
				if (Rn + 1 > (size_t)L) {
					free(R);
					free(A);
					rc = swerve_error_set(
					        SWERVE_EINVAL,
					        "rl: rollout %lld: response of %zu tokens "
					        "exceeds max_seq_len %d",
					        (long long)s->rollout, Rn, L);
					goto done;
				}
				cut = P + Rn - (size_t)L;
			}
			len = P + Rn - cut;
			for (size_t j = 0; j < len; j++) {
				size_t src = j + cut;
				int v = (int)(src < P ? s->prompt_tokens[src]
				                      : s->response_tokens[src - P]);
				if (v < 0 || v >= tr->cfg.vocab_size) {
					free(R);
					free(A);
					rc = swerve_error_set(
					        SWERVE_EINVAL,
					        "rl: rollout %lld: token %d outside the "
					        "vocabulary (%d)",
					        (long long)s->rollout, v, tr->cfg.vocab_size);
					goto done;
				}
				pk.tok[base + j] = v;
				pk.tgt[base + j] = -1;
			}
			for (size_t j = 0; j < Rn; j++) {
				size_t pos = P - cut + j; /* in the packed sequence */
				if (pos == 0)
					continue; /* nothing predicts the first token */
				pk.tgt[base + pos - 1] = (int)s->response_tokens[j];
				pk.adv[base + pos - 1] = A[i];
				if (s->logprobs && s->n_logprobs == Rn && !o->recompute_logprobs) {
					pk.old[base + pos - 1] = s->logprobs[j];
					pk.has_old[base + pos - 1] = 1;
				} else {
					need_recompute = 1;
				}
				st->tokens++;
			}
			pk.n += (int)len;
			pk.cu[++pk.n_seqs] = pk.n;
			st->samples++;
		}
		free(R);
		free(A);
	}
	st->reward_mean = nsamp ? rsum / (double)nsamp : 0;
	if (pk.n_seqs == 0)
		goto done; /* nothing to train on: not an error */
	/* the packed sequences split into K contiguous micro-batches of about
	 * n / K tokens each (at least one sequence each) */
	K = o->micro_batches > 1 ? o->micro_batches : 1;
	if (K > pk.n_seqs)
		K = pk.n_seqs;
	mb = calloc((size_t)K, sizeof(*mb));
	mcu = calloc((size_t)pk.n_seqs + (size_t)K, sizeof(int));
	mt = calloc((size_t)K, sizeof(*mt));
	mo = calloc((size_t)K, sizeof(*mo));
	ma = calloc((size_t)K, sizeof(*ma));
	if (!mb || !mcu || !mt || !mo || !ma) {
		rc = swerve_error_set(SWERVE_ENOMEM, "rl: out of memory");
		goto done;
	}
	for (int i = 0, s0 = 0, *cu = mcu; i < K; i++) {
		int s1 = s0 + 1, t0 = pk.cu[s0];
		while (s1 < pk.n_seqs - (K - 1 - i) &&
		       (i == K - 1 || (long)pk.cu[s1] * K < (long)pk.n * (i + 1)))
			s1++;
		for (int q = s0; q <= s1; q++)
			cu[q - s0] = pk.cu[q] - t0;
		mb[i] = (struct policy_batch){pk.cu[s1] - t0, pk.tok + t0, s1 - s0, cu};
		mt[i] = pk.tgt + t0;
		mo[i] = pk.old + t0;
		ma[i] = pk.adv + t0;
		cu += s1 - s0 + 1;
		s0 = s1;
	}
	{
		struct policy_step_stats ss;
		if (need_recompute) {
			cur = calloc((size_t)pk.n, sizeof(double));
			if (!cur) {
				rc = swerve_error_set(SWERVE_ENOMEM, "rl: out of memory");
				goto done;
			}
			for (int i = 0; i < K; i++)
				if ((rc = policy_trainer_logprobs(cur + (mt[i] - pk.tgt), tr,
				                                  &mb[i], mt[i])))
					goto done;
			for (int t = 0; t < pk.n; t++)
				if (!pk.has_old[t])
					pk.old[t] = cur[t];
		}
		for (int k = 0; k < o->passes; k++) {
			if ((rc = policy_trainer_pg_step_accum(&ss, tr, mb, mt, mo, ma, &o->loss,
			                                       K)))
				goto done;
		}
		st->loss = ss.loss;
		st->clipped_frac = ss.clipped_frac;
		st->entropy = ss.entropy;
		st->grad_norm = ss.grad_norm;
		st->seconds = now_s() - t0;
		/* throughput counts every token the passes processed */
		st->tokens_per_s = st->seconds > 0 ? (double)pk.n * o->passes / st->seconds : 0;
		if (o->peak_flops > 0)
			st->mfu = st->tokens_per_s *
			          policy_config_flops_per_token(&tr->cfg, pk.n / pk.n_seqs) /
			          o->peak_flops;
	}
done:
	free(cur);
	free(mb);
	free(mcu);
	free(mt);
	free(mo);
	free(ma);
	packed_free(&pk);
	return rc;
}

int policy_rl_step_db(struct policy_rl_stats *st, struct policy_trainer *tr, struct swerve_db *db,
                      int64_t run, size_t max_groups, int64_t step, const struct policy_rl_opts *o)
{
	struct swerve_db_batch b;
	int rc;
	memset(&b, 0, sizeof(b));
	memset(st, 0, sizeof(*st));
	/* fetch, train, then consume: a trainer that fails (or crashes) mid-step
	 * leaves the groups for the next attempt instead of losing them */
	if ((rc = swerve_db_groups_fetch(&b, db, run, max_groups)))
		return swerve_error_wrap("rl: fetching groups");
	if (b.n == 0) {
		swerve_db_batch_free(&b);
		return 0;
	}
	rc = policy_rl_step_batch(st, tr, &b, o);
	if (!rc) {
		int64_t *ids = calloc(b.n, sizeof(int64_t));
		if (!ids)
			rc = swerve_error_set(SWERVE_ENOMEM, "rl: out of memory");
		for (size_t i = 0; ids && i < b.n; i++)
			ids[i] = b.groups[i].id;
		if (ids && (rc = swerve_db_groups_consume(db, ids, b.n)))
			swerve_error_wrap("rl: consuming groups");
		free(ids);
	}
	swerve_db_batch_free(&b);
	if (rc)
		return rc;
	{
		const char *names[] = {"loss",           "reward_mean",  "clipped_frac", "entropy",
		                       "grad_norm",      "tokens_per_s", "mfu",          "groups",
		                       "groups_skipped", "tokens"};
		double vals[] = {st->loss,    st->reward_mean, st->clipped_frac,
		                 st->entropy, st->grad_norm,   st->tokens_per_s,
		                 st->mfu,     st->groups,      st->groups_skipped,
		                 st->tokens};
		swerve_db_begin(db);
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
			if ((rc = swerve_db_metric_add(db, run, step, names[i], vals[i]))) {
				swerve_db_rollback(db);
				return swerve_error_wrap("rl: storing metric %s", names[i]);
			}
		if ((rc = swerve_db_commit(db)))
			return swerve_error_wrap("rl: storing metrics");
	}
	return 0;
}

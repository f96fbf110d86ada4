/* test_rl.c - the RL step driven by the db's consumer API: rollouts enqueued,
 * claimed and completed with rewards as the runner would, then consumed by
 * policy_rl_step_db: equal-reward groups skipped, advantages applied to the
 * response tokens only, logprobs moved the right way, groups consumed once,
 * metrics stored. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "policy/policy.h"
#include "tests/support/support.h"

static const int32_t prompt[3] = {'f', 'i', 'x'};
static const int32_t resp[4][4] = {
        {'a', 'b', 'c', 'd'}, {'w', 'x', 'y', 'z'}, {'a', 'b', 'c', 'd'}, {'q', 'r', 's', 't'}};

static void add_group(struct swerve_db *db, int64_t run, int64_t task, int64_t key,
                      const double *rewards, const float *lp)
{
	for (int i = 0; i < 4; i++) {
		char patch[64];
		struct swerve_db_rollout r = {0};
		int64_t id;
		snprintf(patch, sizeof(patch), "patch %lld %d\n", (long long)key, i);
		r.run = run;
		r.task = task;
		r.group = key;
		r.group_size = 4;
		r.sample = i;
		r.patch = patch;
		r.prompt_tokens = prompt;
		r.n_prompt_tokens = 3;
		r.response_tokens = resp[i];
		r.n_response_tokens = 4;
		r.logprobs = lp ? lp + 4 * i : NULL;
		r.n_logprobs = lp ? 4 : 0;
		cr_assert_eq(swerve_db_enqueue(&id, NULL, db, &r), 0, "%s", swerve_error_last());
	}
	for (int i = 0; i < 4; i++) {
		struct swerve_db_claim *c;
		size_t n;
		struct swerve_db_result res;
		cr_assert_eq(swerve_db_claim(&c, &n, db, run, "w", 1, 60000), 0, "%s",
		             swerve_error_last());
		cr_assert_eq(n, 1);
		memset(&res, 0, sizeof(res));
		res.verdict = "OK";
		res.resolved = rewards[c[0].sample] > 0 ? "FULL" : "NO";
		res.has_reward = 1;
		res.reward = rewards[c[0].sample];
		res.patch_applied = 1;
		cr_assert_eq(swerve_db_complete(db, c[0].rollout, c[0].attempt, "w", &res), 0, "%s",
		             swerve_error_last());
		swerve_db_claims_free(c, n);
	}
}

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
	c->expert_hidden = 32;
	c->max_seq_len = 64;
	cr_assert_eq(policy_config_validate(c), 0);
}

/* mean logprob of response i under the trainer's current weights */
static double resp_logp(struct policy_trainer *tr, int i)
{
	int tok[7], tgt[7], cu[2] = {0, 7};
	double lp[7], s = 0;
	struct policy_batch b = {7, tok, 1, cu};
	for (int t = 0; t < 7; t++) {
		tok[t] = t < 3 ? prompt[t] : resp[i][t - 3];
		tgt[t] = t >= 2 && t < 6 ? resp[i][t - 2] : -1;
	}
	cr_assert_eq(policy_trainer_logprobs(lp, tr, &b, tgt), 0);
	for (int t = 2; t < 6; t++)
		s += lp[t];
	return s / 4;
}

Test(rl, step_from_the_db_consumer_api)
{
	char *dir = ts_mkdtemp(), path[4096];
	struct swerve_db *db;
	struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
	struct swerve_db_stats ds;
	int64_t run, task;
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_rl_opts o = POLICY_RL_OPTS_INIT;
	struct policy_rl_stats st;
	double r_signal[4] = {1, 0, 1, 0}, r_flat[4] = {1, 1, 1, 1};
	double before[4], after[4];

	snprintf(path, sizeof(path), "%s/swerve.db", dir);
	cr_assert_eq(swerve_db_open(&db, path, &dbo), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_db_run_create(&run, db, "rl-test", NULL), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_db_task_upsert(&task, db, "o__r-1", "o/r", "abc", "{}"), 0);
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 5), 0);
	tr->opt.lr = 2e-3;
	add_group(db, run, task, 1, r_flat, NULL);   /* no signal: skipped */
	add_group(db, run, task, 2, r_signal, NULL); /* logprobs recomputed */
	for (int i = 0; i < 4; i++)
		before[i] = resp_logp(tr, i);

	o.passes = 2;
	o.peak_flops = 1e12;
	cr_assert_eq(policy_rl_step_db(&st, tr, db, run, 8, 1, &o), 0, "%s", swerve_error_last());
	cr_expect_eq(st.groups, 1);
	cr_expect_eq(st.groups_skipped, 1);
	cr_expect_eq(st.samples, 4);
	cr_expect_eq(st.tokens, 16); /* response tokens only */
	cr_expect(fabs(st.reward_mean - 0.75) < 1e-12, "reward mean %g", st.reward_mean);
	cr_expect(st.grad_norm > 0 && st.tokens_per_s > 0 && st.mfu > 0);
	for (int i = 0; i < 4; i++)
		after[i] = resp_logp(tr, i);
	cr_log_info("rl: logp response 0 (A>0) %.4f -> %.4f, response 1 (A<0) %.4f -> %.4f",
	            before[0], after[0], before[1], after[1]);
	/* samples 0 and 2 are the same response with rewards 1 and 1: A > 0 */
	cr_expect(after[0] > before[0], "rewarded response: %.5f -> %.5f", before[0], after[0]);
	cr_expect(after[1] < before[1], "unrewarded response: %.5f -> %.5f", before[1], after[1]);
	cr_expect(after[3] < before[3], "unrewarded response: %.5f -> %.5f", before[3], after[3]);

	/* both groups consumed: the next step finds nothing */
	cr_assert_eq(policy_rl_step_db(&st, tr, db, run, 8, 2, &o), 0);
	cr_expect_eq(st.groups + st.groups_skipped, 0);
	cr_assert_eq(swerve_db_stats(&ds, db, run), 0);
	cr_expect_eq(ds.groups_consumed, 2);
	cr_expect_eq(ds.metrics, 10, "metrics %lld", (long long)ds.metrics);

	policy_trainer_free(tr);
	swerve_db_close(db);
	ts_rmtree(dir);
	free(dir);
}

Test(rl, rollout_logprobs_are_the_behaviour_policy)
{
	/* with behaviour logprobs far below the current ones the CISPO ratio is
	 * capped at 1 + eps_high on every token: all clipped */
	char *dir = ts_mkdtemp(), path[4096];
	struct swerve_db *db;
	int64_t run, task;
	struct policy_config c;
	struct policy_trainer *tr;
	struct policy_rl_opts o = POLICY_RL_OPTS_INIT;
	struct policy_rl_stats st;
	double r[4] = {1, 0, 0, 0};
	float lp[16];
	for (int i = 0; i < 16; i++)
		lp[i] = -40.0f;
	snprintf(path, sizeof(path), "%s/swerve.db", dir);
	cr_assert_eq(swerve_db_open(&db, path, NULL), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_db_run_create(&run, db, "rl-old", NULL), 0);
	cr_assert_eq(swerve_db_task_upsert(&task, db, "o__r-2", "o/r", "abc", "{}"), 0);
	add_group(db, run, task, 7, r, lp);
	small_config(&c);
	cr_assert_eq(policy_trainer_new(&tr, &c, 9), 0);
	cr_assert_eq(policy_rl_step_db(&st, tr, db, run, 8, 1, &o), 0, "%s", swerve_error_last());
	cr_expect_eq(st.groups, 1);
	cr_expect(st.clipped_frac == 1.0, "clipped %g", st.clipped_frac);
	/* recomputed instead: ratio 1, nothing clipped */
	add_group(db, run, task, 8, r, lp);
	o.recompute_logprobs = 1;
	cr_assert_eq(policy_rl_step_db(&st, tr, db, run, 8, 2, &o), 0, "%s", swerve_error_last());
	cr_expect(st.clipped_frac == 0.0, "clipped %g", st.clipped_frac);
	policy_trainer_free(tr);
	swerve_db_close(db);
	ts_rmtree(dir);
	free(dir);
}

/* micro-batches: the packed sequences split into contiguous micro-batches,
 * one optimizer step per pass. Two groups of the same size (different
 * advantages) split in two are two micro-batches of 16 target tokens each, so
 * the mean of their token means is the whole batch's token mean: the step
 * equals the one over the whole batch up to rounding (a split that lost or
 * repeated a micro-batch would not); more micro-batches than sequences are
 * capped at one sequence each, which weights tokens differently. */
Test(rl, micro_batches_accumulate_into_one_step)
{
	char *dir = ts_mkdtemp(), path[4096];
	struct swerve_db *db;
	int64_t run, task;
	struct policy_config c;
	struct policy_trainer *tr[3];
	struct policy_rl_opts o = POLICY_RL_OPTS_INIT;
	struct policy_rl_stats st[3];
	struct swerve_db_batch b = {0};
	double r[4] = {1, 0, 1, 0}, r2[4] = {0, 1, 1, 0}, num = 0, den = 0, moved = 0;
	const int mbs[3] = {1, 2, 100};
	snprintf(path, sizeof(path), "%s/swerve.db", dir);
	cr_assert_eq(swerve_db_open(&db, path, NULL), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_db_run_create(&run, db, "rl-mb", NULL), 0);
	cr_assert_eq(swerve_db_task_upsert(&task, db, "o__r-3", "o/r", "abc", "{}"), 0);
	add_group(db, run, task, 11, r, NULL);
	add_group(db, run, task, 12, r2, NULL);
	cr_assert_eq(swerve_db_groups_fetch(&b, db, run, 8), 0, "%s", swerve_error_last());
	cr_assert_eq(b.n, 2);
	small_config(&c);
	o.passes = 2;
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(policy_trainer_new(&tr[i], &c, 21), 0);
		tr[i]->opt.lr = 2e-3;
		o.micro_batches = mbs[i];
		cr_assert_eq(policy_rl_step_batch(&st[i], tr[i], &b, &o), 0, "%s",
		             swerve_error_last());
		cr_expect_eq(st[i].groups, 2);
		cr_expect_eq(tr[i]->opt.step, 2, "one optimizer step per pass (micro-batches %d)",
		             mbs[i]);
	}
	for (size_t j = 0; j < tr[0]->layout.total; j++) {
		double d = (double)tr[1]->params[j] - tr[0]->params[j];
		num += d * d;
		den += (double)tr[0]->params[j] * tr[0]->params[j];
		moved += fabs((double)tr[2]->params[j] - tr[0]->params[j]);
	}
	cr_expect(sqrt(num / den) < 1e-6, "2 micro-batches vs 1 batch: rel %.3e", sqrt(num / den));
	cr_expect(fabs(st[1].loss - st[0].loss) < 1e-9 * (fabs(st[0].loss) + 1e-3),
	          "loss %.12g vs %.12g", st[1].loss, st[0].loss);
	cr_expect(moved > 0, "8 micro-batches of one sequence step differently from one batch");
	for (int i = 0; i < 3; i++)
		policy_trainer_free(tr[i]);
	swerve_db_batch_free(&b);
	swerve_db_close(db);
	ts_rmtree(dir);
	free(dir);
}

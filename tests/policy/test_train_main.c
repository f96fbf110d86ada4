/* test_train_main.c - the swerve-train command end to end: --help of every
 * subcommand, init -> sft (loss falls) -> eval-logprobs -> rl against a db
 * filled as the runner fills it, and usage errors. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "tests/support/support.h"

static char bin[4096];

static void setup(void)
{
	snprintf(bin, sizeof(bin), "%s/swerve-train", ts_build_dir());
}

static int run(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char **out, char **err, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return ts_sh(out, err, "%s", cmd);
}

Test(swerve_train, help_for_every_command, .init = setup)
{
	const char *cmds[] = {"", "init", "sft", "rl", "eval-logprobs", "sample"};
	for (int i = 0; i < 6; i++) {
		char *out = NULL;
		int rc = run(&out, NULL, "%s %s --help", bin, cmds[i]);
		cr_expect_eq(rc, 0, "%s --help: rc %d", cmds[i], rc);
		cr_expect(out && strstr(out, "usage: swerve-train"), "%s: %s", cmds[i], out);
		free(out);
	}
}

Test(swerve_train, usage_errors_exit_2, .init = setup)
{
	char *err = NULL;
	cr_expect_eq(run(NULL, &err, "%s frobnicate", bin), 2);
	free(err);
	cr_expect_eq(run(NULL, &err, "%s sft --data x.jsonl", bin), 2);
	cr_expect(strstr(err, "swerve-train sft: --ckpt"), "%s", err);
	free(err);
	cr_expect_eq(run(NULL, &err, "%s rl --ckpt x --db y --run z --loss ppo", bin), 2);
	cr_expect(strstr(err, "--loss ppo"), "%s", err);
	free(err);
	cr_expect_eq(run(NULL, &err, "%s sft --ckpt x --data y --device tpu", bin), 2);
	cr_expect(strstr(err, "--device tpu"), "%s", err);
	free(err);
	cr_expect_eq(run(NULL, &err, "%s sft --ckpt x --data y --accum 0", bin), 2);
	cr_expect(strstr(err, "--accum"), "%s", err);
	free(err);
}

static const char cfg_json[] =
        "{\"dim\": 32, \"n_layers\": 2, \"n_heads\": 2, \"head_dim\": 16, \"n_kv_heads\": 1,"
        " \"rotary_dim\": 8, \"softmax_every\": 2, \"n_experts\": 4, \"top_k\": 2,"
        " \"expert_hidden\": 32, \"max_seq_len\": 128}";

static double last_loss(const char *out)
{
	const char *p = out, *q;
	double l = -1;
	while ((q = strstr(p, "loss "))) {
		l = atof(q + 5);
		p = q + 5;
	}
	return l;
}

Test(swerve_train, init_sft_eval_rl, .init = setup, .timeout = 120)
{
	char *dir = ts_mkdtemp(), p[4096], *out = NULL, *err = NULL;
	const char *data = "{\"text\": \"def add(a, b):\\n    return a + b\\n\"}\n"
	                   "{\"prompt\": \"fix: \", \"response\": \"return a + b\"}\n";
	struct swerve_db *db;
	int64_t run_id, task;
	int rc;

	snprintf(p, sizeof(p), "%s/cfg.json", dir);
	ts_write_file(p, cfg_json, strlen(cfg_json));
	snprintf(p, sizeof(p), "%s/data.jsonl", dir);
	ts_write_file(p, data, strlen(data));
	rc = run(&out, &err, "%s init --config %s/cfg.json --out %s/ck --seed 3", bin, dir, dir);
	cr_assert_eq(rc, 0, "init: %s", err);
	cr_expect(strstr(out, "1 softmax"), "%s", out);
	free(out);
	free(err);

	rc = run(&out, &err, "%s sft --ckpt %s/ck --data %s/data.jsonl --steps 40 --lr 1e-2", bin,
	         dir, dir);
	cr_assert_eq(rc, 0, "sft: %s", err);
	cr_expect(strstr(out, "step 1  loss 5."), "%s", out);
	cr_expect(last_loss(out) < 1.0, "final loss %g:\n%s", last_loss(out), out);
	/* no peak is known on the CPU: MFU is not made up */
	cr_expect(strstr(out, "  mfu -\n"), "%s", out);
	free(out);
	free(err);

	/* --accum 2: two packed micro-batches (one sequence each) per optimizer
	 * step: 10 more steps take the optimizer from step 40 to 50 */
	rc = run(
	        &out, &err,
	        "%s sft --ckpt %s/ck --out %s/ck3 --data %s/data.jsonl --steps 10 --batch-tokens 8 "
	        "--accum 2 --lr 1e-2 --log-every 1 --peak-tflops 0.001",
	        bin, dir, dir, dir);
	cr_assert_eq(rc, 0, "sft --accum: %s", err);
	cr_expect(strstr(out, "step 50  loss"), "one optimizer step per 2 micro-batches:\n%s", out);
	cr_expect(!strstr(out, "step 51 "), "%s", out);
	{ /* against --peak-tflops: a percentage, positive */
		const char *m = strstr(out, "  mfu ");
		double v = -1;
		char pct = 0;
		cr_expect(m && sscanf(m, "  mfu %lf%c", &v, &pct) == 2 && pct == '%' && v > 0, "%s",
		          out);
	}
	cr_expect(last_loss(out) < 1.0, "final loss %g:\n%s", last_loss(out), out);
	free(out);
	free(err);

	rc = run(&out, &err, "%s eval-logprobs --ckpt %s/ck --data %s/data.jsonl", bin, dir, dir);
	cr_assert_eq(rc, 0, "eval: %s", err);
	{
		char *nl = strchr(out, '\n');
		json_t *o;
		cr_assert(nl);
		*nl = 0;
		o = json_loads(out, 0, NULL);
		cr_assert(o, "%s", out);
		cr_expect_eq(json_integer_value(json_object_get(o, "n_tokens")), 31);
		cr_expect(json_real_value(json_object_get(o, "logprob_sum")) > -31.0);
		json_decref(o);
		/* line 2 counts only the response's tokens */
		o = json_loads(nl + 1, 0, NULL);
		cr_assert(o);
		cr_expect_eq(json_integer_value(json_object_get(o, "n_tokens")), 12);
		json_decref(o);
	}
	free(out);
	free(err);

	/* eval-logprobs names a bad line and skips it; the others keep their
	 * index; exit status 2 */
	snprintf(p, sizeof(p), "%s/eval.jsonl", dir);
	{
		FILE *f = fopen(p, "w");
		cr_assert(f);
		fputs("{\"text\": \"def add(a, b):\"}\n{\"text\": 5}\n\n"
		      "{\"prompt\": \"def\", \"response\": \" add\"}\n",
		      f);
		fclose(f);
	}
	rc = run(&out, &err, "%s eval-logprobs --ckpt %s/ck --data %s/eval.jsonl", bin, dir, dir);
	cr_expect_eq(rc, 2, "a bad line fails the status: %d\n%s", rc, err);
	cr_expect(strstr(err, "eval.jsonl:2") && strstr(err, "skipped"), "%s", err);
	cr_expect(strstr(out, "{\"index\": 0,") && strstr(out, "{\"index\": 2,"), "%s", out);
	cr_expect(!strstr(out, "\"index\": 1,"), "%s", out);
	free(out);
	free(err);

	/* sft refuses a data file with a bad line before it trains (named, exit
	 * 2; it used to free the dataset twice and crash) */
	rc = run(&out, &err, "%s sft --ckpt %s/ck --out %s/ck4 --data %s/eval.jsonl --steps 1", bin,
	         dir, dir, dir);
	cr_expect_eq(rc, 2, "sft with a bad line: %d\n%s", rc, err);
	cr_expect(strstr(err, "eval.jsonl:2"), "%s", err);
	free(out);
	free(err);

	/* greedy samples after sft continue the training text */
	rc = run(&out, &err,
	         "%s sample --ckpt %s/ck --prompt 'def add(a, b):' --temperature 0 "
	         "--max-new 8 --n 2",
	         bin, dir);
	cr_assert_eq(rc, 0, "sample: %s", err);
	cr_expect(strstr(out, "\"sample\":1"), "%s", out);
	cr_expect(strstr(out, "\"stop\":\"length\""), "%s", out);
	free(out);
	free(err);

	/* a prompt that cannot be sampled (121 tokens + 8 new > max_seq_len
	 * 128) and a line that is not JSON are named on stderr and skipped; the
	 * prompts around them still run (prompt_index counts the non-blank
	 * lines) and the exit status is 2 */
	{
		char longp[200];
		memset(longp, 'x', 121);
		longp[121] = 0;
		snprintf(p, sizeof(p), "%s/prompts.jsonl", dir);
		FILE *f = fopen(p, "w");
		cr_assert(f);
		fprintf(f,
		        "{\"prompt\": \"def a\"}\n{\"prompt\": \"%s\"}\n{\"prompt\": \"def b\"}\n"
		        "not json\n\n{\"prompt\": \"def c\"}\n",
		        longp);
		fclose(f);
	}
	rc = run(&out, &err,
	         "%s sample --ckpt %s/ck --data %s/prompts.jsonl --temperature 0 --max-new 8 --n 2",
	         bin, dir, dir);
	cr_expect_eq(rc, 2, "bad prompts fail the run's status: %d\n%s", rc, err);
	cr_expect(strstr(err, "prompt 1:") && strstr(err, "max_seq_len"), "%s", err);
	cr_expect(strstr(err, "prompts.jsonl:4: not a JSON object"), "%s", err);
	cr_expect(strstr(out, "\"prompt_index\":0,\"sample\":1"), "%s", out);
	cr_expect(strstr(out, "\"prompt_index\":2,\"sample\":1"), "prompt 2 still runs:\n%s", out);
	cr_expect(strstr(out, "\"prompt_index\":4,\"sample\":1"), "the line after the bad one:\n%s",
	          out);
	cr_expect(!strstr(out, "\"prompt_index\":1") && !strstr(out, "\"prompt_index\":3"), "%s",
	          out);
	free(out);
	free(err);

	/* a db as the runner leaves it: one group of 2 rewarded samples */
	snprintf(p, sizeof(p), "%s/swerve.db", dir);
	cr_assert_eq(swerve_db_open(&db, p, NULL), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_db_run_create(&run_id, db, "r1", NULL), 0);
	cr_assert_eq(swerve_db_task_upsert(&task, db, "o__r-1", "o/r", "abc", "{}"), 0);
	for (int i = 0; i < 2; i++) {
		int32_t pr[2] = {'f', ':'}, re[3] = {'a', (int32_t)('b' + i), 'c'};
		struct swerve_db_rollout r = {0};
		int64_t id;
		r.run = run_id;
		r.task = task;
		r.group = 1;
		r.group_size = 2;
		r.sample = i;
		r.patch = i ? "p1\n" : "p0\n";
		r.prompt_tokens = pr;
		r.n_prompt_tokens = 2;
		r.response_tokens = re;
		r.n_response_tokens = 3;
		cr_assert_eq(swerve_db_enqueue(&id, NULL, db, &r), 0, "%s", swerve_error_last());
	}
	for (int i = 0; i < 2; i++) {
		struct swerve_db_claim *c;
		size_t n;
		struct swerve_db_result res;
		cr_assert_eq(swerve_db_claim(&c, &n, db, run_id, "w", 1, 60000), 0);
		memset(&res, 0, sizeof(res));
		res.verdict = "OK";
		res.resolved = c[0].sample ? "NO" : "FULL";
		res.has_reward = 1;
		res.reward = c[0].sample ? 0 : 1;
		cr_assert_eq(swerve_db_complete(db, c[0].rollout, c[0].attempt, "w", &res), 0, "%s",
		             swerve_error_last());
		swerve_db_claims_free(c, n);
	}
	swerve_db_close(db);
	rc = run(&out, &err, "%s rl --ckpt %s/ck --out %s/ck2 --db %s/swerve.db --run r1 --steps 3",
	         bin, dir, dir, dir);
	cr_assert_eq(rc, 0, "rl: %s", err);
	cr_expect(strstr(out, "groups 1 (skipped 0)  reward_mean 0.500"), "%s", out);
	cr_expect(strstr(out, "  mfu -\n"), "%s", out);
	cr_expect(strstr(out, "no complete unconsumed group left"), "%s", out);
	free(out);
	free(err);
	snprintf(p, sizeof(p), "%s/ck2/model.safetensors", dir);
	out = ts_read_file(p, NULL);
	cr_expect(out != NULL, "rl wrote no checkpoint");
	free(out);
	ts_rmtree(dir);
	free(dir);
}

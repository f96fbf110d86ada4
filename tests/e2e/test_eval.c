/* test_eval.c - end to end: `swerve eval`, `submit`, `work` and `report` on
 * the bundled example data (tests/e2e/demo/generate.py: three real
 * repositories, six tasks, gold/empty/wrong/broken/cheat predictions). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "tests/support/support.h"

static char *dir; /* per test: data, cache, outputs */

static void setup(void)
{
	struct swerve_sandbox_probe p;
	swerve_sandbox_probe(&p);
	if (!p.userns)
		cr_skip_test("the sandbox needs user namespaces here: %s", p.why);
	dir = ts_mkdtemp();
	cr_assert_eq(
	        ts_sh(NULL, NULL, "python3 tests/e2e/demo/generate.py %s/data >/dev/null", dir), 0,
	        "generate demo data");
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "while read n p; do SWERVE_HOME=%s/home %s repo add $n $p >/dev/null "
	                   "|| exit 1; done < %s/data/repos.txt",
	                   dir, ts_swerve_bin(), dir),
	             0, "repo add");
}

static void teardown(void)
{
	ts_rmtree(dir);
	free(dir);
}

TestSuite(e2e_eval, .init = setup, .fini = teardown, .timeout = 150);

/* Runs swerve eval with predictions kind ("gold" or a predictions-<kind>.jsonl),
 * returns its exit status; out is <dir>/<name>. */
static int eval(const char *kind, const char *name, const char *extra)
{
	char preds[512];
	if (strcmp(kind, "gold") == 0)
		snprintf(preds, sizeof(preds), "gold");
	else
		snprintf(preds, sizeof(preds), "%s/data/predictions-%s.jsonl", dir, kind);
	return ts_sh(NULL, NULL,
	             "SWERVE_HOME=%s/home %s eval --tasks %s/data/tasks.jsonl --predictions %s "
	             "--out %s/%s --run-id %s --workers 2 --quiet %s >/dev/null 2>&1",
	             dir, ts_swerve_bin(), dir, preds, dir, name, name, extra ? extra : "");
}

/* <dir>/data/slow.jsonl: the tasks with `sleep secs;` before the tests. */
static void make_slow(const char *secs)
{
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "python3 -c \"import json,sys\n"
	                   "for l in open('%s/data/tasks.jsonl'):\n"
	                   "  t=json.loads(l); t['test_cmd']='sleep %s; '+t['test_cmd']; "
	                   "print(json.dumps(t))\" > %s/data/slow.jsonl",
	                   dir, secs, dir),
	             0);
}

static json_t *load_json(const char *fmt, const char *a, const char *b)
{
	char path[1024];
	json_error_t e;
	snprintf(path, sizeof(path), fmt, a, b);
	json_t *j = json_load_file(path, 0, &e);
	cr_assert(j, "%s: %s", path, e.text);
	return j;
}

static json_t *run_report(const char *model, const char *name)
{
	char base[1024];
	snprintf(base, sizeof(base), "%s/%s", dir, name);
	return load_json("%s/%s.json", base, model);
}

static long long count(json_t *r, const char *key)
{
	json_t *v = json_object_get(r, key);
	cr_assert(json_is_integer(v), "report has no %s", key);
	return (long long)json_integer_value(v);
}

Test(e2e_eval, gold_resolves_every_task)
{
	cr_assert_eq(eval("gold", "g", NULL), 0);
	char m[64];
	snprintf(m, sizeof(m), "gold.%s", "g");
	json_t *r = run_report(m, "g");
	cr_assert_eq(count(r, "total_instances"), 6);
	cr_assert_eq(count(r, "resolved_instances"), 6);
	cr_assert_eq(count(r, "error_instances"), 0);
	cr_assert_eq(count(r, "schema_version"), 2);
	json_t *sw = json_object_get(r, "swerve");
	cr_assert_float_eq(json_number_value(json_object_get(sw, "mean_reward")), 1.0, 1e-9);
	/* per-instance outputs, SWE-bench's shape */
	json_t *ir = load_json("%s/g/%s/report.json", dir, "swerve-demo__cstr-1");
	json_t *inst = json_object_get(ir, "swerve-demo__cstr-1");
	cr_assert(json_is_true(json_object_get(inst, "resolved")));
	cr_assert(json_is_true(json_object_get(inst, "patch_successfully_applied")));
	json_t *f2p = json_object_get(
	        json_object_get(json_object_get(inst, "tests_status"), "FAIL_TO_PASS"), "success");
	cr_assert_eq(json_array_size(f2p), 2);
	char *log = NULL;
	cr_assert_eq(ts_sh(&log, NULL, "cat %s/g/swerve-demo__cstr-1/test_output.txt", dir), 0);
	cr_assert(strstr(log, "ok 5 - reverse_odd"), "%s", log);
	free(log);
	json_decref(ir);
	json_decref(r);
}

Test(e2e_eval, empty_wrong_broken_and_cheating_patches)
{
	cr_assert_eq(eval("empty", "e", NULL), 0);
	json_t *r = run_report("demo-empty.e", "e");
	cr_assert_eq(count(r, "empty_patch_instances"), 6);
	cr_assert_eq(count(r, "completed_instances"), 0);
	json_decref(r);

	cr_assert_eq(eval("wrong", "w", NULL), 0);
	r = run_report("demo-wrong.w", "w");
	cr_assert_eq(count(r, "completed_instances"), 6);
	cr_assert_eq(count(r, "resolved_instances"), 0);
	cr_assert_eq(count(r, "unresolved_instances"), 6);
	json_decref(r);
	/* a partial fix of pycalc-1 is PARTIAL, still unresolved */
	json_t *ir = load_json("%s/w/%s/report.json", dir, "swerve-demo__pycalc-1");
	json_t *sw = json_object_get(json_object_get(ir, "swerve-demo__pycalc-1"), "swerve");
	cr_assert_str_eq(json_string_value(json_object_get(sw, "resolution")), "RESOLVED_PARTIAL");
	json_decref(ir);

	/* patches that do not apply: SWE-bench lists them under error_ids */
	cr_assert_eq(eval("broken", "b", NULL), 0, "a patch that fails to apply is a model result");
	r = run_report("demo-broken.b", "b");
	cr_assert_eq(count(r, "error_instances"), 6);
	cr_assert_eq(count(r, "resolved_instances"), 0);
	json_decref(r);
	ir = load_json("%s/b/%s/report.json", dir, "swerve-demo__jsslug-2");
	json_t *inst = json_object_get(ir, "swerve-demo__jsslug-2");
	cr_assert(json_is_false(json_object_get(inst, "patch_successfully_applied")));
	cr_assert_str_eq(
	        json_string_value(json_object_get(json_object_get(inst, "swerve"), "outcome")),
	        "patch_failed");
	json_decref(ir);
	char *log = NULL;
	ts_sh(&log, NULL, "cat %s/b/swerve-demo__jsslug-2/test_output.txt", dir);
	cr_assert(strstr(log, "patch did not apply"), "%s", log);
	free(log);

	/* a patch that rewrites the tests it is graded by gains nothing */
	cr_assert_eq(eval("cheat", "c", NULL), 0);
	r = run_report("demo-cheat.c", "c");
	cr_assert_eq(count(r, "completed_instances"), 1);
	cr_assert_eq(count(r, "resolved_instances"), 0);
	json_decref(r);
}

/* The run report without timing-dependent content. */
static char *stable_report(const char *model, const char *name)
{
	json_t *r = run_report(model, name);
	char *s = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(r);
	return s;
}

Test(e2e_eval, killed_run_resumes_to_the_same_report)
{
	make_slow("0.8");
	cr_assert_eq(ts_sh(NULL, NULL, "cp %s/data/slow.jsonl %s/data/tasks.jsonl", dir, dir), 0);
	cr_assert_eq(eval("mixed", "full", NULL), 0,
	             "a patch that fails to apply is a model result");
	char *want = stable_report("demo-mixed.full", "full");

	/* start the same evaluation, SIGKILL the whole process group mid-way, resume */
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
	         "SWERVE_HOME=%s/home setsid %s eval --tasks %s/data/tasks.jsonl --predictions "
	         "%s/data/predictions-mixed.jsonl --out %s/res --run-id res --workers 2 --quiet "
	         ">/dev/null 2>&1 & pid=$!; "
	         "i=0; until [ \"$(sqlite3 %s/res/swerve.db 'select count(*) from results' "
	         "2>/dev/null || echo 0)\" -ge 1 ] 2>/dev/null || [ $i -gt 400 ]; do sleep 0.05; "
	         "i=$((i+1)); done; /bin/kill -KILL -- -$pid; wait $pid; "
	         "sqlite3 %s/res/swerve.db \"select count(*) from results\"",
	         dir, ts_swerve_bin(), dir, dir, dir, dir, dir);
	char *done_before = NULL;
	ts_sh(&done_before, NULL, "%s", cmd);
	cr_log_info("results stored before the kill: %s", done_before);
	cr_assert_lt(atoi(done_before), 6, "the kill came too late to test anything");
	cr_assert_geq(atoi(done_before), 1, "the kill came before any result: '%s'", done_before);
	free(done_before);
	/* no waiting for the dead workers' leases: the pool reaps them */
	cr_assert_eq(eval("mixed", "res", NULL), 0);
	char *got = stable_report("demo-mixed.res", "res");
	cr_assert_str_eq(got, want);
	free(got);
	free(want);
}

Test(e2e_eval, two_runs_on_different_dbs_do_not_interfere)
{
	char cmd[4096];
	snprintf(
	        cmd, sizeof(cmd),
	        "export SWERVE_HOME=%s/home; "
	        "%s eval --tasks %s/data/tasks.jsonl --predictions gold --out %s/x --run-id x "
	        "--quiet >/dev/null 2>&1 & a=$!; "
	        "%s eval --tasks %s/data/tasks.jsonl --predictions %s/data/predictions-wrong.jsonl "
	        "--out %s/y --run-id y --quiet >/dev/null 2>&1 & b=$!; wait $a; wait $b",
	        dir, ts_swerve_bin(), dir, dir, ts_swerve_bin(), dir, dir, dir);
	ts_sh(NULL, NULL, "%s", cmd);
	json_t *x = run_report("gold.x", "x"), *y = run_report("demo-wrong.y", "y");
	cr_assert_eq(count(x, "resolved_instances"), 6);
	cr_assert_eq(count(y, "resolved_instances"), 0);
	cr_assert_eq(count(y, "completed_instances"), 6);
	json_decref(x);
	json_decref(y);
}

Test(e2e_eval, worker_killed_mid_episode_is_replaced_and_the_rollout_retried)
{
	/* slow tests, so that a worker is surely inside an episode when killed */
	make_slow("1.5");
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
	         "SWERVE_HOME=%s/home %s eval --tasks %s/data/slow.jsonl --predictions gold "
	         "--out %s/k --run-id k --workers 2 --quiet >%s/k.log 2>&1 & pid=$!; sleep 2.5; "
	         "w=$(pgrep -P $pid | head -n 1); kill -KILL $w; wait $pid; echo $?",
	         dir, ts_swerve_bin(), dir, dir, dir);
	char *rc = NULL;
	ts_sh(&rc, NULL, "%s", cmd);
	char *log = NULL;
	ts_sh(&log, NULL, "cat %s/k.log", dir);
	cr_assert(strstr(log, "crashed"), "the pool did not notice the dead worker: %s", log);
	json_t *r = run_report("gold.k", "k");
	cr_assert_eq(count(r, "resolved_instances"), 6, "log: %s", log);
	cr_assert_eq(atoi(rc), 0, "%s", log);
	json_decref(r);
	free(rc);
	free(log);
}

Test(e2e_eval, submit_work_and_the_trainer_view)
{
	/* one group of four samples for pycalc-1: gold, wrong, empty, broken */
	cr_assert_eq(
	        ts_sh(NULL, NULL,
	              "python3 -c \"import json\n"
	              "rows=[]\n"
	              "for k,kind in enumerate(['gold','wrong','empty','broken']):\n"
	              "  for p in map(json.loads, open('%s/data/predictions-'+kind+'.jsonl')):\n"
	              "    if p['instance_id']=='swerve-demo__pycalc-1':\n"
	              "      rows.append(dict(instance_id=p['instance_id'], group='q1', "
	              "group_size=4, sample=k, patch=p['model_patch'], response_tokens=[1,2], "
	              "logprobs=[-0.5,-0.25]))\n"
	              "rows.append(dict(instance_id='missing', group=2, group_size=1, sample=0))\n"
	              "print('\\n'.join(map(json.dumps, rows)))\" > %s/rl.jsonl",
	              dir, dir),
	        0);
	char *out = NULL, *err = NULL;
	int rc = ts_sh(&out, &err,
	               "%s submit --db %s/rl.db --tasks %s/data/tasks.jsonl --rollouts %s/rl.jsonl",
	               ts_swerve_bin(), dir, dir, dir);
	cr_assert_eq(rc, 1, "a bad line makes the exit status 1: %s %s", out, err);
	cr_assert(strstr(out, "4 rollouts queued"), "%s", out);
	cr_assert(strstr(err, "rl.jsonl:5: field instance_id: not in the task file"), "%s", err);
	free(out);
	free(err);
	/* idempotent */
	ts_sh(&out, NULL,
	      "%s submit --db %s/rl.db --tasks %s/data/tasks.jsonl --rollouts %s/rl.jsonl",
	      ts_swerve_bin(), dir, dir, dir);
	cr_assert(strstr(out, "0 rollouts queued, 4 already there"), "%s", out);
	free(out);
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "SWERVE_HOME=%s/home %s work --db %s/rl.db --workers 2 "
	                   "--until-empty --quiet 2>/dev/null",
	                   dir, ts_swerve_bin(), dir),
	             0);
	ts_sh(&out, NULL,
	      "sqlite3 %s/rl.db \"select sample, reward, resolved from trainer_samples order by "
	      "sample\"",
	      dir);
	cr_assert_str_eq(out, "0|1.0|FULL\n1|0.0|PARTIAL\n2|0.0|NO\n3|0.0|NO\n");
	free(out);
}

Test(e2e_eval, build_breaking_patch_is_unresolved_and_a_broken_task_is_an_error)
{
	/* cstr-1: a "fix" that does not compile (no test runs: the log alone can't
	 * be trusted; the run without the patch is, so it is the model's fault,
	 * graded: every expected test failed);
	 * pycalc-2: the task's own test_patch is mangled (a task error, no reward) */
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "cd %s/data && python3 -c \"import json\n"
	                   "tasks=[json.loads(l) for l in open('tasks.jsonl')]\n"
	                   "preds=[]\n"
	                   "for t in tasks:\n"
	                   "  p=t['patch']\n"
	                   "  if t['instance_id']=='swerve-demo__cstr-1': p=p.replace('i < n / 2', "
	                   "'i < n / 2 oops')\n"
	                   "  if t['instance_id']=='swerve-demo__pycalc-2': "
	                   "t['test_patch']=t['test_patch'].replace('def test_parse_int_plain', "
	                   "'def nothing_like_it')\n"
	                   "  preds.append(dict(instance_id=t['instance_id'], "
	                   "model_name_or_path='m', model_patch=p))\n"
	                   "open('bad-tasks.jsonl','w').write(''.join(json.dumps(t)+'\\\\n' for t "
	                   "in tasks))\n"
	                   "open('predictions-build.jsonl','w').write(''.join(json.dumps(p)+'\\\\n'"
	                   " for p in preds))\"",
	                   dir),
	             0);
	int rc = ts_sh(
	        NULL, NULL,
	        "SWERVE_HOME=%s/home %s eval --tasks %s/data/bad-tasks.jsonl --predictions "
	        "%s/data/predictions-build.jsonl --out %s/bb --run-id bb --quiet >/dev/null 2>&1",
	        dir, ts_swerve_bin(), dir, dir, dir);
	cr_assert_eq(rc, 1, "a task error makes the exit status 1");
	json_t *r = run_report("m.bb", "bb");
	cr_assert_eq(count(r, "resolved_instances"), 4);
	cr_assert_eq(count(r, "unresolved_instances"), 1);
	cr_assert_eq(count(r, "error_instances"), 1);
	json_decref(r);
	json_t *ir = load_json("%s/bb/%s/report.json", dir, "swerve-demo__cstr-1");
	json_t *sw = json_object_get(json_object_get(ir, "swerve-demo__cstr-1"), "swerve");
	/* its PASS_TO_PASS tests did not pass either: a regression, reward 0 */
	cr_assert_str_eq(json_string_value(json_object_get(sw, "outcome")), "regression");
	cr_assert_float_eq(json_number_value(json_object_get(sw, "reward")), 0.0, 1e-12);
	cr_assert(strstr(json_string_value(json_object_get(sw, "error")), "broke the test run"),
	          "%s", json_string_value(json_object_get(sw, "error")));
	json_decref(ir);
	ir = load_json("%s/bb/%s/report.json", dir, "swerve-demo__pycalc-2");
	sw = json_object_get(json_object_get(ir, "swerve-demo__pycalc-2"), "swerve");
	cr_assert(json_is_null(json_object_get(sw, "reward")), "a task error has no reward");
	cr_assert(strstr(json_string_value(json_object_get(sw, "error")),
	                 "test_patch does not apply"),
	          "%s", json_string_value(json_object_get(sw, "error")));
	json_decref(ir);
}

Test(e2e_eval, sigterm_stops_cleanly_and_the_rerun_finishes)
{
	make_slow("0.8");
	char cmd[4096];
	snprintf(
	        cmd, sizeof(cmd),
	        "SWERVE_HOME=%s/home %s eval --tasks %s/data/slow.jsonl --predictions gold "
	        "--out %s/t --run-id t --workers 2 --quiet >%s/t.log 2>&1 & pid=$!; "
	        "i=0; until [ \"$(sqlite3 %s/t/swerve.db 'select count(*) from results' "
	        "2>/dev/null || echo 0)\" -ge 1 ] 2>/dev/null || [ $i -gt 400 ]; do sleep 0.05; "
	        "i=$((i+1)); done; kill -TERM $pid; wait $pid; echo $?; "
	        "sqlite3 %s/t/swerve.db \"select count(*) from rollouts where status = 'running'\"",
	        dir, ts_swerve_bin(), dir, dir, dir, dir, dir);
	char *out = NULL, *log = NULL;
	ts_sh(&out, NULL, "%s", cmd);
	ts_sh(&log, NULL, "cat %s/t.log", dir);
	/* exit 1, the episodes in hand finished (nothing left running), told to rerun */
	cr_assert_str_eq(out, "1\n0\n", "%s", log);
	cr_assert(strstr(log, "rerun the same command to resume"), "%s", log);
	free(out);
	free(log);
	int rc = ts_sh(NULL, NULL,
	               "SWERVE_HOME=%s/home %s eval --tasks %s/data/slow.jsonl --predictions gold "
	               "--out %s/t --run-id t --workers 2 --quiet >/dev/null 2>&1",
	               dir, ts_swerve_bin(), dir, dir);
	cr_assert_eq(rc, 0);
	json_t *r = run_report("gold.t", "t");
	cr_assert_eq(count(r, "resolved_instances"), 6);
	json_decref(r);
}

Test(e2e_eval, stale_context_falls_back_to_gnu_patch_and_still_resolves)
{
	/* the gold fix of pycalc-1 with a drifted first context line: libgit2
	 * refuses it, GNU patch --fuzz applies it, then the tests run */
	cr_assert_eq(
	        ts_sh(NULL, NULL,
	              "cd %s/data && python3 -c \"import json\n"
	              "t=[json.loads(l) for l in open('tasks.jsonl')][0]\n"
	              "p=t['patch'].replace(' def mean(xs):', ' def mean(values):')\n"
	              "assert p != t['patch']\n"
	              "print(json.dumps(dict(instance_id=t['instance_id'], model_name_or_path='f', "
	              "model_patch=p)))\" > predictions-fuzz.jsonl",
	              dir),
	        0);
	cr_assert_eq(eval("fuzz", "fz", NULL), 0);
	json_t *r = run_report("f.fz", "fz");
	cr_assert_eq(count(r, "resolved_instances"), 1);
	json_decref(r);
	json_t *ir = load_json("%s/fz/%s/report.json", dir, "swerve-demo__pycalc-1");
	json_t *sw = json_object_get(json_object_get(ir, "swerve-demo__pycalc-1"), "swerve");
	cr_assert_str_eq(json_string_value(json_object_get(sw, "apply_method")), "patch_fuzz");
	json_decref(ir);
}

/* test_validate.c - end to end: `swerve validate` on the bundled example
 * data (tests/e2e/demo/generate.py --with-flaky): the six demo tasks are all
 * kept; corrupted copies of them are rejected with the right reasons; a task
 * with a flaky test is rejected as flaky; a task whose repository is not in
 * the cache is an error, not a rejection. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/cli.h"
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
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "python3 tests/e2e/demo/generate.py %s/data --with-flaky >/dev/null",
	                   dir),
	             0, "generate demo data");
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "while read n p; do SWERVE_HOME=%s/home %s repo add $n $p >/dev/null "
	                   "|| exit 1; done < %s/data/repos.txt",
	                   dir, ts_swerve_bin(), dir),
	             0, "repo add");
}

static void teardown(void)
{
	if (dir) {
		ts_rmtree(dir);
		free(dir);
	}
}

TestSuite(e2e_validate, .init = setup, .fini = teardown, .timeout = 240);

/* swerve validate --tasks <dir>/data/<file> --out <dir>/kept.jsonl
 * --rejected <dir>/rejected.jsonl <extra>; returns the exit status. */
static int validate(char **out, const char *file, const char *extra)
{
	return ts_sh(out, NULL,
	             "SWERVE_HOME=%s/home %s validate --tasks %s/data/%s --out %s/kept.jsonl "
	             "--rejected %s/rejected.jsonl --workers 2 %s",
	             dir, ts_swerve_bin(), dir, file, dir, dir, extra);
}

/* The JSON lines of <dir>/<name> as one array. */
static json_t *lines(const char *name)
{
	char path[1024], *text, *save = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = ts_read_file(path, NULL);
	cr_assert(text, "%s is missing", path);
	json_t *a = json_array();
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		json_t *j = json_loads(l, 0, &e);
		cr_assert(j, "%s: not JSON: %s: %s", path, e.text, l);
		json_array_append_new(a, j);
	}
	free(text);
	return a;
}

static const char *str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The rejected line of instance id (NULL: the line with a null id). */
static json_t *rejected(json_t *all, const char *id)
{
	size_t i;
	json_t *r;
	json_array_foreach(all, i, r)
	{
		const char *rid = str(r, "instance_id");
		if (id ? rid && strcmp(rid, id) == 0 : !rid)
			return r;
	}
	cr_assert_fail("no rejected line for %s", id ? id : "(null)");
	return NULL;
}

/* The reasons of a rejected line joined with " | ". */
static const char *reasons(json_t *r)
{
	static char buf[8192];
	size_t i;
	json_t *v;
	buf[0] = '\0';
	json_array_foreach(json_object_get(r, "reasons"), i, v)
	        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? " | " : "",
	                 json_string_value(v));
	return buf;
}

Test(e2e_validate, demo_tasks_are_all_kept)
{
	char *out = NULL;
	cr_assert_eq(validate(&out, "tasks.jsonl", ""), 0, "%s", out);
	cr_assert(strstr(out, "validated 6 tasks (2 runs each side, 24 episodes"), "%s", out);
	cr_assert(strstr(out, ": 6 kept, 0 rejected, 0 errors"), "%s", out);
	free(out);
	/* the kept file holds every task, in order, with its fields */
	json_t *in = lines("data/tasks.jsonl"), *kept = lines("kept.jsonl");
	json_t *rej = lines("rejected.jsonl");
	cr_assert_eq(json_array_size(kept), 6);
	cr_assert_eq(json_array_size(rej), 0);
	for (size_t i = 0; i < 6; i++) {
		json_t *a = json_array_get(in, i), *b = json_array_get(kept, i);
		cr_assert(json_equal(a, b), "task %zu differs: %s", i, str(a, "instance_id"));
	}
	json_decref(in);
	json_decref(kept);
	json_decref(rej);
}

Test(e2e_validate, broken_tasks_are_rejected_with_reasons)
{
	/* corrupted copies of the demo tasks, one fault each, and one good task */
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "cd %s/data && python3 -c \"\n"
	                   "import json\n"
	                   "t = {json.loads(l)['instance_id']: json.loads(l) for l in "
	                   "open('tasks.jsonl')}\n"
	                   "w = {json.loads(l)['instance_id']: json.loads(l)['model_patch']\n"
	                   "     for l in open('predictions-wrong.jsonl')}\n"
	                   "b = {json.loads(l)['instance_id']: json.loads(l)['model_patch']\n"
	                   "     for l in open('predictions-broken.jsonl')}\n"
	                   "out = []\n"
	                   "a = dict(t['swerve-demo__pycalc-1'], instance_id='p2p-in-f2p')\n"
	                   "a['FAIL_TO_PASS'] = json.dumps(json.loads(a['FAIL_TO_PASS']) + "
	                   "['tests/test_calc.py::test_add'])\n"
	                   "out.append(a)\n"
	                   "out.append(dict(t['swerve-demo__cstr-1'], instance_id='mangled-gold',\n"
	                   "                patch=b['swerve-demo__cstr-1']))\n"
	                   "out.append(dict(t['swerve-demo__jsslug-2'], "
	                   "instance_id='gold-does-not-fix',\n"
	                   "                patch=w['swerve-demo__jsslug-2']))\n"
	                   "out.append(t['swerve-demo__pycalc-2'])\n"
	                   "out.append(dict(t['swerve-demo__cstr-2'], instance_id='no-repo', "
	                   "repo='nobody/nothing'))\n"
	                   "f = open('broken.jsonl', 'w')\n"
	                   "for x in out: f.write(json.dumps(x) + chr(10))\n"
	                   "f.write('{\\\"instance_id\\\": \\\"half\\\"}' + chr(10))\n"
	                   "\"",
	                   dir),
	             0);
	char *out = NULL;
	/* exit 1: one task is undecided (its repository is missing), one line malformed */
	cr_assert_eq(validate(&out, "broken.jsonl", "--runs 1"), SWERVE_EXIT_SOME_FAILED, "%s",
	             out);
	cr_assert(strstr(out, ": 1 kept, 3 rejected, 1 errors"), "%s", out);
	free(out);

	json_t *kept = lines("kept.jsonl"), *rej = lines("rejected.jsonl");
	cr_assert_eq(json_array_size(kept), 1);
	cr_assert_str_eq(str(json_array_get(kept, 0), "instance_id"), "swerve-demo__pycalc-2");
	cr_assert_eq(json_array_size(rej), 5);

	json_t *r = rejected(rej, "p2p-in-f2p");
	cr_assert_str_eq(str(r, "status"), "rejected");
	cr_assert_str_eq(reasons(r), "FAIL_TO_PASS tests/test_calc.py::test_add passes without the "
	                             "patch");
	r = rejected(rej, "mangled-gold");
	cr_assert_str_eq(str(r, "status"), "rejected");
	cr_assert(strncmp(reasons(r), "gold patch does not apply: strutil.c", 36) == 0, "%s",
	          reasons(r));
	r = rejected(rej, "gold-does-not-fix");
	cr_assert_str_eq(str(r, "status"), "rejected");
	cr_assert_str_eq(reasons(r), "FAIL_TO_PASS truncate counts the ellipsis does not pass with "
	                             "the gold patch (FAILED)");
	r = rejected(rej, "no-repo");
	cr_assert_str_eq(str(r, "status"), "error");
	cr_assert(strstr(reasons(r), "infrastructure error: repository nobody/nothing is not in "
	                             "the cache"),
	          "%s", reasons(r));
	r = rejected(rej, NULL);
	cr_assert(strstr(reasons(r), "broken.jsonl:6: instance half:"), "%s", reasons(r));
	json_decref(kept);
	json_decref(rej);
}

Test(e2e_validate, flaky_task_is_rejected_as_flaky)
{
	/* test_racy fails with the parity of the clock's microseconds: with 10
	 * runs a side, neither side showing both results has probability
	 * (2/2^10)^2, about 4e-6 */
	char *out = NULL;
	cr_assert_eq(validate(&out, "tasks-flaky.jsonl", "--runs 10"), 0, "%s", out);
	cr_assert(strstr(out, "20 episodes"), "%s", out);
	cr_assert(strstr(out, ": 0 kept, 1 rejected, 0 errors"), "%s", out);
	free(out);
	json_t *rej = lines("rejected.jsonl"), *kept = lines("kept.jsonl");
	cr_assert_eq(json_array_size(kept), 0);
	json_t *r = rejected(rej, "swerve-demo__pyflaky-1");
	cr_assert_str_eq(str(r, "status"), "rejected");
	cr_assert(strstr(reasons(r), "flaky: tests/test_flaky.py::test_racy "), "%s", reasons(r));
	/* the other tests are stable and behave: flakiness is the only reason */
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(r, "reasons"), i, v) cr_assert(
	        strncmp(json_string_value(v), "flaky: tests/test_flaky.py::test_racy ", 38) == 0 ||
	                strstr(json_string_value(v), "PASS_TO_PASS "
	                                             "tests/test_flaky.py::test_racy fails"),
	        "unexpected reason: %s", json_string_value(v));
	json_decref(rej);
	json_decref(kept);
}

Test(e2e_validate, a_worker_killed_mid_episode_is_replaced_and_its_episode_rerun)
{
	/* two tasks whose tests take 4 s; 2 s in, SIGKILL one worker (the
	 * validate process's children are its workers) */
	cr_assert_eq(ts_sh(NULL, NULL,
	                   "cd %s/data && python3 -c \"\n"
	                   "import json\n"
	                   "for l in list(open('tasks.jsonl'))[1:3]:\n"
	                   "  t = json.loads(l); t['test_cmd'] = 'sleep 4; ' + t['test_cmd']\n"
	                   "  print(json.dumps(t))\n"
	                   "\" > slow.jsonl",
	                   dir),
	             0);
	char *out = NULL, *err = NULL;
	int rc = ts_sh(&out, &err,
	               "SWERVE_HOME=%s/home %s validate --tasks %s/data/slow.jsonl --runs 1 "
	               "--workers 2 --out %s/kept.jsonl --rejected %s/rejected.jsonl & v=$!; "
	               "sleep 2; w=$(awk -v p=$v '$4 == p { print $1; exit }' /proc/[0-9]*/stat "
	               "2>/dev/null); [ -n \"$w\" ] && kill -9 $w; wait $v",
	               dir, ts_swerve_bin(), dir, dir, dir);
	cr_assert_eq(rc, 0, "%s\n%s", out, err);
	cr_assert(strstr(err, "during the episode"), "%s", err);
	cr_assert(strstr(err, "worker died (signal 9)"), "%s", err);
	/* 4 episodes + the one rerun, and both tasks decided as if nothing happened */
	cr_assert(strstr(out, "validated 2 tasks (1 run each side, 5 episodes"), "%s", out);
	cr_assert(strstr(out, ": 2 kept, 0 rejected, 0 errors"), "%s", out);
	free(out);
	free(err);
}

/* usage errors need no data */
Test(validate_cli, usage_errors)
{
	char *err = NULL;
	cr_assert_eq(ts_sh(NULL, &err, "%s validate", ts_swerve_bin()), SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "swerve validate: --tasks is required"), "%s", err);
	free(err);
	cr_assert_eq(ts_sh(NULL, &err, "%s validate --tasks x.jsonl --runs 0", ts_swerve_bin()),
	             SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "--runs: '0' is not a number"), "%s", err);
	free(err);
	cr_assert_eq(
	        ts_sh(NULL, &err, "%s validate --tasks x.jsonl --out x.jsonl", ts_swerve_bin()),
	        SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "three different files"), "%s", err);
	free(err);
	cr_assert_eq(ts_sh(NULL, &err, "%s validate --tasks /nonexistent/t.jsonl", ts_swerve_bin()),
	             SWERVE_EXIT_USAGE);
	cr_assert(strstr(err, "/nonexistent/t.jsonl"), "%s", err);
	free(err);
	char *out = NULL;
	cr_assert_eq(ts_sh(&out, NULL, "%s validate --help", ts_swerve_bin()), 0);
	cr_assert(strstr(out, "usage: swerve validate --tasks FILE"), "%s", out);
	free(out);
}

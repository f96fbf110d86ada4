/* test_realwork.c - real work runs in the sandbox: pytest, make with gcc,
 * node --test, threads, subprocesses, a loopback server. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support/sandbox_support.h"
#include "tests/support/support.h"

static struct swerve_sandbox *sb;

static int run_in(struct swerve_sandbox_result *r, const char *ws, const char *const *argv)
{
	if (!sb)
		cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0, "%s", swerve_error_last());
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.argv = argv;
	o.workspace = ws;
	o.limits.wall_ms = 60000;
	return swerve_sandbox_run(r, sb, &o);
}

static void put(const char *dir, const char *name, const char *text)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	cr_assert_eq(ts_write_file(p, text, strlen(text)), 0);
}

#define EXPECT_OK(r, rc)                                                                           \
	do {                                                                                       \
		cr_assert_eq(rc, 0, "run failed: %s", (r).reason);                                 \
		cr_assert_eq((r).verdict, SWERVE_VERDICT_OK, "verdict %s exit %d\n%s\n%s",         \
		             swerve_verdict_name((r).verdict), (r).exit_code, (r).out.data,        \
		             (r).err.data);                                                        \
	} while (0)

Test(realwork, pytest)
{
	TS_NEED_SANDBOX();
	if (access("/usr/bin/python3", X_OK) < 0)
		cr_skip_test("no /usr/bin/python3");
	char *ws = ts_mkdtemp();
	put(ws, "test_x.py",
	    "import os, subprocess, threading\n"
	    "def test_add():\n    assert 1 + 1 == 2\n"
	    "def test_subprocess():\n"
	    "    assert subprocess.run(['sh', '-c', 'echo hi | cat'], capture_output=True, "
	    "text=True).stdout == 'hi\\n'\n"
	    "def test_fails_not():\n    assert os.getcwd() == '/workspace'\n");
	const char *argv[] = {"/usr/bin/python3", "-m", "pytest", "-rA", "-p",
	                      "no:cacheprovider", NULL};
	struct swerve_sandbox_result r = {0};
	int rc = run_in(&r, ws, argv);
	EXPECT_OK(r, rc);
	cr_assert_not_null(strstr(r.out.data, "3 passed"), "%s", r.out.data);
	swerve_sandbox_result_dispose(&r);
	/* a failing test is RE, a result, not an error */
	put(ws, "test_y.py", "def test_bad():\n    assert False\n");
	rc = run_in(&r, ws, argv);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_RE);
	cr_assert_eq(r.exit_code, 1);
	cr_assert_not_null(strstr(r.out.data, "FAILED test_y.py::test_bad"), "%s", r.out.data);
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(realwork, make_with_gcc)
{
	TS_NEED_SANDBOX();
	if (access("/usr/bin/make", X_OK) < 0 || access("/usr/bin/gcc", X_OK) < 0)
		cr_skip_test("no make/gcc");
	char *ws = ts_mkdtemp();
	put(ws, "hello.c",
	    "#include <stdio.h>\n#include <pthread.h>\nstatic void *f(void *a) { return a; }\n"
	    "int main(void) { pthread_t t; void *r; pthread_create(&t, 0, f, (void *)42);\n"
	    "pthread_join(t, &r); printf(\"hello %ld\\n\", (long)r); return 0; }\n");
	put(ws, "Makefile", "all: hello\n\t./hello\nhello: hello.c\n\tcc -O1 -pthread -o $@ $<\n");
	const char *argv[] = {"make", "-j2", NULL};
	struct swerve_sandbox_result r = {0};
	int rc = run_in(&r, ws, argv);
	EXPECT_OK(r, rc);
	cr_assert_not_null(strstr(r.out.data, "hello 42"), "%s", r.out.data);
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(realwork, node_test_runner)
{
	TS_NEED_SANDBOX();
	if (access("/usr/bin/node", X_OK) < 0)
		cr_skip_test("no /usr/bin/node");
	char *ws = ts_mkdtemp();
	put(ws, "a.test.mjs",
	    "import test from 'node:test';\nimport assert from 'node:assert';\n"
	    "import http from 'node:http';\n"
	    "test('adds', () => assert.strictEqual(1 + 1, 2));\n"
	    "test('loopback server', async () => {\n"
	    "  const srv = http.createServer((q, s) => s.end('pong'));\n"
	    "  await new Promise(r => srv.listen(0, '127.0.0.1', r));\n"
	    "  const res = await fetch(`http://127.0.0.1:${srv.address().port}/`);\n"
	    "  assert.strictEqual(await res.text(), 'pong'); srv.close();\n"
	    "});\n");
	const char *argv[] = {"/usr/bin/node", "--test", "a.test.mjs", NULL};
	struct swerve_sandbox_result r = {0};
	int rc = run_in(&r, ws, argv);
	EXPECT_OK(r, rc);
	cr_assert_not_null(strstr(r.out.data, "pass 2"), "%s", r.out.data);
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(realwork, threads_subprocesses_loopback_server)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = {0};
	int rc = ts_escape(&r, NULL, "threads", NULL);
	EXPECT_OK(r, rc);
	cr_assert_str_eq(r.out.data, "ok\n");
	swerve_sandbox_result_dispose(&r);
	rc = ts_escape(&r, NULL, "loopback", NULL);
	EXPECT_OK(r, rc);
	cr_assert_str_eq(r.out.data, "ok\n");
	swerve_sandbox_result_dispose(&r);
	const char *argv[] = {"/bin/sh", "-c",
	                      "echo one | tr a-z A-Z; (sleep 0.1; echo two) & wait", NULL};
	rc = run_in(&r, NULL, argv);
	EXPECT_OK(r, rc);
	cr_assert_str_eq(r.out.data, "ONE\ntwo\n");
	swerve_sandbox_result_dispose(&r);
}

/* test_workspace.c - episode workspaces (overlay and copy), patches applied
 * inside the sandbox (libgit2, GNU patch fallback, resets), test_patch
 * restoration, environment layers. Skips where the sandbox cannot run. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "envs/envs.h"
#include "sandbox/sandbox.h"
#include "tests/support/gitfix.h"
#include "tests/support/support.h"

static char *tmp, src[512], home[512];
static char c[3][41];
static struct swerve_repo_cache *cache;
static struct swerve_sandbox *sb;

static void setup(void)
{
	tmp = ts_mkdtemp();
	snprintf(src, sizeof(src), "%s/src", tmp);
	snprintf(home, sizeof(home), "%s/home", tmp);
	gf_standard(c, src);
	cr_assert_eq(swerve_repo_cache_open(&cache, home), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_add(cache, "acme/widget", src), 0, "%s", swerve_error_last());
}

static void teardown(void)
{
	swerve_sandbox_free(sb);
	swerve_repo_cache_free(cache);
	ts_rmtree(tmp);
	free(tmp);
}

TestSuite(workspace, .init = setup, .fini = teardown);

static void need_sandbox(int overlay)
{
	struct swerve_sandbox_probe p;
	swerve_sandbox_probe(&p);
	if (swerve_sandbox_new(&sb, NULL) < 0)
		cr_skip_test("sandbox unavailable: %s", swerve_error_last());
	if (overlay && !p.overlay_userns)
		cr_skip_test("overlayfs in a user namespace unavailable: %s", p.why);
}

static struct swerve_workspace *ws_new(enum swerve_ws_mode mode, const struct swerve_layer *l)
{
	struct swerve_workspace *ws;
	struct swerve_ws_opts o = SWERVE_WS_OPTS_INIT;
	o.mode = mode;
	o.layer = l;
	cr_assert_eq(swerve_workspace_new(&ws, cache, "acme/widget", c[0], &o), 0, "%s",
	             swerve_error_last());
	return ws;
}

/* Runs a shell command in the workspace's sandbox; returns its stdout. */
static char *ws_sh(struct swerve_workspace *ws, const char *cmd)
{
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	swerve_workspace_sandbox_opts(ws, &o);
	o.argv = argv;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", swerve_error_last());
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK, "%s: %s %s", cmd, r.out.data, r.err.data);
	char *out = strdup(r.out.data ? r.out.data : "");
	swerve_sandbox_result_dispose(&r);
	return out;
}

static char *gitdiff(const char *args)
{
	char *out;
	cr_assert_eq(ts_sh(&out, NULL, "git -C '%s' -c core.autocrlf=false diff %s", src, args), 0);
	return out;
}

static long count_entries(const char *dir)
{
	long n;
	cr_assert_eq(swerve_fs_count(&n, dir), 0);
	return n;
}

Test(workspace, overlay_is_o1_and_changes_stay_in_upper)
{
	need_sandbox(1);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	cr_assert_eq(ws->mode, SWERVE_WS_OVERLAY);
	cr_assert_str_eq(swerve_ws_mode_name(ws->mode), "overlay");
	cr_assert_eq(count_entries(ws->upper), 0);
	char *out = ws_sh(ws, "cat README.md; echo new > added.txt; rm src/b.py; pwd");
	cr_assert_str_eq(out, "# fixture\n/workspace\n");
	free(out);
	/* the pristine tree is untouched; the upper holds the change */
	char p[1024];
	struct stat st;
	snprintf(p, sizeof(p), "%s/src/b.py", ws->pristine);
	cr_assert_eq(stat(p, &st), 0, "the episode deleted a file of the shared pristine tree");
	snprintf(p, sizeof(p), "%s/added.txt", ws->pristine);
	cr_assert_neq(stat(p, &st), 0);
	snprintf(p, sizeof(p), "%s/added.txt", ws->upper);
	cr_assert_eq(stat(p, &st), 0);
	/* a second run of the same episode sees the change; reset discards it */
	out = ws_sh(ws, "cat added.txt; ls src");
	cr_assert_str_eq(out, "new\na.py\n");
	free(out);
	cr_assert_eq(swerve_workspace_reset(ws), 0);
	out = ws_sh(ws, "ls src; test -e added.txt || echo gone");
	cr_assert_str_eq(out, "a.py\nb.py\ngone\n");
	free(out);
	char *root = strdup(ws->root);
	swerve_workspace_free(ws);
	cr_assert_neq(stat(root, &st), 0, "workspace directory left behind");
	free(root);
}

Test(workspace, copy_mode_is_reported_and_equivalent)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_COPY, NULL);
	cr_assert_eq(ws->mode, SWERVE_WS_COPY);
	cr_assert_str_eq(swerve_ws_mode_name(ws->mode), "copy");
	cr_assert_eq(
	        ts_sh(NULL, NULL, "diff -r --no-dereference '%s' '%s'", ws->pristine, ws->tree), 0);
	char *out = ws_sh(ws, "readlink link; cat nonl.txt; echo; rm src/b.py; echo x > y");
	cr_assert_str_eq(out, "src/a.py\nalpha\nbeta\n");
	free(out);
	char p[1024];
	struct stat st;
	snprintf(p, sizeof(p), "%s/src/b.py", ws->pristine);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(swerve_workspace_reset(ws), 0);
	cr_assert_eq(
	        ts_sh(NULL, NULL, "diff -r --no-dereference '%s' '%s'", ws->pristine, ws->tree), 0);
	swerve_workspace_free(ws);
}

static void apply_in(enum swerve_ws_mode mode)
{
	need_sandbox(mode == SWERVE_WS_OVERLAY);
	struct swerve_workspace *ws = ws_new(mode, NULL);
	char *p = gitdiff("-M HEAD~2 HEAD~1"), *t1, *out;
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	cr_assert_eq(o.method, SWERVE_PATCH_GIT_APPLY);
	cr_assert_eq(o.files, 3);
	/* the merged tree equals the c1 checkout */
	cr_assert_eq(swerve_repo_pristine(&t1, NULL, cache, "acme/widget", c[1]), 0);
	out = ws_sh(ws, "find . | LC_ALL=C sort | xargs -d '\\n' ls -ld --time-style=+ | "
	                "awk '{print $1, $NF}' | md5sum");
	char *ref;
	cr_assert_eq(ts_sh(&ref, NULL,
	                   "cd '%s' && find . | LC_ALL=C sort | xargs -d '\\n' ls -ld "
	                   "--time-style=+ | awk '{print $1, $NF}' | md5sum",
	                   t1),
	             0);
	cr_assert_str_eq(out, ref);
	free(out);
	free(ref);
	out = ws_sh(ws, "md5sum src/a.py new_name.txt");
	cr_assert_eq(ts_sh(&ref, NULL, "cd '%s' && md5sum src/a.py new_name.txt", t1), 0);
	cr_assert_str_eq(out, ref);
	free(out);
	free(ref);
	/* again: already applied */
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0);
	cr_assert_eq(o.method, SWERVE_PATCH_ALREADY_APPLIED, "%s", o.reason);
	free(t1);
	free(p);
	swerve_workspace_free(ws);
}

Test(workspace, git_apply_in_sandbox_overlay)
{
	apply_in(SWERVE_WS_OVERLAY);
}

Test(workspace, git_apply_in_sandbox_copy)
{
	apply_in(SWERVE_WS_COPY);
}

/* git diff's src/a.py hunk moved by 25 lines and its context drifted. */
static char *stale_patch(void)
{
	char *p = gitdiff("HEAD~2 HEAD~1 -- src/a.py"), *m;
	char *at = strstr(p, "@@ -");
	int a, b, cc, d;
	cr_assert_eq(sscanf(at, "@@ -%d,%d +%d,%d @@", &a, &b, &cc, &d), 4);
	char *rest = strstr(at + 3, "@@") + 2;
	cr_assert_gt(asprintf(&m, "%.*s@@ -%d,%d +%d,%d @@%s", (int)(at - p), p, a + 25, b, cc + 25,
	                      d, rest),
	             0);
	/* drift one context line too: "def f4(x):" -> "def f4(y):" */
	char *ctx = strstr(m, " def f4(x):");
	cr_assert(ctx, "%s", m);
	ctx[8] = 'y';
	free(p);
	return m;
}

Test(workspace, stale_patch_falls_back_to_gnu_patch_fuzz)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	char *m = stale_patch();
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, m, strlen(m), NULL), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	cr_assert_eq(o.method, SWERVE_PATCH_FUZZ, "%s", swerve_patch_method_name(o.method));
	cr_assert_str_eq(swerve_patch_method_name(o.method), "patch_fuzz");
	char *out = ws_sh(ws, "grep -c 'return x \\* 30' src/a.py; ls src");
	cr_assert_str_eq(out, "1\na.py\nb.py\n", "%s", out); /* no .orig/.rej */
	free(out);
	cr_assert_eq(count_entries(ws->in), 0, "the patch file was left behind");
	/* with fuzz disabled it is refused with libgit2's reason, tree reset */
	cr_assert_eq(swerve_workspace_reset(ws), 0);
	struct swerve_patch_opts po = SWERVE_PATCH_OPTS_INIT;
	po.no_fuzz = 1;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, m, strlen(m), &po), 0);
	cr_assert_eq(o.applied, 0);
	cr_assert(strstr(o.reason, "patch did not apply: src/a.py: hunk at line"), "%s", o.reason);
	free(m);
	swerve_workspace_free(ws);
}

Test(workspace, crlf_patch_text_applies_with_fallback)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	/* the whole patch converted to CRLF line endings (a Windows editor) */
	const char *p = "diff --git a/README.md b/README.md\r\n--- a/README.md\r\n"
	                "+++ b/README.md\r\n@@ -1 +1,2 @@\r\n # fixture\r\n+more\r\n";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *out = ws_sh(ws, "cat README.md");
	cr_assert_str_eq(out, "# fixture\nmore\n");
	free(out);
	swerve_workspace_free(ws);
}

Test(workspace, unappliable_patch_is_refused_and_workspace_reset)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	/* first file applies, second cannot: nothing of it may stay behind */
	const char *p = "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n"
	                "@@ -1 +1 @@\n-# fixture\n+# changed\n"
	                "diff --git a/src/b.py b/src/b.py\n--- a/src/b.py\n+++ b/src/b.py\n"
	                "@@ -1 +1 @@\n-C = 3\n+C = 4\n";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0);
	cr_assert_eq(o.applied, 0);
	cr_assert(strstr(o.reason, "patch did not apply: "), "%s", o.reason);
	cr_assert(strstr(o.reason, "GNU patch:"), "%s", o.reason);
	char *out = ws_sh(ws, "cat README.md");
	cr_assert_str_eq(out, "# fixture\n", "refused patch left changes behind");
	free(out);
	swerve_workspace_free(ws);
}

Test(workspace, malicious_patches_never_leave_the_tree)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	char outside[600], p[2048];
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	mkdir(outside, 0755);
	const char *fmt[] = {
	        "diff --git a/../../../../outside/x b/../../../../outside/x\nnew file mode 100644\n"
	        "--- /dev/null\n+++ b/../../../../outside/x\n@@ -0,0 +1 @@\n+x\n",
	        "--- %s/x\n+++ %s/x\n@@ -0,0 +1 @@\n+x\n",
	        "diff --git a/esc b/esc\nnew file mode 120000\n--- /dev/null\n+++ b/esc\n"
	        "@@ -0,0 +1 @@\n+%s\n\\ No newline at end of file\n",
	        "diff --git a/.git/config b/.git/config\nnew file mode 100644\n--- /dev/null\n"
	        "+++ b/.git/config\n@@ -0,0 +1 @@\n+x\n",
	};
	for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		snprintf(p, sizeof(p), fmt[i], outside, outside);
		struct swerve_patch_outcome o;
		cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0);
		cr_assert_eq(o.applied, 0, "case %zu applied", i);
		cr_assert(strstr(o.reason, "patch did not apply: "), "%s", o.reason);
	}
	char *ls;
	cr_assert_eq(ts_sh(&ls, NULL, "ls -A '%s'", outside), 0);
	cr_assert_str_eq(ls, "");
	free(ls);
	swerve_workspace_free(ws);
}

Test(workspace, test_patch_restores_then_applies_in_sandbox)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	const char *model = "diff --git a/tests/test_a.py b/tests/test_a.py\n"
	                    "--- a/tests/test_a.py\n+++ b/tests/test_a.py\n"
	                    "@@ -1,4 +1,4 @@\n from src.a import f1\n \n def test_f1():\n"
	                    "-    assert f1(1) == 2\n+    assert True\n";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, model, strlen(model), NULL), 0);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *tp = gitdiff("HEAD~1 HEAD -- tests/");
	cr_assert_eq(swerve_workspace_apply_test_patch(&o, ws, sb, tp, strlen(tp)), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *out =
	        ws_sh(ws, "grep -c 'f1(1) == 2' tests/test_a.py; grep -c test_f3 tests/test_a.py");
	cr_assert_str_eq(out, "1\n1\n");
	free(out);
	free(tp);
	swerve_workspace_free(ws);
}

Test(workspace, layer_built_once_and_seen_by_both_modes)
{
	need_sandbox(0);
	struct swerve_sandbox_probe pr;
	swerve_sandbox_probe(&pr);
	const char *cmds[] = {"echo built > BUILD_STAMP", "rm src/b.py", "mkdir -p venv/bin",
	                      "echo ok > venv/bin/tool", NULL};
	struct swerve_layer_spec spec = {.commands = cmds};
	struct swerve_layer l, again;
	cr_assert_eq(swerve_layer_get(&l, cache, sb, "acme/widget", c[0], &spec, pr.overlay_userns),
	             0, "%s", swerve_error_last());
	cr_assert_eq(l.built, 1);
	cr_assert_eq(l.full, !pr.overlay_userns);
	cr_assert_eq(
	        swerve_layer_get(&again, cache, sb, "acme/widget", c[0], &spec, pr.overlay_userns),
	        0);
	cr_assert_eq(again.built, 0, "the layer was built twice");
	cr_assert_str_eq(again.dir, l.dir);
	char *log = ts_read_file(l.log, NULL);
	cr_assert(log && strstr(log, "verdict OK"), "%s", log);
	free(log);
	enum swerve_ws_mode modes[] = {SWERVE_WS_AUTO, SWERVE_WS_COPY};
	for (int i = 0; i < 2; i++) {
		struct swerve_workspace *ws = ws_new(modes[i], &l);
		char *out = ws_sh(ws, "cat BUILD_STAMP venv/bin/tool; test -e src/b.py || echo "
		                      "deleted; cat README.md");
		cr_assert_str_eq(out, "built\nok\ndeleted\n# fixture\n", "mode %s: %s",
		                 swerve_ws_mode_name(ws->mode), out);
		free(out);
		swerve_workspace_free(ws);
	}
	swerve_layer_dispose(&l);
	swerve_layer_dispose(&again);
}

Test(workspace, failing_setup_is_an_environment_error_with_log)
{
	need_sandbox(0);
	const char *cmds[] = {"echo compiling", "echo 'error: missing header' >&2", "exit 3", NULL};
	struct swerve_layer_spec spec = {.commands = cmds};
	struct swerve_layer l;
	int rc = swerve_layer_get(&l, cache, sb, "acme/widget", c[0], &spec, 0);
	cr_assert_lt(rc, 0);
	cr_assert(strstr(swerve_error_last(), "environment setup failed (RE, exit 3)"), "%s",
	          swerve_error_last());
	cr_assert(l.log && strstr(swerve_error_last(), l.log));
	char *log = ts_read_file(l.log, NULL);
	cr_assert(log && strstr(log, "compiling") && strstr(log, "missing header"), "%s", log);
	free(log);
	/* remembered: the next episode gets the error without rebuilding */
	struct swerve_layer again;
	cr_assert_lt(swerve_layer_get(&again, cache, sb, "acme/widget", c[0], &spec, 0), 0);
	cr_assert(strstr(swerve_error_last(), "failed before: log"), "%s", swerve_error_last());
	cr_assert_str_eq(again.log, l.log);
	swerve_layer_dispose(&again);
	spec.retry_failed = 1;
	cr_assert_lt(swerve_layer_get(&again, cache, sb, "acme/widget", c[0], &spec, 0), 0);
	cr_assert(strstr(swerve_error_last(), "environment setup failed (RE, exit 3)"), "%s",
	          swerve_error_last());
	swerve_layer_dispose(&again);
	swerve_layer_dispose(&l);
}

Test(workspace, eight_episodes_on_one_commit_check_out_once)
{
	need_sandbox(0);
	enum { N = 8 };
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct swerve_workspace *ws;
			struct swerve_repo_cache *own;
			if (swerve_repo_cache_open(&own, home) < 0 ||
			    swerve_workspace_new(&ws, own, "acme/widget", c[2], NULL) < 0)
				_exit(1);
			swerve_workspace_free(ws);
			swerve_repo_cache_free(own);
			_exit(0);
		}
	}
	for (int i = 0; i < N; i++) {
		int st;
		waitpid(pids[i], &st, 0);
		cr_assert_eq(st, 0);
	}
	char *out;
	cr_assert_eq(ts_sh(&out, NULL, "ls '%s/trees/acme/widget'", home), 0);
	char expect[128];
	snprintf(expect, sizeof(expect), "%s\n%s.lock\n", c[2], c[2]);
	cr_assert_str_eq(out, expect);
	free(out);
	cr_assert_eq(ts_sh(&out, NULL, "ls -A '%s/work'", home), 0);
	cr_assert_str_eq(out, "", "episode directories left behind: %s", out);
	free(out);
}

Test(workspace, full_tree_layer_for_hosts_without_overlay)
{
	need_sandbox(0);
	const char *cmds[] = {"echo built > BUILD_STAMP", "rm src/b.py", NULL};
	struct swerve_layer_spec spec = {.commands = cmds};
	struct swerve_layer l;
	cr_assert_eq(swerve_layer_get(&l, cache, sb, "acme/widget", c[0], &spec, 0), 0, "%s",
	             swerve_error_last());
	cr_assert_eq(l.full, 1);
	cr_assert(strstr(l.dir, "/tree"), "%s", l.dir);
	enum swerve_ws_mode modes[] = {SWERVE_WS_AUTO, SWERVE_WS_COPY};
	for (int i = 0; i < 2; i++) {
		struct swerve_workspace *ws = ws_new(modes[i], &l);
		char *out = ws_sh(ws, "cat BUILD_STAMP; test -e src/b.py || echo deleted; readlink "
		                      "link");
		cr_assert_str_eq(out, "built\ndeleted\nsrc/a.py\n", "mode %s: %s",
		                 swerve_ws_mode_name(ws->mode), out);
		free(out);
		swerve_workspace_free(ws);
	}
	swerve_layer_dispose(&l);
}

Test(workspace, runs_cannot_see_the_mirror_with_future_commits)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	/* a model's code under test must not find the fix in the history: neither
	 * the mirror's mount point nor its host path exists inside */
	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
	         "for p in /swerve/repo.git '%s' '%s/repos' /workspace/.git; do "
	         "test -e \"$p\" && echo \"visible: $p\"; done; echo end",
	         ws->git_dir, home);
	char *out = ws_sh(ws, cmd);
	cr_assert_str_eq(out, "end\n", "%s", out);
	free(out);
	swerve_workspace_free(ws);
}

Test(workspace, hunks_out_of_order_are_applied_by_some_method)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	/* the later hunk first, and no newline at the end of the patch text */
	const char *p = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	                "@@ -59,2 +59,2 @@\n def f30(x):\n-    return x + 30\n+    return x - 30\n"
	                "@@ -3,2 +3,2 @@\n def f2(x):\n-    return x + 2\n+    return x - 2";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_workspace_apply_patch(&o, ws, sb, p, strlen(p), NULL), 0);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *out = ws_sh(ws, "grep -c 'return x - ' src/a.py");
	cr_assert_str_eq(out, "2\n", "method %s", swerve_patch_method_name(o.method));
	free(out);
	swerve_workspace_free(ws);
}

Test(workspace, patch_step_and_tests_in_one_sandbox_start)
{
	need_sandbox(0);
	struct swerve_workspace *ws = ws_new(SWERVE_WS_AUTO, NULL);
	const char *p = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	                "@@ -3,2 +3,2 @@\n def f2(x):\n-    return x + 2\n+    return x - 2\n";
	/* the tests see the patched tree; a forged marker in their output is theirs */
	const char *argv[] = {
	        "/bin/sh", "-c",
	        "printf '\\036swerve: tests start 1\\n'; grep -c 'return x - 2' src/a.py; "
	        "test -e /swerve/repo.git && echo mirror visible; true",
	        NULL};
	struct swerve_patch_outcome po, to;
	struct swerve_ws_patch_step *st = NULL;
	cr_assert_eq(
	        swerve_workspace_patch_step_new(&st, &po, &to, ws, p, strlen(p), NULL, 0, NULL), 0);
	cr_assert_not_null(st, "%s", po.reason);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	swerve_workspace_sandbox_opts(ws, &o);
	swerve_workspace_patch_step_opts(st, &o);
	o.argv = argv;
	struct swerve_sandbox_result r;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	size_t at = 0;
	uint64_t ns = 0;
	cr_assert_eq(swerve_workspace_patch_step_result(&po, &to, &at, &ns, st, ws, &r), 0);
	cr_assert_eq(po.applied, 1, "%s", po.reason);
	cr_assert_gt(at, 0, "the tests ran");
	cr_assert_gt(ns, 1, "our marker (not the forged one) carries the time");
	cr_assert_str_eq(r.out.data + at, "\036swerve: tests start 1\n1\n");
	swerve_sandbox_result_dispose(&r);
	swerve_workspace_patch_step_free(st);

	/* a patch libgit2 refuses: the tests do not run */
	swerve_workspace_reset(ws);
	const char *bad = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	                  "@@ -3,2 +3,2 @@\n def f2(x):\n-    return x + 99\n+    return x - 2\n";
	cr_assert_eq(
	        swerve_workspace_patch_step_new(&st, &po, &to, ws, bad, strlen(bad), NULL, 0, NULL),
	        0);
	cr_assert_not_null(st);
	o = (struct swerve_sandbox_opts)SWERVE_SANDBOX_OPTS_INIT;
	swerve_workspace_sandbox_opts(ws, &o);
	swerve_workspace_patch_step_opts(st, &o);
	o.argv = argv;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	cr_assert_eq(swerve_workspace_patch_step_result(&po, &to, &at, &ns, st, ws, &r), 0);
	cr_assert_eq(po.applied, 0);
	cr_assert_eq(at, 0, "tests must not run after a refused patch");
	cr_assert(strstr(po.reason, "patch did not apply"), "%s", po.reason);
	swerve_sandbox_result_dispose(&r);
	swerve_workspace_patch_step_free(st);
	swerve_workspace_free(ws);
}

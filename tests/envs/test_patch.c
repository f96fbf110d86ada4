/* test_patch.c - patch application on a directory (libgit2): patches made by
 * git diff, hand-mangled ones, already-applied ones, every malicious case,
 * and restoring test files before a test_patch. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envs/envs.h"
#include "envs/patch.h"
#include "sandbox/error.h"
#include "tests/support/gitfix.h"
#include "tests/support/support.h"

static char *tmp, src[512], home[512], work[512], outside[512];
static char c[3][41];
static struct swerve_repo_cache *cache;
static char *pristine0;

static void setup(void)
{
	tmp = ts_mkdtemp();
	snprintf(src, sizeof(src), "%s/src", tmp);
	snprintf(home, sizeof(home), "%s/home", tmp);
	snprintf(work, sizeof(work), "%s/work", tmp);
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	mkdir(outside, 0755);
	gf_standard(c, src);
	cr_assert_eq(swerve_repo_cache_open(&cache, home), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_add(cache, "acme/widget", src), 0, "%s", swerve_error_last());
	cr_assert_eq(swerve_repo_pristine(&pristine0, NULL, cache, "acme/widget", c[0]), 0);
	cr_assert_eq(swerve_fs_copytree(pristine0, work), 0, "%s", swerve_error_last());
}

static void teardown(void)
{
	free(pristine0);
	swerve_repo_cache_free(cache);
	ts_rmtree(tmp);
	free(tmp);
}

TestSuite(patch, .init = setup, .fini = teardown);

/* `git diff` output between two revisions of the fixture (caller frees). */
static char *gitdiff(const char *args)
{
	char *out;
	cr_assert_eq(ts_sh(&out, NULL, "git -C '%s' -c core.autocrlf=false diff %s", src, args), 0);
	return out;
}

static struct swerve_patch_outcome apply(const char *patch)
{
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_patch_apply_dir(&o, work, patch, strlen(patch), tmp, NULL), 0, "%s",
	             swerve_error_last());
	return o;
}

static void assert_refused(const char *patch, const char *why)
{
	struct swerve_patch_outcome o = apply(patch);
	cr_assert_eq(o.applied, 0, "applied a patch that should be refused (%s)", why);
	cr_assert_eq(o.method, SWERVE_PATCH_NOT_APPLIED);
	cr_assert(strncmp(o.reason, "patch did not apply: ", 21) == 0, "%s", o.reason);
	cr_assert(strstr(o.reason, why), "reason '%s' lacks '%s'", o.reason, why);
	/* swerve_patch_check agrees without touching the tree */
	struct swerve_patch_outcome k;
	cr_assert_eq(swerve_patch_check(&k, patch, strlen(patch), NULL), 0);
}

static char *file(const char *rel)
{
	char p[1024];
	snprintf(p, sizeof(p), "%s/%s", work, rel);
	return ts_read_file(p, NULL);
}

static int tree_equals(const char *a, const char *b)
{
	return ts_sh(NULL, NULL, "diff -r --no-dereference '%s' '%s' >/dev/null", a, b);
}

Test(patch, git_diff_with_rename_deletion_edit_applies_exactly)
{
	char *p = gitdiff("-M "
	                  "HEAD~2 HEAD~1"),
	     *t1;
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	cr_assert_eq(o.method, SWERVE_PATCH_GIT_APPLY);
	cr_assert_str_eq(swerve_patch_method_name(o.method), "git_apply");
	cr_assert_eq(o.files, 3);
	cr_assert_eq(swerve_repo_pristine(&t1, NULL, cache, "acme/widget", c[1]), 0);
	cr_assert_eq(tree_equals(work, t1), 0, "work tree differs from the c1 checkout");
	free(t1);
	free(p);
}

Test(patch, applying_twice_is_already_applied)
{
	char *p = gitdiff("HEAD~2 HEAD~1");
	cr_assert_eq(apply(p).method, SWERVE_PATCH_GIT_APPLY);
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	cr_assert_eq(o.method, SWERVE_PATCH_ALREADY_APPLIED);
	cr_assert_str_eq(swerve_patch_method_name(o.method), "already_applied");
	free(p);
}

Test(patch, crlf_file_and_missing_final_newline_are_preserved)
{
	const char *p = "diff --git a/crlf.txt b/crlf.txt\n"
	                "--- a/crlf.txt\n+++ b/crlf.txt\n"
	                "@@ -1,3 +1,3 @@\n one\r\n-two\r\n+TWO\r\n three\r\n"
	                "diff --git a/nonl.txt b/nonl.txt\n"
	                "--- a/nonl.txt\n+++ b/nonl.txt\n"
	                "@@ -1,2 +1,3 @@\n alpha\n-beta\n\\ No newline at end of file\n"
	                "+beta\n+gamma\n\\ No newline at end of file\n";
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *a = file("crlf.txt"), *b = file("nonl.txt");
	cr_assert_str_eq(a, "one\r\nTWO\r\nthree\r\n");
	cr_assert_str_eq(b, "alpha\nbeta\ngamma");
	free(a);
	free(b);
}

Test(patch, binary_patch_with_data_applies_and_without_data_is_refused)
{
	char bin[] = {0, 1, 2, 3, 4, 5, '\xff', 0, 'x'};
	char p[1024];
	snprintf(p, sizeof(p), "%s/data.bin", src);
	ts_write_file(p, bin, sizeof(bin));
	char *withdata = gitdiff("--binary HEAD -- data.bin"),
	     *nodata = gitdiff("HEAD -- data.bin");
	cr_assert(strstr(withdata, "GIT binary patch"), "%s", withdata);
	cr_assert(strstr(nodata, "Binary files"), "%s", nodata);
	assert_refused(nodata, "binary change without data");
	struct swerve_patch_outcome o = apply(withdata);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	size_t len;
	snprintf(p, sizeof(p), "%s/data.bin", work);
	char *got = ts_read_file(p, &len);
	cr_assert_eq(len, sizeof(bin));
	cr_assert_eq(memcmp(got, bin, len), 0);
	free(got);
	free(withdata);
	free(nodata);
}

Test(patch, new_executable_file_and_safe_symlink_apply)
{
	const char *p = "diff --git a/bin/tool b/bin/tool\nnew file mode 100755\n"
	                "--- /dev/null\n+++ b/bin/tool\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+echo hi\n"
	                "diff --git a/docs/readme b/docs/readme\nnew file mode 120000\n"
	                "--- /dev/null\n+++ b/docs/readme\n@@ -0,0 +1 @@\n+../README.md\n"
	                "\\ No newline at end of file\n";
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	struct stat st;
	char q[1024], target[64] = {0};
	snprintf(q, sizeof(q), "%s/bin/tool", work);
	cr_assert_eq(stat(q, &st), 0);
	cr_assert(st.st_mode & 0100);
	snprintf(q, sizeof(q), "%s/docs/readme", work);
	cr_assert_gt(readlink(q, target, sizeof(target) - 1), 0);
	cr_assert_str_eq(target, "../README.md");
}

Test(patch, wrong_line_numbers_are_refused_cleanly_by_libgit2)
{
	char *p = gitdiff("HEAD~2 HEAD~1 -- src/a.py");
	char *at = strstr(p, "@@ -");
	cr_assert(at);
	char *mangled;
	int a, b, cc, d;
	cr_assert_eq(sscanf(at, "@@ -%d,%d +%d,%d @@", &a, &b, &cc, &d), 4);
	char *rest = strstr(at + 3, "@@") + 2;
	cr_assert_gt(asprintf(&mangled, "%.*s@@ -%d,%d +%d,%d @@%s", (int)(at - p), p, a + 25, b,
	                      cc + 25, d, rest),
	             0);
	struct swerve_patch_outcome o = apply(mangled);
	char *got = file("src/a.py");
	if (o.applied) { /* found by its context */
		cr_assert(strstr(got, "return x * 30\n"), "%s", got);
	} else { /* libgit2 is exact about positions: GNU patch's job (test_workspace) */
		cr_assert(strstr(o.reason, "src/a.py: hunk at line"), "%s", o.reason);
		cr_assert_str_eq(got, gf_a_py_v0(), "a refused patch changed the tree");
	}
	free(got);
	free(mangled);
	free(p);
}

Test(patch, drifted_context_is_refused_by_libgit2_with_reason)
{
	const char *p = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	                "@@ -4,3 +4,3 @@\n def f2(x):\n-    return x + 2\n+    return x * 2\n"
	                " def f3_renamed_upstream(x):\n";
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 0);
	cr_assert(strstr(o.reason, "patch did not apply: "), "%s", o.reason);
	cr_assert(strstr(o.reason, "src/a.py"), "%s", o.reason);
	char *got = file("src/a.py");
	cr_assert_str_eq(got, gf_a_py_v0(), "a refused patch changed the tree");
	free(got);
}

Test(patch, hunks_out_of_order_and_patch_without_final_newline)
{
	/* two hunks of src/a.py, the later one first; patch text ends without \n */
	const char *p = "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	                "@@ -59,2 +59,2 @@\n def f30(x):\n-    return x + 30\n+    return x - 30\n"
	                "@@ -3,2 +3,2 @@\n def f2(x):\n-    return x + 2\n+    return x - 2";
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	cr_assert_eq(o.method, SWERVE_PATCH_GIT_APPLY);
	char *got = file("src/a.py");
	cr_assert(strstr(got, "return x - 30\n") && strstr(got, "return x - 2\n"), "%s", got);
	free(got);
}

Test(patch, empty_and_garbage_patches_are_refused)
{
	assert_refused("", "no file changes");
	assert_refused("hello world\nthis is not a diff\n", "no file changes");
}

/* ---- malicious patches -------------------------------------------------- */

static void assert_outside_untouched(void)
{
	char *out;
	cr_assert_eq(ts_sh(&out, NULL, "ls -A '%s'", outside), 0);
	cr_assert_str_eq(out, "", "something was written outside the tree: %s", out);
	free(out);
}

Test(patch, dotdot_paths_are_refused)
{
	char p[2048];
	snprintf(p, sizeof(p),
	         "diff --git a/../outside/pwned b/../outside/pwned\nnew file mode 100644\n"
	         "--- /dev/null\n+++ b/../outside/pwned\n@@ -0,0 +1 @@\n+x\n");
	assert_refused(p, "'..'");
	assert_refused("--- a/src/../../outside/x\n+++ b/src/../../outside/x\n@@ -0,0 +1 @@\n+x\n",
	               "'..'");
	assert_outside_untouched();
}

Test(patch, absolute_paths_are_refused)
{
	char p[2048];
	snprintf(p, sizeof(p),
	         "diff --git %s/pwned %s/pwned\nnew file mode 100644\n--- /dev/null\n"
	         "+++ %s/pwned\n@@ -0,0 +1 @@\n+x\n",
	         outside, outside, outside);
	struct swerve_patch_outcome o = apply(p);
	cr_assert_eq(o.applied, 0);
	assert_outside_untouched();
	/* GNU patch-only headers (Index:, rename to) are checked too */
	snprintf(p, sizeof(p), "Index: %s/pwned\n--- x\n+++ x\n", outside);
	assert_refused(p, "absolute path");
}

Test(patch, git_internals_are_refused)
{
	assert_refused("diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\n"
	               "new file mode 100755\n--- /dev/null\n+++ b/.git/hooks/pre-commit\n"
	               "@@ -0,0 +1 @@\n+evil\n",
	               "inside .git");
	assert_refused("diff --git a/sub/.GIT/config b/sub/.GIT/config\nnew file mode 100644\n"
	               "--- /dev/null\n+++ b/sub/.GIT/config\n@@ -0,0 +1 @@\n+x\n",
	               "inside .git");
}

Test(patch, renames_out_of_the_tree_are_refused)
{
	assert_refused("diff --git a/README.md b/../outside/README.md\nsimilarity index 100%\n"
	               "rename from README.md\nrename to ../outside/README.md\n",
	               "'..'");
	assert_outside_untouched();
}

Test(patch, symlink_pointing_outside_is_refused)
{
	char p[2048];
	snprintf(p, sizeof(p),
	         "diff --git a/evil b/evil\nnew file mode 120000\n--- /dev/null\n+++ b/evil\n"
	         "@@ -0,0 +1 @@\n+%s\n\\ No newline at end of file\n",
	         outside);
	assert_refused(p, "symlink to an absolute path");
	assert_refused("diff --git a/src/evil b/src/evil\nnew file mode 120000\n--- /dev/null\n"
	               "+++ b/src/evil\n@@ -0,0 +1 @@\n+../../outside\n"
	               "\\ No newline at end of file\n",
	               "symlink pointing outside the tree");
	struct stat st;
	char q[1024];
	snprintf(q, sizeof(q), "%s/src/evil", work);
	cr_assert_neq(lstat(q, &st), 0);
}

Test(patch, writing_through_a_created_symlink_is_refused)
{
	/* the link itself stays inside, but a second delta writes through it */
	assert_refused("diff --git a/d b/d\nnew file mode 120000\n--- /dev/null\n+++ b/d\n"
	               "@@ -0,0 +1 @@\n+src\n\\ No newline at end of file\n"
	               "diff --git a/d/x.py b/d/x.py\nnew file mode 100644\n--- /dev/null\n"
	               "+++ b/d/x.py\n@@ -0,0 +1 @@\n+x\n",
	               "goes through symlink");
}

Test(patch, writing_through_an_existing_symlink_is_refused)
{
	char q[1024];
	snprintf(q, sizeof(q), "%s/escape", work);
	cr_assert_eq(symlink(outside, q), 0);
	assert_refused("diff --git a/escape/pwned b/escape/pwned\nnew file mode 100644\n"
	               "--- /dev/null\n+++ b/escape/pwned\n@@ -0,0 +1 @@\n+x\n",
	               "goes through symlink escape");
	/* modifying a tracked symlink as if it were a file would read through it */
	assert_refused("diff --git a/link b/link\n--- a/link\n+++ b/link\n@@ -1 +1 @@\n-x\n+y\n",
	               "is a symlink in the tree");
	assert_outside_untouched();
}

Test(patch, oversized_patch_is_refused_and_cap_is_configurable)
{
	size_t n = SWERVE_PATCH_MAX_BYTES_DEFAULT + 100;
	char *big = malloc(n + 1);
	const char *head = "diff --git a/big.txt b/big.txt\nnew file mode 100644\n--- /dev/null\n"
	                   "+++ b/big.txt\n@@ -0,0 +1,1 @@\n+";
	memset(big, 'a', n);
	memcpy(big, head, strlen(head));
	big[n - 1] = '\n';
	big[n] = '\0';
	assert_refused(big, "over the 1048576-byte cap");
	struct swerve_patch_opts opts = SWERVE_PATCH_OPTS_INIT;
	opts.max_bytes = 100;
	struct swerve_patch_outcome o;
	char *p = gitdiff("HEAD~2 HEAD~1");
	cr_assert_eq(swerve_patch_check(&o, p, strlen(p), &opts), 0);
	cr_assert(strstr(o.reason, "over the 100-byte cap"), "%s", o.reason);
	free(p);
	free(big);
}

Test(patch, control_characters_and_nul_are_refused)
{
	assert_refused("diff --git a/a\x01 b/a\x01\n--- a/a\x01\n+++ b/a\x01\n@@ -0,0 +1 @@\n+x\n",
	               "control character");
	const char p[] = "diff --git a/x b/x\n--- a/x\n+++ b/x\n\0@@ -1 +1 @@\n";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_patch_check(&o, p, sizeof(p) - 1, NULL), 0);
	cr_assert(strstr(o.reason, "NUL byte"), "%s", o.reason);
}

Test(patch, hunk_body_lines_are_not_mistaken_for_headers)
{
	/* a removed line "-- ../x" shows as "--- ../x" inside a hunk: not a header */
	char q[1024];
	snprintf(q, sizeof(q), "%s/notes.txt", work);
	ts_write_file(q, "-- ../x\nkeep\n", 13);
	struct swerve_patch_outcome o =
	        apply("diff --git a/notes.txt b/notes.txt\n--- a/notes.txt\n+++ b/notes.txt\n"
	              "@@ -1,2 +1,2 @@\n--- ../x\n+++ ../y\n keep\n");
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *got = file("notes.txt");
	cr_assert_str_eq(got, "++ ../y\nkeep\n");
	free(got);
}

/* ---- test_patch: restore then apply -------------------------------------- */

Test(patch, restore_undoes_model_edits_to_test_files_then_applies_test_patch)
{
	char *gd;
	cr_assert_eq(swerve_repo_git_dir(&gd, cache, "acme/widget"), 0);
	/* the model edits the source and pre-edits the test it will be graded by */
	const char *model =
	        "diff --git a/src/a.py b/src/a.py\n--- a/src/a.py\n+++ b/src/a.py\n"
	        "@@ -1,2 +1,2 @@\n def f1(x):\n-    return x + 1\n+    return x + 100\n"
	        "diff --git a/tests/test_a.py b/tests/test_a.py\n"
	        "--- a/tests/test_a.py\n+++ b/tests/test_a.py\n"
	        "@@ -1,4 +1,4 @@\n from src.a import f1\n \n def test_f1():\n"
	        "-    assert f1(1) == 2\n+    assert True\n"
	        "diff --git a/tests/test_new.py b/tests/test_new.py\nnew file mode 100644\n"
	        "--- /dev/null\n+++ b/tests/test_new.py\n@@ -0,0 +1 @@\n+cheat = 1\n";
	cr_assert_eq(apply(model).applied, 1);
	char *test_patch = gitdiff("HEAD~1 HEAD -- tests/");
	struct swerve_patch_outcome o;
	cr_assert_eq(
	        swerve_patch_restore_dir(&o, work, gd, c[0], test_patch, strlen(test_patch), tmp),
	        0, "%s", swerve_error_last());
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *t = file("tests/test_a.py"), *s = file("src/a.py");
	cr_assert(strstr(t, "assert f1(1) == 2") && strstr(t, "def test_f3"), "%s", t);
	cr_assert(strstr(s, "return x + 100"), "the model's source edit was lost: %s", s);
	free(t);
	free(s);
	/* a file the test_patch does not touch keeps the model's version */
	char *n = file("tests/test_new.py");
	cr_assert_str_eq(n, "cheat = 1\n");
	free(n);
	free(test_patch);
	free(gd);
}

Test(patch, restore_removes_files_absent_at_base)
{
	char *gd;
	cr_assert_eq(swerve_repo_git_dir(&gd, cache, "acme/widget"), 0);
	/* model pre-creates the test file the test_patch adds */
	cr_assert_eq(apply("diff --git a/tests/test_b.py b/tests/test_b.py\nnew file mode 100644\n"
	                   "--- /dev/null\n+++ b/tests/test_b.py\n@@ -0,0 +1 @@\n+fake\n")
	                     .applied,
	             1);
	const char *tp = "diff --git a/tests/test_b.py b/tests/test_b.py\nnew file mode 100644\n"
	                 "--- /dev/null\n+++ b/tests/test_b.py\n@@ -0,0 +1 @@\n+real\n";
	struct swerve_patch_outcome o;
	cr_assert_eq(swerve_patch_restore_dir(&o, work, gd, c[0], tp, strlen(tp), tmp), 0);
	cr_assert_eq(o.applied, 1, "%s", o.reason);
	char *t = file("tests/test_b.py");
	cr_assert_str_eq(t, "real\n");
	free(t);
	free(gd);
}

Test(patch, paths_lists_both_sides_once)
{
	char *p = gitdiff("-M HEAD~2 HEAD~1"), **v;
	size_t n;
	cr_assert_eq(swerve_patch_paths(&v, &n, p, strlen(p)), 0);
	cr_assert_eq(n, 4, "%zu", n); /* new_name, old_name, src/a.py, src/b.py */
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	free(p);
}

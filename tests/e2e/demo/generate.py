#!/usr/bin/env python3
"""generate.py - builds swerve's bundled example data for `make demo` and the
end-to-end tests: small real repositories (Python + pytest, C + make with a
TAP test binary, JavaScript + `node --test`), SWE-bench-format task instances
(a bug, its gold fix, the tests that show it) and prediction files (gold,
empty, wrong, regression, broken, cheating).

Usage: generate.py OUTDIR [--with-flaky]
Writes OUTDIR/repos/<name> (git repositories), OUTDIR/tasks.jsonl,
OUTDIR/predictions-<kind>.jsonl, OUTDIR/predictions-mixed.jsonl; with
--with-flaky also repos/pyflaky and OUTDIR/tasks-flaky.jsonl (a task with a
flaky PASS_TO_PASS test, for `swerve validate`).
Commits use fixed authors and dates, so the ids are the same on every run.
"""
import json
import os
import shutil
import subprocess
import sys

ENV = dict(os.environ,
           GIT_AUTHOR_NAME="swerve demo", GIT_AUTHOR_EMAIL="demo@swerve.invalid",
           GIT_COMMITTER_NAME="swerve demo", GIT_COMMITTER_EMAIL="demo@swerve.invalid",
           GIT_AUTHOR_DATE="2026-01-01T00:00:00Z", GIT_COMMITTER_DATE="2026-01-01T00:00:00Z",
           GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")


def git(repo, *args, stdin=None):
    return subprocess.run(["git", "-C", repo, *args], env=ENV, check=True, input=stdin,
                          capture_output=True, text=True).stdout


def write(repo, files):
    for path, text in files.items():
        full = os.path.join(repo, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        if path.endswith(".sh"):
            os.chmod(full, 0o755)


def commit(repo, files, message):
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def diff_for(repo, base, files):
    """The unified diff (git diff) that turns `base` into base + files."""
    git(repo, "checkout", "-q", base)
    write(repo, files)
    d = git(repo, "diff")
    git(repo, "checkout", "-q", "--", ".")
    git(repo, "clean", "-qfd")
    git(repo, "checkout", "-q", "main")
    return d


def corrupt(diff):
    """A patch that cannot apply, even with fuzz: its first removed line no
    longer matches the file (context fuzz never forgives a removed line)."""
    out, done = [], False
    for line in diff.split("\n"):
        if not done and line.startswith("-") and not line.startswith("---"):
            line += "  # (not in the file)"
            done = True
        out.append(line)
    assert done
    return "\n".join(out)


def sub(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


# ---------------------------------------------------------------- pycalc ----
CALC = '''"""calc - small numeric helpers."""


def add(a, b):
    return a + b


def clamp(x, lo, hi):
    return max(lo, min(x, hi))


def mean(xs):
    if not xs:
        raise ValueError("mean of an empty list")
    return sum(xs) / (len(xs) - 1)


def parse_int(s):
    s = s.strip()
    if not s.isdigit():
        raise ValueError("not an integer: %r" % s)
    return int(s)
'''

TEST_CALC = '''import pytest

from calc import add, clamp, mean, parse_int


def test_add():
    assert add(2, 3) == 5


def test_clamp():
    assert clamp(5, 0, 3) == 3
    assert clamp(-1, 0, 3) == 0


def test_mean_empty_raises():
    with pytest.raises(ValueError):
        mean([])


def test_parse_int_plain():
    assert parse_int(" 42 ") == 42
'''

TEST_CALC_MEAN = TEST_CALC + '''

@pytest.mark.parametrize("xs, want", [([1, 2, 3], 2.0), ([4], 4.0)])
def test_mean(xs, want):
    assert mean(xs) == want
'''

TEST_CALC_NEG = TEST_CALC + '''

def test_parse_int_negative():
    assert parse_int("-7") == -7
'''

# ------------------------------------------------------------------ cstr ----
STRUTIL_H = '''#ifndef STRUTIL_H
#define STRUTIL_H
#include <stddef.h>
void str_reverse(char *s);
size_t str_count(const char *s, char c);
#endif
'''

STRUTIL_C = '''#include "strutil.h"
#include <string.h>

void str_reverse(char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i + 1 < n / 2; i++) {
		char t = s[i];
		s[i] = s[n - 1 - i];
		s[n - 1 - i] = t;
	}
}

size_t str_count(const char *s, char c)
{
	size_t k = 0;
	for (; *s && *s != ' '; s++)
		k += *s == c;
	return k;
}
'''

TEST_STRUTIL = '''#include <stdio.h>
#include <string.h>
#include "../strutil.h"

static int n, failed;
#define CHECK(name, cond) do { n++; if (cond) printf("ok %d - %s\\n", n, name); \\
	else { failed++; printf("not ok %d - %s\\n", n, name); } } while (0)

static void test_empty(void)
{
	char s[] = "";
	str_reverse(s);
	CHECK("reverse_empty", s[0] == 0);
	CHECK("count_empty", str_count("", 'a') == 0);
}

static void test_single(void)
{
	char s[] = "x";
	str_reverse(s);
	CHECK("reverse_single", strcmp(s, "x") == 0);
}
/* more tests */

int main(void)
{
	test_empty();
	test_single();
	/* run more */
	printf("1..%d\\n", n);
	return failed != 0;
}
'''

TEST_STRUTIL_REV = sub(sub(TEST_STRUTIL, "/* more tests */", '''
static void test_reverse(void)
{
	char a[] = "abcd", b[] = "hello";
	str_reverse(a);
	str_reverse(b);
	CHECK("reverse_even", strcmp(a, "dcba") == 0);
	CHECK("reverse_odd", strcmp(b, "olleh") == 0);
}'''), "/* run more */", "test_reverse();")

TEST_STRUTIL_COUNT = sub(sub(TEST_STRUTIL, "/* more tests */", '''
static void test_count(void)
{
	CHECK("count_words", str_count("a banana and a pear", 'a') == 7);
}'''), "/* run more */", "test_count();")

C_MAKEFILE = '''CFLAGS = -O1 -Wall
test: tests/test_strutil
\t./tests/test_strutil
tests/test_strutil: tests/test_strutil.c strutil.c strutil.h
\t$(CC) $(CFLAGS) -o $@ tests/test_strutil.c strutil.c
.PHONY: test
'''

# ---------------------------------------------------------------- jsslug ----
SLUG_JS = ''''use strict';

function slugify(text) {
  return text.toLowerCase().trim().replace(/[^a-z0-9]/g, '-');
}

function truncate(text, n) {
  if (text.length <= n) return text;
  return text.slice(0, n) + '...';
}

module.exports = { slugify, truncate };
'''

SLUG_TEST = ''''use strict';
const test = require('node:test');
const assert = require('node:assert');
const { slugify, truncate } = require('../lib/slug.js');

test('slugify lowercases', () => {
  assert.strictEqual(slugify('Hello'), 'hello');
});

test('truncate keeps short text', () => {
  assert.strictEqual(truncate('abc', 5), 'abc');
});
'''

SLUG_TEST_DASH = SLUG_TEST + '''
test('slugify collapses separators', () => {
  assert.strictEqual(slugify('Hello,  World!'), 'hello-world');
});
'''

SLUG_TEST_TRUNC = SLUG_TEST + '''
test('truncate counts the ellipsis', () => {
  assert.strictEqual(truncate('abcdefgh', 6), 'abc...');
  assert.strictEqual(truncate('abcdefgh', 6).length, 6);
});
'''


def build(out):
    repos = os.path.join(out, "repos")
    shutil.rmtree(repos, ignore_errors=True)
    os.makedirs(repos)
    tasks, preds = [], {k: [] for k in ("gold", "empty", "wrong", "broken", "cheat")}

    def task(repo_name, iid, path, base, gold, test_patch, f2p, p2p, problem, extra,
             wrong, broken, cheat=None):
        t = {"instance_id": iid, "repo": repo_name, "base_commit": base,
             "patch": gold, "test_patch": test_patch, "problem_statement": problem,
             "hints_text": "", "created_at": "2026-01-01T00:00:00Z", "version": "1.0",
             "environment_setup_commit": base,
             "FAIL_TO_PASS": json.dumps(f2p), "PASS_TO_PASS": json.dumps(p2p)}
        t.update(extra)
        tasks.append(t)
        for kind, patch in (("gold", gold), ("empty", ""), ("wrong", wrong),
                            ("broken", broken), ("cheat", cheat)):
            if patch is None:
                continue
            preds[kind].append({"instance_id": iid, "model_name_or_path": "demo-" + kind,
                                "model_patch": patch})

    # pycalc: Python + pytest
    r = os.path.join(repos, "pycalc")
    os.makedirs(r)
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"calc.py": CALC, "tests/test_calc.py": TEST_CALC,
                      "README.md": "calc: numeric helpers\n"}, "calc: first version")
    py = {"test_cmd": "python3 -m pytest -rA -p no:cacheprovider tests/test_calc.py",
          "log_parser": "pytest", "timeout_s": 60}
    p2p = ["tests/test_calc.py::test_add", "tests/test_calc.py::test_clamp",
           "tests/test_calc.py::test_mean_empty_raises", "tests/test_calc.py::test_parse_int_plain"]
    fixed_mean = sub(CALC, "(len(xs) - 1)", "len(xs)")
    task("swerve-demo/pycalc", "swerve-demo__pycalc-1", r, base,
         diff_for(r, base, {"calc.py": fixed_mean}),
         diff_for(r, base, {"tests/test_calc.py": TEST_CALC_MEAN}),
         ["tests/test_calc.py::test_mean[xs0-2.0]", "tests/test_calc.py::test_mean[xs1-4.0]"], p2p,
         "mean() divides by n-1 instead of n: mean([1, 2, 3]) returns 3.0.", py,
         wrong=diff_for(r, base, {"calc.py": sub(CALC, "(len(xs) - 1)", "max(len(xs) - 1, 1)")}),
         broken=corrupt(diff_for(r, base, {"calc.py": fixed_mean})),
         cheat=diff_for(r, base, {"tests/test_calc.py": TEST_CALC.replace("import pytest", "import pytest\n\n\ndef test_mean():\n    pass\n")}))
    fixed_neg = sub(CALC, "    if not s.isdigit():",
                    "    if not s.lstrip(\"+-\").isdigit() or len(s) - len(s.lstrip(\"+-\")) > 1:")
    task("swerve-demo/pycalc", "swerve-demo__pycalc-2", r, base,
         diff_for(r, base, {"calc.py": fixed_neg}),
         diff_for(r, base, {"tests/test_calc.py": TEST_CALC_NEG}),
         ["tests/test_calc.py::test_parse_int_negative"], p2p,
         "parse_int('-7') raises ValueError: negative numbers are rejected.", py,
         wrong=diff_for(r, base, {"calc.py": sub(CALC, "    s = s.strip()\n", "    s = s.strip().lstrip(\"-\")\n")}),
         broken=corrupt(diff_for(r, base, {"calc.py": fixed_neg})))

    # cstr: C + make, TAP output
    r = os.path.join(repos, "cstr")
    os.makedirs(r)
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"strutil.h": STRUTIL_H, "strutil.c": STRUTIL_C,
                      "tests/test_strutil.c": TEST_STRUTIL, "Makefile": C_MAKEFILE},
                  "strutil: reverse and count")
    cc = {"test_cmd": "make -s test", "log_parser": "tap", "timeout_s": 60}
    p2p = ["reverse_empty", "count_empty", "reverse_single"]
    fixed_rev = sub(STRUTIL_C, "i + 1 < n / 2", "i < n / 2")
    task("swerve-demo/cstr", "swerve-demo__cstr-1", r, base,
         diff_for(r, base, {"strutil.c": fixed_rev}),
         diff_for(r, base, {"tests/test_strutil.c": TEST_STRUTIL_REV}),
         ["reverse_even", "reverse_odd"], p2p,
         "str_reverse leaves the middle pair of characters unswapped.", cc,
         wrong=diff_for(r, base, {"strutil.c": sub(STRUTIL_C, "i + 1 < n / 2", "i <= n / 2")}),
         broken=corrupt(diff_for(r, base, {"strutil.c": fixed_rev})))
    fixed_count = sub(STRUTIL_C, "*s && *s != ' '", "*s")
    task("swerve-demo/cstr", "swerve-demo__cstr-2", r, base,
         diff_for(r, base, {"strutil.c": fixed_count}),
         diff_for(r, base, {"tests/test_strutil.c": TEST_STRUTIL_COUNT}),
         ["count_words"], p2p,
         "str_count stops counting at the first space.", cc,
         wrong=diff_for(r, base, {"strutil.c": sub(STRUTIL_C, "*s && *s != ' '", "*s && *s != 'p'")}),
         broken=corrupt(diff_for(r, base, {"strutil.c": fixed_count})))

    # jsslug: JavaScript + node --test (TAP reporter)
    r = os.path.join(repos, "jsslug")
    os.makedirs(r)
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"lib/slug.js": SLUG_JS, "test/slug.test.js": SLUG_TEST,
                      "package.json": '{"name": "jsslug", "version": "1.0.0"}\n'},
                  "slug: slugify and truncate")
    js = {"test_cmd": "node --test --test-reporter=tap test/", "log_parser": "tap", "timeout_s": 60}
    p2p = ["slugify lowercases", "truncate keeps short text"]
    fixed_dash = sub(SLUG_JS, "replace(/[^a-z0-9]/g, '-')",
                     "replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '')")
    task("swerve-demo/jsslug", "swerve-demo__jsslug-1", r, base,
         diff_for(r, base, {"lib/slug.js": fixed_dash}),
         diff_for(r, base, {"test/slug.test.js": SLUG_TEST_DASH}),
         ["slugify collapses separators"], p2p,
         "slugify('Hello,  World!') gives 'hello---world-' instead of 'hello-world'.", js,
         wrong=diff_for(r, base, {"lib/slug.js": sub(SLUG_JS, "replace(/[^a-z0-9]/g, '-')", "replace(/[^a-z0-9]+/g, '-')")}),
         broken=corrupt(diff_for(r, base, {"lib/slug.js": fixed_dash})))
    fixed_trunc = sub(SLUG_JS, "text.slice(0, n) + '...'", "text.slice(0, Math.max(0, n - 3)) + '...'")
    task("swerve-demo/jsslug", "swerve-demo__jsslug-2", r, base,
         diff_for(r, base, {"lib/slug.js": fixed_trunc}),
         diff_for(r, base, {"test/slug.test.js": SLUG_TEST_TRUNC}),
         ["truncate counts the ellipsis"], p2p,
         "truncate(text, n) returns n + 3 characters; the ellipsis must count.", js,
         wrong=diff_for(r, base, {"lib/slug.js": sub(SLUG_JS, "if (text.length <= n) return text;", "if (text.length <= n) return text;\n  if (n < 3) return '...';")}),
         broken=corrupt(diff_for(r, base, {"lib/slug.js": fixed_trunc})))

    with open(os.path.join(out, "tasks.jsonl"), "w") as f:
        for t in tasks:
            f.write(json.dumps(t) + "\n")
    for kind, rows in preds.items():
        with open(os.path.join(out, "predictions-%s.jsonl" % kind), "w") as f:
            for p in rows:
                f.write(json.dumps(p) + "\n")
    # one prediction per task, rotating through the kinds: what a model run looks like
    kinds = ["gold", "wrong", "empty", "broken"]
    with open(os.path.join(out, "predictions-mixed.jsonl"), "w") as f:
        for i, t in enumerate(tasks):
            kind = kinds[i % len(kinds)]
            p = next(p for p in preds[kind] if p["instance_id"] == t["instance_id"])
            f.write(json.dumps(dict(p, model_name_or_path="demo-mixed")) + "\n")
    with open(os.path.join(out, "repos.txt"), "w") as f:
        for name in ("pycalc", "cstr", "jsslug"):
            f.write("swerve-demo/%s %s\n" % (name, os.path.join(os.path.abspath(repos), name)))
    print("generated %d tasks in 3 repositories under %s" % (len(tasks), out))


# --------------------------------------------------------------- pyflaky ----
# Only with --with-flaky (the default output does not change): one task whose
# PASS_TO_PASS test passes or fails with the parity of the clock's
# microseconds, as a timing-dependent test does. `swerve validate` must reject
# it as flaky (tests/e2e/test_validate.c).
FLAKY_PY = '''"""flaky - a helper with a bug, and a test suite with a racy test."""


def double(x):
    return x + x + 1
'''

TEST_FLAKY = '''import time

from flaky import double


def test_double_zero_is_int():
    assert isinstance(double(0), int)


def test_racy():
    # stands for a timing-dependent test: fails about every other run
    assert (time.time_ns() // 1000) % 2 == 0
'''

TEST_FLAKY_DOUBLE = TEST_FLAKY + '''

def test_double():
    assert double(2) == 4
'''


def build_flaky(out):
    """Adds repos/pyflaky, OUTDIR/tasks-flaky.jsonl and its line in repos.txt."""
    r = os.path.join(out, "repos", "pyflaky")
    shutil.rmtree(r, ignore_errors=True)
    os.makedirs(r)
    git(r, "init", "-q", "-b", "main")
    base = commit(r, {"flaky.py": FLAKY_PY, "tests/test_flaky.py": TEST_FLAKY},
                  "flaky: double")
    t = {"instance_id": "swerve-demo__pyflaky-1", "repo": "swerve-demo/pyflaky",
         "base_commit": base,
         "patch": diff_for(r, base, {"flaky.py": sub(FLAKY_PY, "x + x + 1", "x + x")}),
         "test_patch": diff_for(r, base, {"tests/test_flaky.py": TEST_FLAKY_DOUBLE}),
         "problem_statement": "double(2) returns 5.", "hints_text": "",
         "created_at": "2026-01-01T00:00:00Z", "version": "1.0",
         "environment_setup_commit": base,
         "FAIL_TO_PASS": json.dumps(["tests/test_flaky.py::test_double"]),
         "PASS_TO_PASS": json.dumps(["tests/test_flaky.py::test_double_zero_is_int",
                                     "tests/test_flaky.py::test_racy"]),
         "test_cmd": "python3 -m pytest -rA -p no:cacheprovider tests/test_flaky.py",
         "log_parser": "pytest", "timeout_s": 60}
    with open(os.path.join(out, "tasks-flaky.jsonl"), "w") as f:
        f.write(json.dumps(t) + "\n")
    with open(os.path.join(out, "repos.txt"), "a") as f:
        f.write("swerve-demo/pyflaky %s\n" % os.path.abspath(r))
    print("generated 1 flaky task under %s" % out)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--with-flaky"]
    if len(args) != 1:
        sys.exit("usage: generate.py OUTDIR [--with-flaky]")
    build(args[0])
    if "--with-flaky" in sys.argv[1:]:
        build_flaky(args[0])

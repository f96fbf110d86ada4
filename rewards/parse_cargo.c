/* parse_cargo.c - `cargo test` (libtest) logs.
 * Does: record "test path::name ... ok|FAILED|ignored" lines, including doc
 * tests ("test src/lib.rs - add (line 3) ... ok") and results that land on a
 * later line because the test printed in between (--nocapture). " - should
 * panic" is dropped from the id. Lines in the "failures:" report (captured
 * output) are not results. Does not: read benchmark lines. */
#include "parsers.h"

static int cargo_word(const char *s, size_t n, enum swerve_test_status *st)
{
	s = trim(s, &n);
	if (eq(s, n, "ok"))
		*st = SWERVE_TEST_PASSED;
	else if (eq(s, n, "FAILED"))
		*st = SWERVE_TEST_FAILED;
	else if (eq(s, n, "ignored") || starts_with(s, n, "ignored, "))
		*st = SWERVE_TEST_SKIPPED;
	else
		return 0;
	return 1;
}

static int cargo_set(struct swerve_testlog *log, const char *name, size_t n,
                     enum swerve_test_status st)
{
	if (ends_with(name, n, " - should panic"))
		n -= strlen(" - should panic");
	return testlog_put(log, name, n, st);
}

int parse_cargo(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s, *pending = NULL;
	size_t n, pending_len = 0;
	int rc, results = 0, running = 0, report = 0;
	enum swerve_test_status st;

	while (line_next(&it, &s, &n)) {
		/* "failures:" / "successes:" open the report of captured output,
		 * which ends at "test result:": a test printing "test x ... ok"
		 * there must not rewrite x's status */
		if (eq(s, n, "failures:") || eq(s, n, "successes:")) {
			report = 1;
			pending = NULL;
			continue;
		}
		if (starts_with(s, n, "test result: ") || starts_with(s, n, "running ")) {
			report = 0;
		} else if (report) {
			continue;
		}
		if (starts_with(s, n, "test ") && !starts_with(s, n, "test result: ")) {
			const char *dots = find(s, n, " ... ");
			size_t dl = 5;
			if (!dots && ends_with(s, n, " ...")) {
				dots = s + n - 4;
				dl = 4;
			}
			if (dots && dots < s + 6)
				dots = NULL; /* "test ... ok": no name */
			if (dots) {
				const char *name = s + 5;
				size_t nl = (size_t)(dots - name);
				const char *rest = dots + dl;
				size_t rl = (size_t)(s + n - rest);
				pending = NULL;
				if (cargo_word(rest, rl, &st)) {
					if ((rc = cargo_set(log, name, nl, st)) != 0)
						return rc;
				} else if (!starts_with(rest, rl, "bench:")) {
					pending = name;
					pending_len = nl;
				}
				continue;
			}
		}
		if (pending) {
			if (cargo_word(s, n, &st)) {
				if ((rc = cargo_set(log, pending, pending_len, st)) != 0)
					return rc;
				pending = NULL;
				continue;
			}
		}
		if (starts_with(s, n, "running "))
			running++;
		else if (starts_with(s, n, "test result: "))
			results++;
	}
	if (results < running)
		testlog_mark_incomplete(log);
	return 0;
}

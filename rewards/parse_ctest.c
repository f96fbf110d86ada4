/* parse_ctest.c - CTest logs.
 * Does: record " 1/5 Test #1: name ......   Passed    0.01 sec" lines:
 * Passed -> PASSED; ***Failed, ***Exception (a crash), ***Timeout -> FAILED;
 * ***Skipped and "Not Run (Disabled)" -> SKIPPED; ***Not Run (missing
 * executable, failed fixture) -> ERROR. Does not: read the test's output. */
#include "parsers.h"

int parse_ctest(struct swerve_testlog *log, const char *data, size_t len)
{
	struct line_iter it = {data, data + len};
	const char *s;
	size_t n;
	int rc, summary = 0;

	while (line_next(&it, &s, &n)) {
		if (find(s, n, "tests passed, ") || find(s, n, "tests passed"))
			summary = 1;
		const char *t = find(s, n, "Test ");
		if (!t)
			continue;
		const char *p = t + 5, *e = s + n;
		while (p < e && *p == ' ')
			p++;
		if (p >= e || *p != '#')
			continue;
		p++;
		const char *digits = p;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
		if (p == digits || p + 2 > e || p[0] != ':' || p[1] != ' ')
			continue;
		const char *name = p + 2;
		/* the name ends at " ." (dot leaders) or " *" / "***" */
		const char *q = name;
		while (q < e && !(q[0] == ' ' && q + 1 < e && (q[1] == '.' || q[1] == '*')))
			q++;
		if (q >= e)
			continue;
		size_t nl = (size_t)(q - name);
		const char *r = q;
		while (r < e && (*r == ' ' || *r == '.'))
			r++;
		size_t rl = (size_t)(e - r);
		enum swerve_test_status st;
		if (starts_with(r, rl, "Passed"))
			st = SWERVE_TEST_PASSED;
		else if (starts_with(r, rl, "***Skipped") || find(r, rl, "Not Run (Disabled)"))
			st = SWERVE_TEST_SKIPPED;
		else if (starts_with(r, rl, "***Not Run"))
			st = SWERVE_TEST_ERROR;
		else if (starts_with(r, rl, "***Failed") || starts_with(r, rl, "***Exception") ||
		         starts_with(r, rl, "***Timeout"))
			st = SWERVE_TEST_FAILED;
		else
			continue;
		if ((rc = testlog_put(log, name, nl, st)) != 0)
			return rc;
	}
	if (!summary)
		testlog_mark_incomplete(log);
	return 0;
}

/* bench_parse.c - log parser throughput (issue 5): a 50 MB pytest log and a
 * 50 MB JUnit XML file, generated here at run time (nothing committed), plus
 * 50 MB of unittest, go -v and cargo output. Goal: >= 200 MB/s for the
 * line-based parsers. CPU time, best of 5 (the dev box is shared). Baselines
 * in the same run on the same bytes: SWE-bench's parse_log_pytest algorithm
 * in Python (its code, re-typed below) and Python's xml.etree.ElementTree
 * (expat underneath) for the JUnit file, best of 3.
 * Usage: bench_parse [MB [parser]]   (default 50 MB, every parser) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rewards/rewards.h"

struct buf {
	char *p;
	size_t n, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	if (b->cap - b->n < 4096) {
		b->cap = b->cap ? b->cap * 2 : 1 << 20;
		b->p = realloc(b->p, b->cap);
		if (!b->p) {
			fprintf(stderr, "bench_parse: out of memory\n");
			exit(1);
		}
	}
	va_start(ap, fmt);
	b->n += (size_t)vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
	va_end(ap);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the dev box is shared */
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A pytest -v -rA log: verbose lines for every test, output and tracebacks
 * for failures, then the -rA summary (as SWE-bench's harness runs it). */
static void gen_pytest(struct buf *b, size_t target)
{
	size_t i = 0;
	put(b,
	    "============================= test session starts ==============================\n");
	while (b->n < target * 6 / 10) {
		const char *st = i % 50 == 7 ? "FAILED" : i % 97 == 3 ? "SKIPPED" : "PASSED";
		put(b,
		    "tests/pkg%zu/test_mod%zu.py::TestThing::test_case_%zu[param-%zu-x y] %s "
		    "          [%3zu%%]\n",
		    i % 13, i % 101, i, i % 7, st, (i / 1000) % 100);
		if (i % 50 == 7)
			put(b,
			    "    def test_case_%zu(self):\n>       assert compute(%zu) == %zu\n"
			    "E       AssertionError: assert 1 == 2\n",
			    i, i, i + 1);
		i++;
	}
	put(b,
	    "=========================== short test summary info ============================\n");
	for (size_t k = 0; b->n < target; k++) {
		const char *st = k % 50 == 7 ? "FAILED" : "PASSED";
		put(b,
		    "%s tests/pkg%zu/test_mod%zu.py::TestThing::test_case_%zu[param-%zu-x y]%s\n",
		    st, k % 13, k % 101, k, k % 7,
		    k % 50 == 7 ? " - AssertionError: assert 1 == 2" : "");
	}
	put(b, "======== 100 failed, 4900 passed in 12.34s ========\n");
}

static void gen_junit(struct buf *b, size_t target)
{
	put(b,
	    "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite name=\"pytest\">\n");
	for (size_t i = 0; b->n < target; i++) {
		if (i % 50 == 7)
			put(b,
			    "<testcase classname=\"tests.pkg%zu.test_mod%zu.TestThing\" "
			    "name=\"test_case_%zu[param-%zu]\" time=\"0.001\"><failure "
			    "message=\"AssertionError: assert 1 == 2\">def test():\n&gt;   assert "
			    "compute(%zu) == 2\nE   AssertionError</failure></testcase>\n",
			    i % 13, i % 101, i, i % 7, i);
		else
			put(b,
			    "<testcase classname=\"tests.pkg%zu.test_mod%zu.TestThing\" "
			    "name=\"test_case_%zu[param-%zu]\" time=\"0.001\" />\n",
			    i % 13, i % 101, i, i % 7);
	}
	put(b, "</testsuite></testsuites>\n");
}

static void gen_unittest(struct buf *b, size_t target)
{
	for (size_t i = 0; b->n < target; i++)
		put(b, "test_case_%zu (pkg%zu.tests.Test%zu.test_case_%zu) ... %s\n", i, i % 13,
		    i % 101, i, i % 50 == 7 ? "FAIL" : "ok");
	put(b, "\nRan 1 tests in 1.0s\n");
}

static void gen_go(struct buf *b, size_t target)
{
	for (size_t i = 0; b->n < target; i++)
		put(b,
		    "=== RUN   TestThing%zu/case_%zu\n    thing_test.go:%zu: checking\n"
		    "    --- %s: TestThing%zu/case_%zu (0.00s)\n",
		    i / 10, i, i % 500, i % 50 == 7 ? "FAIL" : "PASS", i / 10, i);
	put(b, "FAIL\texample.com/x\t1.0s\n");
}

static void gen_cargo(struct buf *b, size_t target)
{
	put(b, "running 1 tests\n");
	for (size_t i = 0; b->n < target; i++)
		put(b, "test module%zu::tests::case_%zu ... %s\n", i % 13, i,
		    i % 50 == 7 ? "FAILED" : "ok");
	put(b, "test result: FAILED. 1 passed; 1 failed\n");
}

/* Best of 3 runs: MB/s and the number of tests found. */
static double bench(const char *parser, const struct buf *b, size_t *ntests)
{
	double best = 1e30;
	for (int r = 0; r < 5; r++) {
		struct swerve_testlog *log;
		double t0 = now();
		if (swerve_log_parse(&log, parser, b->p, b->n, 0) != 0) {
			fprintf(stderr, "bench_parse: %s: %s\n", parser, swerve_error_last());
			exit(1);
		}
		double t = now() - t0;
		*ntests = swerve_testlog_count_tests(log);
		swerve_testlog_free(log);
		if (t < best)
			best = t;
	}
	return (double)b->n / 1e6 / best;
}

/* Runs a Python baseline over the file; returns MB/s or -1 if unavailable. */
static double python_baseline(const char *script, const char *path, size_t bytes, long *ntests)
{
	const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "%s -c '%s' '%s' 2>/dev/null", py, script, path);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	double secs = -1;
	if (fscanf(p, "%lf %ld", &secs, ntests) != 2)
		secs = -1;
	pclose(p);
	return secs > 0 ? (double)bytes / 1e6 / secs : -1;
}

/* SWE-bench's parse_log_pytest (swebench/harness/log_parsers), timed on the
 * same bytes, best of 3. */
static const char *py_pytest =
        "import sys, time\n"
        "STATUSES = (\"FAILED\", \"PASSED\", \"SKIPPED\", \"ERROR\", \"XFAIL\")\n"
        "def parse_log_pytest(log):\n"
        "    m = {}\n"
        "    for line in log.split(\"\\n\"):\n"
        "        if any([line.startswith(x) for x in STATUSES]):\n"
        "            if line.startswith(\"FAILED\"):\n"
        "                line = line.replace(\" - \", \" \")\n"
        "            tc = line.split()\n"
        "            if len(tc) <= 1:\n"
        "                continue\n"
        "            m[tc[1]] = tc[0]\n"
        "    return m\n"
        "text = open(sys.argv[1], errors=\"replace\").read()\n"
        "best = 1e30\n"
        "for _ in range(3):\n"
        "    t0 = time.process_time(); m = parse_log_pytest(text); best = min(best, "
        "time.process_time() - t0)\n"
        "print(best, len(m))\n";

static const char *py_junit = "import sys, time\n"
                              "import xml.etree.ElementTree as ET\n"
                              "best = 1e30\n"
                              "for _ in range(3):\n"
                              "    t0 = time.process_time(); n = 0\n"
                              "    for ev, el in ET.iterparse(sys.argv[1]):\n"
                              "        if el.tag == \"testcase\":\n"
                              "            n += 1; el.clear()\n"
                              "    best = min(best, time.process_time() - t0)\n"
                              "print(best, n)\n";

int main(int argc, char **argv)
{
	size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 50;
	if (mb == 0)
		mb = 50;
	size_t target = mb * 1000 * 1000;
	struct {
		const char *what, *parser;
		void (*gen)(struct buf *, size_t);
		const char *py;
	} cases[] = {
	        {"pytest -v -rA log", "pytest", gen_pytest, py_pytest},
	        {"JUnit XML", "junit", gen_junit, py_junit},
	        {"unittest -v log", "unittest", gen_unittest, NULL},
	        {"go test -v log", "go", gen_go, NULL},
	        {"cargo test log", "cargo", gen_cargo, NULL},
	};
	printf("log parser throughput, %zu MB inputs generated in memory, best of 5, CPU time "
	       "(goal: >= 200 "
	       "MB/s for line-based parsers)\n",
	       mb);
	printf("%-20s %-9s %10s %12s  %-34s %10s %12s\n", "input", "parser", "MB/s", "tests",
	       "baseline (same bytes)", "MB/s", "speedup");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		if (argc > 2 && strcmp(argv[2], cases[c].parser) != 0)
			continue;
		struct buf b = {0};
		cases[c].gen(&b, target);
		size_t n;
		double mbs = bench(cases[c].parser, &b, &n);
		printf("%-20s %-9s %10.0f %12zu", cases[c].what, cases[c].parser, mbs, n);
		if (cases[c].py) {
			char path[] = "/tmp/swerve-bench-parse-XXXXXX";
			int fd = mkstemp(path);
			long pn = 0;
			double base = -1;
			if (fd >= 0 && write(fd, b.p, b.n) == (ssize_t)b.n)
				base = python_baseline(cases[c].py, path, b.n, &pn);
			if (fd >= 0) {
				close(fd);
				unlink(path);
			}
			const char *bname = c == 0 ? "SWE-bench parse_log_pytest (Python)"
			                           : "Python ElementTree.iterparse";
			if (base > 0)
				printf("  %-34s %10.1f %11.1fx\n", bname, base, mbs / base);
			else
				printf("  %-34s %10s %12s\n", bname, "n/a", "-");
		} else {
			printf("  %-34s %10s %12s\n", "-", "", "");
		}
		free(b.p);
	}
	return 0;
}

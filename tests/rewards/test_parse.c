/* test_parse.c - log parsers on golden logs produced by really running the
 * tools (tests/rewards/logs/generate.sh), plus hand-written cases for forms
 * the tools here cannot produce (Django's old names, xdist, Surefire,
 * jest-junit, ANSI colours, truncation). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rewards/rewards.h"
#include "tests/support/support.h"

#define LOGS "tests/rewards/logs/"

struct expect {
	const char *name;
	const char *status; /* NULL: must be missing */
};

static struct swerve_testlog *parse_text(const char *parser, const char *text, unsigned flags)
{
	struct swerve_testlog *log = NULL;
	int rc = swerve_log_parse(&log, parser, text, strlen(text), flags);
	cr_assert_eq(rc, 0, "parse (%s): %s", parser ? parser : "auto", swerve_error_last());
	return log;
}

static struct swerve_testlog *parse_file(const char *file, const char *parser, unsigned flags)
{
	size_t len;
	char *data = ts_read_file(file, &len);
	cr_assert_not_null(data, "cannot read %s (run from the repository root)", file);
	struct swerve_testlog *log = NULL;
	int rc = swerve_log_parse(&log, parser, data, len, flags);
	cr_assert_eq(rc, 0, "%s: %s", file, swerve_error_last());
	free(data);
	return log;
}

static void check(const struct swerve_testlog *log, const struct expect *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		enum swerve_test_status st;
		int rc = swerve_testlog_get(&st, log, e[i].name);
		if (!e[i].status) {
			cr_expect_eq(rc, SWERVE_ENOTFOUND, "'%s' should be missing, is %s",
			             e[i].name, rc == 0 ? swerve_test_status_name(st) : "?");
			continue;
		}
		cr_expect_eq(rc, 0, "'%s' missing (expected %s)", e[i].name, e[i].status);
		if (rc == 0)
			cr_expect_str_eq(swerve_test_status_name(st), e[i].status, "'%s'",
			                 e[i].name);
	}
}

#define CHECK(log, ...)                                                                            \
	do {                                                                                       \
		const struct expect e_[] = {__VA_ARGS__};                                          \
		check(log, e_, sizeof(e_) / sizeof(e_[0]));                                        \
	} while (0)

/* ---- pytest ------------------------------------------------------------------- */

#define PYTEST_CALC                                                                                \
	{"tests/test_calc.py::test_add", "PASSED"},                                                \
	        {"tests/test_calc.py::test_sub_fails", "FAILED"},                                  \
	        {"tests/test_calc.py::test_param[1-2]", "PASSED"},                                 \
	        {"tests/test_calc.py::test_param[x y-[z]]", "PASSED"},                             \
	        {"tests/test_calc.py::test_param[a - b-c]", "FAILED"},                             \
	        {"tests/test_calc.py::test_xfail", "XFAIL"},                                       \
	        {"tests/test_calc.py::test_xpass", "PASSED"},                                      \
	        {"tests/test_calc.py::test_error", "ERROR"},                                       \
	        {"tests/test_calc.py::TestGroup::test_in_class", "PASSED"},                        \
	{                                                                                          \
		"tests/test_calc.py::TestGroup::test_in_class_fails", "FAILED"                     \
	}

Test(pytest, ra_summary_golden)
{
	struct swerve_testlog *log = parse_file(LOGS "pytest_ra.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "pytest");
	/* SWE-bench's lists name a parametrised id with spaces by its first word */
	CHECK(log, PYTEST_CALC, {"[1]", NULL}, {"tests/test_calc.py::test_param[x", "PASSED"},
	      {"tests/test_calc.py::test_param[a", "FAILED"});
	/* -rA lists a skip by location only: no node id to record */
	CHECK(log, {"tests/test_calc.py::test_skipped", NULL});
	cr_expect_eq(swerve_testlog_count(log), 12, "10 tests and 2 SWE-bench names");
	cr_expect_eq(swerve_testlog_count_tests(log), 10);
	cr_expect_eq(swerve_testlog_count_status(log, SWERVE_TEST_FAILED), 3,
	             "aliases not counted");
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(pytest, verbose_golden_has_skips_with_reasons)
{
	struct swerve_testlog *log = parse_file(LOGS "pytest_verbose.log", "pytest", 0);
	CHECK(log, PYTEST_CALC, {"tests/test_calc.py::test_skipped", "SKIPPED"});
	cr_expect_eq(swerve_testlog_count(log), 13);
	swerve_testlog_free(log);
}

Test(pytest, crash_mid_run_keeps_earlier_results_and_is_incomplete)
{
	struct swerve_testlog *log = parse_file(LOGS "pytest_crash.log", NULL, 0);
	CHECK(log, {"tests/test_crash.py::test_before_crash", "PASSED"},
	      {"tests/test_crash.py::test_crash", NULL},
	      {"tests/test_crash.py::test_after_crash", NULL});
	cr_expect_eq(swerve_testlog_incomplete(log), 1);
	swerve_testlog_free(log);
}

Test(pytest, truncated_log_drops_the_partial_last_line)
{
	size_t len;
	char *data = ts_read_file(LOGS "pytest_truncated.log", &len);
	cr_assert_not_null(data);
	cr_assert_neq(data[len - 1], '\n', "fixture must end mid-line");
	struct swerve_testlog *log = NULL;
	cr_assert_eq(swerve_log_parse(&log, "pytest", data, len, SWERVE_LOG_TRUNCATED), 0);
	cr_expect_eq(swerve_testlog_incomplete(log), 1);
	CHECK(log, {"tests/test_calc.py::test_add", "PASSED"});
	swerve_testlog_free(log);
	/* a cut id must not be recorded as a (different, shorter) test */
	const char *cut = "PASSED tests/a.py::test_one\nFAILED tests/a.py::test_lo";
	cr_assert_eq(swerve_log_parse(&log, "pytest", cut, strlen(cut), SWERVE_LOG_TRUNCATED), 0);
	CHECK(log, {"tests/a.py::test_one", "PASSED"}, {"tests/a.py::test_lo", NULL});
	swerve_testlog_free(log);
	free(data);
}

Test(pytest, summary_after_verbose_wins_and_xdist_and_ansi)
{
	const char *text =
	        "\x1b[32mtests/a.py::test_x PASSED\x1b[0m                      [ 50%]\r\n"
	        "[gw1] [ 75%] FAILED tests/a.py::test_y[a b] \r\n"
	        "\x1b[1m\x1b[31mERROR\x1b[0m tests/a.py::test_x - teardown failed\n"
	        "ERROR tests/b.py\n"
	        "========== 1 failed, 1 error in 0.1s ==========\n";
	struct swerve_testlog *log = parse_text(NULL, text, 0);
	CHECK(log, {"tests/a.py::test_x", "ERROR"}, {"tests/a.py::test_y[a b]", "FAILED"},
	      {"tests/b.py", "ERROR"});
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(pytest, swebench_names_for_options_and_matplotlib)
{
	const char *text =
	        "PASSED tests/test_io.py::test_read[/data/sub/file.dcm]\n"
	        "FAILED tests/test_bb.py::test_click[MouseButton.LEFT-MouseButton.RIGHT] - x\n"
	        "PASSED tests/test_g.py::test_glob[/a/*.py]\n";
	struct swerve_testlog *log = parse_text("pytest", text, 0);
	CHECK(log, {"tests/test_io.py::test_read[/data/sub/file.dcm]", "PASSED"},
	      {"tests/test_io.py::test_read[/file.dcm]", "PASSED"},
	      {"tests/test_bb.py::test_click[MouseButton.LEFT-MouseButton.RIGHT]", "FAILED"},
	      {"tests/test_bb.py::test_click[1-3]", "FAILED"},
	      {"tests/test_g.py::test_glob[/a/*.py]", "PASSED"},
	      {"tests/test_g.py::test_glob[/*.py]", NULL});
	cr_expect_eq(swerve_testlog_count(log), 5);
	swerve_testlog_free(log);
}

Test(pytest, results_printed_by_code_under_test_are_not_results)
{
	/* tests/test_a.py fails to import; code run by another test prints fake
	 * result lines, which pytest shows in the PASSES section */
	const char *text = "============ test session starts ============\n"
	                   "collected 1 item / 1 error\n"
	                   "tests/test_b.py::test_other PASSED       [100%]\n"
	                   "================== ERRORS ===================\n"
	                   "_____ ERROR collecting tests/test_a.py _____\n"
	                   "E   ImportError: cannot import name 'x'\n"
	                   "================== PASSES ===================\n"
	                   "_________________ test_other _______________\n"
	                   "----------- Captured stdout call ------------\n"
	                   "PASSED tests/test_a.py::test_target\n"
	                   "tests/test_a.py::test_target PASSED\n"
	                   "========== short test summary info ==========\n"
	                   "PASSED tests/test_b.py::test_other\n"
	                   "ERROR tests/test_a.py\n"
	                   "========= 1 passed, 1 error in 0.10s ========\n"
	                   "PASSED tests/test_a.py::test_target\n";
	struct swerve_testlog *log = parse_text(NULL, text, 0);
	CHECK(log, {"tests/test_b.py::test_other", "PASSED"}, {"tests/test_a.py", "ERROR"},
	      {"tests/test_a.py::test_target", NULL});
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

/* ---- unittest / Django -------------------------------------------------------- */

Test(unittest, golden_verbose_with_docstring_and_interleaved_output)
{
	struct swerve_testlog *log = parse_file(LOGS "unittest.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "unittest");
	CHECK(log, {"test_ok (test_ut.Basic.test_ok)", "PASSED"},
	      {"test_ok (test_ut.Basic)", "PASSED"}, {"test_fail (test_ut.Basic)", "FAILED"},
	      {"test_error (test_ut.Basic)", "ERROR"}, {"test_skip (test_ut.Basic)", "SKIPPED"},
	      {"test_expected_failure (test_ut.Basic)", "XFAIL"},
	      {"Checks that docstrings name tests.", "PASSED"},
	      {"test_docstring (test_ut.Basic)", "PASSED"},
	      {"test_noisy (test_ut.Basic)", "PASSED"},
	      /* a failing subtest fails its test */
	      {"test_subtests (test_ut.Basic.test_subtests) (i=1)", "FAILED"},
	      {"test_subtests (test_ut.Basic)", "FAILED"});
	swerve_testlog_free(log);
}

Test(unittest, django_runner_golden)
{
	struct swerve_testlog *log = parse_file(LOGS "django.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "unittest");
	CHECK(log, {"test_ok (app.tests.Views)", "PASSED"},
	      {"test_fail (app.tests.Views)", "FAILED"}, {"test_error (app.tests.Models)", "ERROR"},
	      {"test_skip (app.tests.Views.test_skip)", "SKIPPED"},
	      {"test_xfail (app.tests.Views)", "XFAIL"},
	      {"Regression test for #12345: docstrings name tests.", "PASSED"},
	      {"test_docstring (app.tests.Views)", "PASSED"},
	      /* "... Applying migrations... OK" is the test's output, not its status */
	      {"test_noisy (app.tests.Views)", "PASSED"});
	cr_expect_eq(swerve_testlog_count(log), 15);
	cr_expect_eq(swerve_testlog_count_tests(log), 7,
	             "aliases (old spellings, header) not counted");
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(unittest, golden_quiet_only_failures_are_named)
{
	struct swerve_testlog *log = parse_file(LOGS "unittest_quiet.log", "unittest", 0);
	CHECK(log, {"test_fail (test_ut.Basic)", "FAILED"}, {"test_error (test_ut.Basic)", "ERROR"},
	      {"test_subtests (test_ut.Basic)", "FAILED"}, {"test_ok (test_ut.Basic)", NULL});
	swerve_testlog_free(log);
}

Test(unittest, django_old_names_and_output_before_ok)
{
	const char *text = "Creating test database for alias 'default'...\n"
	                   "test_a (admin_views.tests.AdminViewTests) ... ok\n"
	                   "test_b (admin_views.tests.AdminViewTests) ...  OK\n"
	                   "test_c (admin_views.tests.AdminViewTests) ... Applying migrations...\n"
	                   "  Applying sites.0001_initial... OK\n"
	                   "ok\n"
	                   "test_d (admin_views.tests.AdminViewTests)\n"
	                   "Regression test for #12345 ... FAIL\n"
	                   "test_e (admin_views.tests.AdminViewTests) ... skipped 'no db'\n"
	                   "test_f (admin_views.tests.AdminViewTests) ... unexpected success\n"
	                   "\n"
	                   "Ran 6 tests in 0.1s\n";
	struct swerve_testlog *log = parse_text("django", text, 0);
	CHECK(log, {"test_a (admin_views.tests.AdminViewTests)", "PASSED"},
	      {"test_b (admin_views.tests.AdminViewTests)", "PASSED"},
	      {"test_c (admin_views.tests.AdminViewTests)", "PASSED"},
	      {"Regression test for #12345", "FAILED"},
	      {"test_d (admin_views.tests.AdminViewTests)", "FAILED"},
	      {"test_e (admin_views.tests.AdminViewTests)", "SKIPPED"},
	      {"test_f (admin_views.tests.AdminViewTests)", "FAILED"});
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(unittest, no_ran_line_is_incomplete)
{
	struct swerve_testlog *log = parse_text("unittest", "test_a (m.C) ... ok\n", 0);
	cr_expect_eq(swerve_testlog_incomplete(log), 1);
	swerve_testlog_free(log);
}

/* ---- sympy -------------------------------------------------------------------- */

Test(sympy, golden)
{
	struct swerve_testlog *log = parse_file(LOGS "sympy.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "sympy");
	CHECK(log, {"test_ok", "PASSED"}, {"test_fails", "FAILED"}, {"test_error", "ERROR"},
	      {"test_xfail", "XFAIL"}, {"test_skipped", "SKIPPED"});
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

/* ---- go ----------------------------------------------------------------------- */

#define GO_EXPECT                                                                                  \
	{"TestAdd", "PASSED"}, {"TestFails", "FAILED"}, {"TestSkipped", "SKIPPED"},                \
	        {"TestTable", "FAILED"}, {"TestTable/one", "PASSED"},                              \
	        {"TestTable/two_words", "PASSED"}, {"TestTable/three", "FAILED"},                  \
	        {"TestZPanics", "FAILED"},                                                         \
	{                                                                                          \
		"TestZZNeverRuns", NULL                                                            \
	}

Test(go, verbose_golden_with_subtests_and_panic)
{
	struct swerve_testlog *log = parse_file(LOGS "go_v.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "go");
	CHECK(log, GO_EXPECT);
	cr_expect_eq(swerve_testlog_count(log), 8);
	swerve_testlog_free(log);
}

Test(go, json_golden_matches_verbose)
{
	struct swerve_testlog *log = parse_file(LOGS "go_json.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "gojson");
	CHECK(log, GO_EXPECT);
	cr_expect_eq(swerve_testlog_count(log), 8);
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(go, json_escapes_and_garbage_lines)
{
	const char *text = "not json at all\n"
	                   "{\"Action\":\"pass\",\"Test\":\"TestA/\\u00e9t\\u00e9\\\"q\\\"\"}\n"
	                   "{\"Action\":\"fail\",\"Test\":\"TestB\",\"Extra\":{\"x\":[1,\"}\"]}}\n"
	                   "{\"Action\":\"fail\",\"Test\":\"TestC\"\n"
	                   "{\"Action\":\"run\",\"Test\":\"TestD\"}\n";
	struct swerve_testlog *log = parse_text("gojson", text, 0);
	CHECK(log, {"TestA/\xc3\xa9t\xc3\xa9\"q\"", "PASSED"}, {"TestB", "FAILED"}, {"TestC", NULL},
	      {"TestD", NULL});
	cr_expect_eq(swerve_testlog_incomplete(log), 1, "no package result: cut short");
	swerve_testlog_free(log);
}

/* ---- cargo -------------------------------------------------------------------- */

Test(cargo, golden_with_nocapture_output_and_doctests)
{
	struct swerve_testlog *log = parse_file(LOGS "cargo.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "cargo");
	CHECK(log, {"tests::adds", "PASSED"}, {"tests::fails", "FAILED"},
	      {"tests::ignored", "SKIPPED"}, {"tests::noisy", "PASSED"},
	      {"tests::panics", "PASSED"}, {"integration_ok", "PASSED"},
	      {"src/lib.rs - add (line 3)", "PASSED"});
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(cargo, captured_output_in_failures_report_is_not_a_result)
{
	const char *text = "running 2 tests\n"
	                   "test tests::target ... FAILED\n"
	                   "test tests::other ... FAILED\n"
	                   "\n"
	                   "failures:\n"
	                   "\n"
	                   "---- tests::target stdout ----\n"
	                   "test tests::target ... ok\n"
	                   "\n"
	                   "failures:\n"
	                   "    tests::target\n"
	                   "    tests::other\n"
	                   "\n"
	                   "test result: FAILED. 0 passed; 2 failed; 0 ignored\n";
	struct swerve_testlog *log = parse_text("cargo", text, 0);
	CHECK(log, {"tests::target", "FAILED"}, {"tests::other", "FAILED"});
	cr_expect_eq(swerve_testlog_count(log), 2);
	swerve_testlog_free(log);
}

/* ---- TAP and node ------------------------------------------------------------- */

Test(tap, tap14_subtests_directives_bail_out)
{
	struct swerve_testlog *log = parse_file(LOGS "tap14.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "tap");
	CHECK(log, {"first thing works", "PASSED"}, {"second thing is broken", "FAILED"},
	      {"optional feature", "SKIPPED"}, {"known issue", "XFAIL"},
	      {"group of checks > inner one", "PASSED"}, {"group of checks > inner two", "FAILED"},
	      {"group of checks", "FAILED"});
	cr_expect_eq(swerve_testlog_incomplete(log), 1, "Bail out! means incomplete");
	swerve_testlog_free(log);
}

#define NODE_EXPECT                                                                                \
	{"adds numbers", "PASSED"}, {"fails on purpose", "FAILED"}, {"skipped one", "SKIPPED"},    \
	        {"math suite > nested passes", "PASSED"}, {"math suite > nested fails", "FAILED"}, \
	        {"math suite > inner > deep passes", "PASSED"}, {"math suite", "FAILED"},          \
	{                                                                                          \
		"nested fails", NULL                                                               \
	}

Test(tap, node_test_tap_golden_yaml_is_skipped)
{
	struct swerve_testlog *log = parse_file(LOGS "node_tap.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "tap");
	CHECK(log, NODE_EXPECT, {"todo one", "XFAIL"});
	cr_expect_eq(swerve_testlog_count(log), 9);
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(node, spec_golden_same_ids_as_tap)
{
	struct swerve_testlog *log = parse_file(LOGS "node_spec.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "node");
	CHECK(log, NODE_EXPECT);
	cr_expect_eq(swerve_testlog_count(log), 9);
	swerve_testlog_free(log);
}

Test(tap, cut_before_parent_names_children_by_subtest_comment)
{
	const char *text = "TAP version 14\n"
	                   "# Subtest: outer\n"
	                   "    ok 1 - a\n"
	                   "    not ok 2 - b\n";
	struct swerve_testlog *log = parse_text("tap", text, 0);
	CHECK(log, {"outer > a", "PASSED"}, {"outer > b", "FAILED"});
	cr_expect_eq(swerve_testlog_incomplete(log), 1);
	swerve_testlog_free(log);
}

/* ---- ctest -------------------------------------------------------------------- */

Test(ctest, golden)
{
	struct swerve_testlog *log = parse_file(LOGS "ctest.log", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "ctest");
	CHECK(log, {"passes", "PASSED"}, {"fails", "FAILED"}, {"crashes", "FAILED"},
	      {"missing_exe", "ERROR"}, {"skipper", "SKIPPED"});
	cr_expect_eq(swerve_testlog_count(log), 5);
	swerve_testlog_free(log);
}

/* ---- JUnit XML ---------------------------------------------------------------- */

Test(junit, pytest_junitxml_golden)
{
	struct swerve_testlog *log = parse_file(LOGS "junit_pytest.xml", NULL, 0);
	cr_assert_str_eq(swerve_testlog_parser(log), "junit");
	CHECK(log, {"tests.test_calc.test_add", "PASSED"},
	      {"tests.test_calc.test_sub_fails", "FAILED"},
	      {"tests.test_calc.test_param[x y-[z]]", "PASSED"},
	      {"tests.test_calc.test_skipped", "SKIPPED"}, {"tests.test_calc.test_xfail", "XFAIL"},
	      {"tests.test_calc.test_error", "ERROR"},
	      {"tests.test_calc.TestGroup.test_in_class_fails", "FAILED"});
	cr_expect_eq(swerve_testlog_count(log), 11);
	cr_expect_eq(swerve_testlog_incomplete(log), 0);
	swerve_testlog_free(log);
}

Test(junit, truncated_document_keeps_cases_read)
{
	struct swerve_testlog *log = parse_file(LOGS "junit_truncated.xml", "junit", 0);
	cr_expect_eq(swerve_testlog_incomplete(log), 1);
	CHECK(log, {"tests.test_calc.test_add", "PASSED"},
	      {"tests.test_calc.TestGroup.test_in_class", NULL});
	swerve_testlog_free(log);
}

Test(junit, surefire_and_jest_junit)
{
	const char *surefire =
	        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	        "<testsuite name=\"com.example.CalcTest\" tests=\"5\" failures=\"1\" "
	        "errors=\"1\">\n"
	        "  <testcase name=\"adds\" classname=\"com.example.CalcTest\" time=\"0.01\"/>\n"
	        "  <testcase name=\"fails\" classname=\"com.example.CalcTest\">\n"
	        "    <failure message=\"expected 2\" type=\"AssertionError\">trace</failure>\n"
	        "    <system-out><![CDATA[<error>not an element</error>]]></system-out>\n"
	        "  </testcase>\n"
	        "  <testcase name=\"errs\" classname=\"com.example.CalcTest\"><failure/><error "
	        "type=\"NPE\"/></testcase>\n"
	        "  <testcase name=\"skips\" "
	        "classname=\"com.example.CalcTest\"><skipped/></testcase>\n"
	        "  <testcase name=\"flaky\" classname=\"com.example.CalcTest\"><flakyFailure "
	        "message=\"once\"/></testcase>\n"
	        "</testsuite>\n";
	struct swerve_testlog *log = parse_text(NULL, surefire, 0);
	CHECK(log, {"com.example.CalcTest.adds", "PASSED"},
	      {"com.example.CalcTest.fails", "FAILED"}, {"com.example.CalcTest.errs", "ERROR"},
	      {"com.example.CalcTest.skips", "SKIPPED"}, {"com.example.CalcTest.flaky", "PASSED"});
	swerve_testlog_free(log);
	const char *jest =
	        "<testsuites name=\"jest tests\"><testsuite name=\"math\">"
	        "<testcase classname=\"math adds\" name=\"math adds\" time=\"0\"/>"
	        "<testcase classname=\"\" name=\"lonely\"><failure>x</failure></testcase>"
	        "</testsuite></testsuites>";
	log = parse_text("junit", jest, 0);
	CHECK(log, {"math adds", "PASSED"}, {"lonely", "FAILED"});
	swerve_testlog_free(log);
}

Test(junit, not_xml_is_an_error_naming_the_position)
{
	struct swerve_testlog *log = NULL;
	const char *text = "<testsuite><oops></testsuite>";
	cr_assert_eq(swerve_log_parse(&log, "junit", text, strlen(text), 0), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "line 1 column"), "%s", swerve_error_last());
	cr_expect_null(log);
}

Test(junit, entity_bomb_is_refused)
{
	const char *bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
	                   "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
	                   "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">"
	                   "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">"
	                   "<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">"
	                   "<!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">"
	                   "<!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">"
	                   "<!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\">]>"
	                   "<testsuite><testcase name=\"&h;\"/></testsuite>";
	struct swerve_testlog *log = NULL;
	cr_assert_eq(swerve_log_parse(&log, "junit", bomb, strlen(bomb), 0), SWERVE_EINVAL);
}

/* ---- selection and detection -------------------------------------------------- */

Test(parse, unknown_parser_is_einval_with_the_name)
{
	struct swerve_testlog *log = NULL;
	cr_assert_eq(swerve_log_parse(&log, "mocha", "x", 1, 0), SWERVE_EINVAL);
	cr_expect_not_null(strstr(swerve_error_last(), "'mocha'"));
	cr_expect_eq(swerve_log_parser_exists("mocha"), 0);
	cr_expect_eq(swerve_log_parser_exists("auto"), 1);
	cr_expect_eq(swerve_log_parser_exists("django"), 1);
}

Test(parse, detection_goes_by_the_majority_not_the_first_hint)
{
	/* a Python test suite whose output quotes go test's */
	const char *py = "============ test session starts ============\n"
	                 "--- PASS: TestQuoted (0.00s)\n"
	                 "tests/test_go_tool.py::test_wraps_go PASSED     [ 50%]\n"
	                 "tests/test_go_tool.py::test_other FAILED        [100%]\n";
	cr_expect_str_eq(swerve_log_detect(py, strlen(py)), "pytest");
	const char *go = "=== RUN   TestA\n--- PASS: TestA (0.00s)\n=== RUN   TestB\n"
	                 "PASSED x.py::y\n--- FAIL: TestB (0.00s)\nFAIL\n";
	cr_expect_str_eq(swerve_log_detect(go, strlen(go)), "go");
	const char *cargo = "running 1 test\ntest a::b ... ok\n\ntest result: ok. 1 passed\n";
	cr_expect_str_eq(swerve_log_detect(cargo, strlen(cargo)), "cargo");
	const char *ut = "test_a (m.C) ... ok\ntest_b (m.C) ... FAIL\n\nRan 2 tests in 0.1s\n";
	cr_expect_str_eq(swerve_log_detect(ut, strlen(ut)), "unittest");
}

Test(parse, undetectable_log_is_enotfound)
{
	struct swerve_testlog *log = NULL;
	const char *text = "hello\nworld\n";
	cr_assert_eq(swerve_log_parse(&log, NULL, text, strlen(text), 0), SWERVE_ENOTFOUND);
	cr_expect_null(swerve_log_detect("", 0));
}

Test(parse, empty_log_with_named_parser_is_empty_not_error)
{
	for (const char *const *p = swerve_log_parser_names(); *p; p++) {
		if (strcmp(*p, "junit") == 0)
			continue;
		struct swerve_testlog *log = NULL;
		cr_assert_eq(swerve_log_parse(&log, *p, "", 0, 0), 0, "%s", *p);
		cr_expect_eq(swerve_testlog_count(log), 0, "%s", *p);
		swerve_testlog_free(log);
	}
}

Test(testlog, many_ids_survive_rehash_and_last_status_wins)
{
	struct swerve_testlog *log;
	cr_assert_eq(swerve_testlog_new(&log), 0);
	char name[32];
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(name, sizeof(name), "t%d", i);
		cr_assert_eq(swerve_testlog_set(log, name, (size_t)n, SWERVE_TEST_FAILED), 0);
	}
	cr_assert_eq(swerve_testlog_set(log, "t777", 4, SWERVE_TEST_PASSED), 0);
	cr_expect_eq(swerve_testlog_count(log), 20000);
	enum swerve_test_status st;
	cr_assert_eq(swerve_testlog_get(&st, log, "t777"), 0);
	cr_expect_eq(st, SWERVE_TEST_PASSED);
	cr_assert_eq(swerve_testlog_get(&st, log, "t19999"), 0);
	cr_expect_eq(swerve_testlog_get(&st, log, "t20000"), SWERVE_ENOTFOUND);
	cr_expect_str_eq(swerve_testlog_at(log, 5)->name, "t5");
	cr_expect_eq(swerve_testlog_count_status(log, SWERVE_TEST_PASSED), 1);
	swerve_testlog_free(log);
}

Test(testlog, status_names_round_trip)
{
	for (int s = SWERVE_TEST_PASSED; s <= SWERVE_TEST_XFAIL; s++) {
		enum swerve_test_status back;
		cr_assert_eq(swerve_test_status_parse(&back, swerve_test_status_name(s)), 0);
		cr_expect_eq((int)back, s);
	}
	enum swerve_test_status back;
	cr_expect_eq(swerve_test_status_parse(&back, "passed"), SWERVE_EINVAL);
}

/* rewards.h - test-log parsers, grading and rewards: the public API of rewards/.
 *
 * Pure functions: bytes in, statuses out. No file or network I/O, no global
 * state; libc only, except the JUnit XML parser, which uses expat. Every
 * function is thread-safe on distinct objects. Errors follow sandbox/error.h.
 *
 * The pipeline, in order:
 *   1. swerve_log_parse(): a test log -> a swerve_testlog (test id -> status),
 *      by a named parser or the one swerve_log_detect() picks.
 *   2. swerve_grade_compute(): FAIL_TO_PASS / PASS_TO_PASS (and the optional
 *      FAIL_TO_FAIL / PASS_TO_FAIL) against the testlog -> FULL / PARTIAL / NO,
 *      per-category success/failure lists, or "untrusted" with a reason.
 *   3. swerve_outcome_from_grade() + swerve_reward(): the outcome -> a reward.
 *
 * Reward formula (also in README.md, "Tasks, log parsers, grading and rewards"):
 *
 *   outcome (first that applies, decided by the caller in this order):
 *     empty_patch        the prediction's model_patch is empty or null
 *     patch_failed       the patch did not apply
 *     sandbox_violation  the sandbox killed the run for a forbidden syscall
 *     timeout            the test run passed its deadline
 *     resolved           grade FULL (every FAIL_TO_PASS and PASS_TO_PASS passes)
 *     regression         some PASS_TO_PASS test did not pass
 *     unresolved         otherwise (some FAIL_TO_PASS did not pass)
 *
 *   R = spec.value[outcome]                                    in general
 *   R = u + (r - u) * f   when outcome = unresolved and spec.partial_credit,
 *       with r = value[resolved], u = value[unresolved],
 *       f = |FAIL_TO_PASS passing| / |FAIL_TO_PASS|.
 *
 *   Defaults: resolved 1, every other outcome 0, partial_credit off (binary).
 *   An untrusted grade or an infrastructure failure has no outcome and no
 *   reward: swerve_outcome_from_grade() returns SWERVE_EINVAL, and the caller
 *   retries or reports an error instead of a 0. */
#ifndef SWERVE_REWARDS_H
#define SWERVE_REWARDS_H

#include <stddef.h>

#include "sandbox/error.h"

/* ---- test statuses ---------------------------------------------------------- */

/* SWE-bench's names. XFAIL (an expected failure that failed) counts as passing. */
enum swerve_test_status {
	SWERVE_TEST_PASSED = 0,
	SWERVE_TEST_FAILED,
	SWERVE_TEST_SKIPPED,
	SWERVE_TEST_ERROR,
	SWERVE_TEST_XFAIL,
};

/* "PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"; "?" for other values. */
const char *swerve_test_status_name(enum swerve_test_status status);

/* Parses one of the names above (exact, upper case). SWERVE_EINVAL otherwise. */
int swerve_test_status_parse(enum swerve_test_status *out, const char *name);

/* ---- a parsed log: test id -> status ---------------------------------------- */

struct swerve_test_result {
	const char *name; /* the test id, NUL-terminated, owned by the testlog */
	enum swerve_test_status status;
	/* 1: another spelling of a test listed under its own name too, kept so
	 * that lists written by SWE-bench's parsers match (a parametrised id cut
	 * at its first space, unittest's pre-3.11 "name (mod.Class)", the
	 * "name (...)" header of a docstring-named test). Not counted as a test. */
	int alias;
};

/* Test ids in first-seen order; a later line about the same id replaces its
 * status (as SWE-bench's dict does: pytest's summary after its verbose lines). */
struct swerve_testlog;

int swerve_testlog_new(struct swerve_testlog **out);
void swerve_testlog_free(struct swerve_testlog *log);

/* Sets (adds or replaces) the status of the test id name[0..len). */
int swerve_testlog_set(struct swerve_testlog *log, const char *name, size_t len,
                       enum swerve_test_status status);

size_t swerve_testlog_count(const struct swerve_testlog *log);

/* The i-th result (0 <= i < count), borrowed. */
const struct swerve_test_result *swerve_testlog_at(const struct swerve_testlog *log, size_t i);

/* The status of test id name: 0, or SWERVE_ENOTFOUND (no message set: a
 * missing test is a normal result). */
int swerve_testlog_get(enum swerve_test_status *out, const struct swerve_testlog *log,
                       const char *name);

/* How many tests (aliases left out) have the given status. */
size_t swerve_testlog_count_status(const struct swerve_testlog *log,
                                   enum swerve_test_status status);

/* How many tests, aliases left out (swerve_testlog_count includes them). */
size_t swerve_testlog_count_tests(const struct swerve_testlog *log);

/* The parser that produced the log ("pytest", ...), or NULL for a hand-built one. */
const char *swerve_testlog_parser(const struct swerve_testlog *log);

/* 1 when the log visibly ended early: a runner's closing summary is missing
 * (pytest's "N passed in", unittest's "Ran N tests", cargo's "test result:",
 * go's package result, a TAP plan not met or "Bail out!", ...), a JUnit XML
 * document is cut or malformed, or SWERVE_LOG_TRUNCATED was passed. Results
 * seen before the cut are kept; tests never reported stay missing (and so
 * count as failed). */
int swerve_testlog_incomplete(const struct swerve_testlog *log);

/* ---- log parsers ------------------------------------------------------------ */

/* Parser names (swerve_log_parser_names() lists them):
 *   pytest    -rA summary (PASSED x / FAILED x - msg / ERROR x / XFAIL x / XPASS x)
 *             and verbose lines (x PASSED [ 10%]); xdist "[gw0] [ 5%] PASSED x";
 *             lines inside the ERRORS/FAILURES/PASSES sections (captured
 *             output) are not results
 *   unittest  unittest and Django runners at verbosity 2 ("name (mod.Class) ...
 *             ok"), docstring-named tests, output between name and status,
 *             "FAIL: name" / "ERROR: name" blocks, a failing subtest failing
 *             its test ("django" is an alias)
 *   sympy     sympy's bin/test ("test_x ok|F|E|f|s|X|w|T")
 *   go        go test -v ("--- PASS: TestX/sub (0.00s)")
 *   gojson    go test -json (one JSON object per line, subtests)
 *   cargo     cargo test ("test path ... ok|FAILED|ignored"), interleaved output;
 *             not inside the "failures:" report
 *   tap       TAP 13/14 with indented subtests, SKIP/TODO directives, YAML blocks
 *   junit     JUnit XML (pytest --junitxml, Maven Surefire, jest-junit), expat
 *   node      node --test's spec reporter (TAP output: use "tap")
 *   ctest     CTest ("1/5 Test #1: name ....   Passed")
 * Test ids: pytest node ids; unittest "name (module.Class)" (the Python 3.11
 * form "name (module.Class.name)" is recorded under both spellings, and a
 * docstring-named test under its docstring line and its "name (...)" header);
 * go "TestX/sub"; cargo "path::name"; TAP and node nested tests
 * "parent > child"; JUnit "classname.name" (name alone if classname is empty
 * or already starts it). ANSI escape sequences and CRs are stripped first. */

enum swerve_log_flags {
	/* The capture was cut (output cap): an unterminated last line is ignored
	 * and the testlog is marked incomplete. */
	SWERVE_LOG_TRUNCATED = 1u << 0,
};

/* Parses data[0..len) with the named parser, or with the detected one when
 * parser is NULL or "auto". SWERVE_EINVAL for an unknown parser name;
 * SWERVE_ENOTFOUND when detection recognises nothing; SWERVE_EINVAL when a
 * JUnit document holds no test case before its first XML error. A log in
 * which no test ran is not an error: it yields an empty testlog. */
int swerve_log_parse(struct swerve_testlog **out, const char *parser, const char *data, size_t len,
                     unsigned flags);

/* The parser name that fits data, or NULL. Looks at the first megabyte. */
const char *swerve_log_detect(const char *data, size_t len);

/* 1 if name is a parser name (or "auto" or an alias), else 0. */
int swerve_log_parser_exists(const char *name);

/* NULL-terminated list of parser names. */
const char *const *swerve_log_parser_names(void);

/* ---- grading (SWE-bench semantics, see SPEC.md section 4) ------------------- */

enum swerve_test_category {
	SWERVE_FAIL_TO_PASS = 0,
	SWERVE_PASS_TO_PASS,
	SWERVE_FAIL_TO_FAIL,
	SWERVE_PASS_TO_FAIL,
	SWERVE_CATEGORY_COUNT,
};

/* "FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL". */
const char *swerve_test_category_name(enum swerve_test_category c);

enum swerve_resolution {
	SWERVE_RESOLVED_FULL = 0,
	SWERVE_RESOLVED_PARTIAL,
	SWERVE_RESOLVED_NO,
};

/* "RESOLVED_FULL", "RESOLVED_PARTIAL", "RESOLVED_NO" (SWE-bench's strings). */
const char *swerve_resolution_name(enum swerve_resolution r);

/* The expected tests of one task, borrowed. FAIL_TO_FAIL and PASS_TO_FAIL may
 * be empty; they are reported and never change the resolution. */
struct swerve_grade_input {
	const char *const *tests[SWERVE_CATEGORY_COUNT];
	size_t n_tests[SWERVE_CATEGORY_COUNT];
};

/* Pass exit_code = SWERVE_EXIT_CODE_UNKNOWN where the test command's exit
 * status is not known; the exit-code consistency check is then skipped. */
#define SWERVE_EXIT_CODE_UNKNOWN (-1000)

struct swerve_grade {
	/* 0 when the log cannot be graded: no test ran, or the exit code
	 * contradicts the parsed statuses (non-zero exit without any FAILED or
	 * ERROR test, or zero exit with some). Then only untrusted_reason is
	 * meaningful and the run must not produce a reward. */
	int trusted;
	char untrusted_reason[160];
	enum swerve_resolution resolution;
	int resolved; /* resolution == FULL */
	/* Per category: success = PASSED or XFAIL; failure = anything else,
	 * including missing and SKIPPED. Names borrowed from the input. */
	const char **success[SWERVE_CATEGORY_COUNT];
	size_t n_success[SWERVE_CATEGORY_COUNT];
	const char **failure[SWERVE_CATEGORY_COUNT];
	size_t n_failure[SWERVE_CATEGORY_COUNT];
	/* |success| / (|success| + |failure|), 1 for an empty category. */
	double fraction[SWERVE_CATEGORY_COUNT];
};

/* Grades log against in. out is initialised here (call swerve_grade_dispose
 * after, also when trusted is 0). Fails only for lack of memory. */
int swerve_grade_compute(struct swerve_grade *out, const struct swerve_grade_input *in,
                         const struct swerve_testlog *log, int exit_code);
void swerve_grade_dispose(struct swerve_grade *grade);

/* ---- outcomes and rewards ---------------------------------------------------- */

enum swerve_outcome {
	SWERVE_OUTCOME_RESOLVED = 0,
	SWERVE_OUTCOME_UNRESOLVED,
	SWERVE_OUTCOME_REGRESSION,
	SWERVE_OUTCOME_PATCH_FAILED,
	SWERVE_OUTCOME_TIMEOUT,
	SWERVE_OUTCOME_SANDBOX_VIOLATION,
	SWERVE_OUTCOME_EMPTY_PATCH,
	SWERVE_OUTCOME_COUNT,
};

/* "resolved", "unresolved", "regression", "patch_failed", "timeout",
 * "sandbox_violation", "empty_patch": also the reward spec's keys. */
const char *swerve_outcome_name(enum swerve_outcome o);
int swerve_outcome_parse(enum swerve_outcome *out, const char *name);

/* resolved / regression / unresolved from a trusted grade; SWERVE_EINVAL
 * (with the grade's reason) for an untrusted one. */
int swerve_outcome_from_grade(enum swerve_outcome *out, const struct swerve_grade *grade);

struct swerve_reward_spec {
	double value[SWERVE_OUTCOME_COUNT];
	int partial_credit; /* 0 or 1: see the formula at the top */
};

/* Binary: resolved 1, everything else 0, no partial credit. Can't fail. */
void swerve_reward_spec_default(struct swerve_reward_spec *spec);

/* Sets one key from text (a flag or a file's field): an outcome name with a
 * finite number, or "partial_credit" with true/false/1/0. SWERVE_EINVAL with
 * the key and the reason otherwise; spec is unchanged on failure. */
int swerve_reward_spec_set(struct swerve_reward_spec *spec, const char *key, const char *value);

/* Same, from "key=value" (the --reward flag's form). */
int swerve_reward_spec_set_arg(struct swerve_reward_spec *spec, const char *arg);

/* The reward of an outcome; f2p_fraction is used only for partial credit
 * (clamped to [0, 1]). Can't fail. */
double swerve_reward(const struct swerve_reward_spec *spec, enum swerve_outcome outcome,
                     double f2p_fraction);

#endif

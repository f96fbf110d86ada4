#!/bin/sh
# generate.sh - regenerates the golden logs in this folder by really running
# the test tools on small throwaway projects (built in a temp dir):
#   pytest (-rA summary, -v verbose, --junitxml), unittest (-v), Django's runner
#   (docstring names, output between name and "ok"), sympy's runner, node --test (tap and
#   spec reporters), cargo test, go test -v and -json, a TAP 14 emitter, and
#   truncated / crashed variants. The tests in tests/rewards/ assert on these.
# Needs: /usr/bin/python3 with pytest (python3-pytest), python3-django and
# python3-sympy (not in make deps), node, cargo (or
# /root/.cargo/bin/cargo), go (golang-go; not in make deps), ctest (cmake).
# Missing tools are reported and their logs left as they are.
set -u
ulimit -c 0 2>/dev/null  # the crash fixture aborts on purpose: no core file
OUT=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
PATH=$PATH:/root/.cargo/bin:/usr/lib/go/bin
export PATH
# Stable output: no colours, fixed hash seed, no timing noise where possible.
export NO_COLOR=1 PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
have() { command -v "$1" >/dev/null 2>&1 || { echo "generate.sh: $1 missing: skipping $2" >&2; return 1; }; }
# Times and temp paths vary between runs: normalise them so fixtures are stable.
norm() { sed -e "s|$T|/tmp/proj|g" -e 's/ in [0-9.]*s / in 0.01s /' \
	-e 's/([0-9.]*m\?s)/(0.00s)/g' -e 's/time="[0-9.]*"/time="0.001"/g' \
	-e 's/timestamp="[^"]*"/timestamp="2026-11-26T00:00:00"/g' -e 's/hostname="[^"]*"/hostname="host"/g' \
	-e 's/duration_ms\(:\?\) [0-9.]*/duration_ms\1 1.0/' -e 's/finished in [0-9.]*s/finished in 0.00s/' -e "s/thread '\([^']*\)' ([0-9]*)/thread '\\1'/" \
	-e 's/0x[0-9a-f]\{8,\}/0x0/g' -e 's/goroutine [0-9]* \[/goroutine 1 [/g' \
	-e 's/Ran \([0-9]*\) tests\? in [0-9.]*s/Ran \1 tests in 0.001s/' \
	-e 's/\(example\.com\/calc\\t\)[0-9.]*s/\10.01s/'; }

# ---- pytest ----------------------------------------------------------------
mkdir -p "$T/py/tests"
cat >"$T/py/tests/test_calc.py" <<'PY'
import pytest

def test_add():
    assert 1 + 1 == 2

def test_sub_fails():
    assert 3 - 1 == 1, "subtraction is broken"

@pytest.mark.parametrize("a,b", [(1, 2), ("x y", "[z]"), ("a - b", "c")])
def test_param(a, b):
    assert a != "a - b"

@pytest.mark.skip(reason="not on this platform")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed already")
def test_xpass():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_error(broken):
    pass

class TestGroup:
    def test_in_class(self):
        assert True

    def test_in_class_fails(self):
        raise ValueError("boom")
PY
cat >"$T/py/tests/test_crash.py" <<'PY'
import os

def test_before_crash():
    assert True

def test_crash():
    os.abort()

def test_after_crash():
    assert True
PY
if have "$PY" pytest && $PY -m pytest --version >/dev/null 2>&1; then
	(cd "$T/py" && $PY -m pytest -rA --tb=no -p no:cacheprovider tests/test_calc.py) 2>&1 | norm >"$OUT/pytest_ra.log"
	(cd "$T/py" && $PY -m pytest -v -rA --tb=short -p no:cacheprovider tests/test_calc.py) 2>&1 | norm >"$OUT/pytest_verbose.log"
	(cd "$T/py" && $PY -m pytest -v -p no:cacheprovider tests/test_crash.py) 2>&1 | norm >"$OUT/pytest_crash.log"
	(cd "$T/py" && $PY -m pytest -p no:cacheprovider --junitxml="$T/junit.xml" tests/test_calc.py >/dev/null 2>&1)
	norm <"$T/junit.xml" >"$OUT/junit_pytest.xml"
	head -c 1500 "$OUT/junit_pytest.xml" >"$OUT/junit_truncated.xml"
	# truncated mid-line: the log of a run whose output cap cut it
	head -c 1200 "$OUT/pytest_verbose.log" >"$OUT/pytest_truncated.log"
fi

# ---- unittest and a Django-style runner --------------------------------------
mkdir -p "$T/ut"
cat >"$T/ut/test_ut.py" <<'PY'
import sys
import unittest

class Basic(unittest.TestCase):
    def test_ok(self):
        self.assertTrue(True)

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise KeyError("missing")

    @unittest.skip("not today")
    def test_skip(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)

    def test_docstring(self):
        """Checks that docstrings name tests."""
        self.assertTrue(True)

    def test_noisy(self):
        sys.stderr.write("some output printed by the test\nmore output\n")
        sys.stderr.flush()

    def test_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 1)

if __name__ == "__main__":
    unittest.main(verbosity=2)
PY
if have "$PY" unittest; then
	(cd "$T/ut" && $PY -m unittest -v test_ut) 2>&1 | norm >"$OUT/unittest.log"
	(cd "$T/ut" && $PY -m unittest test_ut) 2>&1 | norm >"$OUT/unittest_quiet.log"
fi

# ---- Django's runner (Debian's python3-django; not in make deps) ---------------
mkdir -p "$T/dj/app"
cat >"$T/dj/settings.py" <<'PY'
SECRET_KEY = "x"
INSTALLED_APPS = ["app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
PY
touch "$T/dj/app/__init__.py"
cat >"$T/dj/app/tests.py" <<'PY'
import sys
from unittest import skip, expectedFailure
from django.test import SimpleTestCase, TestCase


class Views(SimpleTestCase):
    def test_ok(self):
        self.assertEqual(1, 1)

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_docstring(self):
        """
        Regression test for #12345: docstrings name tests.
        """
        self.assertTrue(True)

    def test_noisy(self):
        sys.stderr.write("Applying migrations... OK\nmore output\n")

    @skip("needs a real database")
    def test_skip(self):
        pass

    @expectedFailure
    def test_xfail(self):
        self.assertEqual(1, 2)


class Models(TestCase):
    def test_error(self):
        raise RuntimeError("boom")
PY
if $PY -c 'import django' 2>/dev/null; then
	(cd "$T/dj" && PYTHONPATH=. $PY -m django test --settings=settings --verbosity 2 --parallel 1 app 2>&1) \
		| norm | sed 's/Ran \([0-9]*\) tests in [0-9.]*s/Ran \1 tests in 0.001s/' >"$OUT/django.log"
else
	echo "generate.sh: django missing (apt-get install python3-django): skipping django.log" >&2
fi

# ---- sympy's runner (bin/test is sympy.testing.runtests; Debian's python3-sympy) -
mkdir -p "$T/sy"
cat >"$T/sy/test_demo.py" <<'PY'
from sympy.testing.pytest import XFAIL, skip
from sympy import Symbol

def test_ok():
    x = Symbol('x')
    assert x + x == 2*x

def test_fails():
    assert 1 == 2

def test_error():
    raise KeyError("boom")

@XFAIL
def test_xfail():
    assert 1 == 2

def test_skipped():
    skip("not here")
PY
if $PY -c 'import sympy' 2>/dev/null; then
	(cd "$T/sy" && $PY -c "
import sys
from sympy.testing.runtests import SymPyTests, PyTestReporter
t = SymPyTests(PyTestReporter(verbose=True, colors=False), kw='', seed=1)
t._testfiles.append('$T/sy/test_demo.py')
sys.exit(not t.test())
" 2>&1) | norm | sed -e 's/in [0-9.]* seconds/in 0.01 seconds/' -e 's/^numpy: .*/numpy:              (version)/' >"$OUT/sympy.log"
else
	echo "generate.sh: sympy missing (apt-get install python3-sympy): skipping sympy.log" >&2
fi

# ---- node --test ---------------------------------------------------------------
mkdir -p "$T/node"
cat >"$T/node/calc.test.mjs" <<'JS'
import { test, describe, it } from 'node:test';
import assert from 'node:assert';

test('adds numbers', () => { assert.strictEqual(1 + 1, 2); });
test('fails on purpose', () => { assert.strictEqual(1, 2); });
test('skipped one', { skip: 'not ready' }, () => {});
test('todo one', { todo: 'later' }, () => { throw new Error('todo fails'); });
describe('math suite', () => {
  it('nested passes', () => {});
  it('nested fails', () => { throw new Error('nested boom'); });
  describe('inner', () => {
    it('deep passes', () => {});
  });
});
JS
if have node "node --test"; then
	(cd "$T/node" && node --test --test-reporter=tap calc.test.mjs) 2>&1 | norm >"$OUT/node_tap.log"
	(cd "$T/node" && node --test --test-reporter=spec calc.test.mjs) 2>&1 | norm >"$OUT/node_spec.log"
fi

# ---- a TAP 14 emitter (plain shell) -------------------------------------------
cat >"$OUT/tap14.log" <<'TAP'
TAP version 14
1..5
ok 1 - first thing works
not ok 2 - second thing is broken
  ---
  message: 'expected 2, got 3'
  severity: fail
  ...
ok 3 - optional feature # SKIP no network
not ok 4 - known issue # TODO fix later
# Subtest: group of checks
    1..2
    ok 1 - inner one
    not ok 2 - inner two
not ok 5 - group of checks
Bail out! database went away
TAP

# ---- cargo test ----------------------------------------------------------------
if have cargo "cargo test"; then
	mkdir -p "$T/rs/src" "$T/rs/tests"
	cat >"$T/rs/Cargo.toml" <<'TOML'
[package]
name = "calc"
version = "0.1.0"
edition = "2021"
TOML
	cat >"$T/rs/src/lib.rs" <<'RS'
/// Adds.
///
/// ```
/// assert_eq!(calc::add(1, 1), 2);
/// ```
pub fn add(a: i32, b: i32) -> i32 { a + b }

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds() { assert_eq!(add(1, 2), 3); }
    #[test]
    fn fails() { assert_eq!(add(1, 2), 4); }
    #[test]
    #[ignore]
    fn ignored() {}
    #[test]
    #[should_panic]
    fn panics() { panic!("expected"); }
    #[test]
    fn noisy() { println!("printed by the test"); }
}
RS
	cat >"$T/rs/tests/integration.rs" <<'RS'
#[test]
fn integration_ok() { assert!(calc::add(2, 2) == 4); }
RS
	(cd "$T/rs" && RUST_BACKTRACE=0 CARGO_TERM_COLOR=never \
		cargo test --no-fail-fast --offline -- --test-threads=1 --nocapture 2>&1) \
		| grep -v -e '^ *Compiling' -e '^ *Finished' -e '^ *Running' -e '^ *Doc-tests' -e 'Blocking' \
		| norm >"$OUT/cargo.log"
fi

# ---- go test -v and -json -------------------------------------------------------
if have go "go test"; then
	mkdir -p "$T/go"
	cat >"$T/go/go.mod" <<'GO'
module example.com/calc

go 1.19
GO
	cat >"$T/go/calc_test.go" <<'GO'
package calc

import (
	"fmt"
	"testing"
)

func TestAdd(t *testing.T) {
	if 1+1 != 2 {
		t.Fatal("bad")
	}
}

func TestFails(t *testing.T) { t.Errorf("expected %d", 3) }

func TestSkipped(t *testing.T) { t.Skip("not here") }

func TestTable(t *testing.T) {
	for _, c := range []string{"one", "two words", "three"} {
		t.Run(c, func(t *testing.T) {
			fmt.Println("output from", c)
			if c == "three" {
				t.Fatal("three is broken")
			}
		})
	}
}
GO
	cat >"$T/go/panic_test.go" <<'GO'
package calc

import "testing"

func TestZPanics(t *testing.T) { panic("kaboom") }

func TestZZNeverRuns(t *testing.T) {}
GO
	(cd "$T/go" && GOFLAGS=-mod=mod GOCACHE="$T/gocache" GOPATH="$T/gopath" go test -v -count=1 . 2>&1) \
		| norm | sed 's/\t[0-9.]*s$/\t0.01s/' >"$OUT/go_v.log"
	(cd "$T/go" && GOFLAGS=-mod=mod GOCACHE="$T/gocache" GOPATH="$T/gopath" go test -json -count=1 . 2>&1) \
		| norm | sed -e 's/"Time":"[^"]*"/"Time":"2026-11-26T00:00:00Z"/' -e 's/"Elapsed":[0-9.]*/"Elapsed":0/' \
		>"$OUT/go_json.log"
fi

# ---- ctest -----------------------------------------------------------------------
if have cmake ctest; then
	mkdir -p "$T/ct"
	cat >"$T/ct/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.10)
project(ct NONE)
enable_testing()
add_test(NAME passes COMMAND true)
add_test(NAME fails COMMAND false)
add_test(NAME crashes COMMAND sh -c "kill -SEGV $$")
add_test(NAME missing_exe COMMAND /nonexistent/binary)
add_test(NAME skipper COMMAND sh -c "exit 77")
set_tests_properties(skipper PROPERTIES SKIP_RETURN_CODE 77)
CM
	(cd "$T/ct" && cmake -S . -B b >/dev/null 2>&1 && cd b && ctest 2>&1) | norm \
		| sed 's/ [0-9.]* sec$/ 0.01 sec/' >"$OUT/ctest.log"
fi
echo "generate.sh: logs written to $OUT"

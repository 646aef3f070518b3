"""Tests for evals.graders.code.unit_tests: comparison rules (pure) and verdicts from real sandboxed runs."""

from __future__ import annotations

import pytest

from evals.graders.code.unit_tests import (
    STATUSES,
    CallTests,
    StdioTests,
    TestLimits,
    outputs_match,
    run_unit_tests,
    run_unit_tests_many,
    values_match,
)

LIMITS = TestLimits(time_s=1.0, memory_bytes=512 << 20, output_bytes=1 << 20)
ADD = StdioTests([("1 2\n", "3\n"), ("5 5", "10"), ("-1 1\n", "0   \n\n")])
ADD_SOLUTION = "a, b = map(int, input().split())\nprint(a + b)\n"


# --------------------------------------------------------------------------------------------------------
# comparison rules
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("got,want,tol,expected", [
    ("3\n", "3", None, True),  # trailing newline
    ("1 2  \n3\n\n\n", "1 2\n3", None, True),  # trailing spaces and blank lines
    ("a\r\nb\r\n", "a\nb\n", None, True),  # CRLF
    (" 3", "3", None, False),  # leading whitespace matters
    ("1  2", "1 2", None, False),  # inner whitespace matters without a tolerance
    ("3\n4", "3", None, False),
    ("0.3333333", "0.333333333", 1e-6, True),
    ("0.34", "0.333333333", 1e-6, False),
    ("YES 1.0000001", "YES 1", 1e-6, True),
    ("NO 1", "YES 1", 1e-6, False),
    ("", "", None, True),
])
def test_outputs_match(got, want, tol, expected):
    assert outputs_match(got, want, tol) is expected


@pytest.mark.parametrize("got,want,tol,expected", [
    ([1, 2], (1, 2), None, True),  # tuples travel as lists
    ([[1, "a"]], [(1, "a")], None, True),
    (0.30000000000000004, 0.3, 1e-9, True),
    (0.30000000000000004, 0.3, None, False),
    (True, 1, None, False),  # a bool is not an int answer
    ({"a": [1.0]}, {"a": [1]}, None, True),
    ([1, 2], [1, 2, 3], None, False),
])
def test_values_match(got, want, tol, expected):
    assert values_match(got, want, tol) is expected


# --------------------------------------------------------------------------------------------------------
# stdin/stdout verdicts
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,code,status,failed", [
    ("input", ADD_SOLUTION, "passed", None),
    ("fast io", "import sys\nd = sys.stdin.buffer.read().split()\nsys.stdout.write(f'{int(d[0]) + int(d[1])}\\n')",
     "passed", None),
    ("open(0)", "a, b = map(int, open(0).read().split())\nprint(a + b)", "passed", None),
    ("thread idiom", "import sys, threading\nsys.setrecursionlimit(10**6)\nthreading.stack_size(1 << 26)\n"
     "def main():\n    a, b = map(int, input().split())\n    print(a + b)\nthreading.Thread(target=main).start()",
     "passed", None),
    ("exit()", "a, b = map(int, input().split())\nprint(a + b)\nexit()", "passed", None),
    ("wrong on 2nd", "a, b = map(int, input().split())\nprint(a + b if a != 5 else 11)", "failed", 1),
    ("crash", "print(1 // 0)", "runtime_error", 0),
    ("exit(3)", "import sys\nsys.exit(3)", "runtime_error", 0),
    ("syntax", "def f(:\n", "compile_error", None),
    ("memory", "x = [0] * (10 ** 9)", "memory_limit", 0),
    ("tle", "while True:\n    pass", "timeout", 0),
    ("flood", "while True:\n    print('x' * 10000)", "output_limit", 0),
])
@pytest.mark.slow
def test_stdio_verdicts(name, code, status, failed):
    r = run_unit_tests(code, ADD, LIMITS)
    assert (r.status, r.failed_test) == (status, failed), (r.message, r.stderr_tail)
    assert r.n_passed == (3 if failed is None and status == "passed" else failed or 0)
    assert r.status in STATUSES


@pytest.mark.slow
def test_timeout_is_within_limit_plus_slack():
    r = run_unit_tests("while True:\n    pass", StdioTests([("", "")]), LIMITS)
    assert r.status == "timeout"
    assert r.time_s < LIMITS.time_s + LIMITS.slack_s + 3.0  # + interpreter start and the kill


def test_stops_at_first_failure():
    """Test 0 fails; tests 1 and 2 would sleep 5 s each: the child is killed at the first wrong answer."""
    slow_after_first = "import time\nif input() == 'first':\n    print('wrong')\nelse:\n    time.sleep(5)\n"
    tests = StdioTests([("first", "right"), ("second", ""), ("third", "")])
    r = run_unit_tests(slow_after_first, tests, LIMITS)
    assert (r.status, r.failed_test, r.n_passed) == ("failed", 0, 0)
    assert r.time_s < 4.0


def test_tests_do_not_share_globals_but_see_fresh_stdin():
    counting = "try:\n    seen += 1\nexcept NameError:\n    seen = 1\nprint(seen, input())"
    r = run_unit_tests(counting, StdioTests([("a", "1 a"), ("b", "1 b")]), LIMITS)
    assert r.status == "passed", r.message


def test_float_tolerance():
    code = "print(1 / 3)"
    assert run_unit_tests(code, StdioTests([("", "0.333333")], float_tol=1e-5), LIMITS).status == "passed"
    assert run_unit_tests(code, StdioTests([("", "0.333333")]), LIMITS).status == "failed"


@pytest.mark.slow
def test_one_process_per_test_mode():
    assert run_unit_tests(ADD_SOLUTION, ADD, LIMITS, batch=False).status == "passed"
    r = run_unit_tests("import os\nprint(3)\nos._exit(0)", ADD, LIMITS, batch=False)
    assert (r.status, r.failed_test, r.n_passed) == ("failed", 1, 1)


def test_os_exit_ends_the_test_not_the_harness():
    r = run_unit_tests("import os, sys\na, b = map(int, input().split())\nprint(a + b)\nsys.stdout.flush()\n"
                       "os._exit(0)", ADD, LIMITS)
    assert r.status == "passed", (r.message, r.stderr_tail)


# --------------------------------------------------------------------------------------------------------
# call-based verdicts
# --------------------------------------------------------------------------------------------------------
CALLS = CallTests("add", [((1, 2), 3), (([1], [2]), [1, 2]), ((0.1, 0.2), 0.3)], float_tol=1e-9)


@pytest.mark.parametrize("code,status,failed", [
    ("def add(a, b):\n    return a + b", "passed", None),
    ("class Solution:\n    def add(self, a, b):\n        print('debug')\n        return a + b", "passed", None),
    ("def add(a, b):\n    return (a, b)", "failed", 0),
    ("def add(a, b):\n    return {a}", "failed", 0),  # a set cannot travel as JSON
    ("def plus(a, b):\n    return a + b", "runtime_error", 0),  # wrong name
    ("def add(a, b):\n    raise KeyError(a)", "runtime_error", 0),
    ("def add(a, b)\n    return a", "compile_error", None),
    ("def add(a, b):\n    while True:\n        pass", "timeout", 0),
])
@pytest.mark.slow
def test_call_verdicts(code, status, failed):
    r = run_unit_tests(code, CALLS, LIMITS)
    assert (r.status, r.failed_test) == (status, failed), (r.message, r.stderr_tail)


def test_many_keeps_order_and_bounds_workers():
    items = [(ADD_SOLUTION, ADD), ("print(3)", ADD), ("def add(a, b):\n    return a + b", CALLS), ("x(", ADD)]
    reports = run_unit_tests_many(items, LIMITS, workers=2)
    assert [r.status for r in reports] == ["passed", "failed", "passed", "compile_error"]

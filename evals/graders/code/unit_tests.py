"""Unit-test grading for competitive-programming style problems (Codeforces / TACO / LiveCodeBench).

Two problem kinds:
- stdin/stdout: ``StdioTests(cases=[(input, expected_output), ...])``; the solution runs as ``__main__`` with the
  input on fd 0. Comparison rule (``outputs_match``): split both texts into lines (``\\r\\n`` and ``\\r`` count as
  newlines), strip trailing whitespace of every line, drop trailing empty lines, then the line lists must be equal.
  With ``float_tol``, lines that still differ are compared token by token (whitespace-split): tokens must be equal
  or both parse as floats within ``float_tol`` (absolute or relative).
- call-based: ``CallTests(fn_name, cases=[(args, expected), ...])``; the function is a top-level ``fn_name`` or a
  method of ``Solution()`` (LeetCode style). Return values travel as JSON, so tuples compare as lists; with
  ``float_tol`` numbers compare within it (``values_match``). A value JSON cannot carry (a set, an object) fails.

All tests of a problem run in one sandboxed process (``batch=True``, fast) that re-executes the solution per test
with fresh globals; expected outputs never enter the sandbox: the child streams each test's output and the parent
compares, killing the child at the first failure. In the harness ``os._exit(n)`` acts as ``sys.exit(n)`` (so the
flush-then-``os._exit`` trick works; output still buffered is kept, where CPython would lose it). ``batch=False``
spends one process per test instead, for solutions that leave global state behind (signal handlers, patched
builtins or modules, threads that never end).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from evals.graders.code import sandbox

STATUSES = ("passed", "failed", "runtime_error", "timeout", "memory_limit", "compile_error", "output_limit")


@dataclass(frozen=True)
class StdioTests:
    cases: Sequence[tuple[str, str]]
    float_tol: float | None = None


@dataclass(frozen=True)
class CallTests:
    fn_name: str
    cases: Sequence[tuple[Sequence[Any], Any]]
    float_tol: float | None = None


@dataclass(frozen=True)
class TestLimits:
    """Per-problem limits. ``time_s`` is per test, wall clock as the child measures it; the parent allows
    ``time_s + slack_s`` between two results before it kills, and RLIMIT_CPU is the sum over tests plus one."""

    __test__ = False  # not a pytest class
    time_s: float = 2.0
    memory_bytes: int = 1 << 30
    output_bytes: int = 16 << 20
    max_processes: int = 64
    slack_s: float = 0.5

    def sandbox_limits(self, n_tests: int) -> sandbox.Limits:
        budget = self.time_s * max(1, n_tests)
        return sandbox.Limits(cpu_seconds=budget + 1, wall_seconds=budget + n_tests * self.slack_s + 20,
                              memory_bytes=self.memory_bytes, file_size_bytes=self.output_bytes,
                              max_processes=self.max_processes)


@dataclass
class TestReport:
    """One problem's verdict. ``failed_test`` is the index of the first test that did not pass (None if all did)."""

    __test__ = False
    status: str
    n_tests: int
    n_passed: int
    failed_test: int | None = None
    message: str = ""
    time_s: float = 0.0  # wall time of the whole grading, process start included
    max_test_s: float = 0.0  # slowest test as measured inside the child
    stdout_tail: str = ""
    stderr_tail: str = ""
    isolation: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# ------------------------------------------------------------------------------------------------------------
# comparison rules
# ------------------------------------------------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _close(a: str, b: str, tol: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)


def outputs_match(got: str, want: str, float_tol: float | None = None) -> bool:
    """The stdin/stdout comparison rule described in the module docstring."""
    g, w = _lines(got), _lines(want)
    if g == w:
        return True
    if float_tol is None or len(g) != len(w):
        return False
    for gl, wl in zip(g, w):
        gt, wt = gl.split(), wl.split()
        if len(gt) != len(wt) or any(a != b and not _close(a, b, float_tol) for a, b in zip(gt, wt)):
            return False
    return True


def values_match(got: Any, want: Any, float_tol: float | None = None) -> bool:
    """Call-based comparison: ``want`` goes through JSON like ``got`` did (tuples -> lists), then equality, with
    numbers (not bools) within ``float_tol`` when given."""
    want = json.loads(json.dumps(want))

    def eq(a, b) -> bool:
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(eq(x, y) for x, y in zip(a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)
        numeric = (int, float)
        if float_tol is not None and isinstance(a, numeric) and isinstance(b, numeric) \
                and not isinstance(a, bool) and not isinstance(b, bool):
            return math.isclose(a, b, rel_tol=float_tol, abs_tol=float_tol)
        return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b

    return eq(got, want)


# ------------------------------------------------------------------------------------------------------------
# inside the sandbox (trusted harness; the solution runs in this same process)
# ------------------------------------------------------------------------------------------------------------
def _compile(source: str, channel):
    try:
        return compile(source, "solution.py", "exec")
    except (SyntaxError, ValueError) as exc:
        channel.send({"event": "compile_error", "message": f"{type(exc).__name__}: {exc}"})
        return None


def _failure(exc: BaseException) -> tuple[str, str] | None:
    """Map an exception escaping the solution to (status, message); a clean ``sys.exit(0)`` is no failure."""
    if isinstance(exc, SystemExit):
        return None if exc.code in (None, 0) else ("runtime_error", f"SystemExit({exc.code!r})")
    if isinstance(exc, MemoryError):
        return "memory_limit", "MemoryError"
    if isinstance(exc, OSError) and exc.errno == 27:  # EFBIG: RLIMIT_FSIZE reached while writing
        return "output_limit", "output exceeds the file-size limit"
    return "runtime_error", f"{type(exc).__name__}: {str(exc)[:300]}"


def _join_threads() -> None:
    """``threading.Thread(target=main).start()`` (for a bigger stack) is a common idiom: wait for its output."""
    import threading

    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()


def _soft_exit(code: int = 0):
    raise SystemExit(code)


def _child_stdio(args: dict, channel) -> None:
    import builtins
    import os
    import sys
    import time

    from evals.graders.code.sandbox_child import redirect_stdio

    code = _compile(args["code"], channel)
    if code is None:
        return
    os._exit = _soft_exit  # flush-then-os._exit is a CP speed trick; it must end the test, not the harness
    channel.send({"event": "ready"})
    for i, text in enumerate(args["inputs"]):
        with open(".in", "w", encoding="utf-8") as f:
            f.write(text)
        redirect_stdio(".in", ".out")
        failure = None
        start = time.perf_counter()
        try:
            exec(code, {"__name__": "__main__", "__builtins__": builtins})
            _join_threads()
        except BaseException as exc:  # noqa: BLE001 - whatever the solution raised is its verdict
            failure = _failure(exc)
        for stream in (sys.stdout, sys.__stdout__):
            try:
                stream.flush()
            except Exception as exc:  # noqa: BLE001 - EFBIG is an output limit; a closed/odd stream is not ours
                if isinstance(exc, OSError):
                    failure = failure or _failure(exc)
        elapsed = time.perf_counter() - start
        if failure is None and os.path.getsize(".out") >= args["output_bytes"]:
            failure = ("output_limit", "output reached the file-size limit")
        if failure is not None:
            channel.send({"event": "result", "i": i, "error": failure[0], "message": failure[1], "time": elapsed})
            return
        with open(".out", encoding="utf-8", errors="replace") as f:
            channel.send({"event": "result", "i": i, "output": f.read(), "time": elapsed})
    channel.send({"event": "done"})


def _jsonable(value: Any) -> Any:
    try:
        return {"value": json.loads(json.dumps(value, allow_nan=True))}
    except (TypeError, ValueError, RecursionError):
        return {"unjsonable": repr(value)[:300]}


def _child_call(args: dict, channel) -> None:
    import builtins
    import os
    import time

    from evals.graders.code.sandbox_child import redirect_stdio

    code = _compile(args["code"], channel)
    if code is None:
        return
    os._exit = _soft_exit
    redirect_stdio(None, ".out")  # prints from the solution are ignored (and bounded by RLIMIT_FSIZE)
    namespace = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        exec(code, namespace)
        name = args["fn_name"]
        fn = namespace[name] if name in namespace else getattr(namespace["Solution"](), name)
    except BaseException as exc:  # noqa: BLE001
        failure = _failure(exc) or ("runtime_error", f"function {args['fn_name']!r} not defined")
        channel.send({"event": "result", "i": 0, "error": failure[0], "message": failure[1], "time": 0.0})
        return
    channel.send({"event": "ready"})
    for i, call_args in enumerate(args["args"]):
        start = time.perf_counter()
        try:
            out = _jsonable(fn(*call_args))
        except BaseException as exc:  # noqa: BLE001
            failure = _failure(exc) or ("runtime_error", "SystemExit during the call")
            channel.send({"event": "result", "i": i, "error": failure[0], "message": failure[1],
                          "time": time.perf_counter() - start})
            return
        channel.send({"event": "result", "i": i, "time": time.perf_counter() - start, **out})
    channel.send({"event": "done"})


# ------------------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------------------
class _Judge:
    """Consumes the child's frames in order and decides; returning True from ``on_frame`` kills the child."""

    def __init__(self, tests: StdioTests | CallTests, limits: TestLimits):
        self.tests, self.limits = tests, limits
        self.n_passed, self.max_time = 0, 0.0
        self.verdict: tuple[str, int | None, str] | None = None  # (status, failed_test, message)
        self.finished = False

    def on_frame(self, frame: dict) -> bool:
        event = frame.get("event")
        if event == "compile_error":
            self.verdict = ("compile_error", None, str(frame.get("message", "")))
        elif event == "done":
            self.finished = True
        elif event == "result":
            self._result(frame)
        return self.verdict is not None

    def _result(self, frame: dict) -> None:
        i, elapsed = self.n_passed, float(frame.get("time", 0.0))
        self.max_time = max(self.max_time, elapsed)
        if frame.get("i") != i:
            self.verdict = ("runtime_error", i, "harness protocol broken (the solution wrote to the channel?)")
        elif "error" in frame:
            status = frame["error"] if frame["error"] in STATUSES else "runtime_error"
            self.verdict = (status, i, str(frame.get("message", "")))
        elif elapsed > self.limits.time_s:
            self.verdict = ("timeout", i, f"{elapsed:.2f}s > {self.limits.time_s}s")
        elif not self._matches(frame, i):
            self.verdict = ("failed", i, self._mismatch(frame, i))
        else:
            self.n_passed += 1

    def _matches(self, frame: dict, i: int) -> bool:
        want = self.tests.cases[i][1]
        if isinstance(self.tests, StdioTests):
            return isinstance(frame.get("output"), str) and outputs_match(frame["output"], want, self.tests.float_tol)
        return "value" in frame and values_match(frame["value"], want, self.tests.float_tol)

    def _mismatch(self, frame: dict, i: int) -> str:
        got = frame.get("output", frame.get("value", frame.get("unjsonable")))
        return f"expected {str(self.tests.cases[i][1])[:200]!r}, got {str(got)[:200]!r}"


def run_unit_tests(code: str, tests: StdioTests | CallTests, limits: TestLimits = TestLimits(), *,
                   batch: bool = True, isolation: str = "auto") -> TestReport:
    """Grade one solution against its tests, stopping at the first failure. See the module docstring."""
    if not batch and len(tests.cases) > 1:
        return _run_one_by_one(code, tests, limits, isolation)
    if isinstance(tests, StdioTests):
        entry, args = "_child_stdio", {"code": code, "inputs": [c[0] for c in tests.cases]}
    else:
        entry, args = "_child_call", {"code": code, "fn_name": tests.fn_name, "args": [list(c[0]) for c in tests.cases]}
    args["output_bytes"] = limits.output_bytes
    judge = _Judge(tests, limits)
    box = limits.sandbox_limits(len(tests.cases))
    r = sandbox.run(entry=f"{__name__}:{entry}", args=args, limits=box, isolation=isolation,
                    on_frame=judge.on_frame, step_timeout=limits.time_s + limits.slack_s)
    n = len(tests.cases)
    if judge.verdict is not None:
        status, failed, message = judge.verdict
    elif judge.finished and judge.n_passed == n:
        status, failed, message = "passed", None, ""
    else:  # the child died or was killed before reporting every test
        status = sandbox.classify(r, box)
        status = "runtime_error" if status == "ok" else status
        failed = judge.n_passed
        message = {"timeout": f"no result within {limits.time_s}s", "output_limit": "output limit"}.get(
            status, f"exit code {r.exit_code}, signal {r.signal}")
    return TestReport(status=status, n_tests=n, n_passed=judge.n_passed, failed_test=failed, message=message,
                      time_s=r.wall_s, max_test_s=judge.max_time, stdout_tail=r.stdout, stderr_tail=r.stderr,
                      isolation=r.isolation)


def _run_one_by_one(code, tests, limits, isolation) -> TestReport:
    total, slowest = 0.0, 0.0
    for i, case in enumerate(tests.cases):
        one = replace(tests, cases=[case])
        rep = run_unit_tests(code, one, limits, isolation=isolation)
        total, slowest = total + rep.time_s, max(slowest, rep.max_test_s)
        if not rep.passed:
            rep.n_tests, rep.n_passed, rep.failed_test = len(tests.cases), i, i if rep.failed_test is not None else None
            rep.time_s, rep.max_test_s = total, slowest
            return rep
    return TestReport("passed", len(tests.cases), len(tests.cases), time_s=total, max_test_s=slowest,
                      isolation=rep.isolation)


def run_unit_tests_many(items: Sequence[tuple[str, StdioTests | CallTests]], limits: TestLimits = TestLimits(), *,
                        workers: int = 2, batch: bool = True, isolation: str = "auto") -> list[TestReport]:
    """``run_unit_tests`` over (code, tests) pairs with at most ``workers`` sandboxes at a time, order kept."""
    return sandbox.map_bounded(lambda item: run_unit_tests(item[0], item[1], limits, batch=batch,
                                                           isolation=isolation), items, workers)

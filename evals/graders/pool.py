"""Grade maths responses in worker processes, with a per-sample wall-clock deadline enforced by the parent.

Why processes and a parent-side deadline: math-verify's own SIGALRM timeouts only work in a main thread, and a
signal cannot interrupt a hang inside C code (a huge integer power, a stuck sympy routine in a C extension). So
the parent measures each sample's time itself and SIGKILLs a worker that overruns; the sample costs
``grader_timeout``, a fresh worker replaces the dead one, and the rest of its batch is re-queued. A worker
that dies (segfault, ``os._exit``, OOM kill) costs its current sample ``grader_error``; an ordinary Python
exception while grading is also ``grader_error``, but the worker survives it.

Workers take batches of items (one message per batch, one small reply per item) so that IPC costs little,
and the parent restarts a sample's clock at each reply, so the deadline is per sample, not per batch.
Workers are started with ``forkserver`` (``spawn`` where unavailable), never ``fork``: the parent may have
torch (and its threads) loaded, and forking that is unsafe. The fork server preloads math-verify, so a
replacement worker is ready in well under a second.

Workers do not re-import the parent's ``__main__`` (multiprocessing's default under spawn/forkserver, so that
functions defined there can be unpickled): the worker code lives in this module, and for ``python -m evals.run``
that re-import would load torch, transformers and hydra into every worker (~4 s and hundreds of MB each).

``workers=0`` grades in-process (for tests and debugging): no deadline is enforced there beyond math-verify's
own timeouts, and the test hooks are refused.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait

from evals.graders.math import GRADER_ERROR, GRADER_TIMEOUT, GRADERS, MathGrade, extract_last_boxed, grade_math

# Worker-only modes that let tests prove the pool survives a hang or a crash. They never reach grade_math.
TEST_MODES = ("_test_hang", "_test_crash", "_test_raise")
_STARTUP_TIMEOUT_S = 120.0  # a cold spawn on a loaded 2-core machine can take tens of seconds


@dataclass(frozen=True)
class GradeItem:
    """One sample to grade: see :func:`evals.graders.math.grade_math` for the fields."""

    response: str
    gold: str
    mode: str = "math_verify"
    truncated: bool = False


def _grade_in_worker(item: tuple, mv_timeout: int | None) -> MathGrade:
    response, gold, mode, truncated = item
    if mode == "_test_hang":
        time.sleep(3600)  # stands for a hang no signal can stop; only the parent's SIGKILL ends it
    elif mode == "_test_crash":
        os._exit(13)
    elif mode == "_test_raise":
        raise RuntimeError("test hook: grader raised")
    return grade_math(response, gold, mode, truncated, mv_timeout=mv_timeout)


def _worker_main(conn, mv_timeout: int | None) -> None:
    """Worker loop: receive a batch ``[(idx, response, gold, mode, truncated), ...]``, reply one tuple per item."""
    grade_math("\\boxed{1}", "1")  # warm up math-verify's LaTeX parser before saying ready
    conn.send(("ready", os.getpid()))
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for idx, *item in batch:
            try:
                g = _grade_in_worker(tuple(item), mv_timeout)
                conn.send((idx, g.status, g.score, g.extracted, g.detail))
            except Exception as e:  # noqa: BLE001 - any grader bug costs this sample, not the worker
                conn.send((idx, GRADER_ERROR, 0.0, extract_last_boxed(item[0]), f"{type(e).__name__}: {e}"[:300]))


@contextmanager
def _parent_main_hidden():
    """Make multiprocessing see no ``__main__`` to re-import in the child (see the module docstring)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__spec__ = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


class _Worker:
    """A worker process and the parent's view of it. Starting is asynchronous: ``ready`` flips on its hello."""

    def __init__(self, ctx, mv_timeout: int | None):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, mv_timeout), daemon=True)
        with _parent_main_hidden():
            self.proc.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.pending: deque[int] = deque()  # item indices sent and not answered yet, in the worker's order
        self.clock = 0.0  # when the worker started its current item (the last reply, or the dispatch)

    def poll_ready(self, block: bool = False) -> bool:
        """Take the worker's hello if it came; raise if it died or took longer than the start-up limit."""
        left = self.started + _STARTUP_TIMEOUT_S - time.monotonic()
        if self.conn.poll(max(0.0, left) if block else 0):
            try:
                self.conn.recv()
            except (EOFError, OSError) as e:
                self.proc.join(5)
                raise RuntimeError(f"grader worker died while starting (exit code {self.proc.exitcode})") from e
            self.ready = True
        elif left <= 0 or block:
            self.kill()
            raise RuntimeError(f"grader worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        return self.ready

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()  # SIGKILL: a hung worker may ignore anything softer
        self.proc.join(5)
        self.conn.close()


class GraderPool:
    """``with GraderPool(workers=2, timeout_s=10) as pool: grades = pool.grade(items)`` (order kept).

    ``timeout_s``: wall-clock limit per sample, measured by the parent. ``batch_size``: items per message.
    ``mv_timeout``: math-verify's in-worker SIGALRM timeout (whole seconds); by default a third of
    ``timeout_s`` so that ordinary slow sympy calls end gracefully (no respawn) before the hard deadline.
    Not thread-safe: call ``grade`` from one thread at a time.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout_s: float = 10.0,
        batch_size: int = 16,
        mv_timeout: int | None = None,
        start_method: str | None = None,
    ):
        if workers < 0 or timeout_s <= 0 or batch_size < 1:
            raise ValueError("need workers >= 0, timeout_s > 0 and batch_size >= 1")
        self.workers, self.timeout_s, self.batch_size = workers, timeout_s, batch_size
        self.mv_timeout = mv_timeout if mv_timeout is not None else max(1, int(timeout_s // 3))
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        if start_method == "fork":
            raise ValueError("fork is unsafe once torch is loaded; use forkserver or spawn")
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver":
            # Only takes effect if this process's fork server is not running yet; harmless otherwise.
            self._ctx.set_forkserver_preload(["evals.graders.math", "math_verify"])
        self._pool: list[_Worker] = []
        self.respawns = 0  # how many workers were killed or died and were replaced (for reports)

    # -- lifecycle --------------------------------------------------------------------------------------
    def __enter__(self) -> GraderPool:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self.workers and not self._pool:
            self._pool = [_Worker(self._ctx, self.mv_timeout) for _ in range(self.workers)]
            for w in self._pool:  # they start in parallel; wait for all of them once, here
                w.poll_ready(block=True)

    def close(self) -> None:
        for w in self._pool:
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self._pool:
            w.proc.join(2)
            w.kill()
        self._pool = []

    # -- grading ----------------------------------------------------------------------------------------
    def grade(self, items: list[GradeItem]) -> list[MathGrade]:
        """Grade ``items``; the i-th grade belongs to the i-th item. A bad mode raises ValueError up front."""
        allowed = set(GRADERS) | (set(TEST_MODES) if self.workers else set())
        for it in items:
            if it.mode not in allowed:
                raise ValueError(f"unknown grading mode {it.mode!r}; choose one of {sorted(GRADERS)}")
        if not self.workers:
            return [grade_math(it.response, it.gold, it.mode, it.truncated) for it in items]
        self.start()
        return self._run(items)

    def _run(self, items: list[GradeItem]) -> list[MathGrade]:
        results: list[MathGrade | None] = [None] * len(items)
        queue = deque(range(len(items)))
        # Smaller batches near the end would balance better; ~4 batches per worker is a good compromise.
        bs = max(1, min(self.batch_size, -(-len(items) // (4 * self.workers))))
        remaining = len(items)
        while remaining:
            for slot, w in enumerate(self._pool):
                if w.ready and not w.pending and queue:
                    batch = [queue.popleft() for _ in range(min(bs, len(queue)))]
                    msg = [(i, items[i].response, str(items[i].gold), items[i].mode, items[i].truncated) for i in batch]
                    w.pending.extend(batch)
                    w.clock = time.monotonic()
                    try:
                        w.conn.send(msg)
                    except (OSError, ValueError):  # died while idle: no sample is to blame, just replace it
                        queue.extendleft(reversed(w.pending))
                        w.pending.clear()
                        self._replace(slot)
            # Replacements start in the background (never block here: the other workers' clocks keep running).
            watched = [w for w in self._pool if w.pending or not w.ready]
            deadlines = [w.clock + self.timeout_s if w.ready else w.started + _STARTUP_TIMEOUT_S for w in watched]
            wait([w.conn for w in watched] + [w.proc.sentinel for w in watched],
                 max(0.0, min(deadlines) - time.monotonic()))
            for slot, w in enumerate(self._pool):
                if not w.ready:
                    w.poll_ready()
                elif w.pending:
                    remaining -= self._collect(slot, w, items, results, queue)
        return results  # type: ignore[return-value]

    def _collect(self, slot: int, w: _Worker, items, results, queue) -> int:
        """Take the worker's replies; charge and replace it if it died or overran. Returns samples finished."""
        done, dead = 0, False
        try:
            while w.pending and w.conn.poll():
                idx, status, score, extracted, detail = w.conn.recv()
                w.pending.remove(idx)  # normally the head: the worker answers in order
                results[idx] = MathGrade(status, score, extracted, detail)
                w.clock = time.monotonic()
                done += 1
        except (EOFError, OSError):
            dead = True
        if not w.pending:
            return done
        if dead or not w.proc.is_alive():
            w.proc.join(1)
            status, detail = GRADER_ERROR, f"grader worker died (exit code {w.proc.exitcode})"
        elif time.monotonic() - w.clock > self.timeout_s:
            status, detail = GRADER_TIMEOUT, f"killed after {self.timeout_s:g} s"
        else:
            return done
        idx = w.pending.popleft()  # the sample the worker was on
        results[idx] = MathGrade(status, 0.0, extract_last_boxed(items[idx].response), detail)
        queue.extendleft(reversed(w.pending))  # the rest of its batch goes first in line again
        w.pending.clear()
        self._replace(slot)
        return done + 1

    def _replace(self, slot: int) -> None:
        self._pool[slot].kill()
        self.respawns += 1
        self._pool[slot] = _Worker(self._ctx, self.mv_timeout)  # ready once its hello arrives

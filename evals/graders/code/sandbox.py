"""Run untrusted Python in a separate, limited process: the parent side of the sandbox.

Every execution is a fresh process tree (``sandbox_child.py`` is the inside) with:
- rlimits: CPU time, address space, file size, stack, no core files, and a process count per sandbox uid;
- a clean environment (a fixed minimal dict: nothing of the parent's, so no secrets), a private work directory
  as cwd (deleted afterwards), stdin/stdout/stderr on pipes whose size we cap;
- a wall-clock kill of the whole process group by the parent (and, per step, when the program goes quiet);
- isolation, chosen once per process by ``capabilities()``:
  ``namespaces`` (real containment; needs ``unshare`` from util-linux and either root or unprivileged user
  namespaces): fresh network namespace (no interface but a down loopback: no network at all), pid namespace
  (the program sees only itself; all its processes die with the supervisor), mount namespace whose root is a new,
  read-only, nosuid tree holding only the system's libraries, the interpreter, the venv and the project's evals
  package (the host's other files do not exist in it), private tmpfs on /tmp, /var/tmp and /dev/shm, IPC and UTS
  namespaces; as root,
  the program also runs under a fresh unprivileged uid, so RLIMIT_NPROC bounds fork bombs and no root-owned
  file is writable or readable unless world-readable.
  ``unsafe-rlimits`` (only when asked for by name): rlimits, clean env, uid drop when root *and* the interpreter
  is world-reachable, plus best-effort audit-hook guards (``sandbox_child.install_guards``) against sockets,
  process creation, ctypes and writes outside the work directory. Those guards stop accidents, not a determined
  adversary: the program may run as root, read what the user reads and signal the parent. ``auto`` therefore
  never falls back to it: without namespaces it refuses (``SandboxError``), naming the fix and the flag, and a
  result made with the flag says ``unsafe-rlimits`` wherever its isolation is reported.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evals.graders.code import memory_cgroup
from evals.graders.code.sandbox_child import WORKDIR_NS

CHILD = str(Path(__file__).with_name("sandbox_child.py"))
REPO_ROOT = str(Path(__file__).resolve().parents[3])
ISOLATIONS = ("auto", "namespaces", "unsafe-rlimits")
UNSAFE = "unsafe-rlimits"
# A per-run uid from a range no real account uses, so RLIMIT_NPROC counts only this run's processes and, without
# a pid namespace, every leftover process can be found (and killed) by its uid.
_UID_BASE, _UID_SPAN = 2_000_000_000, 50_000_000
_NS_FLAGS = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): setup, exec of the worker, a bad configuration."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed execution (all of its processes; CPU and memory_bytes are per process,
    total_memory_bytes is their sum)."""

    cpu_seconds: float = 10.0  # RLIMIT_CPU soft limit (SIGXCPU), hard limit one second later (SIGKILL)
    wall_seconds: float = 20.0  # the parent kills the process group after this, from spawn
    memory_bytes: int = 1 << 30  # RLIMIT_AS: address space, so MemoryError rather than the OOM killer
    total_memory_bytes: int = 2 << 30  # all of the sandbox's processes together: a memory cgroup where the machine
    # gives one (memory_cgroup.py; past it the kernel kills a sandboxed process), else ``process_cap()`` lowers
    # max_processes so that processes x memory_bytes fits
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE; also the cap on what stdout/stderr may carry to the parent
    max_processes: int = 64  # RLIMIT_NPROC for the sandbox uid (threads count); only enforced for a non-root uid
    stack_bytes: int = 256 << 20  # RLIMIT_STACK: deep recursion with a raised recursion limit is common in CP code
    tmpfs_bytes: int = 128 << 20  # size of each private tmpfs (namespaces only)
    startup_seconds: float = 15.0  # before the first channel frame (interpreter + imports), when steps are timed
    tail_bytes: int = 8 << 10  # how much of stdout/stderr is kept in the result


    def process_cap(self) -> int:
        """max_processes where no cgroup caps the total: at most total / per-process memory (and at least 1)."""
        return max(1, min(self.max_processes, self.total_memory_bytes // self.memory_bytes))


@dataclass
class ExecResult:
    """What happened, as facts; ``classify`` turns them into a status."""

    isolation: str
    pgid: int | None = None  # the sandbox's process group (gone once run() returns)
    killed: str | None = None  # "wall", "step" (no frame in time), "stopped" (on_frame asked), "output", None
    exit_code: int | None = None  # the worker's; None when killed by a signal or by us
    signal: int | None = None
    cpu_s: float | None = None
    wall_s: float = 0.0
    stdout: str = ""  # tails
    stderr: str = ""
    stdout_bytes: int = 0
    frames: list[dict] = field(default_factory=list)  # kept only when no on_frame callback consumes them
    setup: dict = field(default_factory=dict)  # facts reported by the supervisor


# ------------------------------------------------------------------------------------------------------------
# capabilities
# ------------------------------------------------------------------------------------------------------------
_CAPS: dict | None = None
_CAPS_LOCK = threading.Lock()


def _reachable_by_others(path: str) -> bool:
    cur = "/"
    for part in Path(path).parts[1:]:
        cur = os.path.join(cur, part)
        if os.path.isdir(cur) and not os.stat(cur).st_mode & 0o001:
            return False
    return True


def _expose_paths() -> list[str]:
    """What the worker must be able to read: the real interpreter, the venv and the project's ``evals`` package
    (entry functions import from it; nothing else of the checkout: no runs, caches or results)."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.join(REPO_ROOT, "evals"))}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(p for p in paths if not any(p != q and p.startswith(q + os.sep) for q in paths))


def capabilities(refresh: bool = False) -> dict:
    """Which isolation this machine gives, probed once by running a tiny program in the namespaces mode.

    The probe also checks that the worker runs the parent's very interpreter (version and prefix): a uid drop can
    otherwise silently fall back to another Python on the PATH of a 0700 home.
    """
    global _CAPS
    with _CAPS_LOCK:
        if _CAPS is not None and not refresh:
            return dict(_CAPS)
        caps = {"root": os.geteuid() == 0, "unshare": shutil.which("unshare"), "namespaces": False, "reason": ""}
        if caps["unshare"] is None:
            caps["reason"] = "unshare (util-linux) not found"
        else:
            probe = "import sys; print(sys.version); print(sys.prefix)"
            try:
                r = _run_raw(source=probe, isolation="namespaces", limits=Limits(wall_seconds=30, startup_seconds=30))
                want = f"{sys.version}\n{sys.prefix}\n"
                if r.exit_code == 0 and r.stdout == want:
                    caps.update(namespaces=True, setup=r.setup)
                else:
                    caps["reason"] = f"probe failed: exit={r.exit_code} stdout={r.stdout!r} stderr={r.stderr[-300:]!r}"
            except (SandboxError, OSError) as exc:
                caps["reason"] = f"probe failed: {exc}"
        caps["isolation"] = "namespaces" if caps["namespaces"] else None  # auto refuses: no silent fallback
        caps["uid_drop_without_namespaces"] = caps["root"] and all(_reachable_by_others(p) for p in _expose_paths())
        _CAPS = caps
        return dict(caps)


def resolve_isolation(isolation: str) -> str:
    if isolation == "rlimits":
        raise ValueError("isolation='rlimits' is now 'unsafe-rlimits': without namespaces untrusted code is not "
                         "contained, so the name says so; pass it only for code you trust")
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    if isolation != "auto":
        return isolation
    caps = capabilities()
    if caps["isolation"] is None:
        raise SandboxError(f"this machine gives the sandbox no namespaces ({caps['reason']}): untrusted code would "
                           "run with rlimits only, able to read host files and signal processes, so it is refused. "
                           "Fix: util-linux's unshare and root or unprivileged user namespaces "
                           "(sysctl kernel.unprivileged_userns_clone=1); or accept the risk for code you trust with "
                           f"isolation='{UNSAFE}' (python -m evals.run sandbox={UNSAFE})")
    return caps["isolation"]


# ------------------------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------------------------
def _env(workdir: str, extra: dict | None) -> dict:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir,
           "TMPDIR": workdir, "PYTHONIOENCODING": "utf-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(extra or {})
    return env


def _rlimits(limits: Limits) -> dict:
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    return {"CPU": (cpu, cpu + 1), "AS": (limits.memory_bytes,) * 2, "FSIZE": (limits.file_size_bytes,) * 2,
            "NPROC": (limits.max_processes,) * 2, "STACK": (limits.stack_bytes,) * 2, "CORE": (0, 0)}


class _Tail:
    """Keeps the last ``keep`` bytes of a stream and counts them all."""

    def __init__(self, keep: int):
        self.keep, self.total, self.buf = keep, 0, bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        del self.buf[:-self.keep]

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")


def _procs(field: int, value: int) -> list[int]:
    """Pids whose /proc/<pid>/stat field (after the command name: 1 = ppid, 2 = pgrp) equals ``value``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[field]) == value:
                found.append(int(entry.name))
    return found


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _terminate(proc: subprocess.Popen, namespaces: bool) -> None:
    """Kill the sandbox so that every process is reaped by its own parent before we return.

    A blunt ``killpg`` would orphan the processes below its leader, leaving zombies until the host's init gets to
    them. With namespaces we kill only the namespace's init (the supervisor, child of ``unshare``): the kernel then
    kills and reaps the whole pid namespace and ``unshare`` reaps the supervisor. Without, we kill everything in
    the group below the supervisor, which reaps them (it is a child subreaper) and exits.
    """
    if proc.poll() is None:
        _kill(_procs(1, proc.pid) if namespaces else [p for p in _procs(2, proc.pid) if p != proc.pid])
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left (a stuck supervisor, or unshare itself)
    except ProcessLookupError:
        pass
    proc.wait()


def _kill_uid(uid: int) -> None:
    """Without a pid namespace, a program can leave the process group (setsid); its unique uid still finds it."""
    subprocess.run([sys.executable, "-I", "-c", "import os, signal\nfor _ in range(3):\n    try: os.kill(-1, 9)\n"
                    "    except OSError: pass"], user=uid, group=uid, extra_groups=[], env={}, check=False)


def _run_raw(*, source: str | None = None, stdin: str = "", entry: str | None = None, args: Any = None,
             limits: Limits = Limits(), isolation: str = "auto", on_frame: Callable[[dict], bool] | None = None,
             step_timeout: float | None = None, extra_env: dict | None = None, allow_fork: bool = False) -> ExecResult:
    mode = isolation if isolation in ("namespaces", UNSAFE) else resolve_isolation(isolation)
    namespaces = mode == "namespaces"
    group = memory_cgroup.create(limits.total_memory_bytes) if memory_cgroup.available() else None
    if group is None:  # no cgroup: bound the total through the number of processes instead
        limits = replace(limits, max_processes=limits.process_cap())
    root = os.geteuid() == 0
    drop = root and (namespaces or all(_reachable_by_others(p) for p in _expose_paths()))
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if drop else None
    workdir = WORKDIR_NS if namespaces else tempfile.mkdtemp(prefix="effopd-sandbox-")
    worker = {"entry": entry, "args": args, "source": source, "stdin": stdin, "import_root": REPO_ROOT,
              "guards": not namespaces, "allow_fork": allow_fork}
    cfg = {"namespaces": namespaces, "uid": uid, "workdir": workdir, "expose": _expose_paths(),
           "tmpfs_bytes": limits.tmpfs_bytes, "rlimits": _rlimits(limits), "env": _env(workdir, extra_env),
           "worker": worker}
    payload = pickle.dumps(cfg)
    prefix = [shutil.which("unshare") or "unshare", *_NS_FLAGS] if namespaces else []
    if namespaces and not root:
        prefix += ["--user", "--map-root-user"]
    ch_r, ch_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    result = ExecResult(isolation=mode)
    result.setup["memory_total"] = {"bytes": limits.total_memory_bytes, "max_processes": limits.max_processes,
                                    "by": f"cgroup {group.version}" if group else "process cap"}
    # In the group from the first instruction: the shell joins it, then execs the sandbox (which forks after).
    join = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group.procs)] if group else []
    start = time.monotonic()
    try:
        proc = subprocess.Popen([*join, *prefix, sys.executable, "-I", "-B", CHILD, "supervise", str(ch_w),
                                 str(ctl_w)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                pass_fds=(ch_w, ctl_w), start_new_session=True, env=_env(workdir, None), cwd="/")
    finally:
        os.close(ch_w)
        os.close(ctl_w)
    result.pgid = proc.pid
    try:
        _pump(proc, payload, ch_r, ctl_r, limits, result, on_frame, step_timeout, start)
    finally:
        _terminate(proc, namespaces)
        result.wall_s = time.monotonic() - start
        if group is not None:
            result.setup["memory_total"].update(peak_bytes=group.peak_bytes(), cap_hits=group.oom_kills())
            group.close()
        for fd in (ch_r, ctl_r):
            os.close(fd)
        if uid is not None and not namespaces:
            _kill_uid(uid)
        if not namespaces:
            shutil.rmtree(workdir, ignore_errors=True)
    if "setup_error" in result.setup:
        raise SandboxError(result.setup["setup_error"])
    return result


def _pump(proc, payload, ch_r, ctl_r, limits, result, on_frame, step_timeout, start) -> None:
    """Feed the config, then read stdout/stderr/channel/control until the worker is done or a limit is hit."""

    def feed():
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    threading.Thread(target=feed, daemon=True).start()
    out, err = _Tail(limits.tail_bytes), _Tail(limits.tail_bytes)
    lines = {ch_r: bytearray(), ctl_r: bytearray()}
    sel = selectors.DefaultSelector()
    for f in (proc.stdout, proc.stderr):
        sel.register(f, selectors.EVENT_READ)
    for fd in (ch_r, ctl_r):
        sel.register(fd, selectors.EVENT_READ)
    wall_deadline = start + limits.wall_seconds
    step_deadline = start + limits.startup_seconds + (step_timeout or 0)
    worker_done_at = None
    max_line = 2 * limits.file_size_bytes + (1 << 16)
    while sel.get_map():
        now = time.monotonic()
        if now >= wall_deadline:
            result.killed = "wall"
            return
        if step_timeout is not None and now >= step_deadline and worker_done_at is None:
            result.killed = "step"
            return
        if worker_done_at is not None and now - worker_done_at > 1.0:
            return  # the worker is gone; something it left behind holds a pipe open
        timeout = min(wall_deadline, step_deadline if step_timeout is not None else wall_deadline) - now
        for key, _ in sel.select(timeout=max(0.0, min(timeout, 0.25))):
            fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()
            data = os.read(fd, 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
                continue
            if key.fileobj is proc.stdout or key.fileobj is proc.stderr:
                tail = out if key.fileobj is proc.stdout else err
                tail.add(data)
                result.stdout, result.stderr, result.stdout_bytes = out.text(), err.text(), out.total
                if tail.total > limits.file_size_bytes:
                    result.killed = "output"
                    return
                continue
            buf = lines[fd]
            buf += data
            while (nl := buf.find(b"\n")) >= 0:
                raw = bytes(buf[:nl])
                del buf[:nl + 1]
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue  # garbage on the channel (the program wrote to it): ignored
                if not isinstance(frame, dict):
                    continue
                if fd == ctl_r:
                    _on_control(frame, result)
                    if frame.get("event") == "exit":
                        worker_done_at = time.monotonic()
                    continue
                step_deadline = time.monotonic() + (step_timeout or 0)
                if on_frame is None:
                    result.frames.append(frame)
                elif on_frame(frame):
                    result.killed = "stopped"
                    return
            if len(buf) > max_line:
                result.killed = "output"
                return


def _on_control(frame: dict, result: ExecResult) -> None:
    event = frame.pop("event", None)
    if event == "setup":
        result.setup.update(frame)
    elif event == "setup_error":
        result.setup["setup_error"] = frame.get("message", "")
    elif event == "exit":
        result.exit_code, result.signal, result.cpu_s = frame.get("code"), frame.get("signal"), frame.get("cpu_s")


def run(*, entry: str, args: Any, limits: Limits = Limits(), isolation: str = "auto",
        on_frame: Callable[[dict], bool] | None = None, step_timeout: float | None = None,
        extra_env: dict | None = None, allow_fork: bool = False) -> ExecResult:
    """Call the trusted ``entry`` ("package.module:function") as ``function(args, channel)`` inside the sandbox.

    ``args`` is pickled to the child (trusted direction); the child reports with ``channel.send(dict)`` (JSON,
    untrusted direction). ``on_frame(frame) -> True`` stops the run early (e.g. at the first failed test).
    ``step_timeout``: kill when no frame arrives for that long (after ``limits.startup_seconds`` for the first).
    ``allow_fork`` only matters for the unsafe-rlimits mode, whose guards otherwise deny ``os.fork``.
    """
    return _run_raw(entry=entry, args=args, limits=limits, isolation=isolation, on_frame=on_frame,
                    step_timeout=step_timeout, extra_env=extra_env, allow_fork=allow_fork)


def run_python(source: str, stdin: str = "", limits: Limits = Limits(), isolation: str = "auto") -> ExecResult:
    """``python main.py < stdin`` in the sandbox; see ``classify`` for the status."""
    return _run_raw(source=source, stdin=stdin, limits=limits, isolation=isolation)


# ------------------------------------------------------------------------------------------------------------
# classification and parallel map
# ------------------------------------------------------------------------------------------------------------
_MEMORY_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")


def classify(r: ExecResult, limits: Limits = Limits()) -> str:
    """ok | compile_error | runtime_error | timeout | memory_limit | output_limit, from an ExecResult's facts.

    CPU exhaustion (SIGXCPU, or SIGKILL at the hard limit) is a timeout; SIGXFSZ or EFBIG an output limit; a
    MemoryError (reported by the child, or in the stderr tail) a memory limit.
    """
    events = {f.get("event"): f for f in r.frames}
    if r.killed in ("wall", "step"):
        return "timeout"
    if r.killed == "output" or r.signal == signal.SIGXFSZ or "File too large" in r.stderr[-2000:]:
        return "output_limit"
    if "compile_error" in events:
        return "compile_error"
    if r.signal == signal.SIGXCPU or (r.signal == signal.SIGKILL and (r.cpu_s or 0) >= int(limits.cpu_seconds)):
        return "timeout"
    if events.get("error", {}).get("type") == "MemoryError" or any(m in r.stderr[-2000:] for m in _MEMORY_MARKERS):
        return "memory_limit"
    if r.exit_code != 0 and r.setup.get("memory_total", {}).get("cap_hits"):  # the cgroup's cap ended a process
        return "memory_limit"
    if r.exit_code == 0 and r.killed is None:
        return "ok"
    return "runtime_error"


def map_bounded(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 2) -> list:
    """``[fn(x) for x in items]`` with at most ``workers`` sandboxes alive at once (threads: each only waits on
    its child process), order preserved."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))

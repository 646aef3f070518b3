"""Containment tests for evals.graders.code.sandbox: each one really attempts the attack, then checks the parent.

Run in both isolations where the machine has them: ``namespaces`` (real containment) and the ``unsafe-rlimits`` mode
(rlimits + best-effort audit-hook guards; only by name). Where it cannot contain something, the test says so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from evals.graders.code import sandbox
from evals.graders.code.sandbox import Limits, classify, run_python

pytestmark = pytest.mark.slow  # trains, builds worlds or spawns sandboxes: not in make test-fast

if not sys.platform.startswith("linux"):
    pytest.skip("the sandbox needs Linux (rlimits, namespaces, /proc)", allow_module_level=True)

CAPS = sandbox.capabilities()
MODES = [pytest.param("namespaces", marks=pytest.mark.skipif(not CAPS["namespaces"], reason=CAPS["reason"] or "-")),
         "unsafe-rlimits"]
FAST = Limits(cpu_seconds=2, wall_seconds=3, memory_bytes=512 << 20, max_processes=16)


def _uid_processes(uid: int | None) -> list[int]:
    if uid is None:
        return []
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid:
                pids.append(int(d.name))
        except FileNotFoundError:
            pass
    return pids


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def outside_dirs(tmp_path):
    """World-writable directories the program must not touch: one under /tmp (pytest's), one outside /tmp
    (under the repo's ignored .cache/), each with a world-writable sentinel file."""
    dirs = [tmp_path / "victim", Path(sandbox.REPO_ROOT) / ".cache" / f"sandbox-victim-{uuid.uuid4().hex[:8]}"]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "sentinel").write_text("keep")
        os.chmod(d, 0o777)
        os.chmod(d / "sentinel", 0o666)
    yield dirs
    shutil.rmtree(dirs[1], ignore_errors=True)


def test_capabilities_report():
    assert CAPS["isolation"] in ("namespaces", None)
    if CAPS["namespaces"]:
        assert CAPS["setup"]["readonly_fs"] and CAPS["setup"]["pid_ns"] and "/tmp" in CAPS["setup"]["private_tmp"]


@pytest.mark.parametrize("mode", MODES)
def test_runs_clean_program_with_clean_env_and_private_cwd(mode, monkeypatch):
    monkeypatch.setenv("EFFOPD_TEST_SECRET", "s3cr3t-value-42")
    src = ("import os, sys\nprint(input()[::-1])\nopen('scratch.txt', 'w').write('mine')\n"
           "print(open('scratch.txt').read(), os.getcwd())\nprint(dict(os.environ))\n")
    r = run_python(src, stdin="olleh\n", limits=FAST, isolation=mode)
    assert classify(r, FAST) == "ok", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hello" and lines[1].startswith("mine ")
    assert "s3cr3t-value-42" not in r.stdout and "EFFOPD_TEST_SECRET" not in r.stdout
    workdir = lines[1].split(" ", 1)[1]
    assert workdir != os.getcwd() and not Path(workdir).exists()  # private, and gone (namespaces: a private tmpfs)


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode):
    start = time.monotonic()
    r = run_python("while True:\n    pass\n", limits=FAST, isolation=mode)
    assert classify(r, FAST) == "timeout"
    assert time.monotonic() - start < FAST.wall_seconds + 2.0  # killed by CPU limit or the wall clock, with slack
    assert not _group_alive(r.pgid)


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb_is_contained(mode):
    bomb = ("import os\nwhile True:\n    try:\n        if os.fork() == 0:\n            os.setsid()\n"  # escape the pgrp
            "    except OSError:\n        pass\n")
    r = run_python(bomb, limits=FAST, isolation=mode)
    assert classify(r, FAST) in ("timeout", "runtime_error")
    assert not _group_alive(r.pgid)
    time.sleep(0.2)
    assert _uid_processes(r.setup.get("uid")) == []  # nothing left, not even the setsid() escapees
    assert subprocess.run(["true"]).returncode == 0  # the parent can still spawn


@pytest.mark.parametrize("mode", MODES)
def test_memory_bomb_is_contained(mode):
    r = run_python("x = []\nwhile True:\n    x.append(bytearray(50 << 20))\n", limits=FAST, isolation=mode)
    assert classify(r, FAST) in ("memory_limit", "runtime_error")
    assert r.cpu_s is not None and r.killed is None  # the rlimit stopped it, not our wall clock
    assert len(bytearray(64 << 20)) == 64 << 20  # the parent still allocates


@pytest.mark.parametrize("mode", MODES)
def test_writing_outside_the_workdir_is_blocked(mode, outside_dirs):
    targets = [str(d / "pwned.txt") for d in outside_dirs] + [str(Path(sandbox.REPO_ROOT) / "pwned.txt")]
    src = (f"import os\nfor t in {targets!r}:\n    try:\n        open(t, 'w').write('x')\n        print('WROTE', t)\n"
           f"    except OSError as e:\n        print('blocked', t, type(e).__name__)\n"
           "open('inside.txt', 'w').write('ok')\nprint('inside', open('inside.txt').read())\n")
    r = run_python(src, limits=FAST, isolation=mode)
    assert "inside ok" in r.stdout, r.stderr  # writing is possible, just not outside
    assert "WROTE" not in r.stdout
    for t in targets:
        assert not Path(t).exists()


@pytest.mark.parametrize("mode", MODES)
def test_deleting_outside_the_workdir_is_blocked(mode, outside_dirs):
    src = (f"import os, shutil\nfor d in {[str(d) for d in outside_dirs]!r}:\n"
           "    for attack in (lambda: os.remove(d + '/sentinel'), lambda: os.rename(d + '/sentinel', d + '/moved'),\n"
           "                   lambda: shutil.rmtree(d)):\n"
           "        try:\n            attack()\n            print('DONE', d)\n        except OSError as e:\n"
           "            print('blocked', type(e).__name__)\n")
    r = run_python(src, limits=FAST, isolation=mode)
    assert "DONE" not in r.stdout, r.stdout + r.stderr
    for d in outside_dirs:
        assert (d / "sentinel").read_text() == "keep"


@pytest.mark.parametrize("mode", MODES)
def test_subprocesses_are_contained_or_blocked(mode, outside_dirs):
    """namespaces: subprocesses run, inside the same jail; unsafe-rlimits: process creation is denied."""
    target = outside_dirs[1] / "from-shell"
    src = (f"import os, subprocess\nprint('ls rc', subprocess.run(['ls', '/']).returncode)\n"
           f"print('system rc', os.system('touch {target}'))\n")
    r = run_python(src, limits=FAST, isolation=mode)
    assert not target.exists()
    if mode == "namespaces":
        assert "ls rc 0" in r.stdout and "system rc 0" not in r.stdout, r.stdout + r.stderr
    else:
        assert "PermissionError" in r.stderr and "ls rc" not in r.stdout


@pytest.mark.parametrize("mode", MODES)
def test_parent_environment_secrets_are_unreadable(mode, monkeypatch):
    monkeypatch.setenv("EFFOPD_TEST_SECRET", "s3cr3t-value-42")
    src = ("import os\nprint(dict(os.environ))\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n"
           "        try:\n            print(open(f'/proc/{pid}/environ', 'rb').read())\n"
           "        except OSError:\n            pass\n")
    r = run_python(src, limits=FAST, isolation=mode)
    assert classify(r, FAST) == "ok", r.stderr
    assert "s3cr3t-value-42" not in r.stdout  # neither its own env nor any other process's /proc/<pid>/environ


@pytest.mark.parametrize("mode", MODES)
def test_network_is_unreachable(mode):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    src = (f"import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n    try:\n"
           "        socket.create_connection(addr, timeout=1).close()\n        print('CONNECTED', addr)\n"
           "    except OSError as e:\n        print('blocked', addr, type(e).__name__)\n")
    try:
        r = run_python(src, limits=FAST, isolation=mode)
        assert "CONNECTED" not in r.stdout and r.stdout.count("blocked") == 2, r.stdout + r.stderr
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the parent's listener
    finally:
        server.close()


@pytest.mark.parametrize("mode", MODES)
def test_output_flood_and_compile_error(mode):
    flood = Limits(cpu_seconds=2, wall_seconds=3, file_size_bytes=1 << 20)
    r = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", limits=flood, isolation=mode)
    assert classify(r, flood) == "output_limit" and len(r.stdout) <= flood.tail_bytes
    assert classify(run_python("def f(:\n", limits=FAST, isolation=mode)) == "compile_error"
    assert classify(run_python("raise ValueError('boom')", limits=FAST, isolation=mode)) == "runtime_error"


def test_auto_refuses_without_namespaces_and_rlimits_must_be_named_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox, "_CAPS", {**CAPS, "namespaces": False, "isolation": None,
                                          "reason": "unshare (util-linux) not found"})
    with pytest.raises(sandbox.SandboxError, match=r"no namespaces \(unshare \(util-linux\) not found\).*refused.*"
                                                   r"isolation='unsafe-rlimits'"):
        run_python("print('hi')", limits=FAST)
    with pytest.raises(ValueError, match="'rlimits' is now 'unsafe-rlimits'"):
        run_python("print('hi')", limits=FAST, isolation="rlimits")
    r = run_python("print('hi')", limits=FAST, isolation="unsafe-rlimits")  # named: it runs, and says how
    assert r.stdout == "hi\n" and r.isolation == "unsafe-rlimits"


FORK_AND_HOLD = """
import os, time
kids = []
for i in range({n}):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            block = b"x" * ({mb} << 20)  # touched pages: counted by the kernel
            time.sleep(1.5)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    kids.append(pid)
held = sum(os.waitpid(p, 0)[1] == 0 for p in kids)
print(len(kids), held)
"""


@pytest.mark.skipif(not CAPS["namespaces"], reason=CAPS["reason"] or "no namespaces")
@pytest.mark.skipif(sandbox.memory_cgroup.available() is None, reason="no memory cgroup can be created here")
def test_total_memory_of_all_processes_is_capped():
    """Four children holding 600 MB each under a 1 GiB total (1 GiB per process): the cgroup keeps the sum under
    the cap, so they cannot all hold their block at once."""
    limits = Limits(cpu_seconds=10, wall_seconds=20, memory_bytes=1 << 30, total_memory_bytes=1 << 30,
                    max_processes=16)
    r = run_python(FORK_AND_HOLD.format(n=4, mb=600), limits=limits, isolation="namespaces")
    total = r.setup["memory_total"]
    assert total["by"].startswith("cgroup") and total["bytes"] == 1 << 30
    assert total["peak_bytes"] is None or total["peak_bytes"] <= (1 << 30), total
    assert r.stdout.strip() != "4 4", r.stdout  # not every child held its 600 MB
    assert total["cap_hits"] > 0


def test_without_a_cgroup_the_process_count_bounds_the_total(monkeypatch):
    assert Limits(memory_bytes=512 << 20, total_memory_bytes=1 << 30, max_processes=64).process_cap() == 2
    assert Limits(memory_bytes=1 << 30, total_memory_bytes=256 << 20).process_cap() == 1
    if not CAPS["namespaces"]:
        pytest.skip(CAPS["reason"] or "no namespaces: RLIMIT_NPROC needs the sandbox's own uid")
    monkeypatch.setattr(sandbox.memory_cgroup, "available", lambda: None)
    limits = Limits(cpu_seconds=5, wall_seconds=10, memory_bytes=512 << 20, total_memory_bytes=1 << 30)
    r = run_python(FORK_AND_HOLD.format(n=4, mb=1), limits=limits, isolation="namespaces")
    assert r.setup["memory_total"] == {"bytes": 1 << 30, "max_processes": 2, "by": "process cap"}
    forked = int(r.stdout.split()[0])
    assert forked <= 1, r.stdout  # the worker plus one child: 2 x 512 MB fits the 1 GiB total


@pytest.mark.skipif(not CAPS["namespaces"], reason=CAPS["reason"] or "no namespaces")
def test_host_files_outside_what_python_needs_do_not_exist(outside_dirs):
    """World-readable host files (another project's folder, the checkout's caches, /etc's other files, /home) are
    not in the jail's tree at all; the interpreter, its libraries and the evals package are."""
    victims = [str(d / "sentinel") for d in outside_dirs]
    for d in outside_dirs:
        os.chmod(d, 0o755)
        os.chmod(d / "sentinel", 0o644)
    probes = [*victims, "/etc/hostname", "/etc/os-release", "/home", str(Path(sandbox.REPO_ROOT) / "bench"),
              str(Path(sandbox.REPO_ROOT) / "README.md")]
    src = ("import os, sys, json\n"
           f"print(json.dumps({{p: os.path.exists(p) for p in {probes!r}}}))\n"
           "print(json.dumps(sorted(os.listdir('/'))))\n"
           f"print(os.path.exists({str(Path(sandbox.REPO_ROOT) / 'evals' / '__init__.py')!r}), "
           "os.path.exists(sys.executable))\n")
    r = run_python(src, limits=FAST, isolation="namespaces")
    assert r.exit_code == 0, r.stderr
    seen, top, needed = r.stdout.splitlines()
    assert json.loads(seen) == {p: False for p in probes}
    # A checkout or venv under a private tmpfs (/tmp) is staged in /.stash before being bound back on top of it
    # (sandbox_child._build_jail): that folder holds the exposed paths only.
    from evals.graders.code.sandbox_child import PRIVATE_TMPFS

    staged = any(p == t or p.startswith(t + "/") for p in sandbox._expose_paths() for t in PRIVATE_TMPFS)
    assert set(json.loads(top)) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc",
                                    "tmp", "var", *(p.strip("/").split("/")[0] for p in sandbox._expose_paths()),
                                    *([".stash"] if staged else [])}
    assert needed == "True True"
    assert set(r.setup["new_root"]) >= set(sandbox._expose_paths())

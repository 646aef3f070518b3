"""The inside of the sandbox: a supervisor that builds the jail and a worker that runs the untrusted program.

This file runs as a script (``python -I -B sandbox_child.py supervise|work ...``), never imported by the parent,
so nothing but the standard library is loaded before the jail exists. ``sandbox.py`` is the parent side.

Supervisor (trusted; pid 1 of a fresh pid namespace when namespaces are on):
  reads its pickled config from stdin; with namespaces, builds a new root on a tmpfs that holds only what a
  Python program needs (``SYSTEM_PATHS``: /usr and the library dirs, the few /etc files the loader and libc read;
  the interpreter, the venv and the project's ``evals`` package (``expose``); five character devices; a fresh
  /proc), bind-mounted at their own paths, pivots into it and detaches the host's tree, so nothing else of the
  host (homes, other projects, /etc/shadow, the checkout's runs and caches) exists for the program. The new tree
  is read-only and nosuid, with private tmpfs mounts on /tmp, /var/tmp and /dev/shm. It then forks the worker,
  pipes it its config, reaps every process until the worker exits and
  reports the worker's exit status and CPU time on the control fd. Its own exit tears the pid namespace down,
  which kills whatever the program left behind.
Worker (untrusted from the first line of user code on):
  rlimits, uid drop (when the parent is root) and a parent-death signal are set before ``exec`` of a fresh
  interpreter; the worker then runs either a script or a trusted entry function (``module:function``) that
  reports over the channel fd. Without namespaces, best-effort audit-hook guards are installed (see
  ``install_guards``): they stop a well-behaved Python program, not an adversary with ctypes-free tricks we missed.
"""

from __future__ import annotations

import builtins
import ctypes
import importlib
import json
import os
import pickle
import resource
import signal
import struct
import sys
import time
import traceback

MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000  # 442 on every arch (syscalls >= 424 are unified)
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
PRIVATE_TMPFS = ("/tmp", "/var/tmp", "/dev/shm")
# The program's working dir inside the jail: on the private tmpfs the sandbox mounts over /tmp in its own mount
# namespace, so it never touches (or needs) the host's /tmp.
WORKDIR_NS = PRIVATE_TMPFS[0] + "/sandbox"

_LIBC = []


def _libc():
    """libc with mount(2) prototypes, loaded only in the supervisor (the worker never holds resolved symbols)."""
    if not _LIBC:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _LIBC.append(lib)
    return _LIBC[0]


class Channel:
    """Newline-delimited JSON frames to the parent: one ``os.write`` loop per frame, no buffering to lose."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, frame: dict) -> None:
        data = (json.dumps(frame, default=repr) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]


# ------------------------------------------------------------------------------------------------------------
# supervisor
# ------------------------------------------------------------------------------------------------------------
def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(_libc().mount(enc(src), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def _tmpfs(target: str, size: int, mode: str = "1777") -> None:
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}")


# What a Python program needs of the host, besides ``expose`` (interpreter, venv, the project's evals package):
# the system's binaries and libraries and the /etc files the dynamic loader and libc read. Missing ones are skipped.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache",
                "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group",
                "/etc/nsswitch.conf", "/etc/alternatives")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Where the new root is assembled: a tmpfs mounted (in our namespace only) over the first of these directories
# that holds nothing the jail needs, so that exposed paths anywhere, /tmp included, stay reachable for binding.
STAGING = ("/mnt", "/media", "/srv", "/boot", "/opt", "/tmp")
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
MS_NOEXEC, MS_RDONLY, MS_REMOUNT = 8, 1, 32


def _bind_into(root: str, path: str) -> str | None:
    """Show the host's ``path`` at the same path under ``root`` (a symlink is recreated, not followed)."""
    if not os.path.lexists(path):
        return None
    target = root + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
        os.symlink(os.readlink(path), target)
        return path
    if os.path.isdir(path):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        open(target, "a").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    return path


def _pivot_root(new_root: str) -> None:
    """Make ``new_root`` (a mount point) our ``/`` and detach the old root (pivot_root(".", ".") idiom)."""
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: syscall number unknown on {os.uname().machine}")
    os.chdir(new_root)
    _check(_libc().syscall(number, b".", b"."), "pivot_root")
    _check(_libc().umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


def _build_jail(cfg: dict) -> dict:
    """Mount namespace setup (we are root in it): a new root with only what Python needs, read-only, private
    scratch, workdir. Returns facts."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    needed = (*SYSTEM_PATHS, *cfg["expose"])
    root = next((d for d in STAGING if os.path.isdir(d) and not os.path.islink(d)
                 and not any(p == d or p.startswith(d + "/") for p in needed)), None)
    if root is None:
        raise OSError(f"no staging directory for the jail's root: each of {STAGING} is missing or holds an "
                      "exposed path")
    _tmpfs(root, 1 << 20, "0755")  # in our namespace only; pivot_root needs a mount point
    # Paths under a private tmpfs (a checkout or venv in /tmp) would be covered by it: stash them, bind them back
    # on top of it once it is mounted.
    under_tmp = [p for p in needed if any(p == t or p.startswith(t + "/") for t in PRIVATE_TMPFS)]
    stash = {p: f"/.stash/{k}" for k, p in enumerate(under_tmp)}
    visible = [p for p in needed if p not in stash and _bind_into(root, p)]
    for p, place in stash.items():
        os.makedirs(root + place, mode=0o755)
        _mount(p, root + place, None, MS_BIND | MS_REC)
    for dev in DEVICES:
        _bind_into(root, dev)
    for d in ("/proc", *PRIVATE_TMPFS):
        os.makedirs(root + d, mode=0o755, exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this pid namespace's
    _pivot_root(root)
    attr = ctypes.create_string_buffer(struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, MS_PRIVATE, 0))
    _check(_libc().syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, len(attr.raw)), "mount_setattr /")
    for target in PRIVATE_TMPFS:
        _tmpfs(target, cfg["tmpfs_bytes"])
    for p, place in stash.items():
        os.makedirs(p, mode=0o755, exist_ok=True)
        _mount(place, p, None, MS_BIND | MS_REC)
        _mount(None, p, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)  # read-only like the rest
        visible.append(p)
    os.mkdir(WORKDIR_NS, 0o700)
    return {"readonly_fs": True, "private_tmp": list(PRIVATE_TMPFS), "new_root": visible}


def _exec_worker(cfg: dict, workdir: str, channel_fd: int, config_r: int) -> None:
    """In the forked child: confine, then exec a fresh interpreter (rlimits such as the stack apply from exec)."""
    os.dup2(config_r, 0)
    os.close(config_r)
    os.chdir(workdir)
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    os.set_inheritable(channel_fd, True)
    here = os.path.abspath(__file__)
    os.execve(sys.executable, [sys.executable, "-I", "-B", here, "work", str(channel_fd)], cfg["env"])


def _kill_uid(uid: int) -> None:
    """Kill every process of the (per-run, otherwise unused) sandbox uid: ``kill(-1)`` from a process of that uid."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):  # a fork racing the first sweep is caught by the next
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def supervise(channel_fd: int, control_fd: int) -> None:
    control = Channel(control_fd)
    os.set_inheritable(control_fd, False)  # the worker's exec closes it: only we speak on the control fd
    cfg = pickle.loads(sys.stdin.buffer.read())
    try:
        facts = {"pid_ns": os.getpid() == 1, "uid": cfg["uid"]}
        if cfg["namespaces"]:
            facts.update(_build_jail(cfg))
            workdir = WORKDIR_NS
        else:
            facts.update(readonly_fs=False, private_tmp=[], new_root=None)
            workdir = cfg["workdir"]
        if cfg["uid"] is not None:
            os.chown(workdir, cfg["uid"], cfg["uid"])
        facts["workdir"] = workdir
    except OSError as exc:
        control.send({"event": "setup_error", "message": str(exc)})
        sys.exit(2)
    if not facts["pid_ns"]:  # orphans of the worker become our children, so we (not the host's init) reap them
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    config_r, config_w = os.pipe()
    worker = os.fork()
    if worker == 0:
        try:
            os.close(config_w)
            _exec_worker(cfg, workdir, channel_fd, config_r)
        except BaseException as exc:  # noqa: BLE001 - any failure here is ours, report it
            control.send({"event": "setup_error", "message": f"worker exec: {exc!r}"})
        os._exit(126)
    os.close(config_r)
    control.send({"event": "setup", **facts})
    try:
        with os.fdopen(config_w, "wb") as f:
            f.write(pickle.dumps(cfg["worker"]))
    except BrokenPipeError:
        pass  # the worker died before reading its config; its exit status tells why
    while True:  # as pid 1 we must reap orphans too; stop when the worker itself is done
        pid, status, usage = os.wait4(-1, 0)
        if pid == worker:
            break
    exit_frame = {"event": "exit", "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss,
                  "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                  "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}
    if not facts["pid_ns"]:  # with one, our exit kills and reaps the whole namespace
        if cfg["uid"] is not None:
            _kill_uid(cfg["uid"])  # leftovers, even those that left the process group, have the run's unique uid
        _reap_children(deadline=time.monotonic() + 0.5)
    control.send(exit_frame)


def _reap_children(deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


# ------------------------------------------------------------------------------------------------------------
# worker
# ------------------------------------------------------------------------------------------------------------
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DENIED_ALWAYS = {
    "socket.__new__", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.forkpty", "os.kill",
    "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "webbrowser.open",
}
# Events whose first two arguments are paths that must stay inside the work directory.
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.link", "os.symlink",
                "os.mkdir", "os.utime", "shutil.rmtree", "shutil.move"}


def _other_process_secret(path: str) -> bool:
    """/proc/<pid>/{environ,mem,...} of another process: without a pid namespace and as the same uid, the parent's
    environment would be readable there."""
    parts = os.path.realpath(path).split("/")
    return len(parts) > 3 and parts[1] == "proc" and parts[2].isdigit() and int(parts[2]) != os.getpid() \
        and parts[3] in ("environ", "mem", "cmdline", "auxv")


def install_guards(workdir: str, allow_fork: bool) -> None:
    """Best-effort containment through an audit hook (PEP 578), for when namespaces are not available.

    Denies: sockets, process creation (exec/spawn/subprocess/system, and fork unless ``allow_fork``), ctypes,
    signalling other processes, reading other processes' /proc/<pid>/environ, and writing/removing/renaming
    files outside ``workdir`` and /dev/shm.
    NOT a security boundary: C extensions, an interpreter bug or an already-imported native library bypass it.
    """
    allowed = (os.path.realpath(workdir) + os.sep, "/dev/shm/", "/dev/null")
    denied = set(_DENIED_ALWAYS) | (set() if allow_fork else {"os.fork"})

    def outside(path) -> bool:
        if isinstance(path, int) or path is None:
            return False
        full = os.path.realpath(os.fsdecode(path))
        return not (full + os.sep).startswith(allowed[0]) and not full.startswith(allowed[1:])

    def hook(event: str, args: tuple) -> None:
        if event in denied:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            if isinstance(path, (str, bytes)) and _other_process_secret(os.fsdecode(path)):
                raise PermissionError(f"sandbox: reading {path!r} is not allowed")
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and outside(path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed")
        elif event in _PATH_EVENTS and any(outside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
            raise PermissionError(f"sandbox: {event} outside the work directory is not allowed")

    sys.addaudithook(hook)


_KEEP_ALIVE: list = []  # original std streams: if collected they would close fds 0/1


def _open_onto(path: str, flags: int, target: int) -> None:
    """Open ``path`` as fd ``target``. The solution may have closed it (``open(0)`` closes fd 0 when collected),
    in which case ``os.open`` already returns ``target`` and must not be closed after the dup."""
    fd = os.open(path, flags, 0o600)
    if fd != target:
        os.dup2(fd, target)
        os.close(fd)


def redirect_stdio(stdin_path: str | None, stdout_path: str | None) -> None:
    """Point fds 0/1 (and fresh ``sys.stdin``/``sys.stdout``) at files, so ``input()``, ``sys.stdin.buffer``,
    ``open(0)`` and ``os.write(1, ...)`` all behave as in a real process."""
    import io

    _KEEP_ALIVE.extend([sys.stdin, sys.stdout, sys.__stdin__, sys.__stdout__])
    if stdin_path is not None:
        _open_onto(stdin_path, os.O_RDONLY, 0)
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                     encoding="utf-8", errors="replace")
    if stdout_path is not None:
        _open_onto(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 1)
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                       encoding="utf-8", errors="replace")


def run_script(source: str, stdin: str, channel: Channel) -> None:
    """``python main.py < stdin``: compile errors and the exception type are reported on the channel."""
    try:
        code = compile(source, "main.py", "exec")
    except (SyntaxError, ValueError) as exc:
        channel.send({"event": "compile_error", "message": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)
    with open(".stdin", "w") as f:
        f.write(stdin)
    redirect_stdio(".stdin", None)
    sys.argv = ["main.py"]
    try:
        exec(code, {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the program's own failure, reported like CPython would
        channel.send({"event": "error", "type": type(exc).__name__, "message": str(exc)[:500]})
        traceback.print_exc()
        sys.exit(1)


def work(channel_fd: int) -> None:
    cfg = pickle.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over RLIMIT_FSIZE: EFBIG we can report, not a silent kill
    channel = Channel(channel_fd)
    target = None
    if cfg.get("entry"):
        sys.path.insert(0, cfg["import_root"])
        module, _, func = cfg["entry"].partition(":")
        target = getattr(importlib.import_module(module), func)
    if cfg["guards"]:
        install_guards(os.getcwd(), allow_fork=cfg["allow_fork"])
    if target is not None:
        target(cfg["args"], channel)
    else:
        run_script(cfg["source"], cfg["stdin"], channel)


if __name__ == "__main__":
    if sys.argv[1] == "supervise":
        supervise(int(sys.argv[2]), int(sys.argv[3]))
    else:
        work(int(sys.argv[2]))

"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """A matplotlib figure saved as PNG the same way: a temporary file in the target's folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of a JSONL file ([] when it is missing); a line that is not JSON is an error naming the
    file and the line."""
    path = Path(path)
    return _parse_jsonl(path, path.read_text() if path.exists() else "")[0]


def note(message: str) -> None:
    """A one-line notice on stderr (printed at once: a crash right after it must not swallow it)."""
    print(message, file=sys.stderr, flush=True)


def resume_jsonl(path: str | Path, say=note) -> list[dict]:
    """The records of a JSONL file that an interrupted run appended to, left ready for more appends. A crash
    mid-write leaves a torn last line: it is dropped (the file rewritten atomically without it, and ``say`` told
    so in one line), so its record is written again. A bad line before the last is corruption, not a crash: an
    error naming the file and the line."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    records, kept, torn = _parse_jsonl(path, text, allow_torn_tail=True)
    if torn is not None:
        say(f"{path}: dropped its torn last line {torn} (a write cut short by a crash); that record is written again")
    fixed = kept if not kept or kept.endswith("\n") else kept + "\n"  # a last record cut before its newline
    if fixed != text:
        atomic_write_text(path, fixed)
    return records


def _parse_jsonl(path: Path, text: str, allow_torn_tail: bool = False) -> tuple[list[dict], str, int | None]:
    """(records, the text they come from, None); under ``allow_torn_tail`` an unparseable last line is left
    out instead: (records before it, the text before it, its line number). Any other bad line raises."""
    lines = text.splitlines(keepends=True)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if allow_torn_tail and i == last:
                return records, "".join(lines[:i]), i + 1
            fix = "fix or delete that line" if i != last else "delete that line (a write cut short by a crash)"
            raise ValueError(f"{path}: line {i + 1} is not JSON (column {err.colno}: {err.msg}); {fix}") from None
    return records, text, None


@contextlib.contextmanager
def file_lock(path: str | Path):
    """Exclusive advisory lock: parallel runs that need the same cached artefact wait for one builder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)

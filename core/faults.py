"""Fault injection for the crash-consistency tests: ``EFFOPD_FAULT=<point>@<step>`` makes the process kill itself
with SIGKILL (no cleanup, no flush: what a power cut or the OOM killer does) when it reaches ``<point>`` at global
step ``<step>``. Unset (always, outside tests), ``crash_point`` is one dictionary lookup.

Points (where the trainer calls ``crash_point``):
- ``step``: inside an optimizer step, after the update, before anything of that step is logged;
- ``validation``: EffOPD's validation, with the model moved to a candidate that is not accepted yet;
- ``eval``: inside a periodic evaluation, before its record is written;
- ``checkpoint_written``: every checkpoint file (and its manifest) written, before the folder is renamed into place;
- ``latest_moved``: right after ``checkpoints/latest`` names the new checkpoint, before older ones are deleted.

``tests/fault_injection.py`` kills a run at each point and checks that ``trainer.resume=auto`` ends where an
uninterrupted run does.
"""

from __future__ import annotations

import os
import signal

ENV = "EFFOPD_FAULT"
POINTS = ("step", "validation", "eval", "checkpoint_written", "latest_moved")


def crash_point(point: str, step: int) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, at = spec.partition("@")
    if want not in POINTS or not at.isdigit():
        raise ValueError(f"{ENV}={spec!r}: use <point>@<step> with a point among {POINTS}")
    if want == point and int(at) == step:
        os.kill(os.getpid(), signal.SIGKILL)

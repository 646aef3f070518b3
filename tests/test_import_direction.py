"""Imports run one way: core <- evals <- bench, and inside bench from the trainer's parts up to the studies.

Every import is checked, lazy ones inside functions included: a lower layer that needs something from a higher
one is a design bug (move the shared piece down), not something to hide behind a function-level import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.paths import REPO_ROOT

# Lowest first. A module may import its own layer and the layers before it, never a later one.
LAYERS = [
    ("core",),
    ("evals",),
    ("bench", "bench.config", "bench.distributed"),
    ("bench.algorithms",),
    ("bench.world",),
    ("bench.extrapolation",),
    ("bench.train",),
    ("bench.studies",),
    # the thin command modules (python -m bench.reproduce, ...) sit on top of everything
    ("bench.reproduce", "bench.analysis", "bench.leaderboard", "bench.tinyworld", "bench.submit"),
]
PACKAGES = ("core", "evals", "bench")


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix in LAYERS (``bench.world.tiny.build`` -> bench.world's)."""
    best, best_len = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_import_direction.py: add it to LAYERS")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of one of our packages in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # "from bench import distributed" imports the module bench.distributed
            found += [(node.lineno, f"{name}.{a.name}" if a.name != "*" else name) for a in node.names]
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES]


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py"))


def upward_imports(path: Path) -> list[str]:
    me = module_name(path)
    mine = layer_of(me)
    bad = []
    for line, target in imported_modules(path):
        # "from bench.world import World" names an attribute, not a module: fall back to the package's layer
        try:
            theirs = layer_of(target)
        except AssertionError:
            theirs = layer_of(target.rpartition(".")[0])
        if theirs > mine:
            bad.append(f"{path.relative_to(REPO_ROOT)}:{line} ({me}, layer {mine}) imports {target} (layer {theirs})")
    return bad


def test_every_import_runs_downward():
    bad = [msg for path in sources() for msg in upward_imports(path)]
    assert not bad, "imports against the layer order (tests/test_import_direction.py LAYERS):\n" + "\n".join(bad)


@pytest.mark.parametrize("source, target", [
    ("evals/run.py", "bench.train"),
    ("core/io.py", "evals.metrics"),
    ("bench/world/base.py", "bench.studies.speedup"),
])
def test_an_upward_import_is_caught(tmp_path, monkeypatch, source, target):
    """The checker itself: an added upward import (lazy, inside a function) is reported with its line."""
    fake = REPO_ROOT / source
    text = fake.read_text() + f"\n\ndef _probe():\n    import {target}  # noqa\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text if self == fake else _read(self))
    bad = upward_imports(fake)
    assert any(target in msg and source in msg for msg in bad), bad


_read = Path.read_text

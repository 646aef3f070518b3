"""The study framework: a registry of studies and the context a study runs in.

A study is one module under bench/studies/ that declares its grid (jobs from bench/studies/jobs.py), its
target and its tables, and registers its entry point::

    @register_study("table2", help="OPD vs EffOPD ...", options=(option("--seeds", type=int, default=5), ...))
    def reproduce_table2(ctx: StudyContext) -> dict:
        ctx.build_world("style")
        ctx.run(jobs)                 # launch what is not finished (the chosen launcher, stale-run policy)
        ...                           # build tables from the run folders, write them under ctx.args.out
        return table

``python -m bench.reproduce <study>`` (bench/studies/cli.py) finds it here; ``load_studies`` imports every
top-level module of bench.studies, so a new file is all it takes. Shared pieces, one each: jobs.py (the job
builder), launcher.py (launchers, fingerprints checked), speedup.py (the speedup table), run_metrics.py (what
else studies read from runs), report.py (formatting and the provenance footer), stats.py. A study module
never imports another study module.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.studies import report
from bench.studies.jobs import Job
from bench.studies.launcher import Launcher, LocalLauncher, run_jobs


@dataclass(frozen=True)
class Option:
    """One command-line option of a study: ``argparse.ArgumentParser.add_argument(*flags, **kwargs)``."""

    flags: tuple[str, ...]
    kwargs: dict


def option(*flags: str, **kwargs) -> Option:
    return Option(tuple(flags), kwargs)


@dataclass
class StudyContext:
    """What a running study gets: its options, the launcher, the stale-run policy, and its start time."""

    name: str
    args: Namespace
    launcher: Launcher | None = None
    stale: str = "refuse"
    t0: float = field(default_factory=lambda: time.time())
    stale_reused: list[dict] = field(default_factory=list)
    world_digests: dict[str, str] = field(default_factory=dict)  # model key -> weights digest, of built worlds

    def __post_init__(self) -> None:
        if self.launcher is None:
            self.launcher = LocalLauncher(workers=self.workers)

    @property
    def workers(self) -> int:
        return getattr(self.args, "workers", 2)

    def run(self, jobs: list[Job]) -> None:
        """Run the unfinished jobs (finished ones are checked against their fingerprints first)."""
        run_jobs(jobs, self.launcher, stale=self.stale, reused=self.stale_reused)

    def build_world(self, world: str = "style", n_builds: int = 1, overrides: tuple[str, ...] = ()) -> None:
        """Build (or find cached) builds 0..n_builds-1 of the tiny world before the runs start: here, once, rather
        than in the first run of each build, where parallel workers would race to train the same models. All
        builds are scheduled together (``build_worlds``): models they share train once, ``workers`` at a time.
        ``overrides``: world settings the study's jobs also pass (e.g. ``world.build_roles=[student]``)."""
        from bench.world.tiny.build import build_worlds, digests_of

        built = build_worlds([f"world={world}", *overrides], [b or None for b in range(n_builds)],
                             parallel=self.workers)
        self.world_digests.update(digests_of(built))

    def world_status(self) -> dict:
        """{"world_status": ...}: the worlds this study built or found, against the reference digests
        (bench/world/digest.py), for its result JSON; {} when it built none."""
        from bench.world.digest import world_status

        return {"world_status": world_status(self.world_digests)} if self.world_digests else {}

    def machine(self) -> dict:
        return report.machine(self.workers)

    def git_commit(self) -> str:
        return report.git_commit()

    def seconds(self, prior: float = 0.0) -> float:
        """Wall-clock seconds since the study started (plus ``prior``), rounded to 0.1 s."""
        return round(time.time() - self.t0 + prior, 1)

    def stale_record(self) -> dict:
        """{"stale_runs_reused": [...]} when ``--stale reuse`` let stale runs in; {} otherwise."""
        return {"stale_runs_reused": list(self.stale_reused)} if self.stale_reused else {}


@dataclass
class Study:
    name: str
    run: Callable[[StudyContext], dict]
    help: str
    options: tuple[Option, ...]
    module: str
    after: tuple[str, ...] = ()  # studies whose run folders this one reuses: ``all`` runs them first


STUDIES: dict[str, Study] = {}


def register_study(name: str, *, help: str = "", options: tuple[Option, ...] | list[Option] = (),
                   after: tuple[str, ...] = ()):
    """Decorator: register ``fn(ctx) -> dict`` as the study ``name`` (``python -m bench.reproduce <name>``).

    ``options`` are its command-line options (``option(...)``); ``after`` names studies whose run folders it
    reuses, so that ``python -m bench.reproduce all`` runs those first."""

    def deco(fn: Callable[[StudyContext], dict]) -> Callable[[StudyContext], dict]:
        if name in STUDIES and STUDIES[name].module != fn.__module__:
            raise ValueError(f"study {name!r} is registered twice: {STUDIES[name].module} and {fn.__module__}")
        STUDIES[name] = Study(name, fn, help or (fn.__doc__ or "").strip().split("\n")[0], tuple(options),
                              fn.__module__, tuple(after))
        return fn

    return deco


def load_studies() -> dict[str, Study]:
    """Import every top-level module of bench.studies (studies register themselves) and return the registry."""
    import bench.studies as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.ispkg and not mod.name.startswith("_"):
            importlib.import_module(f"bench.studies.{mod.name}")
    return STUDIES


def ordered_studies() -> list[Study]:
    """Every registered study, each after the studies it reuses runs from (then by name)."""
    studies, done, order = load_studies(), set(), []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in done:
            return
        if name in path:
            raise ValueError(f"studies reuse each other's runs in a cycle: {' -> '.join(path + (name,))}")
        for dep in studies[name].after:
            if dep in studies:
                visit(dep, path + (name,))
        done.add(name)
        order.append(studies[name])

    for name in sorted(studies):
        visit(name)
    return order


def get_study(name: str) -> Study:
    studies = load_studies()
    if name not in studies:
        raise KeyError(f"unknown study {name!r}; registered: {', '.join(studies)}")
    return studies[name]


def run_study(name: str, args: Namespace, launcher: Launcher | None = None, stale: str = "refuse") -> dict:
    """Run the registered study ``name`` with options ``args``; returns what the study returns."""
    study = get_study(name)
    return study.run(StudyContext(name, args, launcher=launcher, stale=stale))

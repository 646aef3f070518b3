"""One grader per benchmark kind, behind one call: samples in, per-sample (status, score, extracted) out.

- maths: ``evals.graders.pool.GraderPool`` (math-verify or strict in worker processes with deadlines);
- tinyworld: the trainer's own criterion (``evals.datasets.tinyworld_task.score_response``), so an eval of a
  tiny-world checkpoint scores exactly what the trainer's periodic eval scores; ``criterion`` names the world's
  target style too (``answer_in_style`` = the three-feature target, ``answer_in_style:carry`` = the flip world's);
- code: evalplus (HumanEval+ / MBPP+) through ``evals.graders.code.evalplus_grader``, on the code that
  evalplus's own ``sanitize`` extracts from the response (markdown fences, the entry point's dependencies),
  with evalplus's base + plus tests; the canonical-solution ceiling of ``results/code_ceiling.json``
  (``make code-ceiling``) is reported beside the score.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re

from core.paths import RESULTS_DIR
from evals.graders.math import MathGrade, extract_last_boxed
from evals.graders.pool import GradeItem, GraderPool

MATH_MODES = ("math_verify", "strict")
EVALPLUS_DATASETS = {"humanevalplus": "humaneval", "mbppplus": "mbpp"}
CODE_CEILING_FILE = RESULTS_DIR / "code_ceiling.json"


# Every grader returns the maths grader's record (status, score, extracted, detail): one shape in samples.jsonl.
SampleGrade = MathGrade


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Grader:
    """Context manager owning whatever the benchmark's grader needs (worker processes, caches)."""

    def __init__(self, bench, cfg):
        self.bench, self.cfg = bench, cfg
        self.name = cfg.grader or bench.grader
        if bench.kind == "math" and self.name not in MATH_MODES:
            raise ValueError(f"grader={self.name!r} for maths benchmark {bench.name!r}; choose one of {MATH_MODES}")
        if bench.kind != "math" and cfg.grader and cfg.grader != bench.grader:
            raise ValueError(f"grader={cfg.grader!r} does not apply to {bench.name!r} (its grader is "
                             f"{bench.grader!r}); leave grader empty")
        if bench.kind == "tiny":
            from evals.datasets.tinyworld_task import parse_criterion  # lazy, as in grade_tiny

            try:
                parse_criterion(cfg.criterion)
            except ValueError as exc:
                raise ValueError(f"criterion={cfg.criterion!r}: {exc} (answer_in_style:carry for world=flip)") from exc
        self.pool = None
        self.code_meta: dict = {}

    def __enter__(self) -> Grader:
        if self.bench.kind == "math":
            self.pool = GraderPool(workers=self.cfg.grader_workers, timeout_s=self.cfg.grader_timeout_s).__enter__()
        elif self.bench.kind == "code":
            try:
                import evalplus  # noqa: F401
            except ImportError as exc:
                raise ValueError(f"benchmark={self.bench.name} needs evalplus: `make install-code` (the `code` "
                                 "extra plus `pip install --no-deps evalplus==0.3.1`)") from exc
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.__exit__(*exc)

    def grade(self, examples, samples) -> list[SampleGrade]:
        """Grades of ``samples`` (GeneratedSample), each against its ``examples`` entry (same order)."""
        if self.bench.kind == "math":
            items = [GradeItem(s.response, e.answer, self.name, s.finish_reason == "length")
                     for e, s in zip(examples, samples)]
            return self.pool.grade(items)
        if self.bench.kind == "tiny":
            return [grade_tiny(e, s.response, s.finish_reason == "length", self.cfg.criterion)
                    for e, s in zip(examples, samples)]
        return self._grade_code(examples, samples)

    def _grade_code(self, examples, samples) -> list[SampleGrade]:
        from evals.graders.code.evalplus_grader import grade_evalplus

        code = [extract_code(s.response, e.meta.get("entry_point")) for e, s in zip(examples, samples)]
        has_code = [c is not None for c in code]
        todo = [{"task_id": e.id, "solution": c} for e, c, ok in zip(examples, code, has_code) if ok]
        graded = iter([])
        if todo:
            result = grade_evalplus(EVALPLUS_DATASETS[self.bench.name], todo, data_dir=self.cfg.data_dir or None,
                                    cache_dir=self.cfg.code_cache_dir or None, parallel=max(1, self.cfg.grader_workers),
                                    min_time_limit=self.cfg.code_min_time_limit_s,
                                    gt_time_limit_factor=self.cfg.code_timeout_factor, isolation=self.cfg.sandbox)
            self.code_meta = result.metadata
            graded = iter(result.grades)
        out = []
        for s, c, ok in zip(samples, code, has_code):
            truncated = s.finish_reason == "length"
            if not ok:
                out.append(SampleGrade("truncated" if truncated else "no_answer", 0.0, None))
                continue
            g = next(graded)
            detail = f"base={g.base_status} plus={g.plus_status}" + (f" ({g.message})" if g.message else "")
            status = "correct" if g.passed else "truncated" if truncated else "wrong"
            out.append(SampleGrade(status, float(g.passed), c, detail))
        return out


def grade_tiny(example, response: str, truncated: bool, criterion: str) -> SampleGrade:
    from evals.datasets.tinyworld_task import Problem, score_response  # lazy: evals imports without the trainer

    problem = Problem(uid=example.id, prompt=example.problem, answer=example.answer, a=example.meta["a"],
                      b=example.meta["b"])
    extracted = extract_last_boxed(response)
    score = score_response(problem, response, criterion)
    if score:
        return SampleGrade("correct", 1.0, extracted)
    status = "truncated" if truncated else "no_answer" if extracted is None else "wrong"
    return SampleGrade(status, 0.0, extracted)


def grader_info(grader: Grader) -> dict:
    info = {"name": grader.name, "kind": grader.bench.kind}
    if grader.bench.kind == "math":
        info.update({"math_verify_version": _version("math-verify"), "workers": grader.cfg.grader_workers,
                     "timeout_s": grader.cfg.grader_timeout_s})
    elif grader.bench.kind == "tiny":
        from evals.datasets.tinyworld_task import parse_criterion

        info["criterion"] = grader.cfg.criterion
        target = parse_criterion(grader.cfg.criterion)[1]
        if target is not None:  # the features the target style writes in their new form
            info["target_style"] = list(target.features)
    else:
        info.update({"evalplus_version": _version("evalplus"), "sandbox": grader.cfg.sandbox, **grader.code_meta,
                     "canonical_ceiling": code_ceiling(EVALPLUS_DATASETS[grader.bench.name])})
    return info


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(response: str, entry_point: str | None) -> str | None:
    """The program to grade: evalplus's ``sanitize`` (fences, the entry point and what it needs) when that
    gives code defining the entry point; else the last fenced block as written (it will fail, e.g. a syntax
    error, and count as a wrong answer); None when the response holds no definition at all (no answer)."""
    from evalplus.sanitize import sanitize

    clean = sanitize(response, entry_point)
    if defines(clean, entry_point):
        return clean
    blocks = _FENCE.findall(response)
    raw = blocks[-1] if blocks else response
    return raw if "def " in raw else None


def defines(code: str, entry_point: str | None) -> bool:
    """True when ``code`` parses as Python and defines ``entry_point`` (any code at all without one)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    if not entry_point:
        return bool(tree.body)
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry_point
               for n in ast.walk(tree))


def code_ceiling(dataset: str) -> dict | None:
    """This machine's canonical-solution pass rates (evalplus's references under our limits), if measured."""
    if not CODE_CEILING_FILE.exists():
        return None
    entry = json.loads(CODE_CEILING_FILE.read_text()).get("datasets", {}).get(dataset)
    if not entry:
        return None
    return {k: entry.get(k) for k in ("n_tasks", "base_pass_rate", "plus_pass_rate")} | {
        "source": str(CODE_CEILING_FILE.relative_to(RESULTS_DIR.parent))}

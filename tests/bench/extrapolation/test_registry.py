"""The extrapolation-method registry: ``effopd.method`` builds a registered hook from the config, a method
registered from outside runs in a training run of any algorithm, and bad names fail at start-up."""

from __future__ import annotations

import time

import pytest
import torch

from bench.config import compose_config
from bench.extrapolation import registry
from bench.extrapolation.effopd import DirectionProbe, EffOPD
from bench.extrapolation.registry import (
    EXTRAPOLATIONS,
    ExtrapolationContext,
    check_extrapolation,
    get_extrapolation,
    register_extrapolation,
    register_val_signal,
)
from bench.train import train
from bench.train.setup import build_extrapolation
from core.io import read_jsonl
from tests.bench.extrapolation.test_effopd import make_model
from tests.conftest import MICRO_RUN, MICRO_WORLD


@pytest.fixture
def scratch_registries(monkeypatch):
    monkeypatch.setattr(registry, "EXTRAPOLATIONS", dict(registry.EXTRAPOLATIONS))
    monkeypatch.setattr(registry, "VAL_SIGNALS", dict(registry.VAL_SIGNALS))


class SyncCounter:
    """A stand-in engine: counts weight syncs."""

    def __init__(self):
        self.syncs = 0

    def sync_weights(self):
        self.syncs += 1


def test_effopd_is_the_default_method_and_is_built_from_the_config():
    assert "effopd" in EXTRAPOLATIONS and get_extrapolation("effopd").needs_validation
    cfg = compose_config(["experiment=effopd", "trainer.seed=3", "effopd.max_tries=2", "trainer.output_dir=unused"])
    assert cfg.effopd.method == "effopd" and cfg.effopd.val_signal == "accuracy"
    engine, model = SyncCounter(), make_model()
    hook = build_extrapolation(cfg, model, engine, world=None)
    assert isinstance(hook, EffOPD)
    assert hook.cfg.max_tries == 2 and hook.seed == 3 and hook.scorer.signal.name == "accuracy"
    hook.on_weights_changed()
    assert engine.syncs == 1  # the engine's weight sync
    # Disabled: the direction probe, or nothing.
    cfg.effopd.enabled = False
    assert isinstance(build_extrapolation(cfg, model, engine, world=None), DirectionProbe)
    cfg.effopd.probe_when_disabled = False
    assert build_extrapolation(cfg, model, engine, world=None) is None


def test_a_registered_method_gets_the_context(scratch_registries):
    seen = []

    @register_extrapolation("plain", needs_validation=False)
    def build_plain(ctx: ExtrapolationContext):
        seen.append(ctx)
        return "the hook"

    cfg = compose_config(["effopd.enabled=true", "effopd.method=plain", "trainer.seed=5", "trainer.output_dir=unused"])
    model, engine, optimizer = make_model(), SyncCounter(), object()
    assert build_extrapolation(cfg, model, engine, world=None, optimizer=optimizer) == "the hook"
    (ctx,) = seen
    assert ctx.cfg is cfg and ctx.model is model and ctx.seed == 5 and ctx.optimizer is optimizer
    assert ctx.scorer is None  # needs_validation=False: no scorer is built
    ctx.on_weights_changed()
    assert engine.syncs == 1


def test_registering_a_name_twice_fails(scratch_registries):
    with pytest.raises(ValueError, match="registered twice"):
        register_extrapolation("effopd")(lambda ctx: None)
    with pytest.raises(ValueError, match="registered twice"):
        register_val_signal("accuracy")(lambda v, seed: None)


@pytest.mark.parametrize("override, message", [
    ("effopd.method=nope", "effopd.method='nope'"),
    ("effopd.val_signal=loss", "effopd.val_signal='loss'"),
    ("effopd.val_samples=0", "effopd.val_samples=0"),
    ("effopd.val_temperature=-1", "effopd.val_temperature=-1"),
    ("effopd.accept=gte", "effopd.accept='gte'"),  # the method's own check, at start-up now
    ("effopd.schedule=every:0", "effopd.schedule='every:0'"),
])
def test_bad_values_fail_at_start_up_naming_the_key(tmp_path, override, message):
    """Before any world is built or model loaded: the world cache stays empty."""
    cache = tmp_path / "cache"
    cfg = compose_config(["world=style", *MICRO_WORLD, f"world.cache_dir={cache}", *MICRO_RUN,
                          f"trainer.output_dir={tmp_path / 'run'}", "experiment=effopd", override])
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_extrapolation(cfg)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not cache.exists() or not any(cache.iterdir())


def test_the_method_check_runs_only_when_enabled():
    cfg = compose_config(["effopd.enabled=false", "effopd.accept=gte", "trainer.output_dir=unused"])
    check_extrapolation(cfg)  # the disabled method's options are not read
    cfg.effopd.method = "nope"
    with pytest.raises(ValueError, match="effopd.method"):  # but a misspelt name is refused either way
        check_extrapolation(cfg)


class Recorder:
    """A registered test method: every ``every`` steps it scores the model, scales the attention/MLP parameters
    by ``1 + scale`` (and syncs the engine), and logs a record."""

    def __init__(self, ctx: ExtrapolationContext, every: int = 2, scale: float = 1e-3):
        self.ctx, self.every, self.scale = ctx, every, scale
        self.params = {n: p for n, p in ctx.model.named_parameters() if "mlp" in n or "attn" in n}
        self.anchor = {n: p.detach().clone() for n, p in self.params.items()}
        self.steps, self.total_seconds, self.total_tokens = [], 0.0, 0

    @torch.no_grad()
    def after_step(self, step: int) -> dict | None:
        self.steps.append(step)
        if step % self.every:
            return None
        t0 = time.perf_counter()
        result = self.ctx.scorer(step)
        for p in self.params.values():
            p.mul_(1 + self.scale)
        self.ctx.on_weights_changed()
        self.anchor = {n: p.detach().clone() for n, p in self.params.items()}
        seconds = time.perf_counter() - t0
        self.total_seconds += seconds
        self.total_tokens += result.tokens
        return {"step": step, "score": result.score, "tokens": result.tokens, "seconds": seconds,
                "accepted_multiplier": self.scale}

    def state_dict(self) -> dict:
        return {"anchor": dict(self.anchor), "steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        self.anchor, self.steps = dict(state["anchor"]), list(state["steps"])


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["opd", "grpo"])
def test_a_registered_method_runs_in_a_training_run(micro_cfg, tmp_path, scratch_registries, experiment):
    hooks = []

    @register_extrapolation("recorder")
    def build_recorder(ctx: ExtrapolationContext) -> Recorder:
        hooks.append(Recorder(ctx))
        return hooks[-1]

    summary = train(micro_cfg([f"experiment={experiment}", "effopd.enabled=true", "effopd.method=recorder",
                               "effopd.val_signal=teacher_loglik", "trainer.save_every=2"]))
    (hook,) = hooks
    assert hook.steps == [1, 2, 3, 4]  # called after every optimizer step
    records = read_jsonl(tmp_path / "run" / "effopd.jsonl")
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["score"] < 0 and r["tokens"] > 0 for r in records)  # teacher_loglik: mean log-probabilities
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m.get("effopd/accepted_multiplier") for m in metrics] == [None, 1e-3, None, 1e-3]
    assert summary["algorithm"] == experiment
    assert summary["validation_seconds"] == pytest.approx(hook.total_seconds, abs=1e-4)
    assert summary["validation_tokens"] == hook.total_tokens > 0
    # The hook's weight changes reach the run: the final weights differ from a run without it.
    train(micro_cfg([f"experiment={experiment}"], out=tmp_path / "plain"))
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / d / "final_model" / "model.safetensors")) for d in ("run", "plain"))
    assert any(not torch.equal(a[k], b[k]) for k in a if "mlp" in k)


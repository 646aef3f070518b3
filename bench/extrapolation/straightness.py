"""How straight the parameter path of a run is: logged for every run (OPD, EffOPD, GRPO, ...), at no validation cost.

EffOPD can only pay when the direction of the early steps is still the direction of the whole run. The
tracker measures that on the extrapolated parameters (the attention/MLP tensors of EffOPD's name rule,
``is_extrapolated``), from CPU copies taken after each optimizer step. With theta_t the parameters after
step t (t = 0..T) and the trigger steps t_1 < t_2 < ... of ``effopd.schedule`` (pow2: 1, 2, 4, 8, ...):

- per trigger window k (steps t_{k-1}+1 .. t_k, t_0 = 0): Delta_k = theta_{t_k} - theta_{t_{k-1}}; its cosine
  with the run's final Delta W = theta_T - theta_0 (``cos_final``), its cosine with the previous window's
  (``cos_prev_window``) and its norm. Steps after the last trigger step form no window;
- ``early_share``: the share of Delta W explained by the direction of the first 10% of steps,
  (Delta W . u)^2 / |Delta W|^2 with u = (theta_e - theta_0) / |theta_e - theta_0|, e = ceil(0.1 T) (``early_step``;
  T = trainer.total_steps of the run that reached step e);
- ``chord_arc``: |theta_T - theta_0| / sum_t |theta_t - theta_{t-1}| (1 on a straight line, ~0 on a random walk);
- ``cos_final_mean`` / ``cos_prev_window_mean``: the means over windows.

**What "the path" is when an extrapolation hook jumps.** EffOPD moves the weights twice in a trigger step:
the optimizer step theta_{t-1} -> theta'_t, then the accepted jump theta'_t -> theta_t = theta'_t + m Delta.
Two paths are measured, each with every quantity above:

- ``net``: the trajectory the weights actually took, theta_0, theta_1, ..., theta_T (theta_t after step t's hook);
  a step with a jump goes theta_{t-1} -> theta_t in one, so the arc includes the jumps. For runs without such a
  hook it is the only path: there is nothing to cut out.
- ``optimizer`` (only when the run has a hook that moves weights): the optimizer's own steps laid end to end,
  i.e. the net path with every jump cut out. Its position is o_t = theta_t - J_t, with J_t the sum of the
  jumps up to step t; its steps are theta'_t - theta_{t-1}; its "Delta W" is o_T - theta_0, the displacement
  the optimizer itself produced. (For EffOPD, which jumps only at trigger steps along Delta_k itself, each
  window of either path points the same way, Delta_net_k = (1 + m_k) Delta_opt_k: the paths differ in their
  final Delta W, their early direction and their arc.)

Per step the trainer logs ``straightness/step_norm`` and ``straightness/displacement`` (|theta_t - theta_0|)
(and ``straightness/optimizer_step_norm``, ``straightness/optimizer_displacement``, ``straightness/jump_norm``
when there is an optimizer path) in metrics.jsonl, so a chord-to-arc ratio up to any step (e.g. the step a
target accuracy is reached) can be recomputed from the log; the cosines against Delta W are known only at the
end and go into summary.json's ``straightness`` block (``summary()``).

Memory: float32 CPU copies of the extrapolated parameters, (3 + K) of them for the net path (theta_0, the last
step's theta, theta_e and one per trigger window) and (3 + K) more with an optimizer path (J, o_e, one per
window, and theta'_t while a step's hook runs), K the number of trigger steps in 1..T. ``max_host_mb``
(``trainer.straightness_max_host_mb``) skips the measure, with a note in the summary, when that would exceed
it. Checkpoints save the copies (laid out like their parameters, so DCP reshards them) and a resumed run
continues the measure exactly.

Under FSDP2 each rank keeps copies of its own shards only and every norm and dot product sums over ranks (one
collective per step and one at the end), so every rank holds the same numbers; all ranks must call
``after_update``, ``after_step`` and ``summary`` at the same points.
"""

from __future__ import annotations

import math
import time

import torch
from torch.distributed.tensor import DTensor

from bench import distributed
from bench.extrapolation.effopd import is_extrapolated, is_trigger_step

EARLY_FRACTION = 0.1  # the "first 10% of steps" of early_share
BYTES_PER_VALUE = 4  # the copies are float32


def extrapolated_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters EffOPD extrapolates (and the tracker measures), by name."""
    return {n: p for n, p in model.named_parameters() if is_extrapolated(n)}


def extrapolated_layout(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Tensors laid out like the extrapolated parameters (DTensors under FSDP2), for loading checkpointed copies;
    ``None`` when the model has none."""
    return {n: p.detach() for n, p in extrapolated_params(model).items()} or None


def early_step(total_steps: int) -> int:
    """e = ceil(0.1 T), at least 1."""
    return max(1, math.ceil(EARLY_FRACTION * total_steps - 1e-9))


def trigger_steps(total_steps: int, schedule: str) -> list[int]:
    return [s for s in range(1, total_steps + 1) if is_trigger_step(s, schedule)]


def copies_needed(total_steps: int, schedule: str, optimizer_path: bool) -> int:
    """CPU copies of the extrapolated parameters the tracker holds at most (see the module docstring)."""
    k = len(trigger_steps(total_steps, schedule))
    return (3 + k) + ((3 + k) if optimizer_path else 0)


# -- dicts of tensors (this rank's shards, float32 on the CPU) ---------------------------------------------------
Shards = dict[str, torch.Tensor]


def _copy(params: dict[str, torch.Tensor]) -> Shards:
    return {n: distributed.local(p).detach().to("cpu", torch.float32, copy=True) for n, p in params.items()}


def _sub(a: Shards, b: Shards) -> Shards:
    return {n: a[n] - b[n] for n in a}


def _dot(a: Shards, b: Shards) -> float:
    """This rank's part of a . b, in float64."""
    return sum(torch.dot(a[n].flatten().double(), b[n].flatten().double()).item() for n in a)


def _cos(ab: float, aa: float, bb: float) -> float | None:
    return ab / math.sqrt(aa * bb) if aa > 0 and bb > 0 else None


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


class _Path:
    """One path's record: the positions at the early step and at every trigger step, and its arc length so far.
    Positions are absolute (theta-like); the origin theta_0 is shared by both paths."""

    def __init__(self):
        self.early: Shards | None = None
        self.early_at: int | None = None  # the step ``early`` was taken at (a resumed run keeps its checkpoint's)
        self.marks: dict[int, Shards] = {}  # trigger step -> position
        self.arc = 0.0

    def record(self, step: int, position: Shards, step_norm: float, early: int, is_trigger: bool) -> None:
        self.arc += step_norm
        if step == early and self.early is None:
            self.early, self.early_at = position, step
        if is_trigger:
            self.marks[step] = position

    def state(self, prefix: str) -> dict:
        out = {f"{prefix}_arc": self.arc, f"{prefix}_mark_steps": sorted(self.marks),
               f"{prefix}_early_at": self.early_at}
        if self.early is not None:
            out[f"{prefix}_early"] = self.early
        out.update({f"{prefix}_mark_{s}": m for s, m in self.marks.items()})
        return out

    def load(self, prefix: str, state: dict, to_shards) -> None:
        self.arc = state[f"{prefix}_arc"]
        self.early = to_shards(state[f"{prefix}_early"]) if f"{prefix}_early" in state else None
        self.early_at = state[f"{prefix}_early_at"]
        self.marks = {s: to_shards(state[f"{prefix}_mark_{s}"]) for s in state[f"{prefix}_mark_steps"]}

    def local_sums(self, origin: Shards, final: Shards) -> tuple[list[float], list[int]]:
        """This rank's parts of the dot products the summary needs, in a fixed order (see ``measures``)."""
        dw = _sub(final, origin)
        sums = [_dot(dw, dw)]
        early = _sub(self.early, origin) if self.early is not None else None
        sums += [_dot(early, early), _dot(dw, early)] if early is not None else [0.0, 0.0]
        steps, prev_pos, prev_delta = sorted(self.marks), origin, None
        for s in steps:
            delta = _sub(self.marks[s], prev_pos)
            sums += [_dot(delta, delta), _dot(delta, dw), _dot(delta, prev_delta) if prev_delta is not None else 0.0]
            prev_pos, prev_delta = self.marks[s], delta
        return sums, steps

    def measures(self, sums: list[float], steps: list[int]) -> dict:
        """The path's summary from the rank-summed ``local_sums``."""
        dd, ee, de = sums[:3]
        windows, start, prev_nn = [], 0, None
        for i, s in enumerate(steps):
            nn_, nd, np_ = sums[3 + 3 * i: 6 + 3 * i]
            windows.append({"step": s, "start": start, "norm": math.sqrt(nn_), "cos_final": _cos(nd, nn_, dd),
                            "cos_prev_window": _cos(np_, nn_, prev_nn) if prev_nn is not None else None})
            start, prev_nn = s, nn_
        return {
            "final_norm": math.sqrt(dd), "arc_length": self.arc,
            "chord_arc": math.sqrt(dd) / self.arc if self.arc > 0 else None,
            "early_share": de * de / (dd * ee) if dd > 0 and ee > 0 else None,
            "cos_final_mean": _mean([w["cos_final"] for w in windows]),
            "cos_prev_window_mean": _mean([w["cos_prev_window"] for w in windows]),
            "windows": windows,
        }


class StraightnessTracker:
    """Straightness of one run's parameter path (see the module docstring).

    Call ``after_update(step, model)`` right after the optimizer step (before any extrapolation hook; needed only
    with ``optimizer_path``) and ``after_step(step, model)`` once the step's hooks are done; ``summary()`` at the
    end. ``max_host_mb`` > 0 caps the CPU copies (skipped beyond it, with a note); 0 = no cap."""

    def __init__(self, model: torch.nn.Module, total_steps: int, schedule: str = "pow2",
                 optimizer_path: bool = False, max_host_mb: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"straightness needs trainer.total_steps >= 1, got {total_steps}")
        self.total_steps, self.schedule, self.optimizer_path = total_steps, schedule, optimizer_path
        self.early = early_step(total_steps)
        self.triggers = set(trigger_steps(total_steps, schedule))
        params = self.params = extrapolated_params(model)  # the checkpoint's layout
        self.names = sorted(params)
        self.num_values = sum(p.numel() for p in params.values())  # the whole model's, also under FSDP2
        self.host_mb = copies_needed(total_steps, schedule, optimizer_path) * self.num_values * BYTES_PER_VALUE / 2**20
        self.skipped: str | None = None
        if not params:
            self.skipped = "the model has no attention/MLP parameters (EffOPD's name rule) to measure"
        elif 0 < max_host_mb < self.host_mb:
            self.skipped = (f"it would hold {self.host_mb:.0f} MB of CPU copies of the {self.num_values} "
                            f"attention/MLP parameters, over trainer.straightness_max_host_mb={max_host_mb:g}; "
                            "raise it (or set it to 0 for no cap) to measure this run")
        self.step = 0
        self.seconds = 0.0
        self.origin: Shards | None = None
        self.prev: Shards | None = None  # theta after the last step (net path's position)
        self.jumps: Shards | None = None  # J: sum of the hook's jumps so far (optimizer path)
        self._pre: Shards | None = None  # theta'_t of the step in progress (after the optimizer, before the hook)
        self.net, self.opt = _Path(), _Path()
        if self.skipped is None:
            self.origin = _copy(params)
            self.prev = self.origin
            if optimizer_path:
                self.jumps = {n: torch.zeros_like(t) for n, t in self.origin.items()}

    @property
    def active(self) -> bool:
        return self.skipped is None

    def _params(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        params = extrapolated_params(model)
        if sorted(params) != self.names:
            raise ValueError("straightness: the model's attention/MLP parameters changed names since the tracker "
                             "was built")
        return params

    # -- the hooks -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def after_update(self, step: int, model: torch.nn.Module) -> None:
        """theta'_t: the weights right after the optimizer step of ``step``, before any extrapolation hook."""
        if self.active and self.optimizer_path:
            t0 = time.perf_counter()
            self._pre = _copy(self._params(model))
            self.seconds += time.perf_counter() - t0

    @torch.no_grad()
    def after_step(self, step: int, model: torch.nn.Module) -> dict:
        """Record step ``step`` (its hooks done); returns its per-step log entries (empty when skipped)."""
        if not self.active:
            return {}
        if step != self.step + 1:
            raise ValueError(f"straightness: step {step} follows step {self.step}; the tracker must see every step")
        t0 = time.perf_counter()
        theta = _copy(self._params(model))
        trigger = step in self.triggers
        step_delta, disp = _sub(theta, self.prev), _sub(theta, self.origin)
        local = [_dot(step_delta, step_delta), _dot(disp, disp)]
        opt_pos = None
        if self.optimizer_path:
            pre = self._pre if self._pre is not None else theta  # no after_update call: no jump this step
            jump, opt_delta = _sub(theta, pre), _sub(pre, self.prev)
            self.jumps = {n: self.jumps[n] + jump[n] for n in self.jumps}
            opt_pos = _sub(theta, self.jumps)
            opt_disp = _sub(opt_pos, self.origin)
            local += [_dot(opt_delta, opt_delta), _dot(opt_disp, opt_disp), _dot(jump, jump)]
        sums = [math.sqrt(max(x, 0.0)) for x in distributed.sum_over_ranks(*local)]
        self.net.record(step, theta, sums[0], self.early, trigger)
        record = {"straightness/step_norm": sums[0], "straightness/displacement": sums[1]}
        if self.optimizer_path:
            self.opt.record(step, opt_pos, sums[2], self.early, trigger)
            record.update({"straightness/optimizer_step_norm": sums[2], "straightness/optimizer_displacement": sums[3],
                           "straightness/jump_norm": sums[4]})
        self.prev, self._pre, self.step = theta, None, step
        self.seconds += time.perf_counter() - t0
        return record

    # -- checkpointing -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Scalars and dicts of tensors (each laid out like its parameters, so a sharded checkpoint reshards
        them); the trainer's checkpoint splits them (bench/train/checkpoint.py)."""
        if not self.active:
            return {"skipped": self.skipped, "step": self.step}
        params = self.params

        def as_params(shards: Shards) -> dict:
            return {n: distributed.like_param(t.to(distributed.local(params[n]).device), params[n])
                    if isinstance(params[n], DTensor) else t for n, t in shards.items()}

        state = {"skipped": None, "step": self.step, "seconds": self.seconds, "origin": self.origin, "prev": self.prev,
                 **self.net.state("net")}
        if self.optimizer_path:
            state.update(jumps=self.jumps, **self.opt.state("opt"))
        return {k: as_params(v) if isinstance(v, dict) else v for k, v in state.items()}

    def load_state_dict(self, state: dict | None, step: int | None = None) -> None:
        """Continue from a checkpoint (at ``step``, for the note); ``state`` None (a checkpoint written without
        the measure) or skipped there: the measure is skipped, with a note."""
        if not self.active:
            return
        if state is None or state.get("skipped") is not None or "origin" not in state:
            why = "a checkpoint without straightness state" if state is None or "origin" not in state else \
                f"a checkpoint where it was skipped: {state['skipped']}"
            self.skipped = f"resumed at step {step} from {why}"
            self.origin = self.prev = self.jumps = None
            self.net, self.opt = _Path(), _Path()
            return
        if self.optimizer_path and "jumps" not in state:
            raise ValueError("straightness: the checkpoint has no optimizer-path state (written by a run without an "
                             "extrapolation hook) but this run has one; resume with the hook settings it was run with")

        def to_shards(tensors: dict) -> Shards:
            return {n: distributed.local(t).to("cpu", torch.float32, copy=True) for n, t in tensors.items()}

        self.step, self.seconds = state["step"], state["seconds"]
        self.origin, self.prev = to_shards(state["origin"]), to_shards(state["prev"])
        self.net.load("net", state, to_shards)
        if self.optimizer_path:
            self.jumps = to_shards(state["jumps"])
            self.opt.load("opt", state, to_shards)

    # -- the result ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def summary(self) -> dict:
        """summary.json's ``straightness`` block. Collective under FSDP2: every rank calls it."""
        if not self.active:
            return {"skipped": self.skipped}
        t0 = time.perf_counter()
        local, steps = self.net.local_sums(self.origin, self.prev)
        n_net = len(local)
        if self.optimizer_path:
            opt_local, opt_steps = self.opt.local_sums(self.origin, _sub(self.prev, self.jumps))
            local += opt_local
        sums = list(distributed.sum_over_ranks(*local))
        out = {"steps": self.step, "early_step": self.net.early_at or self.early, "schedule": self.schedule,
               "parameters": self.num_values, "host_mb": round(self.host_mb, 1),
               "net": self.net.measures(sums[:n_net], steps)}
        if self.optimizer_path:
            out["optimizer"] = self.opt.measures(sums[n_net:], opt_steps)
        self.seconds += time.perf_counter() - t0
        out["seconds"] = round(self.seconds, 4)
        return out

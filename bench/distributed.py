"""Data parallelism over torchrun: process group, rank helpers, reductions over ranks, FSDP2 sharding.

    torchrun --nproc_per_node=2 -m bench.train experiment=opd hydra.run.dir=runs/opd-2proc

Without torchrun's environment (``WORLD_SIZE`` unset or 1) nothing is initialised and every helper returns
its input unchanged, so a single-process run computes exactly what it would without it.
Backend and device are chosen automatically: nccl on ``cuda:LOCAL_RANK`` when CUDA is available, else gloo
on the CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

DIST_ROLLOUTS = ("split", "replicate")
PARAM_DTYPES = ("fp32", "bf16")
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


# -- process group and ranks ---------------------------------------------------------------------------------
def launched_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun), before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init() -> torch.device:
    """Join torchrun's process group (idempotent; a no-op for one process). Returns this rank's device."""
    if launched_world_size() > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Rank 0 runs the periodic evaluation alone while the others wait in their next collective: allow
        # for a long one (nccl's default would give up after 10 minutes).
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return device()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    if world_size() > 1 and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def share(n: int) -> slice:
    """This rank's contiguous slice of ``n`` items (rank r of W takes [n*r//W, n*(r+1)//W))."""
    w, r = world_size(), rank()
    return slice(n * r // w, n * (r + 1) // w)


def rank_seed(*parts) -> int:
    """A sampling seed of this rank's own, derived from ``parts`` (e.g. the run seed and the step)."""
    digest = hashlib.sha256(repr((*parts, rank())).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextlib.contextmanager
def forked_rng(seed: int):
    """Sample from ``seed`` inside the block, leaving the caller's RNG streams (CPU and this GPU) untouched."""
    devices = [torch.cuda.current_device()] if device().type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# -- reductions (identity on one process) --------------------------------------------------------------------
def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """Python numbers summed over ranks (fp64, one collective); returned unchanged on one process."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return tuple(t.tolist())


def sum_dict_over_ranks(stats: dict[str, float], keep: tuple[str, ...] = ()) -> dict[str, float]:
    """Every value summed over ranks except the keys in ``keep`` (already global, e.g. the grad norm)."""
    keys = sorted(k for k in stats if k not in keep)  # the same order on every rank
    summed = dict(zip(keys, sum_over_ranks(*(stats[k] for k in keys))))
    return {k: summed.get(k, v) for k, v in stats.items()}


def all_reduce_(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Tensors summed over ranks in place (returned as they are on one process)."""
    if world_size() > 1:
        for t in tensors:
            dist.all_reduce(t)
    return tensors


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``t`` concatenated in rank order (``t`` itself on one process). Ranks hold the
    same number of rows (the step's prompts split evenly)."""
    if world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def broadcast(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (pickled; for small objects such as scores and summaries)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# -- sharded tensors -----------------------------------------------------------------------------------------
def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of an FSDP2 (DTensor) parameter, as a view that writes through; ``t`` otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


def like_param(shard: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A local shard wrapped as a DTensor laid out like ``param`` (so a checkpoint can reshard it)."""
    if not isinstance(param, DTensor):
        return shard
    return DTensor.from_local(shard, param.device_mesh, param.placements, run_check=False, shape=param.shape,
                              stride=param.stride())


def clip_grad_norm(params, max_norm: float) -> float:
    """``clip_grad_norm_`` over plain or sharded gradients; the global norm as a float."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return (norm.full_tensor() if isinstance(norm, DTensor) else norm).item()


def shard_model(model: torch.nn.Module, trainable: bool, param_dtype: str = "fp32") -> torch.nn.Module:
    """FSDP2: ``fully_shard`` each decoder layer, then the root (embeddings, final norm, head).

    Trainable models sum gradients over ranks instead of averaging them: the trainer normalises each rank's
    loss by global token / sequence counts, so the sum is the gradient of the global batch.
    ``param_dtype="bf16"`` computes in bf16 with fp32 gradient reduction on CUDA; the CPU keeps fp32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"cannot shard {type(model).__name__}: expected its decoder layers at model.model.layers "
                         "(the Hugging Face causal-LM layout)")
    dev = device()
    mp = MixedPrecisionPolicy()
    if param_dtype == "bf16" and dev.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    mesh = init_device_mesh(dev.type, (world_size(),))
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    if trainable:
        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.set_gradient_divide_factor(1.0)
                # A plain SUM: gloo has no pre-multiplied sum, and a factor of 1 needs no scaling anyway.
                m.set_force_sum_reduction_for_comms(True)
    return model


class GatheredRollouts:
    """A rollout engine on a full, unsharded copy of the FSDP2 student.

    Engines read plain parameters (``qwen3_fast`` reads them directly, and HF ``generate`` on a sharded
    module would need every rank to run the same number of decode steps), so each rank keeps a full copy,
    as a colocated vLLM engine would. ``sync_weights`` all-gathers the shards into it: a collective that
    every rank calls at the same points (after each optimizer step and each EffOPD change)."""

    def __init__(self, engine, full_model: torch.nn.Module, sharded_model: torch.nn.Module):
        self.engine, self.model = engine, full_model
        full = dict(full_model.named_parameters())
        self.pairs = [(full[n], p) for n, p in sharded_model.named_parameters()]

    def generate(self, *args, **kwargs):
        return self.engine.generate(*args, **kwargs)

    def __getattr__(self, name: str):  # the wrapped engine's other methods (e.g. vLLM's sleep / wake_up)
        if name == "engine":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)

    @torch.no_grad()
    def sync_weights(self) -> None:
        for full, shard in self.pairs:
            full.copy_(shard.full_tensor() if isinstance(shard, DTensor) else shard)
        self.engine.sync_weights()


# -- start-up checks -----------------------------------------------------------------------------------------
def check_config(cfg, world: int | None = None) -> None:
    """Distributed settings that fail before any model is loaded, naming the key to change."""
    t = cfg.trainer
    if t.dist_rollouts not in DIST_ROLLOUTS:
        raise ValueError(f"trainer.dist_rollouts={t.dist_rollouts!r}; choose one of {DIST_ROLLOUTS}")
    if t.dist_param_dtype not in PARAM_DTYPES:
        raise ValueError(f"trainer.dist_param_dtype={t.dist_param_dtype!r}; choose one of {PARAM_DTYPES}")
    world = world_size() if world is None else world
    if world == 1:
        return
    if t.prompts_per_step % world:
        raise ValueError(f"trainer.prompts_per_step={t.prompts_per_step} must be a multiple of the world size "
                         f"{world}: each rank takes an equal slice of the step's prompts")
    if cfg.algorithm.dynamic_sampling:
        raise ValueError("algorithm.dynamic_sampling (DAPO) runs on one process only for now: ranks would keep "
                         "different numbers of groups. Run it without torchrun, or set "
                         "algorithm.dynamic_sampling=false")
    if cfg.effopd.enabled and t.dist_rollouts == "split" and cfg.effopd.val_prompts < world:
        raise ValueError(f"effopd.val_prompts={cfg.effopd.val_prompts} is below the world size {world}: with "
                         "trainer.dist_rollouts=split each rank scores a share of the validation prompts")
    if cfg.rollout.engine == "qwen3_fast" and torch.cuda.is_available():
        raise ValueError("rollout.engine=qwen3_fast is a CPU fast path; use rollout.engine=hf on GPUs")


def check_hydra_launch(cfg) -> None:
    """Under torchrun every rank runs Hydra itself: a timestamped run folder would differ between ranks,
    and a multirun would start several jobs inside one process group. Refuse both, before any work."""
    if launched_world_size() <= 1:
        return
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        raise ValueError("Hydra multirun (-m / --multirun) cannot run inside torchrun: launch one torchrun per job")
    explicit_dir = OmegaConf.to_container(cfg.trainer, resolve=False)["output_dir"] != "${hydra:runtime.output_dir}"
    named_run_dir = any(o.lstrip("+~").startswith("hydra.run.dir=") for o in hc.overrides.hydra)
    if not (explicit_dir or named_run_dir):
        raise ValueError("under torchrun every rank would make its own timestamped run folder: name one folder "
                         "for all ranks with hydra.run.dir=<dir> (or trainer.output_dir=<dir>)")

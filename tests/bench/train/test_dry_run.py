"""trainer.dry_run: configs and tokenizers only, parameter counts on the meta device, clear offline errors."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.config import compose_config
from bench.train import train
from bench.train.dry_run import count_parameters

# Qwen3-1.7B's published shape (config.json of Qwen/Qwen3-1.7B).
QWEN3_1P7B = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
              "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
              "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": True, "max_position_embeddings": 40960,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000, "torch_dtype": "bfloat16"}


@pytest.fixture
def qwen3_shaped(tmp_path, micro_cache):
    """A local 'model' folder: Qwen3-1.7B's config.json beside the micro world's tokenizer (no weights)."""
    from tests.bench.world.test_hubworld import micro_model

    folder = tmp_path / "qwen3-1.7b-shape"
    folder.mkdir()
    for f in micro_model(micro_cache).iterdir():
        if "token" in f.name:
            shutil.copy(f, folder / f.name)
    (folder / "config.json").write_text(json.dumps(QWEN3_1P7B))
    return folder


def test_dry_run_sizes_a_paper_preset_without_weights(qwen3_shaped, capsys):
    cfg = compose_config(["experiment=paper/opd", f"world.student_path={qwen3_shaped}",
                          f"world.teacher_path={qwen3_shaped}", "trainer.dry_run=true", "trainer.output_dir=unused"])
    report = train(cfg)
    assert 1.6e9 < report["parameters"]["student"] < 1.8e9  # Qwen3-1.7B: 1.72B with tied embeddings
    mem = report["memory_gib_per_gpu"]
    assert set(mem) >= {"1", "8"} and mem["8"]["student_states"] == pytest.approx(mem["1"]["student_states"] / 8,
                                                                                   rel=0.01)
    assert mem["1"]["student_states"] == pytest.approx(16 * report["parameters"]["student"] / 1024**3, rel=0.01)
    assert json.loads(capsys.readouterr().out)["world"] == "hub"


@pytest.mark.slow
def test_dry_run_fails_clearly_offline_and_without_a_teacher(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="world.teacher_path is empty"):
        train(compose_config(["experiment=paper/opd", "trainer.dry_run=true", "trainer.output_dir=unused"]))
    with pytest.raises(ValueError, match="(?s)cannot read the config of 'Qwen/Qwen3-1.7B'.*local HF-format folders"):
        train(compose_config(["experiment=paper/opd", "world.teacher_path=Qwen/Qwen3-1.7B", "trainer.dry_run=true",
                              "trainer.output_dir=unused"]))


def test_parameter_count_matches_a_built_model(micro_cache):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.bench.world.test_hubworld import micro_model

    path = micro_model(micro_cache)
    built = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    assert count_parameters(AutoConfig.from_pretrained(path)) == built

"""World digests: a planted one-bit change in a built model is a different world; layout does not matter."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.world.digest import (
    DIFFERENT,
    IDENTICAL,
    UNKNOWN,
    model_digest,
    record_reference,
    tensor_digest,
    world_status,
)


def _model_dir(tmp_path, name="m", tensors=None):
    folder = tmp_path / name
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    tensors = tensors or {"a.weight": torch.randn(4, 3, generator=g), "b.bias": torch.randn(5, generator=g)}
    save_file(tensors, folder / "model.safetensors")
    return folder


def test_digest_ignores_file_layout_but_not_names_shapes_or_dtypes(tmp_path):
    one = _model_dir(tmp_path, "one")
    tensors = load_file(one / "model.safetensors")
    two = tmp_path / "two"
    two.mkdir()
    save_file({"b.bias": tensors["b.bias"]}, two / "model-00002.safetensors")  # other order, two shards
    save_file({"a.weight": tensors["a.weight"]}, two / "model-00001.safetensors", metadata={"format": "pt"})
    assert model_digest(one) == model_digest(two)
    assert tensor_digest({"a.weight": tensors["a.weight"].reshape(3, 4), "b.bias": tensors["b.bias"]}) != \
        model_digest(one)
    assert tensor_digest({"a.weight": tensors["a.weight"].double(), "b.bias": tensors["b.bias"]}) != model_digest(one)
    assert tensor_digest({"x.weight": tensors["a.weight"], "b.bias": tensors["b.bias"]}) != model_digest(one)


def test_planted_one_bit_change_is_a_different_world(tmp_path):
    built = _model_dir(tmp_path, "model-abc")
    digest = model_digest(built)
    ref = tmp_path / "world_digests.json"
    record_reference([{"key": "model-abc", "role": "student", "build": 0, "weights_sha256": digest}],
                     {"cpu_model": "test"}, ref)
    reference = json.loads(ref.read_text())["models"]
    assert world_status({"model-abc": digest}, reference)["status"] == IDENTICAL

    flipped = tmp_path / "flipped"
    shutil.copytree(built, flipped)
    tensors = load_file(flipped / "model.safetensors")
    bits = tensors["a.weight"].view(torch.int32)
    bits[1, 2] ^= 1  # the lowest mantissa bit of one weight
    save_file(tensors, flipped / "model.safetensors")
    status = world_status({"model-abc": model_digest(flipped)}, reference)
    assert status["status"] == DIFFERENT and status["different"] == ["model-abc"]
    assert "DIFFERENT" in status["line"] and "distributions over builds" in status["line"]


def test_status_without_a_reference_is_unknown_not_identical():
    status = world_status({"model-new": "0" * 64}, {})
    assert status["status"] == UNKNOWN and status["no_reference"] == ["model-new"]
    assert "no reference digest" in status["line"]


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        model_digest(tmp_path)

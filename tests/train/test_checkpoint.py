"""Checkpoint files: weights_only loading, RNG round trip, keep-last-k, corrupt-file fallback."""

import random

import numpy as np
import pyro
import pytest
import torch
from torch.distributions import constraints

from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer
from pyrogen.train import checkpoint as ckpt


def _state(step):
    return {"weights": torch.full((50,), float(step)), "rng": ckpt.get_rng_state(), "note": "x"}


def test_checkpoint_loads_with_weights_only_and_verifies(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 7, _state(7))
    raw = torch.load(path, weights_only=True)  # no pickled objects anywhere
    assert (
        raw["step"] == 7
        and raw["format"] == ckpt.FORMAT
        and torch.equal(raw["weights"], torch.full((50,), 7.0))
    )
    assert ckpt.load_checkpoint(path)["checksum"] == ckpt.checksum(raw)


def test_rng_states_round_trip():
    state = ckpt.get_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    ckpt.set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_only_the_newest_k_are_kept(tmp_path):
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step-00000004.pt",
        "step-00000005.pt",
    ]
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_broken_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    ckpt.save_checkpoint(tmp_path, 1, _state(1))
    newest = ckpt.save_checkpoint(tmp_path, 2, _state(2))
    data = bytearray(newest.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":  # inside the tensor payload: only the checksum can tell
        data[data.find(b"\x00\x00\x00\x40") + 2] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint")
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="step-00000002.pt") as record:
        path, state = ckpt.load_latest(tmp_path)
    assert path.name == "step-00000001.pt" and state["step"] == 1
    assert "previous" in str(record[0].message)


def test_checksum_catches_a_changed_number(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 3, _state(3))
    state = torch.load(path, weights_only=True)
    state["weights"][0] += 1
    torch.save(state, path)
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.load_checkpoint(path)


def test_param_store_round_trip_keeps_constraints():
    pyro.param("scale", torch.tensor([0.5, 2.0]), constraint=constraints.positive)
    pyro.param("loc", torch.tensor(1.0))
    saved = ckpt.get_param_store_state()
    pyro.clear_param_store()
    ckpt.set_param_store_state(saved)
    assert torch.allclose(pyro.param("scale"), torch.tensor([0.5, 2.0]))
    assert pyro.get_param_store().get_state()["constraints"]["scale"] == constraints.positive
    existing = pyro.param("loc")
    ckpt.set_param_store_state({"params": {"loc": torch.tensor(5.0)}, "constraints": {}})
    assert pyro.param("loc") is existing and existing.item() == 5.0  # updated in place


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def test_a_vae_checkpoint_holds_each_weight_once(tmp_path):
    """Not the VAE twice (as model and as guide owner) plus the param store: each weight once."""
    torch.manual_seed(0)
    vae = VAE(6, 2, (8,), num_data=40)
    step = SVIStep(vae.model, vae.guide, lr=1e-2)
    Trainer(step, batch_size=16, steps=3, progress=False, checkpoint_dir=tmp_path).fit(
        torch.rand(40, 6).round()
    )
    saved = torch.load(ckpt.list_checkpoints(tmp_path)[-1], weights_only=True)
    tensors = [t for t in _tensors(saved) if t.numel() > 1]
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == len(tensors)  # no aliases
    for name, weight in vae.named_parameters():
        copies = [t for t in tensors if t.shape == weight.shape and torch.equal(t, weight.detach())]
        assert len(copies) == 1, name
    assert sorted(saved["step_state"]) == ["buffers", "constraints", "optim", "params"]
    weights = sum(p.numel() for p in vae.parameters())
    assert sum(t.numel() for t in _tensors(saved["step_state"]["params"])) == weights


def test_data_fingerprint_sees_content_shape_and_dtype():
    x = torch.rand(50, 4)
    changed = x.clone()
    changed[17, 0] += 1e-6  # flat element 68
    assert ckpt.data_fingerprint(x) == ckpt.data_fingerprint(x.clone())
    assert ckpt.data_fingerprint(x) != ckpt.data_fingerprint(changed)
    assert ckpt.data_fingerprint(x) != ckpt.data_fingerprint(x.reshape(100, 2))
    assert ckpt.data_fingerprint(x) != ckpt.data_fingerprint(x.double())
    # a large data set: every k-th element (here k = 4: elements 0, 4, 8, ... of the flat data)
    sampled = ckpt.data_fingerprint(x, max_bytes=200)
    assert sampled != ckpt.data_fingerprint(x) and sampled != ckpt.data_fingerprint(changed, 200)
    other = x.clone()
    other[0, 1] += 1.0  # element 1 is not sampled
    assert ckpt.data_fingerprint(other, max_bytes=200) == sampled

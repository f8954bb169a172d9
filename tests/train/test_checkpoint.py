"""Checkpoint files: weights_only loading, RNG round trip, keep-last-k, corrupt-file fallback."""

import random

import numpy as np
import pyro
import pytest
import torch
from torch.distributions import constraints

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

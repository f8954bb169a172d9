"""``pyrogen translate``: tiny runs write their files and metrics; bad requests are refused with
the fix (exit code 2, nothing trained)."""

import json
import re

import pytest
import torch

from pyrogen.cli import main


def _run(tmp_path, *argv):
    out = tmp_path / "run"
    code = main(["translate", "--data", "digits", "--out", str(out), "--no-progress", *argv])
    return code, out


@pytest.mark.parametrize("task", ["superres", "inpaint"])
def test_paired_tasks_write_model_figure_and_psnr(tmp_path, task):
    args = ["--task", task, "--steps", "3", "--base-channels", "4", "--num-test", "20"]
    code, out = _run(tmp_path, *args, *(["--factor", "2"] if task == "superres" else []))
    assert code == 0
    for name in ("model.pt", "config.json", "metrics.json", "translations.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["num_test"] == 20
    assert {"psnr_model", "psnr_input", "psnr_l1_only"} <= set(metrics)
    assert ("psnr_bicubic" in metrics) == (task == "superres")
    state = torch.load(out / "model.pt", weights_only=True)
    assert {"generator", "critic", "config"} <= set(state)
    assert json.loads((out / "config.json").read_text())["model"]["task"] == task


def test_cycle_task_writes_label_preservation(tmp_path):
    code, out = _run(tmp_path, "--task", "cycle", "--steps", "2", "--base-channels", "4")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("label_preservation_a_to_b", "label_preservation_b_to_a"):
        assert 0 <= metrics[key] <= 1
    assert metrics["classifier_accuracy_b"] > 0.8  # the classifier of rotated digits works
    assert {"critic_a", "critic_a_optim", "critic"} <= set(torch.load(out / "model.pt"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "superres", "--factor", "3"], r"--factor 3 must be >= 2 and divide"),
        (["--steps", "0"], r"--steps must be >= 1"),
        (["--adv-weight", "-1"], r"--adv-weight must be >= 0"),
        (["--data", "ring8"], r"not an image data set"),
    ],
)
def test_refusals_say_what_to_fix(tmp_path, capsys, argv, message):
    code, out = _run(tmp_path, *argv)
    assert code == 2 and not (out / "model.pt").exists()
    assert re.search(message, capsys.readouterr().err)

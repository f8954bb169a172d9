"""Every example runs with tiny settings; every example in examples/ is listed here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

# One entry per example: "script.py --tiny-flags". Keep each under ~30 s.
EXAMPLES = [
    "vae.py --smoke-test",
    "score_vs_reparam.py --smoke-test",
    "advi_eight_schools.py --smoke-test",
    "advi_regression.py --smoke-test",
    "wasserstein_example.py --smoke-test",
    "optimal_discriminator.py --smoke-test",
    "mode_collapse.py --smoke-test",
]


def test_coverage():
    listed = {cmd.split()[0] for cmd in EXAMPLES}
    present = {p.name for p in EXAMPLES_DIR.glob("*.py")}
    missing = sorted(present - listed)
    assert not missing, f"examples not registered in tests/test_examples.py: {missing}"
    stale = sorted(listed - present)
    assert not stale, f"registered examples that do not exist: {stale}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs(example, tmp_path):
    script, *args = example.split()
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(EXAMPLES_DIR / script), *args]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{example} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )

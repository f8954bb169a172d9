"""Make the user guide's figures by running the examples and the CLI with small settings.

    python docs/make_figures.py              # every figure that is missing
    python docs/make_figures.py --force      # all of them again
    python docs/make_figures.py vae gan      # only these jobs

Each job is one command (an ``examples/*.py`` script or ``pyrogen ...``) writing its PNGs into
``docs/figures/<job>/``, which the guide pages include. The settings are smaller than the
examples' defaults so that all jobs together fit in CI's budget (a few CPU minutes); the figures
show the same things as a full run, less converged. ``docs/conf.py`` calls :func:`build` with
``force=False``, so a plain ``sphinx-build`` makes whatever is missing. The figures are not
committed: they are regenerated from the code on every CI run, so they cannot drift from it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = Path(__file__).resolve().parent / "figures"
PY = sys.executable
EX = str(ROOT / "examples")

#: job name -> (command, the PNG files it must write into docs/figures/<job>/)
JOBS: dict[str, tuple[list[str], list[str]]] = {
    "gaussian_mixture": (
        [PY, f"{EX}/gaussian_mixture.py", "--num-data", "200", "--steps", "300"]
        + ["--var-samples", "20"],
        ["gaussian_mixture.png"],
    ),
    "score_vs_reparam": (
        [PY, f"{EX}/score_vs_reparam.py", "--num-samples", "1000", "--steps", "150"],
        ["score_vs_reparam.png"],
    ),
    "advi_eight_schools": (
        [PY, f"{EX}/advi_eight_schools.py", "--smoke-test"],
        ["eight_schools_forest.png"],
    ),
    "advi_regression": ([PY, f"{EX}/advi_regression.py", "--smoke-test"], ["regression.png"]),
    "vae": (
        [PY, "-m", "pyrogen", "vae", "--data", "digits", "--epochs", "30", "--latent-dim", "2"]
        + ["--hidden", "128", "--num-is-samples", "50", "--no-progress", "--overwrite"],
        ["samples.png", "reconstructions.png", "interpolation.png", "random_walk.png"]
        + ["latent.png", "loss.png"],
    ),
    "gan": (
        [PY, "-m", "pyrogen", "gan", "--data", "ring8", "--steps", "1500", "--hidden", "64", "64"]
        + ["--num-samples", "2000", "--no-progress", "--overwrite"],
        ["samples.png", "loss.png"],
    ),
    "optimal_discriminator": (
        [PY, f"{EX}/optimal_discriminator.py", "--steps", "200"],
        ["optimal_discriminator.png", "vanishing_gradients.png"],
    ),
    "mode_collapse": (
        [PY, f"{EX}/mode_collapse.py", "--steps", "600", "--hidden", "64", "64"],
        ["mode_collapse_ring8.png"],
    ),
    "wasserstein": (
        [PY, f"{EX}/wasserstein_example.py", "--steps", "600"],
        ["lecture_w1_critic.png", "jsd_vs_w1.png"],
    ),
    "cvae": ([PY, f"{EX}/cvae.py", "--smoke-test"], ["samples.png"]),
    "aae": ([PY, f"{EX}/adversarial_autoencoder.py", "--steps", "300"], ["codes.png"]),
    "dcgan": (
        [PY, "-m", "pyrogen", "gan", "--data", "digits", "--conditional", "--steps", "1500"]
        + ["--num-samples", "1000", "--no-progress", "--overwrite"],
        ["samples.png"],
    ),
    "super_resolution": (
        [PY, f"{EX}/super_resolution.py", "--smoke-test"],
        ["super_resolution.png"],
    ),
}


def missing(name: str) -> bool:
    """True when a file of job ``name`` is not there yet."""
    return any(not (FIGURES / name / f).exists() for f in JOBS[name][1])


def run(name: str) -> tuple[str, float]:
    """Run job ``name`` (output into docs/figures/<name>/, log into <name>.log); its wall time."""
    command, files = JOBS[name]
    out = FIGURES / name
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.call(
            [*command, "--out", str(out)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    seconds = time.perf_counter() - start
    absent = [f for f in files if not (out / f).exists()]
    if code != 0 or absent:
        raise RuntimeError(
            f"figure job {name!r} failed (exit code {code}, missing {absent});"
            f" see {out / (name + '.log')}"
        )
    return name, seconds


def build(names: list[str] | None = None, force: bool = False, workers: int = 2) -> None:
    """Run the jobs ``names`` (default: all) whose figures are missing, or all with ``force``."""
    unknown = sorted(set(names or []) - set(JOBS))
    if unknown:
        raise ValueError(f"unknown figure jobs {unknown}; choose from {sorted(JOBS)}")
    todo = [n for n in (names or JOBS) if force or missing(n)]
    if not todo:
        return
    start = time.perf_counter()
    print(f"make_figures: running {len(todo)} job(s) with {workers} worker(s): {todo}", flush=True)
    with ThreadPoolExecutor(workers) as pool:
        for name, seconds in pool.map(run, todo):
            print(f"make_figures: {name:<22} {seconds:6.1f} s", flush=True)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"make_figures: done in {time.perf_counter() - start:.0f} s wall,"
        f" {cpu.ru_utime + cpu.ru_stime:.0f} s CPU",
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="*", help=f"jobs to run (default: all): {sorted(JOBS)}")
    parser.add_argument("--force", action="store_true", help="rerun jobs whose figures exist")
    parser.add_argument("--workers", type=int, default=2, help="jobs run at the same time")
    args = parser.parse_args()
    build(args.jobs or None, args.force, args.workers)

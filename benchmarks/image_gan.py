"""Class coverage, Fréchet classifier distance, precision and recall of ``pyrogen gan`` on images.

Each run is exactly ``pyrogen gan --data DATA --loss LOSS --seed SEED`` (plus ``--extra`` flags), so
it measures the image defaults of :data:`pyrogen.train.presets.IMAGE_DEFAULTS` (DCGAN networks) with
the loss's :data:`~pyrogen.train.presets.IMAGE_LOSS_DEFAULTS` (the settings used are printed per
run); the metrics are those the CLI writes to metrics.json: the share of each class among 10 000
samples read by a classifier of the real data (target: every class in 5-15 %), the KL of that
histogram to the data's class frequencies, the Fréchet classifier distance (FCD) with the test-
halves floor (target: FCD ≤ 3× floor), improved precision / recall (Kynkäänniemi et al. 2019), and
wall-clock and CPU seconds of the training (the CPU time is what an unshared machine would roughly
take per core).

Run: ``python benchmarks/image_gan.py [--data digits fashion-mnist] [--loss nsgan hinge wgan-gp]
[--seeds 3] [--extra "--steps 1000"]``; ``--quick`` is one seed of 300 steps on digits with nsgan.
"""

import argparse
import json
import shlex
import statistics
import tempfile
import time
from pathlib import Path

from pyrogen.cli import main as cli

KEYS = ("classes_in_band", "class_kl", "frechet_classifier_distance", "precision", "recall")


def run_one(data: str, loss: str, seed: int, extra: list[str], out: Path) -> dict:
    argv = ["gan", "--data", data, "--loss", loss, "--seed", str(seed), "--no-progress"]
    start, cpu = time.perf_counter(), time.process_time()
    if cli([*argv, *extra, "--out", str(out)]) != 0:
        raise RuntimeError(f"pyrogen {shlex.join(argv + extra)} failed")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["settings"] = settings(json.loads((out / "config.json").read_text()))
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics["cpu_seconds"] = time.process_time() - cpu
    return metrics


def settings(config: dict) -> str:
    """The critic settings a run used (from its config.json), e.g. ``k=2, SN, lr 2e-4/2e-4``."""
    m = config["model"]
    sn = ", SN" if config.get("spectral_norm") else ""
    betas = f", β=({m['betas'][0]:g}, {m['betas'][1]:g})" if m.get("betas") else ""
    return (
        f"k={m['critic_steps']}{sn}, {m['generator_optim']} lr {m['generator_lr']:g}"
        f" (critic {m['critic_lr']:g}){betas}, {config['steps']} steps"
    )


def _fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3g} ± {statistics.stdev(values):.2g}" if len(values) > 1 else f"{mean:.3g}"


def main(args: argparse.Namespace) -> None:
    extra = shlex.split(args.extra)
    header = "| data | loss | in band | KL | FCD (floor) | precision | recall | train s | cpu s |"
    rows = [header, "|" + "---|" * 9]
    used_settings: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            for loss in args.loss:
                runs = []
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    out = Path(tmp) / f"{data}-{loss}-{seed}"
                    m = run_one(data, loss, seed, extra, out)
                    runs.append(m)
                    shown = {k: round(m[k], 4) for k in KEYS if m.get(k) is not None}
                    hist = " ".join(f"{q:.3f}" for q in m["class_histogram"])
                    print(
                        f"{data} {loss} seed {seed}: {shown}, classes [{hist}],"
                        f" {m['train_seconds']:.0f} s, {m['cpu_seconds']:.0f} cpu s;"
                        f" {m['settings']}",
                        flush=True,
                    )
                col = {k: [r[k] for r in runs if r.get(k) is not None] for k in KEYS}
                floor = statistics.fmean(r["frechet_classifier_distance_test_halves"] for r in runs)
                used_settings[f"{data} {loss}"] = runs[0]["settings"]
                rows.append(
                    f"| {data} | {loss} | {_fmt(col['classes_in_band'])}/10"
                    f" | {_fmt(col['class_kl'])} | {_fmt(col['frechet_classifier_distance'])}"
                    f" ({floor:.2f}) | {_fmt(col['precision'])} | {_fmt(col['recall'])}"
                    f" | {_fmt([r['train_seconds'] for r in runs])}"
                    f" | {_fmt([r['cpu_seconds'] for r in runs])} |"
                )
    print(f"\n{args.seeds} seed(s), extra flags: {args.extra or '(none)'}")
    print("\n".join(rows))
    print("\n".join(f"{name}: {used}" for name, used in used_settings.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--loss", nargs="+", default=["nsgan", "hinge", "wgan-gp"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--extra", default="", help='more pyrogen gan flags, e.g. "--steps 1000"')
    parser.add_argument("--quick", action="store_true", help="digits, nsgan, 1 seed, 300 steps")
    args = parser.parse_args()
    if args.quick:
        args.data, args.loss, args.seeds = ["digits"], ["nsgan"], 1
        args.extra = f"--steps 300 {args.extra}"
    main(args)

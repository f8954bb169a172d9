"""Issue 13: a short convolutional GAN run on digits covers the classes better than the MLP GAN
at the same budget (``pyrogen gan --data digits --arch conv|mlp``, the image defaults)."""

import json

import pytest
import torch

from pyrogen.cli import main

# Measured (2000 samples, one thread; classes covered / in 5-15 %, class KL, FCD; ~25-32 CPU s
# per run), conv vs MLP:
#   steps seed | conv: cov band  KL    FCD   | MLP: cov band  KL    FCD
#   1500  0    |       10   9   0.055  18.8  |       1    0   2.29   215
#   1500  1    |        6   1   1.02   119   |       4    0   1.55   183
#   1500  2    |       10   6   0.234  31.5  |       2    0   2.25   436
#   1750  0    |       10   8   0.094  12.6  |       1    0   2.29   340
#   1750  1    |        8   2   1.33   76.9  |       2    0   2.28   246
#   1750  2    |       10   7   0.122  25.6  |       2    0   2.14   241
#   2000  0    |       10  10   0.014   8.4  |       2    0   1.61   218
#   2000  1    |        8   4   0.378  65.3  |       2    0   2.28   204
#   2000  2    |       10   7   0.122  16.3  |       2    0   2.28   285
#   2500  0    |       10   9   0.063   9.1  |       4    0   1.54   167
#   2500  1    |       10   5   0.145  21.5  |       2    1   1.95   163
#   2500  2    |       10   5   0.207  18.6  |       1    0   2.29   238
# (1000 steps, seed 0: conv 10 covered, KL 0.41, FCD 38.6 vs MLP 1, 2.30, 240; seed 1 collapses
# both.) 2000 steps is the smallest budget tried at which conv wins on all three seeds (at 1750,
# seed 1's conv run puts 74 % of its samples in one class: KL 0.58x the MLP's). At 2000 the
# tightest seed (1) has 6 more classes, 0.17x the KL and 0.32x the FCD, so the asserted margins
# (+4, 0.5x, 0.5x) leave slack. 44-53 CPU s per seed (two runs, two classifier trainings).
STEPS = 2000


def _metrics(tmp_path, arch: str, seed: int) -> dict:
    out = tmp_path / arch
    argv = ["gan", "--data", "digits", "--arch", arch, "--steps", str(STEPS), "--seed", str(seed)]
    argv += ["--num-samples", "2000", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_gan_covers_digit_classes_better_than_mlp_at_the_same_steps(tmp_path, seed):
    threads = torch.get_num_threads()
    try:
        conv, mlp = _metrics(tmp_path, "conv", seed), _metrics(tmp_path, "mlp", seed)
    finally:
        torch.set_num_threads(threads)
    assert conv["classes_covered"] >= mlp["classes_covered"] + 4
    assert conv["class_kl"] < 0.5 * mlp["class_kl"]
    assert conv["frechet_classifier_distance"] < 0.5 * mlp["frechet_classifier_distance"]

"""The evaluation progress bar: over examples, with the time left, and numbers unchanged."""

import pyro
import torch

from pyrogen.evaluate.likelihood import elbo, log_likelihood
from pyrogen.models import VAE


def test_log_likelihood_shows_a_bar_with_eta_and_gives_the_same_numbers(capsys):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(4, 2, (3,))
    x = torch.rand(7, 4).bernoulli()
    torch.manual_seed(1)
    quiet = log_likelihood(vae, x, num_samples=30, batch_size=3, reduction="none")
    assert capsys.readouterr().err == ""
    torch.manual_seed(1)
    shown = log_likelihood(vae, x, num_samples=30, batch_size=3, reduction="none", progress=True)
    err = capsys.readouterr().err
    assert "evaluate" in err and "7/7" in err and "<" in err  # done, with elapsed<remaining
    assert torch.equal(quiet, shown)
    elbo(vae, x, num_samples=5, progress=True)
    assert "7/7" in capsys.readouterr().err


def test_the_bar_counts_whole_examples_and_never_passes_the_total(capsys, monkeypatch):
    """Before: particle chunks moved the bar by fractions: '252.39999999999998/360', and a sum
    just above the total made tqdm warn 'clamping frac to range [0, 1]'."""
    import re

    import pyrogen.evaluate.likelihood as likelihood

    seen = []

    class Recording(likelihood.tqdm):
        def update(self, n=1):
            out = super().update(n)
            seen.append(self.n)
            return out

    monkeypatch.setattr(likelihood, "tqdm", Recording)
    monkeypatch.setattr(likelihood, "MAX_CHUNK_ELEMENTS", 7 * 4 * 3)  # 3 particles per chunk
    pyro.clear_param_store()
    vae = VAE(4, 2, (3,))
    x = torch.rand(7, 4).bernoulli()
    log_likelihood(vae, x, num_samples=10, batch_size=7, progress=True)
    err = capsys.readouterr().err
    assert len(seen) == 4 and seen[-1] == 7 and max(seen) <= 7, seen  # chunks of 3, 3, 3, 1
    assert 0 < seen[0] < 7  # a fraction of the batch after the first particle chunk
    counts = re.findall(r"\| *([^ ]+)/7 ", err)
    assert counts and all(c.isdigit() for c in counts), err
    assert "clamping" not in err and "-00:00" not in err

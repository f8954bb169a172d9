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

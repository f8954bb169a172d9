"""VAE(activation=...): the hidden layers' nonlinearity, recorded in config() when not ReLU."""

import pytest
import torch

from pyrogen.models import VAE


def test_tanh_vae_computes_with_tanh_and_rebuilds_from_its_config():
    torch.manual_seed(0)
    vae = VAE(6, 2, (5, 4), activation="tanh")
    x = torch.rand(3, 6)
    w = [m for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    h = torch.tanh(w[1](torch.tanh(w[0](x))))
    loc, log_var = w[2](h).split(2, -1)  # a pure-PyTorch reference of the encoder
    assert torch.allclose(vae.encoder(x)[0], loc) and torch.allclose(
        vae.encoder(x)[1], (0.5 * log_var).exp()
    )
    assert vae.config()["activation"] == "tanh"
    clone = VAE(**vae.config())
    clone.load_state_dict(vae.state_dict())
    z = torch.randn(4, 2)
    assert torch.equal(clone.decode(z), vae.decode(z))
    assert "activation" not in VAE(6, 2).config()  # ReLU runs keep their config.json


def test_an_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="Unknown activation 'sigmoid'"):
        VAE(6, 2, activation="sigmoid")

"""The conditional VAE (Sohn et al., 2015): its ELBO in closed form, Pyro-visible parameters,
label checks, and that samples of a requested class are recognised as that class."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import TraceMeanField_ELBO

from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.models import CVAE
from pyrogen.train import SVIStep, Trainer


def _cvae(**kwargs):
    torch.manual_seed(0)
    return CVAE(data_dim=6, num_classes=3, latent_dim=2, hidden=(5,), **kwargs)


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 6, generator=g).round(), torch.tensor([0, 2, 1, 2])


def _mlp(layers, h):
    """The MLP by hand: Linear, ReLU, ..., Linear, from the raw weight tensors."""
    for i, layer in enumerate(layers):
        h = h @ layer.weight.T + layer.bias
        if i < len(layers) - 1:
            h = h.clamp(min=0)
    return h


def test_mean_field_elbo_equals_the_hand_written_closed_form():
    """loss = sum_n [-log Bern(x_n; sigmoid(NN([z_n, e_y]))) + KL(N(mu, s^2) || N(0, I))] with
    mu, log s^2 = NN([x_n, e_y]), every piece written out from the weights."""
    cvae = _cvae(num_data=10)  # scale 10 / 4 on every term
    x, y = _data()
    pyro.set_rng_seed(3)
    with torch.no_grad():
        loss = TraceMeanField_ELBO().loss(cvae.model, cvae.guide, x, y)
    pyro.set_rng_seed(3)
    z = poutine.trace(cvae.guide).get_trace(x, y).nodes["z"]["value"]
    e = F.one_hot(y, 3).float()
    with torch.no_grad():
        enc = [m for m in cvae.encoder.net if isinstance(m, torch.nn.Linear)]
        dec = [m for m in cvae.decoder if isinstance(m, torch.nn.Linear)]
        loc, log_var = _mlp(enc, torch.cat([x, e], -1)).split(2, -1)
        kl = 0.5 * (loc**2 + log_var.exp() - 1 - log_var).sum(-1)
        logits = _mlp(dec, torch.cat([z, e], -1))
        log_lik = (x * logits - torch.log1p(logits.exp())).sum(-1)
    expected = 10 / 4 * float((kl - log_lik).sum())
    assert loss == pytest.approx(expected, rel=1e-5)
    # the label matters: other labels give another ELBO
    pyro.set_rng_seed(3)
    with torch.no_grad():
        assert TraceMeanField_ELBO().loss(cvae.model, cvae.guide, x, (y + 1) % 3) != loss


def test_every_parameter_is_in_the_param_store_and_trained():
    pyro.clear_param_store()
    cvae = _cvae()
    x, y = _data()
    before = {k: v.detach().clone() for k, v in cvae.named_parameters()}
    SVIStep(cvae.model, cvae.guide, lr=0.1)(x, y)
    store = dict(pyro.get_param_store().named_parameters())
    assert set(store) == set(before) and len(before) == 8  # 2 layers x (W, b) x (enc, dec)
    for name, value in cvae.named_parameters():
        assert store[name] is value, name
        assert not torch.equal(value, before[name]), f"{name} did not change"


@pytest.mark.parametrize(
    "y, message",
    [
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), "integer class labels"),
        (F.one_hot(torch.tensor([0, 1, 2, 1]), 3), r"1-D tensor.*argmax"),
        (torch.tensor([0, 1, 2]), "4 examples but 3 labels"),
        (torch.tensor([0, 1, 3, 1]), r"\[0, 3\)"),
        (torch.tensor([0, -1, 2, 1]), r"\[0, 3\)"),
        ([0, 1, 2, 1], "tensor of class indices"),
    ],
)
def test_bad_labels_are_refused_with_what_to_do(y, message):
    cvae = _cvae()
    x, _ = _data()
    for call in (cvae.model, cvae.guide, cvae.validate, cvae.encode):
        with pytest.raises(ValueError, match=message):
            call(x, y)


def test_sample_draws_the_requested_labels():
    cvae = _cvae(likelihood="gaussian")
    assert cvae.sample(y=torch.tensor([0, 2, 2])).shape == (3, 6)
    assert cvae.sample(4, y=1).shape == (4, 6)
    torch.manual_seed(5)
    grouped = cvae.sample(2, y=torch.tensor([0, 2]))
    torch.manual_seed(5)
    explicit = cvae.sample(y=torch.tensor([0, 0, 2, 2]))
    assert grouped.shape == (4, 6) and torch.equal(grouped, explicit)
    for bad, message in [(None, "pass the labels"), (3, r"\[0, 3\)"), (1.0, "integer")]:
        with pytest.raises(ValueError, match=message):
            cvae.sample(2, y=bad)
    rebuilt = CVAE(**cvae.config())
    rebuilt.load_state_dict(cvae.state_dict())
    torch.testing.assert_close(rebuilt.reconstruct(*_data()), cvae.reconstruct(*_data()))


def test_evaluation_takes_the_labels():
    cvae = _cvae()
    x, y = _data()
    elbo, log_p = elbo_and_log_likelihood(cvae, x, y, num_samples=50)
    assert log_p >= elbo and elbo < 0


def test_samples_of_each_requested_class_are_recognised_as_that_class():
    """The issue's acceptance test: a CVAE trained on the digits with Trainer.fit(x, y) draws
    images that a classifier trained on the real digits assigns to the requested class."""
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("digits", binarize="dynamic")
    plain = load_dataset("digits")
    classifier = LogisticRegression(max_iter=2000).fit(plain.train_x.numpy(), plain.train_y)
    assert classifier.score(plain.test_x.numpy(), plain.test_y.numpy()) > 0.9
    pyro.clear_param_store()
    torch.manual_seed(0)
    cvae = CVAE(data.dim, 10, latent_dim=4, hidden=(128,), num_data=len(data.train_x))
    step = SVIStep(cvae.model, cvae.guide, lr=1e-2, loss_scale=1 / len(data.train_x))
    trainer = Trainer(
        step, batch_size=128, steps=300, transform=data.train_transform, progress=False
    )
    history = trainer.fit(data.train_x, data.train_y)
    assert history.losses[-1] < 0.7 * history.losses[0]
    wanted = torch.arange(10)
    images = cvae.sample(50, y=wanted, generator=torch.Generator().manual_seed(1))
    predicted = torch.as_tensor(classifier.predict(images.numpy()))
    accuracy = (predicted == wanted.repeat_interleave(50)).float().mean().item()
    per_class = (predicted.view(10, 50) == wanted[:, None]).float().mean(1)
    print(
        f"CVAE samples recognised as the requested class: {accuracy:.1%} (chance 10%);"
        f" per class {[round(a, 2) for a in per_class.tolist()]}"
    )
    assert accuracy >= 0.7

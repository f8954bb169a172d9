"""The conditional GAN (Mirza & Osindero, 2014) draws the class it is asked for: on digits, a
classifier of the real training digits reads samples of requested class c as c (chance 10%)."""

import time

import pyro
import pyro.distributions as dist
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from pyrogen.data import load_dataset
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic, ProjectionCritic
from pyrogen.train import AdversarialStep, Trainer, set_seed

LATENT, HIDDEN, CLASSES, PER_CLASS = 16, 128, 10, 100


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    classifier = LogisticRegression(max_iter=2000).fit(data.train_x, data.train_y)
    assert classifier.score(data.test_x, data.test_y) > 0.9
    return data, classifier


def _user_program(data_dim: int):
    """A conditional generator as a user writes it: a function with pyro.module."""
    net = nn.Sequential(
        nn.Linear(LATENT + CLASSES, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, data_dim),
    )

    def model(n, y):
        pyro.module("conditional_generator", net)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT), 1.0).to_event(1))
            h = torch.cat([z, nn.functional.one_hot(y, CLASSES).float()], -1)
            return pyro.deterministic("x", torch.sigmoid(net(h)), event_dim=1)

    return model


def _class_accuracy(
    data, classifier, loss, steps, lr, program="Generator", seed=0, critic="concat"
):
    """Train a conditional GAN on (x, y) batches; per requested class, the fraction of its
    samples the classifier assigns that class, and the same against the labels rolled by one."""
    set_seed(seed)
    if program == "Generator":
        gen = Generator(LATENT, data.dim, [HIDDEN] * 2, num_classes=CLASSES, output="sigmoid")
    else:
        gen = _user_program(data.dim)
    if critic == "projection":
        critic = ProjectionCritic(data.dim, CLASSES, [HIDDEN] * 2, activation="leaky_relu")
    else:
        critic = Critic(data.dim, [HIDDEN] * 2, num_classes=CLASSES, activation="leaky_relu")
    step = AdversarialStep(gen, critic, loss, lr=lr)
    Trainer(step, batch_size=64, steps=steps, seed=seed, progress=False).fit(
        data.train_x, data.train_y
    )
    y = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    with torch.no_grad():
        samples = pyro.poutine.trace(step.program).get_trace(len(y), y=y).nodes["x"]["value"]
    predicted = torch.as_tensor(classifier.predict(samples.numpy()))
    per_class = (predicted == y).float().view(CLASSES, PER_CLASS).mean(1)
    rolled = (predicted == (y + 1) % CLASSES).float().mean()
    return per_class, float(rolled)


def test_conditional_gan_draws_requested_digits(digits):
    """Acceptance: >= 70% of the samples of a requested class are read as it (measured 0.95,
    0.90, 0.96 for seeds 0-2; an unconditional generator gets ~0.1). ~8 s on one core."""
    data, classifier = digits
    start = time.perf_counter()
    per_class, rolled = _class_accuracy(data, classifier, "nsgan", steps=2000, lr=1e-3)
    seconds = time.perf_counter() - start
    assert per_class.mean() >= 0.7, (per_class, seconds)
    assert (per_class >= 0.2).all(), per_class  # no class is ignored
    assert rolled <= 0.15  # the samples follow the label, not a fixed class: wrong label ~chance


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss, steps, program",
    [
        ("hinge", 3000, "Generator"),
        ("wgan-gp", 1000, "Generator"),
        ("nsgan", 2000, "function"),
    ],
)
def test_conditional_gan_other_losses_and_user_program(digits, loss, steps, program):
    data, classifier = digits
    per_class, rolled = _class_accuracy(data, classifier, loss, steps, 1e-3, program)
    assert per_class.mean() >= 0.7 and rolled <= 0.15, per_class


@pytest.mark.slow
def test_conditional_gan_with_a_projection_critic(digits):
    """Miyato & Koyama's projection critic d(x, y) = psi(phi(x)) + embed(y)^T phi(x): measured
    0.96 (hinge, 2000 steps, ~14 s) and 0.88 (nsgan)."""
    data, classifier = digits
    per_class, rolled = _class_accuracy(data, classifier, "hinge", 2000, 1e-3, critic="projection")
    assert per_class.mean() >= 0.7 and rolled <= 0.15, per_class

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.models import VAE
from pyrogen.train import History, SVIStep, Trainer, iterate_minibatches


def _step(seed=0):
    torch.manual_seed(seed)
    vae = VAE(5, 2, (8,))
    return vae, SVIStep(vae.model, vae.guide, lr=1e-2)


def test_epochs_give_ceil_of_batches():
    _, step = _step()
    history = Trainer(step, batch_size=4, epochs=3, progress=False).fit(torch.rand(10, 5).round())
    assert isinstance(history, History) and len(history) == 3 * 3
    assert all(isinstance(v, float) for v in history.losses)


def test_steps_cycle_through_the_data():
    _, step = _step()
    history = Trainer(step, batch_size=4, steps=7, progress=False).fit(torch.rand(6, 5).round())
    assert len(history.losses) == 7


def test_same_seed_same_run():
    x = torch.rand(20, 5).round()
    runs = []
    for _ in range(2):
        pyro.clear_param_store()
        vae, step = _step()
        history = Trainer(step, batch_size=8, epochs=4, seed=3, progress=False).fit(x)
        runs.append((history.losses, vae.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        assert torch.equal(v, runs[1][1][k])


def test_training_decreases_the_loss():
    x = torch.rand(64, 5).round()
    _, step = _step()
    history = Trainer(step, batch_size=64, steps=300, progress=False).fit(x)
    assert sum(history.losses[-20:]) / 20 < sum(history.losses[:20]) / 20 - 0.5


def test_a_second_model_is_trained_not_the_first():
    """PyroModules with the same parameter names: the second model's step refuses to train the
    first model's tensors (Pyro's global param store maps the names to them) and trains its own
    in a private param store."""
    x = torch.rand(16, 5).round()
    vae1, step1 = _step(0)
    Trainer(step1, batch_size=16, steps=5, progress=False).fit(x)
    frozen = {k: v.clone() for k, v in vae1.state_dict().items()}
    torch.manual_seed(1)
    vae2 = VAE(5, 2, (8,))
    with pytest.raises(ValueError, match=r"encoder\.net\.0\.bias.*param_scope=True"):
        SVIStep(vae2.model, vae2.guide, lr=1e-2)
    before = {k: v.clone() for k, v in vae2.state_dict().items()}
    step2 = SVIStep(vae2.model, vae2.guide, lr=1e-2, param_scope=True)
    Trainer(step2, batch_size=16, steps=5, progress=False).fit(x)
    assert all(torch.equal(v, vae1.state_dict()[k]) for k, v in frozen.items())
    assert all(not torch.equal(v, vae2.state_dict()[k]) for k, v in before.items())


def test_minibatches_cover_every_example_once_per_epoch():
    data = torch.arange(10.0).unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    batches = list(iterate_minibatches(data, 4, g))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).flatten().tolist()) == list(range(10))


def test_transform_is_applied_to_every_batch():
    seen = []

    class Recorder:
        def __call__(self, batch):
            seen.append(batch.clone())
            return {"loss": 0.0}

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    Trainer(Recorder(), batch_size=3, epochs=1, transform=lambda b, g: b + 100, progress=False).fit(
        torch.zeros(6, 1)
    )
    assert len(seen) == 2 and all((b == 100).all() for b in seen)


def test_step_asking_for_several_batches_gets_them():
    got = []

    class TwoBatches:
        batches_per_step = 2

        def __call__(self, a, b):
            got.append((len(a), len(b)))
            return {"loss": 1.0}

    history = Trainer(TwoBatches(), batch_size=2, steps=3, progress=False).fit(torch.zeros(5, 1))
    assert len(history) == 3 and all(sizes[0] > 0 and sizes[1] > 0 for sizes in got)


def test_loss_scale_only_changes_what_is_reported():
    x = torch.rand(8, 5).round()
    results = []
    for scale in (1.0, 0.5):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(5, 2, (8,))
        step = SVIStep(vae.model, vae.guide, lr=1e-2, loss_scale=scale)
        pyro.set_rng_seed(0)
        results.append((step(x)["loss"], vae.state_dict()))
    assert results[1][0] == pytest.approx(0.5 * results[0][0], rel=1e-6)
    for k, v in results[0][1].items():  # identical updates: gradients were not scaled
        assert torch.equal(v, results[1][1][k])


def test_loss_scale_one_over_n_records_the_elbo_per_example():
    """With the data plate scaled by N / b, loss_scale=1/N reports -ELBO per example of the batch
    (what ``pyrogen vae`` plots), not per data set and not divided by N twice."""
    x, n = torch.rand(8, 5).round(), 1000
    torch.manual_seed(0)
    vae = VAE(5, 2, (8,), num_data=None)  # plate scale 1: the loss sums the batch's examples
    pyro.set_rng_seed(1)
    per_example = TraceMeanField_ELBO().loss(vae.model, vae.guide, x) / len(x)
    vae.num_data = n
    step = SVIStep(vae.model, vae.guide, lr=1e-2, loss_scale=1 / n)
    pyro.set_rng_seed(1)
    assert step(x)["loss"] == pytest.approx(per_example, rel=1e-5)
    assert 5 * math.log(2) / 2 < per_example < 5 * 10  # nats for 5 binary features


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of epochs= or steps="),
        ({"epochs": 1, "steps": 1}, "exactly one of epochs= or steps="),
        ({"epochs": 0}, "epochs >= 1"),
        ({"steps": 5, "batch_size": 0}, "batch_size >= 1"),
    ],
)
def test_trainer_validates_its_arguments(kwargs, message):
    _, step = _step()
    with pytest.raises(ValueError, match=message):
        Trainer(step, **kwargs)


def test_empty_data_and_bad_lr():
    _, step = _step()
    with pytest.raises(ValueError, match="empty"):
        Trainer(step, steps=1, progress=False).fit(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="lr > 0"):
        SVIStep(lambda x: None, lambda x: None, lr=0)


def test_svi_step_accepts_any_pyro_program():
    def model(x):
        loc = pyro.param("loc", torch.tensor(0.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(loc, 1.0), obs=x.squeeze(-1))

    def guide(x):
        pass

    x = torch.full((32, 1), 3.0)  # 32 scalar examples: rows
    history = Trainer(SVIStep(model, guide, lr=0.1), batch_size=32, steps=200, progress=False).fit(
        x
    )
    assert pyro.param("loc").item() == pytest.approx(3.0, abs=0.05)
    assert history.losses[-1] < history.losses[0]

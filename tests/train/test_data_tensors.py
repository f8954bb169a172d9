"""Trainer.fit(*tensors) / fit(dataset): a conditional VAE model(x, y), guide(x, y) written as a
plain nn.Module with pyro.module trains, resumes bit-identically and shards like one tensor."""

import os

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pyrogen.data import load_dataset
from pyrogen.data.dataset import binarize_dynamic
from pyrogen.evaluate import elbo
from pyrogen.train import AdversarialStep, SVIStep, Trainer
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint
from pyrogen.train.trainer import epoch_order


class CVAE(nn.Module):
    """p(z) p(x | z, y) with Bernoulli pixels, q(z | x, y); y one-hot labels (Sohn et al., 2015)."""

    def __init__(self, data_dim=64, num_labels=10, z_dim=4, hidden=64):
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(nn.Linear(data_dim + num_labels, hidden), nn.Softplus())
        self.loc, self.log_scale = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)
        self.decoder = nn.Sequential(
            nn.Linear(z_dim + num_labels, hidden), nn.Softplus(), nn.Linear(hidden, data_dim)
        )

    def model(self, x, y):
        pyro.module("cvae", self)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            logits = self.decoder(torch.cat([z, y.expand(*z.shape[:-1], -1)], -1))  # particles
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x, y):
        pyro.module("cvae", self)
        with pyro.plate("data", len(x)):
            h = self.encoder(torch.cat([x, y], -1))
            pyro.sample("z", dist.Normal(self.loc(h), self.log_scale(h).exp()).to_event(1))


def _digits(n=None):
    data = load_dataset("digits")
    x, labels = (data.train_x > 0.5).float(), data.train_y  # binary pixels (Bernoulli)
    if n is not None:
        x, labels = x[:n], labels[:n]
    return x, F.one_hot(labels.long(), 10).float(), labels


def _run(*data, steps=12, seed=0, **kwargs):
    pyro.clear_param_store()
    torch.manual_seed(0)
    cvae = CVAE()
    step = SVIStep(cvae.model, cvae.guide, lr=1e-2, modules=[cvae])
    trainer = Trainer(step, batch_size=64, steps=steps, seed=seed, progress=False, **kwargs)
    return cvae, trainer.fit(*data)


class _Pairs(Dataset):
    """A map-style Dataset that is not a TensorDataset: read example by example."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_tensors_a_tensor_dataset_and_a_map_style_dataset_give_identical_histories():
    x, y, _ = _digits(300)
    _, tensors = _run(x, y)
    _, dataset = _run(TensorDataset(x, y))
    _, pairs = _run(_Pairs(x, y), steps=6)
    assert tensors.losses == dataset.losses and len(tensors) == 12
    assert pairs.losses == tensors.losses[:6]
    _, other_seed = _run(x, y, seed=1)
    assert other_seed.losses != tensors.losses  # the order (and the loss) depends on the data


def test_the_step_gets_aligned_rows_of_every_tensor():
    seen = []

    def model(x, label):
        seen.append((x[:, 0].clone(), label.clone()))
        pyro.factor("f", -(pyro.param("m", torch.tensor(0.0)) ** 2))

    def guide(x, label):
        pass

    x = torch.arange(10.0).unsqueeze(-1).repeat(1, 3)
    labels = torch.arange(10) * 100  # integer (non-floating) data are fine
    pyro.clear_param_store()
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO())
    Trainer(step, batch_size=4, steps=3, progress=False).fit(x, labels)
    assert len(seen) >= 3
    for rows, lab in seen:
        assert torch.equal(lab, rows.long() * 100)  # row i of x with label i * 100


def test_transform_applies_to_the_first_tensor_or_to_the_named_ones():
    got = []

    def model(x, y):
        got.append((x.clone(), y.clone()))
        pyro.factor("f", -(pyro.param("m", torch.tensor(0.0)) ** 2))

    def plus(value):
        return lambda t, g: t + value

    x, y = torch.zeros(8, 2), torch.zeros(8, 2)
    for transform, dx, dy in ((plus(1.0), 1.0, 0.0), ({1: plus(2.0)}, 0.0, 2.0)):
        pyro.clear_param_store()
        got.clear()
        step = SVIStep(model, lambda x, y: None, pyro.infer.Trace_ELBO())
        Trainer(step, batch_size=8, steps=1, progress=False, transform=transform).fit(x, y)
        assert all((bx == dx).all() and (by == dy).all() for bx, by in got)
    with pytest.raises(ValueError, match="transform= names tensor 2"):
        Trainer(step, batch_size=8, steps=1, progress=False, transform={2: plus(1.0)}).fit(x, y)
    with pytest.raises(TypeError, match="transform="):
        Trainer(step, steps=1, transform={"x": plus(1.0)})


def test_nan_in_the_last_row_is_refused_before_step_1_naming_tensor_and_row():
    calls = []

    def model(x, y):
        calls.append(1)
        pyro.factor("f", -(pyro.param("m", torch.tensor(0.0)) ** 2))

    x, y = torch.zeros(100, 3), torch.zeros(100, 2)
    y[99, 1] = float("nan")
    step = SVIStep(model, lambda x, y: None, pyro.infer.Trace_ELBO())
    trainer = Trainer(step, batch_size=10, steps=5, progress=False)
    with pytest.raises(ValueError, match=r"NaN or infinite.*tensor 1, rows \[99\] of 100"):
        trainer.fit(x, y)
    assert calls == []  # neither setup nor a step ran


def test_data_it_cannot_train_on_are_refused():
    step = SVIStep(lambda *a: None, lambda *a: None)
    trainer = Trainer(step, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"examples are rows; .*x\.unsqueeze\(-1\)"):
        trainer.fit(torch.randn(30))
    with pytest.raises(ValueError, match=r"different first dimensions \[30, 29\]"):
        trainer.fit(torch.randn(30, 2), torch.randn(29))
    with pytest.raises(TypeError, match="DataLoader"):
        trainer.fit(torch.utils.data.DataLoader(TensorDataset(torch.randn(4, 2))))
    with pytest.raises(TypeError, match=r"must return a tensor or a tuple of tensors"):
        trainer.fit(_Pairs(["a", "b"], [1, 2]))


def _device_spy():
    devices = []

    def model(x, y):
        devices.append((x.device, y.device))
        pyro.factor("f", -(pyro.param("m", torch.tensor(0.0, device=x.device)) ** 2))

    return SVIStep(model, lambda x, y: None, pyro.infer.Trace_ELBO()), devices


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
        ),
    ],
)
def test_device_moves_every_batch_and_the_data_stay_put(device):
    pyro.clear_param_store()
    step, devices = _device_spy()
    x, y = torch.rand(12, 3), torch.arange(12)
    trainer = Trainer(step, batch_size=4, steps=3, progress=False, device=device)
    trainer.fit(x, y)
    assert devices and all(d == (torch.device(device),) * 2 for d in devices)
    assert x.device.type == "cpu" and trainer.device == torch.device(device)


def test_the_bernoulli_check_of_the_models_validate_still_runs():
    from pyrogen.models import VAE

    pyro.clear_param_store()
    vae = VAE(4, 2, (8,))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Trainer(SVIStep(vae.model, vae.guide), steps=1, progress=False).fit(torch.full((8, 4), 2.0))


def test_adversarial_step_gets_every_tensor_of_each_batch():
    from pyrogen.models.gan import Generator
    from pyrogen.nn.adversarial import Critic

    class LabelSpy(Critic):
        def forward(self, x, y=None):
            self.seen.append(y)
            return super().forward(x, y)

    torch.manual_seed(0)
    x, y = torch.randn(16, 2), torch.arange(16) % 3
    gen, critic = Generator(2, 2, (8,), num_classes=3), LabelSpy(2, (8,), num_classes=3)
    critic.seen = []
    step = AdversarialStep(gen, critic, "hinge", critic_steps=2)
    Trainer(step, batch_size=8, steps=1, progress=False).fit(x, y)
    order = epoch_order(16, 0, 0)
    labels = [y[order[:8]], y[order[8:]], y[order[:8]]]  # epoch 1 wraps into epoch 2's order
    labels[2] = y[epoch_order(16, 0, 1)[:8]]
    # setup (the generator loss on the first batch, finding the parameters); per critic update
    # real and generated scores with the batch's labels; then the generator update's
    assert [t.tolist() for t in critic.seen] == [
        t.tolist() for t in (labels[0], labels[0], labels[0], labels[1], labels[1], labels[2])
    ]


def _same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_with_two_tensors_is_bit_identical_and_other_labels_are_refused(tmp_path):
    x, y, _ = _digits(200)
    kwargs = {"transform": {0: binarize_dynamic}}
    straight, full = _run(x, y, steps=10, **kwargs)
    _run(x, y, steps=5, checkpoint_dir=tmp_path, **kwargs)  # 200 rows, batch 64: mid-epoch 2
    resumed, history = _run(x, y, steps=10, checkpoint_dir=tmp_path, resume=True, **kwargs)
    _same_state(straight.state_dict(), resumed.state_dict())
    assert history.losses == full.losses
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 10
    with pytest.raises(ValueError, match="other data"):
        _run(x, y.roll(1, 0), steps=12, checkpoint_dir=tmp_path, resume=True, **kwargs)


def test_evaluate_elbo_takes_the_same_tensors():
    x, y, _ = _digits(50)
    cvae, _ = _run(x, y, steps=3)
    pyro.set_rng_seed(0)
    a = elbo(cvae, x, y, num_samples=4, batch_size=20, reduction="none")
    pyro.set_rng_seed(0)
    b = elbo((cvae.model, cvae.guide), x, y, num_samples=4, batch_size=20, reduction="none")
    assert a.shape == (50,) and torch.equal(a, b) and torch.isfinite(a).all()


@pytest.mark.slow
def test_cvae_decodes_the_requested_label():
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("digits")
    x, y, labels = _digits()
    cvae, history = _run(x, y, steps=400)
    assert history.losses[-1] < history.losses[0]
    classifier = LogisticRegression(max_iter=2000).fit(x.numpy(), labels.numpy())
    assert classifier.score(data.test_x.numpy(), data.test_y.numpy()) > 0.9
    torch.manual_seed(1)
    wanted = torch.arange(10).repeat_interleave(50)
    with torch.no_grad():
        z = torch.randn(len(wanted), cvae.z_dim)
        images = torch.sigmoid(cvae.decoder(torch.cat([z, F.one_hot(wanted, 10).float()], -1)))
    accuracy = (classifier.predict(images.numpy()) == wanted.numpy()).mean()
    print(f"CVAE: label of decoded samples recognised {accuracy:.1%} (chance 10%)")
    assert accuracy > 0.9  # measured 100 % (400 steps); a decoder ignoring y gives ~10 %


# --- two gloo ranks with two tensors equal one process --------------------------------------
N = 25  # batch 10: batches of 10, 10, 5 rows; the last one is split 3 / 2 over two ranks


def _regression_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 + 0.1 * torch.randn(N, generator=g)
    return x, y


def _regression(x, y):
    w, b = pyro.param("w", torch.zeros(3)), pyro.param("b", torch.tensor(0.0))
    pyro.factor("ridge", -(w**2).sum())  # a global (unplated) term
    with pyro.plate("data", N, subsample=torch.arange(len(x))):
        pyro.sample("y", dist.Normal(x @ w + b, 1.0), obs=y)


def _train_regression():
    step = SVIStep(_regression, lambda x, y: None, lr=0.05)
    history = Trainer(step, batch_size=10, steps=6, seed=0, progress=False).fit(*_regression_data())
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}, history.losses


def _worker(rank, world_size, tmp):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        params, losses = _train_regression()
        torch.save({"params": params, "losses": losses}, f"{tmp}/rank{rank}.pt")
        torch_dist.barrier()  # no rank tears gloo down while the other is still in a collective
    finally:
        torch_dist.destroy_process_group()


def test_shard_takes_the_same_rows_of_every_tensor():
    from pyrogen.train.distributed import Context, shard

    x, y = torch.arange(5.0).unsqueeze(-1), torch.arange(5) * 10
    (xs, ys), weight = shard((x, y), Context(rank=1, world_size=2))
    assert torch.equal(xs[:, 0], torch.tensor([3.0, 4.0]))
    assert torch.equal(ys, torch.tensor([30, 40]))
    assert weight == pytest.approx(2 * 2 / 5)
    assert shard(x, Context(rank=1, world_size=2))[0].equal(xs)  # one tensor as before


@pytest.mark.slow  # ~9 s: two spawned processes
def test_two_gloo_ranks_with_two_tensors_equal_one_process(tmp_path):
    pyro.clear_param_store()
    single, single_losses = _train_regression()
    pyro.clear_param_store()
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in single.items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name
        assert torch.allclose(ranks[0]["params"][name], value, atol=1e-5, rtol=1e-5), name
    assert ranks[0]["losses"] == pytest.approx(single_losses, rel=1e-5)

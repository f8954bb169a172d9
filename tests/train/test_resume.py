"""Resume is bit-identical: N steps + resume to 2N == 2N steps straight (CPU, same seed)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import constraints

from pyrogen.cli import main
from pyrogen.data.dataset import binarize_dynamic
from pyrogen.models import VAE
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, SVIStep, Trainer
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint

DATA = torch.rand(40, 6)  # 40 rows, batch 16: 3 batches per epoch, so step 5 is mid-epoch


def _vae_run(steps, ckpt_dir=None, resume=False, every=None):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(6, 2, (8,), num_data=len(DATA))
    step = SVIStep(vae.model, vae.guide, lr=1e-2)
    trainer = Trainer(
        step,
        batch_size=16,
        steps=steps,
        seed=3,
        transform=binarize_dynamic,
        progress=False,
        checkpoint_dir=ckpt_dir,
        checkpoint_every=every,
        resume=resume,
    )
    return vae, trainer.fit(DATA)


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_svi_resume_mid_epoch_is_bit_identical(tmp_path):
    straight, full = _vae_run(10)
    _vae_run(5, tmp_path)  # "interrupted" after 5 steps (mid-epoch 2)
    resumed, history = _vae_run(10, tmp_path, resume=True)
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    assert history.losses == full.losses and len(history) == 10


def test_resume_runs_to_the_requested_total_not_more(tmp_path):
    _vae_run(6, tmp_path, every=2)
    _, history = _vae_run(6, tmp_path, resume=True)
    assert len(history) == 6  # nothing left to do
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 6


def test_resume_without_checkpoint_starts_fresh(tmp_path, capsys):
    _, history = _vae_run(3, tmp_path / "empty", resume=True)
    assert len(history) == 3 and "starting from step 0" in capsys.readouterr().out


def test_resume_with_other_settings_is_refused(tmp_path):
    _vae_run(2, tmp_path)
    pyro.clear_param_store()
    vae = VAE(6, 2, (8,), num_data=len(DATA))
    step = SVIStep(vae.model, vae.guide, lr=1e-2)
    trainer = Trainer(step, batch_size=8, steps=4, seed=3, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="batch_size=16, this run has batch_size=8"):
        trainer.fit(DATA)


def _gan_run(steps, ckpt_dir=None, resume=False, **kwargs):
    torch.manual_seed(0)
    gen, critic = Generator(2, 2, (8,)), Critic(2, (8,))
    step = AdversarialStep(gen, critic, "wgan-gp", critic_steps=2, **kwargs)
    trainer = Trainer(
        step,
        batch_size=8,
        steps=steps,
        seed=1,
        progress=False,
        checkpoint_dir=ckpt_dir,
        resume=resume,
    )
    history = trainer.fit(torch.randn(20, 2))
    state = {**gen.state_dict(), **{f"c.{k}": v for k, v in critic.state_dict().items()}}
    if step.ema_generator is not None:
        state.update({f"ema.{k}": v for k, v in step.ema_generator.state_dict().items()})
    return state, history


def test_adversarial_resume_is_bit_identical(tmp_path):
    straight, full = _gan_run(6)
    _gan_run(3, tmp_path)
    resumed, history = _gan_run(6, tmp_path, resume=True)
    _assert_same_state(straight, resumed)
    assert history.column("w1") == full.column("w1")


def test_adversarial_resume_with_ema_and_lr_decay_is_bit_identical(tmp_path):
    options = {"ema": 0.9, "lr_decay": 0.5, "total_steps": 6}
    straight, full = _gan_run(6, **options)
    _gan_run(3, tmp_path, **options)
    resumed, history = _gan_run(6, tmp_path, resume=True, **options)
    assert any(k.startswith("ema.") for k in resumed)
    _assert_same_state(straight, resumed)
    assert history.column("w1") == full.column("w1")


TINY = ["--hidden", "8", "--latent-dim", "2", "--num-is-samples", "2", "--no-progress"]


def test_cli_resume_gives_the_same_model_file(tmp_path):
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    assert main(["vae", "--out", str(straight), "--epochs", "2", *TINY]) == 0
    first = ["--epochs", "1", "--checkpoint-every", "5"]
    assert main(["vae", "--out", str(parts), *first, *TINY]) == 0
    assert (parts / "checkpoints" / "history.csv").is_file()
    assert main(["vae", "--out", str(parts), "--epochs", "2", "--resume", *TINY]) == 0
    assert (straight / "model.pt").read_bytes() == (parts / "model.pt").read_bytes()


def _function_run(steps, ckpt_dir=None, resume=False, data=DATA, param_scope=False):
    """A user's plain functions: pyro.param (two with constraints) and pyro.module."""
    pyro.clear_param_store()
    pyro.param("unrelated", torch.ones(3))  # in the store, but not trained by this step
    torch.manual_seed(0)
    encoder = nn.Linear(6, 2)

    def model(x):
        w = pyro.param("w", torch.zeros(2, 6))
        noise = pyro.param("noise", torch.tensor(1.0), constraint=constraints.positive)
        with pyro.plate("data", len(data), subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ w, noise).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        scale = pyro.param("z_scale", torch.ones(2), constraint=constraints.positive)
        with pyro.plate("data", len(data), subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(encoder(x), scale).to_event(1))

    step = SVIStep(model, guide, lr=1e-2, param_scope=param_scope)
    trainer = Trainer(
        step,
        batch_size=16,
        steps=steps,
        seed=3,
        progress=False,
        checkpoint_dir=ckpt_dir,
        resume=resume,
    )
    history = trainer.fit(data)
    with step.param_scope():
        params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return params, history


def test_function_model_resume_is_bit_identical_and_saves_only_its_params(tmp_path):
    straight, full = _function_run(10)
    _function_run(5, tmp_path)
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"]
    trained = ["encoder$$$bias", "encoder$$$weight", "noise", "w", "z_scale"]
    assert sorted(saved["params"]) == sorted(saved["optim"]) == trained  # not "unrelated"
    assert saved["constraints"]["noise"] == repr(constraints.positive)
    resumed, history = _function_run(10, tmp_path, resume=True)
    _assert_same_state(straight, resumed)
    assert history.losses == full.losses


def test_private_param_scope_resume_is_bit_identical(tmp_path):
    straight, full = _function_run(10, param_scope=True)
    _function_run(5, tmp_path, param_scope=True)
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"]
    trained = ["encoder$$$bias", "encoder$$$weight", "noise", "w", "z_scale"]
    assert sorted(saved["params"]) == sorted(saved["optim"]) == trained
    resumed, history = _function_run(10, tmp_path, resume=True, param_scope=True)
    assert sorted(resumed) == trained  # the private store holds only this step's params
    _assert_same_state(straight, resumed)
    assert history.losses == full.losses
    assert sorted(pyro.get_param_store().keys()) == ["unrelated"]  # the global store untouched


class BatchNormVAE(nn.Module):
    """A user's nn.Module (not a PyroModule) whose encoder keeps BatchNorm running statistics."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
        self.decoder = nn.Linear(2, 6)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", len(DATA), subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", len(DATA), subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def _batchnorm_run(steps, ckpt_dir=None, resume=False, how="methods", loss=None):
    """``how``: the programs are methods of the module ("methods"), or plain functions that
    register its networks with pyro.module, given to the step as modules= ("functions")."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    net = BatchNormVAE()
    if how == "methods":
        step = SVIStep(net.model, net.guide, loss, lr=1e-2)
    else:
        model, guide = (lambda x: net.model(x)), (lambda x: net.guide(x))
        step = SVIStep(model, guide, loss, lr=1e-2, modules=[net.encoder, net.decoder])
    trainer = Trainer(
        step,
        batch_size=16,
        steps=steps,
        seed=3,
        transform=binarize_dynamic,
        progress=False,
        checkpoint_dir=ckpt_dir,
        resume=resume,
    )
    return net, trainer.fit(DATA)


def test_module_buffers_are_checkpointed_and_resume_is_bit_identical(tmp_path):
    straight, full = _batchnorm_run(10)
    _batchnorm_run(5, tmp_path)
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"]
    assert "model.encoder.1.running_mean" in saved["buffers"]
    resumed, history = _batchnorm_run(10, tmp_path, resume=True)
    _assert_same_state(straight.state_dict(), resumed.state_dict())  # running stats included
    assert history.losses == full.losses


def test_buffers_of_networks_registered_from_functions_are_checkpointed(tmp_path):
    straight, full = _batchnorm_run(10, how="functions")
    _batchnorm_run(5, tmp_path, how="functions")
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"]
    assert "module0.1.running_mean" in saved["buffers"]
    resumed, history = _batchnorm_run(10, tmp_path, resume=True, how="functions")
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    assert history.losses == full.losses


def test_a_function_step_warns_that_it_cannot_find_its_networks_buffers():
    pyro.clear_param_store()
    net = BatchNormVAE()
    step = SVIStep(lambda x: net.model(x), lambda x: net.guide(x), lr=1e-2)
    step(DATA[:8].round())
    with pytest.warns(UserWarning, match=r"\['decoder', 'encoder'\].*modules=\[net"):
        step.state_dict()


class Counter(PyroModule):
    """A PyroModule whose forward is the model, with a buffer it updates on every call."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(6))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(self.loc, 1.0).to_event(1), obs=x)


def test_a_pyro_module_program_has_its_buffers_checkpointed(tmp_path):
    def run(steps, resume=False):
        pyro.clear_param_store()
        counter = Counter()
        step = SVIStep(counter, lambda x: None, lr=1e-2)
        Trainer(
            step,
            batch_size=16,
            steps=steps,
            progress=False,
            checkpoint_dir=tmp_path / str(resume),
            resume=resume,
        ).fit(DATA)
        return counter

    straight = run(10)
    (tmp_path / "True").mkdir()
    first = run(5, resume=False)
    for path in (tmp_path / "False").iterdir():
        (tmp_path / "True" / path.name).write_bytes(path.read_bytes())
    resumed = run(10, resume=True)
    assert first.calls < straight.calls
    assert torch.equal(resumed.calls, straight.calls) and torch.equal(resumed.loc, straight.loc)


def test_a_neural_baseline_resumes_bit_identically(tmp_path):
    from pyrogen.infer import ELBO

    def loss():
        return ELBO(estimator="score", baseline="neural")

    straight, full = _batchnorm_run(8, loss=loss())
    _batchnorm_run(4, tmp_path, loss=loss())
    saved = load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"]
    assert any(name.startswith("elbo_nn_baseline") for name in saved["params"])
    resumed, history = _batchnorm_run(8, tmp_path, resume=True, loss=loss())
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    assert history.losses == full.losses


def test_loading_copies_in_place_so_the_optimizer_keeps_its_tensors(tmp_path):
    vae, _ = _vae_run(3, tmp_path)
    step = SVIStep(vae.model, vae.guide, lr=1e-2)  # a fresh step: its optimizer saw nothing
    step.setup(DATA[:4])
    saved = {k: v.clone() for k, v in step.state_dict()["params"].items()}
    live = dict(pyro.get_param_store().named_parameters())
    for p in vae.parameters():
        p.data.add_(1.0)
    step.load_state_dict(load_checkpoint(list_checkpoints(tmp_path)[-1])["step_state"])
    for name, tensor in dict(pyro.get_param_store().named_parameters()).items():
        assert tensor is live[name] and torch.equal(tensor, saved[name]), name


@pytest.mark.parametrize("other", [DATA[:39], DATA.flip(0)], ids=["size", "content"])
def test_resume_on_other_data_is_refused(tmp_path, other):
    _function_run(2, tmp_path)
    with pytest.raises(ValueError, match="trained on other data .*same training data") as err:
        _function_run(4, tmp_path, resume=True, data=other)
    assert f"this run has {len(other)} examples" in str(err.value)

"""SVIStep's recorded-graph replay of the fast path (pyrogen.train.steps.replay): the same losses
and parameters as running the program, bit for bit; a check, a changed key, a handler or a new
parameter tensor sends the step back to the program; programs that read tensor values or do not
say which Python state they read are not replayed."""

import contextlib
import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrogen.infer import ELBO, get_objective
from pyrogen.models import VAE
from pyrogen.models.likelihoods import Bernoulli
from pyrogen.train import NonFiniteError, SVIStep

BATCHES = [
    torch.rand(8, 6, generator=torch.Generator().manual_seed(i)).bernoulli() for i in range(3)
]
LAST = torch.rand(5, 6, generator=torch.Generator().manual_seed(9)).bernoulli()  # an epoch's end


def _run(replay, steps=3, change=None, seed=3):
    """Losses and final parameters of a VAE trained on BATCHES + LAST; ``change(vae, step, i)``
    runs before step i."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(6, 2, (5,), num_data=40)
    step = SVIStep(vae.model, vae.guide, replay=replay)
    torch.manual_seed(seed)
    losses = []
    for i in range(steps * 4):
        if change is not None:
            change(vae, step, i)
        losses.append(step([*BATCHES, LAST][i % 4])["loss"])
    return losses, [p.detach().clone() for p in vae.parameters()], step


def _equal(a, b):
    return a[0] == b[0] and all(torch.equal(p, q) for p, q in zip(a[1], b[1], strict=True))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"likelihood": "gaussian"},
        {"arch": "conv", "image_shape": (8, 8), "hidden": (16,), "base_channels": 4},
    ],
)
def test_gaussian_and_conv_vaes_are_replayed_bit_for_bit(kwargs):
    data = torch.rand(6, 64, generator=torch.Generator().manual_seed(5))
    runs = []
    for replay in (False, None):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(64, 2, **{"hidden": (8,), **kwargs})
        step = SVIStep(vae.model, vae.guide, replay=replay)
        torch.manual_seed(1)
        losses = [step(data)["loss"] for _ in range(4)]
        runs.append((losses, [p.detach().clone() for p in vae.parameters()]))
        assert (replay is None) == bool(step._replay and step._replay.graphs)
    assert _equal(*runs)


def test_the_vae_is_replayed_with_the_programs_losses_and_parameters_bit_for_bit():
    ran, replayed = _run(replay=False), _run(replay=None)
    assert replayed[2]._replay is not None
    assert len(replayed[2]._replay.graphs) == 2  # the batch of 8 and the last one of 5
    assert _equal(ran, replayed)
    assert ran[0] != _run(replay=False, seed=4)[0]  # the comparison sees the draws


def test_a_changed_program_key_records_a_new_graph():
    def change(vae, step, i):
        if i == 6:
            vae.num_data = 400  # the plate's scale: part of VAE.program_key

    ran, replayed = _run(False, change=change), _run(None, change=change)
    assert _equal(ran, replayed)
    assert len(replayed[2]._replay.graphs) == 4


def test_a_loaded_state_is_trained_after_replay():
    saved = {}

    def change(vae, step, i):
        if i == 2:
            saved.update(step.state_dict())
            saved["params"] = {k: v.detach().clone() for k, v in saved["params"].items()}
        if i == 9:
            step.load_state_dict(saved)

    ran, replayed = _run(False, change=change), _run(None, change=change)
    assert _equal(ran, replayed)


def test_a_step_under_a_handler_runs_the_program():
    def run(replay):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(6, 2, (5,), num_data=40)
        step = SVIStep(vae.model, vae.guide, replay=replay)
        out = []
        for i in range(8):
            x = BATCHES[i % 3]
            if i in (5, 6):
                with poutine.scale(scale=3.0):
                    out.append(step(x)["loss"])
            else:
                out.append(step(x)["loss"])
        return out

    assert run(False) == run(None)  # a replay would miss the scale of steps 5 and 6


def test_a_refused_parameter_raises_as_on_the_fast_path_and_changes_nothing():
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(6, 2, (5,), num_data=40)
    step = SVIStep(vae.model, vae.guide)
    for x in BATCHES:
        step(x)
    assert step._replay.graphs
    with torch.no_grad():
        vae.encoder.net[0].bias.fill_(float("nan"))  # loc is NaN: Normal refuses it
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(NonFiniteError, match="invalid parameters"):
        step(BATCHES[0])
    after = list(vae.parameters())
    assert all(_same(a, b) for a, b in zip(before, after, strict=True))


def _same(a, b):
    return torch.equal(torch.nan_to_num(a, nan=7.0), torch.nan_to_num(b.detach(), nan=7.0))


def _program(read_value):
    dec = torch.nn.Linear(2, 6)

    def model(x):
        net = pyro.module("dec", dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            logits = net(z)
            if read_value and logits.sum() > 1e9:  # a decision on a tensor's value
                logits = -logits
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x), 2))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    return model, guide


@pytest.mark.parametrize("read_value", [False, True])
def test_a_users_program_is_replayed_only_when_asked_and_when_it_can_be(read_value):
    results = {}
    for replay in (None, True, False):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model, guide = _program(read_value)
        step = SVIStep(model, guide, replay=replay)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results[replay] = [step(BATCHES[i % 3])["loss"] for i in range(6)]
        params = [p.detach().clone() for p in pyro.get_param_store().values()]
        results[replay] = (results[replay], params)
        replayed = step._replay is not None and bool(step._replay.graphs)
        assert replayed == (replay is True and not read_value)
        recording_failed = [w for w in caught if "reads a tensor's value" in str(w.message)]
        assert len(recording_failed) == (1 if replay is True and read_value else 0)
    assert _equal(results[None], results[True])
    assert _equal(results[None], results[False])


def test_a_cleared_param_store_is_seen_by_the_replay():
    """A function program's ``pyro.param`` made anew after ``pyro.clear_param_store()``: the
    recorded graph holds the old tensor, so the step records again and trains the new one."""
    results = []
    for replay in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model, guide = _program(read_value=False)
        step = SVIStep(model, guide, replay=replay)
        losses = []
        for i in range(6):
            if i == 3:
                pyro.clear_param_store()
            losses.append(step(BATCHES[i % 3])["loss"])
        results.append((losses, [p.detach().clone() for p in pyro.get_param_store().values()]))
    assert _equal(*results)


def _same_with_and_without_replay(make_model) -> None:
    """``make_model(decoder)``'s program trained 5 steps with and without replay: replayed, and
    the same losses and parameters."""
    results = []
    for replay in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model = make_model(torch.nn.Linear(2, 6))
        _, guide = _program(read_value=False)
        step = SVIStep(model, guide, replay=replay)
        losses = [step(BATCHES[0])["loss"] for _ in range(5)]
        assert bool(step._replay and step._replay.graphs) == replay
        results.append((losses, [p.detach().clone() for p in pyro.get_param_store().values()]))
    assert _equal(*results)


def test_a_no_grad_block_in_the_program_stays_without_gradient_in_the_replay():
    """Grad mode is recorded (pre-dispatch graph): a value computed under ``torch.no_grad()``
    takes no gradient in the replayed step either."""

    def make_model(dec):
        def model(x):
            net = pyro.module("dec", dec)
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                logits = net(z)
                with torch.no_grad():
                    shift = logits.mean()  # a stop-gradient centring
                pyro.sample("x", dist.Bernoulli(logits=logits - shift).to_event(1), obs=x)

        return model

    _same_with_and_without_replay(make_model)


def test_pyrogen_vae_s_default_objective_takes_the_fast_path_and_is_replayed():
    """``pyrogen vae`` trains with ``get_objective("reparam")`` (pyrogen's ``ELBO``, Pyro's
    ``TraceMeanField_ELBO`` with guide checks): the same floats as that loss's standard path."""

    class Standard(ELBO):  # another type: SVIStep takes the standard path for it
        pass

    runs = []
    for loss in (get_objective("reparam"), Standard("reparam", kl="analytic")):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(6, 2, (5,), num_data=40)
        step = SVIStep(vae.model, vae.guide, loss)
        torch.manual_seed(3)
        losses = [step(BATCHES[i % 3])["loss"] for i in range(6)]
        assert step.uses_fast_path == (type(loss) is ELBO)
        assert bool(step._replay and step._replay.graphs) == (type(loss) is ELBO)
        runs.append((losses, [p.detach().clone() for p in vae.parameters()]))
    assert _equal(*runs)
    assert not SVIStep(vae.model, vae.guide, get_objective("reparam", 2)).uses_fast_path
    assert not SVIStep(vae.model, vae.guide, get_objective("score")).uses_fast_path


def _prior_program(scale_of):
    """A program whose prior scale is ``scale_of(x)`` (a closure: Python state the test
    changes, or a value of the batch's shape)."""
    dec = torch.nn.Linear(2, 6)

    def model(x):
        net = pyro.module("dec", dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), scale_of(x)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=net(z)).to_event(1), obs=x)

    def guide(x):
        weight = pyro.param("weight", torch.zeros(6, 2))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x @ weight, 1.0).to_event(1))

    return model, guide


@pytest.mark.parametrize("replay", [False, True])
def test_checks_on_constants_are_folded_but_still_refuse(replay):
    """A check of a literal of the program is evaluated once per recording (here the prior scale
    is -1 for batches of 5 only): the step with the refused value raises, as without replay;
    a check on a tensor the user holds (mutated in place between steps) stays in the graph."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    model, guide = _prior_program(lambda x: torch.tensor(1.0 if len(x) == 8 else -1.0))
    step = SVIStep(model, guide, replay=replay)
    for x in BATCHES:
        step(x)
    with pytest.raises(NonFiniteError, match="invalid parameters"):
        step(LAST)

    pyro.clear_param_store()
    held = torch.ones(2)
    model, guide = _prior_program(lambda x: held)
    step = SVIStep(model, guide, replay=replay)
    for x in BATCHES:
        step(x)
    assert bool(step._replay and step._replay.graphs) == replay
    held.fill_(-1.0)
    with pytest.raises(NonFiniteError, match="invalid parameters"):
        step(BATCHES[0])


def test_a_constant_updated_in_place_by_the_program_is_made_anew_on_every_replay():
    """Constants are computed once per recording, except those the program updates in place:
    a shared ``offset`` would grow by one on every replay."""

    def make_model(dec):
        def model(x):
            net = pyro.module("dec", dec)
            offset = torch.zeros(6)
            offset.add_(1.0)
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=net(z) + offset).to_event(1), obs=x)

        return model

    _same_with_and_without_replay(make_model)


def test_a_constant_updated_through_a_view_is_made_anew_on_every_replay():
    def make_model(dec):
        def model(x):
            net = pyro.module("dec", dec)
            offset = torch.zeros(2, 3)
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
                logits = net(z)
                offset.view(6).add_(logits.detach().mean())  # updates offset's storage
                pyro.sample("x", dist.Bernoulli(logits=logits + offset.view(6)).to_event(1), obs=x)

        return model

    _same_with_and_without_replay(make_model)


def _case(name):
    """A user's program (model, guide, modules) for the reviewed cases below."""
    gen = torch.Generator().manual_seed(7)
    dec = torch.nn.Linear(2, 6)
    if name == "batchnorm":
        dec = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.BatchNorm1d(6))
    counter = torch.zeros(())

    def model(x):
        net = pyro.module("dec", dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            logits = net(z)
            if name == "own generator":
                logits = logits + 0.1 * torch.randn(logits.shape, generator=gen)
            if name == "counter":
                counter.add_(1.0)  # a tensor the program holds, updated in place
                logits = logits + counter
            if name == "mask":
                with poutine.mask(mask=x[:, 0] > 0):
                    pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)
            elif name == "boolean index":
                seen = x > 0.5
                pyro.sample("x", dist.Normal(logits[seen], 1.0).to_event(1), obs=x[seen])
            else:
                pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        if name == "lazy init":
            loc = pyro.param("loc", lambda: torch.randn(len(x), 2))
        else:
            loc = pyro.param("loc", torch.zeros(2))
        with contextlib.ExitStack() as stack:
            if name == "reseeds":
                stack.enter_context(torch.random.fork_rng())
                torch.manual_seed(123)
            with pyro.plate("data", len(x)):
                pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    return model, guide, [dec]


CASES = {  # name: is the program replayed?
    "mask": True,
    "lazy init": True,
    "boolean index": False,
    "batchnorm": False,
    "counter": False,
    "own generator": False,
    "reseeds": False,
}
#: State only the program knows (a tensor it holds, its own generator): the step that records
#: and refuses it ran the program twice; the warning says so.
TWICE = {"counter", "own generator"}


@pytest.mark.parametrize("name", list(CASES))
def test_users_programs_replayed_or_refused_never_different(name):
    """Found by a review of the replay: each program gives the same losses, parameters and
    buffers with ``replay=True`` as without, either replayed or refused with one warning at the
    user's own line."""
    results = []
    for replay in (False, True):
        pyro.clear_param_store()
        torch.manual_seed(0)
        model, guide, modules = _case(name)
        step = SVIStep(model, guide, replay=replay, modules=modules)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            losses = []
            for i in range(6):
                if name == "lazy init" and i == 3:
                    pyro.clear_param_store()
                losses.append(step(BATCHES[i % 3])["loss"])
        state = [p.detach().clone() for p in pyro.get_param_store().values()]
        state += [b.clone() for m in modules for b in m.buffers()]
        results.append((losses, state))
        refusals = [w for w in caught if "SVIStep runs the program" in str(w.message)]
        if replay:
            assert bool(step._replay.graphs) == CASES[name]
            assert len(refusals) == (0 if CASES[name] else 1)
            assert all(w.filename == __file__ for w in refusals)  # the user's step(...) line
            assert all("once more" in str(w.message) for w in refusals if name in TWICE)
    if name not in TWICE:
        assert _equal(*results)


def test_torch_s_own_validation_flag_is_part_of_the_key():
    pyro.clear_param_store()
    held = torch.ones(2)
    model, guide = _prior_program(lambda x: held)
    step = SVIStep(model, guide, replay=True)
    with pyro.validation_enabled(False):
        for x in BATCHES:
            step(x)  # recorded without checks
    held.fill_(-1.0)
    with pytest.raises(NonFiniteError, match="invalid parameters"):
        step(BATCHES[0])


def test_a_vae_whose_state_cannot_be_compared_is_not_replayed():
    class Annealed(Bernoulli):
        def __init__(self):
            self.history = []  # unhashable state

    pyro.clear_param_store()
    vae = VAE(6, 2, (5,), likelihood=Annealed())
    assert vae.program_key() is None  # not one of pyrogen's likelihoods: not trusted
    step = SVIStep(vae.model, vae.guide)
    for x in BATCHES:
        step(x)
    assert step._replay is not None and not step._replay.graphs


def test_an_expanded_batch_is_replayed():
    """Recording puts back what the program changed; a batch that cannot be written (expanded
    rows) is left alone."""
    row = torch.rand(1, 6, generator=torch.Generator().manual_seed(3)).round()
    runs = []
    for replay in (False, None):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = VAE(6, 2, (5,), num_data=40)
        step = SVIStep(vae.model, vae.guide, replay=replay)
        losses = [step(row.expand(8, 6))["loss"] for _ in range(4)]
        assert bool(step._replay and step._replay.graphs) == (replay is None)
        runs.append((losses, [p.detach().clone() for p in vae.parameters()]))
    assert _equal(*runs)

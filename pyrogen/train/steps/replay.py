r"""Replay of the fast path's loss as a recorded graph of tensor operations.

The fast path (:mod:`pyrogen.train.steps.fast`) still runs the Pyro program on every step: each
``pyro.param`` of a ``PyroModule`` weight, each plate and each sample site is a message through
Pyro's handler stack, and each distribution is built and validated in Python. For a *static*
program — one whose operations depend on nothing but its arguments' shapes, its parameters and
the random number generator — that work is the same on every step. :class:`Replay` records, once
per input signature, the guide's and the model's run and the loss

.. math:: \mathcal L = \sum_{x} s_x \log p(x \mid z) - \sum_z s_z\,\mathrm{KL}(q \,\|\, p)

as a graph of ATen operations (``torch.fx.experimental.proxy_tensor.make_fx``, real tensors,
pre-dispatch: grad-mode changes such as ``torch.no_grad()`` blocks are part of the graph) and
later steps run that graph: the same operations in the same order on the same parameter tensors,
drawing from the same generator, so the same floats — without the messengers.

What a graph cannot see is guarded:

* **Distribution validation.** torch's argument and support checks (every ``valid.all()`` in
  ``torch.distributions``) become outputs of the graph; when one fails at replay, the step is run
  again on the fast path (same draws), which raises as before.
* **Tensor-valued decisions.** A program that reads a tensor's value while recording
  (``if x.sum() > 0``, ``.item()``) is not replayed (one warning).
* **Python state.** Only programs that say which Python state they read are replayed by
  default: their owner module's ``program_key()`` (e.g. :meth:`pyrogen.models.VAE.program_key`),
  compared on every step with the key recorded. ``SVIStep(..., replay=True)`` replays any
  program (its author promises it reads no other Python state); ``replay=False`` never.
* **What a graph cannot hold.** A program that updates a tensor in place that it did not create
  (its input, BatchNorm statistics, a counter), draws from a ``torch.Generator`` of its own, or
  makes shapes from values (boolean masks) is not replayed (one warning); inputs, parameters and
  the modules' buffers are put back as they were before recording. A tensor or generator only the
  program knows was updated once more on that step (the warning says so).
* **The first replay must reproduce the recording**: the same ELBO, bit for bit, and the random
  generators where the recording left them (a program that reseeds the generator fails this).
* **Parameters.** The graph holds the parameter tensors it was recorded with; a step whose param
  store holds another tensor under one of their names, or one whose dtype, device or shape changed
  (``module.double()`` keeps the tensor objects), records the graph again. A recording that
  creates a parameter (its initial value would be part of the graph) is discarded, and so is the
  parameter (the fast path makes it, drawing its initial value).

Replayed programs run with an empty Pyro handler stack only; graphs are kept for at most
:attr:`Replay.MAX_GRAPHS` input signatures (e.g. the full batch and the epoch's last one).
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.runtime import am_i_wrapped
from torch.fx.experimental.proxy_tensor import make_fx

from pyrogen._compat import param_store_tensors
from pyrogen.train.steps.fast import Ineligible, mean_field_elbo


@dataclass
class _Graph:
    module: torch.fx.GraphModule
    params: list[tuple[str, torch.Tensor]]  # name in the param store, the tensor recorded
    layouts: list[tuple]  # their dtype, device and shape when recorded (``.to()`` keeps tensors)
    elbo: torch.Tensor  # the recorded run's ELBO and the generators after it: the first replay
    rng_after: tuple  # must give the same


@contextlib.contextmanager
def _validation_as_outputs(checks: list[torch.Tensor]) -> Iterator[None]:
    """torch's distribution checks (``if not torch._is_all_true(valid): raise``) append
    ``valid.all()`` to ``checks`` instead of reading it, so that recording does not need its
    value; the checks are then outputs of the graph."""
    original = torch._is_all_true

    def record(valid: torch.Tensor) -> bool:
        checks.append(valid.all())
        return True

    torch._is_all_true = record
    try:
        yield
    finally:
        torch._is_all_true = original


class Replay:
    """The one-particle ``TraceMeanField_ELBO`` of ``model`` and ``guide`` by a recorded graph (see
    the module's docstring); ``program_key`` returns the Python state the program reads (``None``:
    this step is not replayed)."""

    MAX_GRAPHS = 8

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        program_key: Callable[[], Hashable | None],
        tensors: Callable[[], list[torch.Tensor]] = list,
    ) -> None:
        self.model, self.guide, self.program_key = model, guide, program_key
        self.tensors = tensors  # params and buffers a recording must not change
        self.graphs: dict[Hashable, _Graph] = {}
        self.off = False

    def __call__(self, batch: tuple) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """``(elbo, params)`` of this batch by replay, or ``None`` (use the fast path: not
        replayable, or a check failed; the generator is then where it was)."""
        key = None if self.off else self._key(batch)
        if key is None:
            return None
        graph = self.graphs.get(key)
        if graph is not None and not _same_params(graph):
            del self.graphs[key]  # e.g. a param store loaded with new tensors
            graph = None
        fresh = graph is None
        if fresh:
            if len(self.graphs) >= self.MAX_GRAPHS:
                return None
            graph = self._record(batch)
            if graph is None:
                return None
        rng = _rng_states(batch)
        elbo, valid = graph.module(*batch)
        if fresh:
            if not _same_run(graph, elbo, batch):
                _set_rng_states(rng)
                self._refuse(
                    "its replay does not reproduce the recorded run (does it reseed the random"
                    " generator, draw from a generator of its own, or read state the graph cannot"
                    " see? Recording this step ran the program once more)"
                )
                return None
            self.graphs[key] = graph
        if not bool(valid):  # a distribution refuses its parameters: the fast path raises
            _set_rng_states(rng)
            return None
        return elbo, [p for _, p in graph.params]

    def _refuse(self, why: str, stacklevel: int = 5) -> None:
        """Replay off for this step's program, with one warning at the user's ``step(...)``."""
        self.off = True
        warnings.warn(
            f"SVIStep runs the program on every step (the fast path, not a recorded graph): {why}.",
            stacklevel=stacklevel,
        )

    def _key(self, batch: tuple) -> Hashable | None:
        if am_i_wrapped() or not all(torch.is_tensor(x) for x in batch):
            return None
        state = self.program_key()
        if state is None:
            return None
        shapes = tuple((x.shape, x.dtype, x.device, x.requires_grad) for x in batch)
        modes = (
            is_validation_enabled(),
            torch.distributions.Distribution._validate_args,
            torch.is_grad_enabled(),
            torch.get_default_dtype(),
            torch.is_autocast_enabled("cpu"),
            torch.is_autocast_enabled("cuda"),
        )
        key = shapes, modes, state
        try:
            hash(key)
        except TypeError:
            return None  # state that cannot be compared: not replayed
        return key

    def _record(self, batch: tuple) -> _Graph | None:
        runs: list = []
        checks: list[torch.Tensor] = []

        def loss(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            runs.clear()
            checks.clear()
            elbo = mean_field_elbo(self.model, self.guide, args, {}, runs)
            valid = torch.stack(checks).all() if checks else torch.ones((), dtype=torch.bool)
            return elbo, valid

        rng = _rng_states(batch)
        existing = dict(param_store_tensors())
        saved = _snapshot(batch, self.tensors())
        outputs: list = []
        try:
            with _validation_as_outputs(checks):
                module = make_fx(_keep(loss, outputs), pre_dispatch=True)(*batch)
            traced = (outputs[0].detach().clone(), _rng_states(batch))
        except Ineligible:
            return None  # the fast path says why, once
        except Exception as why:  # noqa: BLE001 - any failure: the fast path runs the program
            text = str(why)
            if "_local_scalar_dense" in text or "data-dependent" in text:
                self._refuse("it reads a tensor's value (.item(), an if on a tensor)", 6)
            else:
                self._refuse(f"recording it failed ({text.splitlines()[0] if text else why!r})", 6)
            return None
        finally:
            _set_rng_states(rng)  # recording ran the program: its draws are this step's
            updated = _updated(saved)
            _restore(saved)  # and its in-place updates of inputs, params, buffers are undone
        params = {name: p for run in runs for name, p in run.params.items()}
        created = [name for name in param_store_tensors() if name not in existing]
        if created or any(existing.get(name) is not p for name, p in params.items()):
            _forget_params(created)  # made while recording: made again by the fast path
            return None
        if any(run.shadowed for run in runs):
            return None  # the fast path refuses it (a network the param store shadows)
        why = _unreplayable(module, {id(t) for t, *_ in saved}) or updated
        if why:
            self._refuse(why, 6)
            return None
        try:
            if not _fold_constant_checks(module.graph, [bool(c) for c in checks]):
                return None  # a check on constants fails: the fast path raises
            _fold_constants(module, batch)
            _drop_identity_views(module.graph)
            _drop_unused_constants(module.graph)
            module.graph.eliminate_dead_code()  # keeps random draws and in-place updates
            module.recompile()
        except Exception as why:  # noqa: BLE001 - a graph we cannot simplify: not replayed
            self._refuse(f"simplifying its graph failed ({why!r})", stacklevel=6)
            return None
        layouts = [_layout(p) for p in params.values()]
        return _Graph(module, list(params.items()), layouts, *traced)


def _keep(fn: Callable, outputs: list) -> Callable:
    """``fn`` that also keeps its first output (the recorded run's ELBO) in ``outputs``."""

    def wrapped(*args):
        out = fn(*args)
        outputs[:] = [out[0]]
        return out

    return wrapped


def _snapshot(batch: tuple, tensors: list[torch.Tensor]) -> list[tuple]:
    """``(tensor, version, copy, always)`` of the inputs and the given tensors (params, buffers),
    so that an in-place update by the recorded run can be seen and undone (``always``: put back
    even without a version bump)."""
    seen, out = set(), []
    for always, group in ((False, batch), (True, tensors)):
        for t in group:
            if torch.is_tensor(t) and id(t) not in seen:
                seen.add(id(t))
                out.append((t, t._version, t.detach().clone(), always))
    return out


def _updated(saved: list[tuple]) -> str | None:
    if any(t._version != version for t, version, _, _ in saved):
        return "it updates its input, a parameter or a buffer in place (e.g. BatchNorm statistics)"
    return None


def _restore(saved: list[tuple]) -> None:
    """Put the snapshot tensors back: the params and buffers always (kernels such as
    BatchNorm's update their statistics without a version bump), inputs if they changed (an
    expanded input cannot be written)."""
    with torch.no_grad():
        for t, version, copy, always in saved:
            if always or t._version != version:
                t.copy_(copy)


def _forget_params(names: list[str]) -> None:
    store = pyro.get_param_store()
    for name in names:
        del store[name]


#: In-place operations a graph may hold: on tensors it creates itself.
_FRESH = (
    torch.ops.aten.empty.memory_format,
    torch.ops.aten.empty_like.default,
    torch.ops.aten.zeros.default,
    torch.ops.aten.ones.default,
    torch.ops.aten.full.default,
    torch.ops.aten.lift_fresh_copy.default,
)


def _unreplayable(module: torch.fx.GraphModule, known: set[int]) -> str | None:
    """Why the graph cannot be replayed: an in-place update of a tensor it did not create, a
    generator of the program's own, or a shape that depends on values (boolean masks).
    ``known``: ids of the tensors the recording restores (inputs, parameters, buffers)."""
    for node in module.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        if any(isinstance(a, torch.Generator) for a in [*node.args, *node.kwargs.values()]):
            return (
                "it draws from a torch.Generator of its own (recording this step drew from it"
                " once more)"
            )
        if torch.Tag.dynamic_output_shape in node.target.tags and _value_shaped(node):
            return "a tensor's shape depends on values (a boolean mask, nonzero)"
        base = _base(node.args[0]) if node.target._schema.is_mutable else None
        if base is not None and not (base.op == "call_function" and base.target in _FRESH):
            if base.op == "placeholder" or id(getattr(module, str(base.target), None)) in known:
                return "it updates its input, a parameter or a buffer in place"
            return (
                "it updates a tensor it holds in place (recording this step updated it once more)"
            )
        if node.target is torch.ops.aten.batch_norm.default and node.args[5]:
            return "it updates BatchNorm statistics (training mode)"
    return None


def _value_shaped(node: torch.fx.Node) -> bool:
    if node.target is not torch.ops.aten.index.Tensor:
        return True
    indices = node.args[1]
    return any(
        isinstance(i, torch.fx.Node)
        and i.meta.get("val") is not None
        and i.meta["val"].dtype == torch.bool
        for i in indices
    )


def _base(node: object) -> torch.fx.Node | None:
    """The node whose tensor ``node`` is (a view of): followed through views and in-place
    results."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function":
        if node.target in _FRESH:
            return node
        returns = getattr(getattr(node.target, "_schema", None), "returns", ())
        if not returns or returns[0].alias_info is None or not node.args:
            return node
        node = node.args[0]
    return node if isinstance(node, torch.fx.Node) else None


_VIEWS = (
    torch.ops.aten.expand.default,
    torch.ops.aten.view.default,
    torch.ops.aten.reshape.default,
)


def _drop_identity_views(graph: torch.fx.Graph) -> None:
    """Remove ``expand``/``view``/``reshape`` nodes (and ``broadcast_tensors`` results) whose
    result has the shape and strides of their input (Pyro's broadcasting re-expands tensors to
    the shape they have): the same values, one autograd node less each."""
    for node in list(graph.nodes):
        source = _broadcast_source(node) if node.target is operator.getitem else None
        if source is None and node.target in _VIEWS and isinstance(node.args[0], torch.fx.Node):
            source = node.args[0]
        if source is None:
            continue
        before, after = source.meta.get("val"), node.meta.get("val")
        if not (torch.is_tensor(before) and torch.is_tensor(after)):
            continue
        if before.shape == after.shape and before.stride() == after.stride():
            node.replace_all_uses_with(source)
            graph.erase_node(node)


def _broadcast_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """The input of ``broadcast_tensors(tensors)[i]`` that this ``getitem`` node returns."""
    tensors, i = node.args
    if getattr(tensors, "target", None) is not torch.ops.aten.broadcast_tensors.default:
        return None
    source = tensors.args[0][i]
    return source if isinstance(source, torch.fx.Node) else None


#: Operations whose values do not depend on their tensor arguments' values (only on their shape,
#: dtype and device), e.g. the prior's ``x.new_zeros(d)``.
_VALUE_FREE = (
    torch.ops.aten.new_zeros.default,
    torch.ops.aten.new_ones.default,
    torch.ops.aten.new_full.default,
    torch.ops.aten.zeros_like.default,
    torch.ops.aten.ones_like.default,
    torch.ops.aten.full_like.default,
)


#: Operations without tensor inputs whose values are defined (``empty`` is not).
_FILLED = (
    torch.ops.aten.zeros.default,
    torch.ops.aten.ones.default,
    torch.ops.aten.full.default,
    torch.ops.aten.scalar_tensor.default,
    torch.ops.aten.arange.default,
    torch.ops.aten.arange.start,
    torch.ops.aten.arange.start_step,
)


def _fold_constant_checks(graph: torch.fx.Graph, values: list[bool]) -> bool:
    """Drop the validation checks that depend on no input, parameter or random draw (e.g. a
    ``Normal(0, 1)`` prior's): their values, recorded, cannot change between steps. ``False`` if
    one of them failed."""
    output = next(n for n in graph.nodes if n.op == "output")
    valid = output.args[0][1]
    if valid.target is not torch.ops.aten.all.default:
        return True  # no checks
    stack = valid.args[0]
    constant = _constant_nodes(graph)
    kept = [c for c in stack.args[0] if c not in constant]
    if not all(v for c, v in zip(stack.args[0], values, strict=True) if c in constant):
        return False
    if kept:
        stack.args = (kept, *stack.args[1:])
    else:
        output.args = ((output.args[0][0], True),)
    graph.eliminate_dead_code()
    return True


def _constant_nodes(graph: torch.fx.Graph, evaluable: bool = False) -> set[torch.fx.Node]:
    """Nodes whose values are the same on every replay: fresh constants of the program
    (``torch.tensor(1.0)``, lifted), values of :data:`_VALUE_FREE` and :data:`_FILLED`
    operations, and pure operations of constants only (no random draws, no in-place updates
    but ``detach_``)."""
    constant: set[torch.fx.Node] = set()
    for node in graph.nodes:
        if node.op == "get_attr":
            if all(u.target is torch.ops.aten.lift_fresh_copy.default for u in node.users):
                constant.add(node)  # a literal of the program, never a parameter or user tensor
        elif node.op == "call_function":
            inputs_constant = all(a in constant for a in node.all_input_nodes)
            if node.target in _VALUE_FREE and (
                not evaluable
                or all(a.op == "placeholder" or a in constant for a in node.all_input_nodes)
            ):
                constant.add(node)
            elif node.target is torch.ops.aten.detach_.default and inputs_constant:
                constant.add(node)  # in place, but values unchanged
            elif (
                not node.is_impure()
                and inputs_constant
                and (node.all_input_nodes or node.target in _FILLED)
            ):
                constant.add(node)
    return constant


def _fold_constants(module: torch.fx.GraphModule, batch: tuple) -> None:
    """Compute the constant tensors the graph uses (e.g. the prior's expanded loc and scale) once,
    at recording, and keep them as attributes of the graph: fewer operations per replay. Not when
    an operation updates one of them (or a view of one) in place."""
    graph, constant = module.graph, _constant_nodes(module.graph, evaluable=True)
    updated = [n for n in graph.nodes if n not in constant and n.is_impure()]
    if any(a in constant for n in updated for a in n.all_input_nodes):
        return  # a constant (or a view of one) updated in place: made anew on every replay
    inputs = iter(batch)
    env: dict[torch.fx.Node, object] = {}
    for node in list(graph.nodes):
        if node.op == "placeholder":
            env[node] = next(inputs)
        elif node.op == "get_attr":
            env[node] = getattr(module, node.target)
        if node not in constant or node.op != "call_function":
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), env.__getitem__)
        env[node] = node.target(*args, **kwargs)
        users = [u for u in node.users if u not in constant]
        if not torch.is_tensor(env[node]) or not users:
            continue
        name = f"_folded_{node.name}"
        module.register_buffer(name, env[node], persistent=False)
        with graph.inserting_before(node):
            folded = graph.get_attr(name)
        node.replace_all_uses_with(folded, delete_user_cb=lambda u: u not in constant)
    graph.eliminate_dead_code()


def _drop_unused_constants(graph: torch.fx.Graph) -> None:
    """Remove the copies of constants that nothing uses (``detach_(lift_fresh_copy(c))``, which
    dead-code elimination keeps because ``detach_`` is in place)."""
    for node in list(graph.nodes):
        if node.target is not torch.ops.aten.detach_.default or node.users:
            continue
        copy = node.args[0]
        if copy.target is torch.ops.aten.lift_fresh_copy.default and len(copy.users) == 1:
            graph.erase_node(node)
            graph.erase_node(copy)


def _same_run(graph: _Graph, elbo: torch.Tensor, batch: tuple) -> bool:
    """Whether the first replay gave the recorded run's ELBO (bit for bit, NaN included) and
    left the generators where the recorded run left them."""
    same = torch.equal(elbo.detach(), graph.elbo) or bool(elbo.isnan() and graph.elbo.isnan())
    cpu, cuda = _rng_states(batch)
    cpu0, cuda0 = graph.rng_after
    return (
        same
        and torch.equal(cpu, cpu0)
        and all(torch.equal(a, b) for (_, a), (_, b) in zip(cuda, cuda0, strict=True))
    )


def _layout(p: torch.Tensor) -> tuple:
    return p.dtype, p.device, p.shape


def _same_params(graph: _Graph) -> bool:
    stored = param_store_tensors()
    return all(
        stored.get(name) is p and _layout(p) == layout
        for (name, p), layout in zip(graph.params, graph.layouts, strict=True)
    )


def _rng_states(batch: tuple) -> tuple:
    cuda = sorted({x.device for x in batch if x.device.type == "cuda"}, key=str)
    return torch.get_rng_state(), [(d, torch.cuda.get_rng_state(d)) for d in cuda]


def _set_rng_states(states: tuple) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    for device, state in cuda:
        torch.cuda.set_rng_state(state, device)

"""Using a finished run without retraining: :func:`load_run` rebuilds its model from
``config.json`` and ``model.pt`` (tensors only: ``torch.load(weights_only=True)``, no pickled
code), with its config and metrics.

::

    run = pyrogen.load_run("runs/vae")
    run.model                  # the VAE / CVAE / VAEGAN / AdversarialAutoencoder / Generator
    run.sample(16, seed=0)     # (16, data_dim) decoder means or generated examples
    run.metrics["test_elbo"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyrogen.models import CVAE, VAE, VAEGAN, AdversarialAutoencoder, Generator
from pyrogen.models.aae import gaussian_mixture_prior
from pyrogen.nn import ConvGeneratorNet

#: The run format this pyrogen writes and reads (``config.json``'s ``format_version``; runs
#: written before it was recorded are version 1).
FORMAT_VERSION = 1


@dataclass
class Run:
    """A finished run: its directory, command, config, metrics and rebuilt model (eval mode)."""

    path: Path
    command: str
    config: dict[str, Any]
    model: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes of a conditional model (0 for an unconditional one)."""
        return int(getattr(self.model, "num_classes", 0) or 0)

    @torch.no_grad()
    def sample(
        self, n: int, labels: torch.Tensor | int | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """``n`` new examples, flattened ``(n, data_dim)``: decoder means of prior draws (VAEs)
        or generated examples (GANs); ``labels`` (one class or one per example) for conditional
        models, which need them."""
        if n < 1:
            raise ValueError(f"Expected a number of samples >= 1, got {n}.")
        y = self._labels(n, labels)
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        if seed is not None:
            torch.manual_seed(seed)
        if isinstance(self.model, Generator):
            return self.model.sample(n, y)
        if isinstance(self.model, CVAE):
            return self.model.sample(y=y, generator=generator)
        return self.model.sample(n, generator=generator)

    def _labels(self, n: int, labels: torch.Tensor | int | None) -> torch.Tensor | None:
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError(f"This {self.command} run is not conditional; drop the labels.")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes  # every class in turn
        y = torch.as_tensor(labels).long().reshape(-1)
        if len(y) == 1:
            y = y.expand(n)
        if len(y) != n or int(y.min()) < 0 or int(y.max()) >= self.num_classes:
            raise ValueError(
                f"Give one label or {n} labels in [0, {self.num_classes}), got {labels!r}."
            )
        return y


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        message = f"{path} is not valid JSON ({err}); the run directory is damaged."
        raise ValueError(message) from err


def _vae_model(config: dict[str, Any]) -> nn.Module:
    sizes = config["model"]
    kind = config.get("model_type", "vae")
    if config.get("conditional"):
        return CVAE(**sizes)
    if kind == "vae-gan":
        return VAEGAN(**sizes)
    if kind == "aae":
        prior = gaussian_mixture_prior() if config.get("prior") == "mixture" else None
        return AdversarialAutoencoder(**sizes, prior=prior)
    return VAE(**sizes)


def _gan_model(config: dict[str, Any]) -> nn.Module:
    m = config["model"]
    num_classes = m.get("num_classes", 0)
    if m.get("arch") == "conv":
        net = ConvGeneratorNet(
            m["latent_dim"], m["image_shape"], m["base_channels"], num_classes, m["output"]
        )
        return Generator(m["latent_dim"], num_classes=num_classes, net=net)
    return Generator(m["latent_dim"], m["data_dim"], m["hidden"], num_classes, output=m["output"])


def _gan_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The generator to sample from: the moving average when the run kept one."""
    return state.get("generator_ema") or state["generator"]


BUILDERS = {"vae": (_vae_model, lambda state: state), "gan": (_gan_model, _gan_weights)}


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Rebuild the model of the finished run in ``path`` (``pyrogen vae`` or ``pyrogen gan``)
    from its ``config.json`` and ``model.pt``, on ``device``, in eval mode.

    :raises FileNotFoundError: no run there (no ``config.json`` / ``model.pt``: still training,
        or not a run directory).
    :raises ValueError: another format version, an unknown command, or weights that do not fit
        the config.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json, so not a pyrogen run directory.")
    if not (path / "model.pt").is_file():
        raise FileNotFoundError(
            f"{path}: no model.pt, so the run has not finished; resume it with --resume."
        )
    config = _read_json(path / "config.json")
    version = int(config.get("format_version", 1))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a run of format version {version}; this pyrogen reads version"
            f" {FORMAT_VERSION}. Use the pyrogen version that wrote it."
        )
    command = config.get("command")
    if command not in BUILDERS:
        raise ValueError(f"{path}: unknown command {command!r} in config.json.")
    build, weights = BUILDERS[command]
    model = build(config)
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(weights(state))
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise ValueError(
            f"{path}/model.pt does not fit the model its config.json describes: {first[0].strip()}"
        ) from err
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return Run(path, command, config, model.to(device).eval(), metrics)

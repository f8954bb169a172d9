"""The :class:`Dataset` container and dynamic binarization."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

BINARIZE_CHOICES = ("none", "dynamic")


def binarize_dynamic(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw binary pixels x ~ Bernoulli(batch); a fresh draw on every call."""
    probs = batch.clamp(0, 1)
    if generator is not None and generator.device != probs.device:
        # Generators are device-bound; draw uniforms on the generator's device.
        u = torch.rand(probs.shape, generator=generator, device=generator.device).to(probs.device)
        return (u < probs).to(probs.dtype)
    return torch.bernoulli(probs, generator=generator)


@dataclass(frozen=True)
class Dataset:
    """Train/test tensors, one flattened example per row, and their integer labels.

    :ivar shape: shape of one example before flattening, e.g. ``(8, 8)`` for images.
    :ivar binarize: ``"none"`` or ``"dynamic"`` (see :func:`pyrogen.data.load_dataset`).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor | None
    shape: tuple[int, ...]
    binarize: str = "none"

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if y is not None and len(x) != len(y):
                raise ValueError(
                    f"{self.name}: {split} set has {len(x)} examples but {len(y)} labels;"
                    " images and labels must have the same length."
                )

    @property
    def dim(self) -> int:
        """Number of features of one flattened example."""
        return self.train_x.shape[1]

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 2

    @property
    def train_transform(self):
        """Per-batch transform for the :class:`~pyrogen.train.Trainer` (or ``None``)."""
        return binarize_dynamic if self.binarize == "dynamic" else None

    def with_binarization(self, binarize: str) -> Dataset:
        """This data set under another binarization; the test set is binarized once (seed 0)."""
        if binarize == "none":
            return self
        test_x = binarize_dynamic(self.test_x, torch.Generator().manual_seed(0))
        return replace(self, test_x=test_x, binarize=binarize)

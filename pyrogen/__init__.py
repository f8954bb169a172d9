"""pyrogen: deep generative models (VAEs, GANs, variational inference) for Pyro.

``pyrogen.load_run(path)`` rebuilds a finished run's model (see :mod:`pyrogen.cli.runs`); the
library itself is in the subpackages (``pyrogen.models``, ``pyrogen.infer``, ``pyrogen.train``,
...).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_run"]


def __getattr__(name: str) -> Any:
    if name == "load_run":  # imported on first use: `import pyrogen` stays light
        from pyrogen.cli.runs import load_run

        return load_run
    raise AttributeError(f"module 'pyrogen' has no attribute {name!r}")

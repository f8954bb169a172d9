import os

import pyro
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# The test models are tiny: one intra-op thread is faster than two, and much faster when the
# other core is busy (thread oversubscription made single tests 10-20x slower under load).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    """Every test starts with an empty param store and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()

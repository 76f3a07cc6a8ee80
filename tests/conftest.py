"""Fixtures every test module sees. Shared helpers are in helpers.py, peers' networks written
out in references.py."""

import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs two workers), one torch thread per worker: two
    processes spinning two OpenMP threads each on two cores slow each other many-fold."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_fresh_compiler():
    """Every test starts from seed 0 and with no torch.compile caches from earlier tests (the
    models share forward code, so cached graphs would pile up to dynamo's recompile limit)."""
    torch.manual_seed(0)
    torch._dynamo.reset()

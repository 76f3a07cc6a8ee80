"""Fixtures every test module sees. Shared helpers are in helpers.py, peers' networks written
out in references.py."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_fresh_compiler():
    """Every test starts from seed 0 and with no torch.compile caches from earlier tests (the
    models share forward code, so cached graphs would pile up to dynamo's recompile limit)."""
    torch.manual_seed(0)
    torch._dynamo.reset()

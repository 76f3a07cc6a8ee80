"""The shared helpers: evaluation mode for a while, atomic writes, half-precision softmax."""

import pytest
import torch
from torch import nn

from nlgc.common import eval_mode, softmax, write_atomic, write_text_atomic


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_models_own_mode_even_after_an_error(training):
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train(training)
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training == training and model[1].training == training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training == training


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "sub" / "metrics.json"
    write_text_atomic(path, "old")
    assert path.read_text() == "old"

    def half_then_crash(temporary):
        temporary.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_crash)
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == [
        "metrics.json"
    ]  # no temporary left behind
    write_atomic(path, lambda temporary: torch.save({"x": 1}, temporary))
    assert torch.load(path, weights_only=True) == {"x": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_softmax_is_computed_in_float32(dtype):
    logits = torch.tensor([[0.0, 20.0, 20.001, -30.0]])
    out = softmax(logits.to(dtype))
    assert out.dtype == dtype
    assert torch.equal(out, logits.to(dtype).float().softmax(-1).to(dtype))
    assert torch.equal(softmax(logits), logits.softmax(-1))

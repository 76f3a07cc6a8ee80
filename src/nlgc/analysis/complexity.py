"""Parameters and FLOPs of a model, counted by ``torch.utils.flop_counter``.

FLOPs follow the counter's convention, 2 per multiply-accumulate (papers that say "GFLOPs" for
ResNets usually mean multiply-accumulates: see ``Complexity.gmacs``). Counted: convolutions,
matrix products, attention (SDPA, including PyTorch's CPU flash kernel, which the counter does not
know by itself) and softmax (3 FLOPs per element: exp, sum, divide). Not counted: element-wise
ops, normalisation, pooling, sorting.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from nlgc.common import eval_mode

aten = torch.ops.aten


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


def _softmax_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 3 * math.prod(input_shape)


EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops,
    aten._softmax: _softmax_flops,
    aten._safe_softmax: _softmax_flops,
}


@dataclass
class Complexity:
    """Parameters and forward FLOPs for one input shape, optionally against a baseline."""

    params: int
    flops: int
    input_shape: tuple[int, ...]
    baseline_params: int | None = None
    baseline_flops: int | None = None

    @property
    def gmacs(self) -> float:
        """Multiply-accumulates in billions, the unit ResNet papers call GFLOPs."""
        return self.flops / 2e9

    @property
    def params_ratio(self) -> float | None:
        return None if self.baseline_params is None else self.params / self.baseline_params

    @property
    def flops_ratio(self) -> float | None:
        return None if self.baseline_flops is None else self.flops / self.baseline_flops


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of ``model`` on a zero input of ``input_shape`` (eval mode, no grad)."""
    parameter = next(model.parameters())
    x = torch.zeros(input_shape, dtype=parameter.dtype, device=parameter.device)
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with eval_mode(model), torch.no_grad(), counter:
        try:
            model(x)
        except RuntimeError as error:  # e.g. a convolution that gets the wrong number of dims
            first = str(error).splitlines()[0]
            raise ValueError(f"input_shape {input_shape} does not fit the model: {first}") from None
    return counter.get_total_flops()


def complexity(
    model: nn.Module, input_shape: tuple[int, ...], baseline: nn.Module | None = None
) -> Complexity:
    """Parameters and FLOPs of ``model`` for ``input_shape`` (e.g. ``(1, 3, 224, 224)``), and
    their ratio to ``baseline`` when one is given."""
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(s, int) and s > 0 for s in input_shape
    ):
        raise ValueError(f"input_shape must be a tuple of positive ints, got {input_shape!r}")
    result = Complexity(
        params=sum(p.numel() for p in model.parameters()),
        flops=count_flops(model, tuple(input_shape)),
        input_shape=tuple(input_shape),
    )
    if baseline is not None:
        result.baseline_params = sum(p.numel() for p in baseline.parameters())
        result.baseline_flops = count_flops(baseline, tuple(input_shape))
    return result


def _timed(call, device: torch.device) -> float:
    """Seconds one call takes, waiting for the device's queued work before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median_ms(fn, device: str | torch.device = "cpu", repeats: int = 3) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after one warm-up call (CUDA is
    synchronised around each)."""
    fn()
    return 1e3 * statistics.median(_timed(fn, torch.device(device)) for _ in range(repeats))


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], repeats: int = 3) -> float:
    """Median forward time in milliseconds (inference mode, after one warm-up pass), on the
    model's device (CUDA is synchronised around each pass)."""
    parameter = next(model.parameters())
    x = torch.randn(input_shape, dtype=parameter.dtype, device=parameter.device)
    with eval_mode(model), torch.inference_mode():
        return median_ms(lambda: model(x), x.device, repeats)


def paired_ms(baseline, candidate, pairs: int = 30, device="cpu", warmup: int = 3):
    """Median times of two calls and the median of their per-pair ratio, timed alternately
    (ABBA order) so that drifts of a shared machine hit both alike.

    Returns:
        (baseline ms, candidate ms, median of candidate/baseline over the pairs).
    """
    device = torch.device(device)
    for _ in range(warmup):
        baseline()
        candidate()
    times_a, times_b = [], []
    for i in range(pairs):
        if i % 2:
            times_b.append(_timed(candidate, device))
            times_a.append(_timed(baseline, device))
        else:
            times_a.append(_timed(baseline, device))
            times_b.append(_timed(candidate, device))
    ratios = [b / a for a, b in zip(times_a, times_b, strict=True)]
    median = statistics.median
    return 1e3 * median(times_a), 1e3 * median(times_b), median(ratios)


@dataclass(frozen=True)
class ComplexityRow:
    """One model's cost: parameters, GMACs and latency (ms) on ``device``."""

    name: str
    params: int
    gmacs: float
    ms: float
    device: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def complexity_table(
    models: dict[str, nn.Module], input_shape: tuple[int, ...], repeats: int = 3
) -> list[ComplexityRow]:
    """One row per model (named by its key), latency measured where the model lives."""
    rows = []
    for name, model in models.items():
        result = complexity(model, input_shape)
        ms = latency_ms(model, input_shape, repeats)
        device = next(model.parameters()).device.type
        rows.append(ComplexityRow(name, result.params, result.gmacs, ms, device))
    return rows

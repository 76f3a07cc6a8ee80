"""SDPA dispatch probe: which attention kernel each non-local block of the models runs, and
whether any Nq×Nk tensor is made.

The blocks of a model that call ``scaled_dot_product_attention`` are found, with their input
shapes, in one pass on the meta device. Each distinct block (configuration and input shape)
then runs forward and backward on the device in float32 and under bfloat16 / float16 autocast,
and the probe records:

* the fused SDPA op that ran forward and backward (``flash``, ``efficient``, ``cudnn``;
  ``math`` when none did: PyTorch's math kernel builds the Nq×Nk matrix);
* the backends that accept the block's q, k, v alone (``sdpa_kernel`` with one backend);
* on an input grown (space doubled, batch 1) until one Nq×Nk matrix holds ``--ratio`` times the
  input's elements: the largest tensor any op makes, forward or backward, which must be smaller
  than Nq·Nk, and the peak memory, which must stay below the bytes of one Nq×Nk matrix wherever
  those are at least 16 times the input's bytes (the fast path holds about 8).

    python benchmarks/sdpa_probe.py --out OUT            # GPU: OUT/sdpa_cuda.md
    python benchmarks/sdpa_probe.py --dry-run --out OUT  # CPU, small models: OUT/sdpa_dryrun.md

Exits 1 if a row fails; ``tests/test_cuda.py`` asserts the same rows.
"""

from __future__ import annotations

import copy
import functools
import math
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from cuda_common import Table, arguments, autocast, device_for, free_cache
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import nlgc
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.blocks import ContextBlock

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKENDS = [
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.MATH,
]
KERNELS = ["flash", "efficient", "cudnn", "overrideable"]  # in the fused ops' names
RATIO, DRY_RATIO = 32, 2
DECISIVE = 16  # peak memory decides only where one Nq×Nk matrix has 16× the input's bytes


@dataclass(frozen=True)
class Case:
    """A model, its ``create_model`` options and its input without the batch dimension."""

    model: str
    input: tuple[int, ...]
    options: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        return self.model + "".join(f" {key}={value}" for key, value in self.options)


VIDEO = (3, 32, 224, 224)  # the Non-local paper's 32×2 clips
CASES = [
    Case("nl_resnet50", (3, 224, 224)),
    Case("nl_resnet50", (3, 224, 224), (("pairwise", "gaussian"),)),
    Case("dnl_resnet50", (3, 224, 224)),
    Case("nl_i3d_resnet50", VIDEO),
    Case("nl_i3d_resnet50", VIDEO, (("pairwise", "gaussian"),)),
    Case("nl_grouped_i3d_resnet50", VIDEO),
]
DRY_CASES = [
    Case("nl_demo_resnet", (3, 32, 32)),
    Case("nl_demo_resnet", (3, 32, 32), (("pairwise", "gaussian"),)),
    Case("dnl_demo_resnet", (3, 32, 32)),
    Case("nl_grouped_i3d_resnet50", (3, 32, 32, 32), (("inter_channels", 8),)),
]


@dataclass
class Call:
    """One ``scaled_dot_product_attention`` call: q (B, G, Nq, E), k, v and the scale."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float | None

    @property
    def nq_nk(self) -> int:
        return self.q.shape[-2] * self.k.shape[-2]


class SdpaCalls(TorchFunctionMode):
    """Records every ``scaled_dot_product_attention`` call's inputs (detached)."""

    def __init__(self):
        super().__init__()
        self.calls: list[Call] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = (t.detach() for t in args[:3])
            self.calls.append(Call(q, k, v, kwargs.get("scale")))
        return func(*args, **kwargs)


class Ops(TorchDispatchMode):
    """Records the aten ops that run, forward and backward, and the largest tensor they make."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.names.add(str(func.overloadpacket))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out

    def kernel(self, backward: bool) -> str:
        """The fused SDPA kernel that ran (``flash (cpu)`` for the CPU's), else ``math``."""
        for name in sorted(self.names):
            if "_scaled_dot_product_" in name and name.endswith("_backward") == backward:
                kind = next((k for k in KERNELS if f"_{k}_" in name + "_"), name)
                return kind + (" (cpu)" if "_for_cpu" in name else "")
        return "math"


@dataclass
class Row:
    case: Case
    blocks: list[str]
    shape: tuple[int, ...]
    dtype: str
    call: Call  # at the model's input shape
    forward: str
    backward: str
    accepts: list[str]
    grown: tuple[int, ...]
    grown_nq_nk: int
    largest: int
    peak: int
    matrix: int  # bytes of one Nq×Nk matrix at the grown shape
    decisive: bool

    @property
    def failures(self) -> list[str]:
        why = []
        if "math" in (self.forward, self.backward):
            why.append("math kernel")
        if self.largest >= self.grown_nq_nk:
            why.append("an Nq×Nk tensor")
        if self.decisive and self.peak >= self.matrix:
            why.append("peak memory of an Nq×Nk matrix")
        return why

    def cells(self) -> list[str]:
        q, v = self.call.q, self.call.v
        groups = math.prod(q.shape[:-2])
        return [
            str(self.case),
            ", ".join(self.blocks),
            "×".join(map(str, self.shape[1:])),
            self.dtype,
            f"{q.shape[-1]} / {v.shape[-1]}",
            f"{q.shape[-2]} × {self.call.k.shape[-2]} × {groups}",
            f"{self.forward} / {self.backward}",
            ", ".join(self.accepts),
            "×".join(map(str, self.grown[1:])),
            f"{self.largest / self.grown_nq_nk:.3f}",
            f"{self.peak / 2**20:.0f} / {self.matrix / 2**20:.0f}"
            + ("" if self.decisive else " (not decisive)"),
            "ok" if not self.failures else "FAIL: " + ", ".join(self.failures),
        ]


COLUMNS = [
    "model",
    "blocks",
    "block input",
    "dtype",
    "q / v head",
    "Nq × Nk × groups",
    "SDPA fwd / bwd",
    "backends that accept",
    "grown input",
    "largest tensor / Nq·Nk",
    "peak / Nq×Nk MB",
    "verdict",
]


def sdpa_calls(block: torch.nn.Module, x: torch.Tensor) -> list[Call]:
    with SdpaCalls() as recorder, torch.no_grad():
        block(x)
    return recorder.calls


@functools.cache
def attention_blocks(case: Case) -> list[tuple[list[str], torch.nn.Module, tuple[int, ...]]]:
    """(names, block on the meta device, input shape) for each distinct block of the model
    that calls SDPA, found by one forward pass on the meta device."""
    with torch.device("meta"):
        model = nlgc.create_model(case.model, **dict(case.options))
    inputs = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, args, name=name: inputs.__setitem__(name, tuple(args[0].shape))
        )
        for name, module in model.named_modules()
        if isinstance(module, ContextBlock)
    ]
    with torch.no_grad():
        model(torch.empty(1, *case.input, device="meta"))
    for hook in hooks:
        hook.remove()
    distinct = {}
    for name, shape in inputs.items():
        block = model.get_submodule(name)
        if sdpa_calls(block, torch.empty(shape, device="meta")):
            distinct.setdefault((repr(block), shape), ([], block, shape))[0].append(name)
    return list(distinct.values())


def materialise(block: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of a meta-device block on ``device`` with fresh weights (BN γ = 1, so that the
    attention path gets gradients)."""
    block = copy.deepcopy(block).to_empty(device=device)
    for module in block.modules():  # the block first, its BatchNorm after
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return block.train()


def grown_shape(block: torch.nn.Module, shape: tuple[int, ...], ratio: float):
    """``shape`` at batch 1, its smaller spatial side (of H, W; or L) doubled until one
    Nq×Nk matrix holds ``ratio`` × its elements; and the SDPA call at that shape (meta)."""
    shape = (1, *shape[1:])
    sides = range(2, 3) if len(shape) == 3 else range(len(shape) - 2, len(shape))
    for _ in range(24):
        call = sdpa_calls(block, torch.empty(shape, device="meta"))[0]
        if call.nq_nk >= ratio * math.prod(shape):
            break
        side = min(sides, key=lambda i: shape[i])
        shape = (*shape[:side], 2 * shape[side], *shape[side + 1 :])
    return shape, call


def forward_backward(block, x: torch.Tensor, dtype: torch.dtype | None) -> None:
    x = x.detach().requires_grad_()
    with autocast(x.device, dtype):
        y = block(x)
    y.backward(torch.randn_like(y))


def accepted(call: Call, dtype: torch.dtype | None) -> list[str]:
    """The backends that run this call's forward and backward on their own (under autocast to
    ``dtype``, as the block called it)."""
    names = []
    for backend in BACKENDS:
        q, k, v = (t.clone().requires_grad_() for t in (call.q, call.k, call.v))
        try:
            with warnings.catch_warnings(), sdpa_kernel(backend), autocast(q.device, dtype):
                warnings.simplefilter("ignore")  # each refusal warns why
                y = F.scaled_dot_product_attention(q, k, v, scale=call.scale)
            y.sum().backward()
        except RuntimeError:
            continue
        names.append(backend.name.lower().removesuffix("_attention"))
    return names


def probe(case: Case, dtype: str, device: torch.device, ratio: float) -> list[Row]:
    """One row per distinct SDPA block of ``case`` in ``dtype``."""
    rows = []
    for names, meta_block, shape in attention_blocks(case):
        block = materialise(meta_block, device)
        with Ops() as ops, SdpaCalls() as recorder:
            forward_backward(block, torch.randn(shape, device=device), DTYPES[dtype])
        call = recorder.calls[0]
        grown, grown_call = grown_shape(meta_block, shape, ratio)
        x = torch.randn(grown, device=device)
        grown_ops = Ops()

        def run(x=x, grown_ops=grown_ops, block=block):
            with grown_ops:
                forward_backward(block, x, DTYPES[dtype])

        peak = peak_memory_bytes(run, device)
        matrix = grown_call.nq_nk * (DTYPES[dtype] or torch.float32).itemsize
        rows.append(
            Row(
                case,
                names,
                shape,
                dtype,
                call,
                ops.kernel(backward=False),
                ops.kernel(backward=True),
                accepted(call, DTYPES[dtype]),
                grown,
                grown_call.nq_nk,
                grown_ops.largest,
                peak,
                matrix,
                decisive=matrix >= DECISIVE * x.nbytes,
            )
        )
        del block, x
        free_cache(device)
    return rows


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--ratio", type=float, help=f"grown Nq·Nk / input (default {RATIO})")
    args = parser.parse_args()
    device = device_for(args.dry_run)
    ratio = args.ratio or (DRY_RATIO if args.dry_run else RATIO)
    table = Table(
        args.out,
        "sdpa",
        device,
        [
            f"SDPA kernel of each non-local block the models use, forward + backward, batch 1; "
            f"grown input: Nq·Nk ≥ {ratio:g} × its elements (benchmarks/sdpa_probe.py)"
        ],
        COLUMNS,
    )
    failed = 0
    for case in DRY_CASES if args.dry_run else CASES:
        for dtype in DTYPES:
            for row in probe(case, dtype, device, ratio):
                table.add(row.cells())
                failed += bool(row.failures)
    print(f"\n{failed} failing rows; written to {table.path}")
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())

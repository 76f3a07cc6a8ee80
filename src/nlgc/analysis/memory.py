"""Peak memory of a call: what a forward pass really allocates, kernels' scratch space included."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def peak_memory_bytes(fn: Callable[[], object], device: str | torch.device = "cpu") -> int:
    """Peak bytes allocated while ``fn()`` runs, above those allocated before it.

    On CUDA from ``max_memory_allocated``; on CPU from the allocator events of the profiler's
    exported trace (every tensor and every buffer a kernel allocates through PyTorch, e.g.
    SDPA's scratch space).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:  # the profiler's public record: a trace
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    live = peak = 0
    for event in sorted((e for e in events if e.get("name") == "[memory]"), key=_order):
        live += event["args"]["Bytes"]
        peak = max(peak, live)
    return peak


def _order(event: dict) -> tuple:
    """Trace events in the order the allocator saw them."""
    return event["ts"], event["args"].get("Ev Idx", 0)

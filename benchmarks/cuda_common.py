"""What the CUDA benchmarks share: the dry-run switch, the machine line each table starts with,
and tables written row by row (timing: ``nlgc.analysis.complexity.median_ms``).

A dry run (``--dry-run``) runs the same code on the CPU with tiny shapes: it checks the scripts,
it measures nothing, and its tables say so in their first line and their name (``*_dryrun.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import subprocess
from pathlib import Path

import torch


def arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with ``--out`` and ``--dry-run``, described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder the table is written to")
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny shapes: checks the code, measures nothing"
    )
    return parser


def device_for(dry_run: bool) -> torch.device:
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --dry-run")
    return torch.device("cuda")


def machine(device: torch.device) -> str:
    """Device, driver, torch, CUDA and cuDNN versions (or the dry-run warning)."""
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return (
            f"**DRY RUN** on the CPU ({cpu}), torch {torch.__version__}: tiny shapes that "
            "check the code paths; not measurements."
        )
    props = torch.cuda.get_device_properties(device)
    return (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB), driver {driver_version()}, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version()}"
    )


def driver_version() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out[0] if out else "unknown"


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; None: float32, no autocast."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Table:
    """A markdown table in ``out/NAME_cuda.md`` (``NAME_dryrun.md`` on the CPU), written and
    printed row by row, so that a run cut short keeps what it measured."""

    def __init__(self, out: Path, name: str, device: torch.device, lines: list[str], columns):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{name}_{'cuda' if device.type == 'cuda' else 'dryrun'}.md"
        head = [machine(device), *lines, "", "| " + " | ".join(columns) + " |"]
        self._write("\n".join([*head, "|" + "---|" * len(columns)]), "w")

    def add(self, cells) -> None:
        self._write("| " + " | ".join(str(cell) for cell in cells) + " |", "a")

    def _write(self, text: str, mode: str) -> None:
        with self.path.open(mode) as f:
            f.write(text + "\n")
        print(text, flush=True)

"""The CPU's share in a run's numbers: which instruction set the kernels use, and pinning it.

PyTorch's own kernels, oneDNN's convolutions and MKL's matrix products each pick a code path by
the CPU's instruction set (AVX-512 on most Intel servers, AVX2 on others), and each path rounds
in its own order: the same seed, threads and deterministic algorithms gave other demo tables on
two 2-core machines of this project. ``ISA_PINS`` asks all three for their AVX2 path, which every
x86 CPU of the last ten years has. They are read once, when each library starts, so a process
sets them by starting again (``nlgc demo`` does). Kernels may still block their loops by cache
size, so two CPU models are not promised the same last bits; the report names the CPU.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
CPUINFO = Path("/proc/cpuinfo")


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text; empty where there is none."""
    return CPUINFO.read_text() if CPUINFO.exists() else ""


def cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    """The value of the first ``name`` line ("flags", "model name") in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str) -> set[str]:
    """The instruction-set flags of the first processor in a /proc/cpuinfo text."""
    return set((cpuinfo_field(cpuinfo, "flags") or "").split())


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) …"); the platform's where there is
    no /proc/cpuinfo."""
    name = cpuinfo_field(read_cpuinfo() if cpuinfo is None else cpuinfo, "model name")
    return name or platform.processor() or platform.machine()


def missing_pins(environ: dict[str, str], cpuinfo: str | None = None) -> dict[str, str]:
    """The ``ISA_PINS`` that ``environ`` does not set yet, on a CPU with AVX2; none elsewhere (a
    variable the user set is theirs to keep)."""
    if "avx2" not in cpu_flags(read_cpuinfo() if cpuinfo is None else cpuinfo):
        return {}
    return {key: value for key, value in ISA_PINS.items() if key not in environ}


def pins_in_effect() -> dict[str, str | None]:
    """Each ISA variable as this process has it (None: not set), for a run's report."""
    return {key: os.environ.get(key) for key in ISA_PINS}

"""The CPU instruction-set pins of reproducible runs, and `nlgc demo` starting again with them."""

import os
import sys

import pytest

from nlgc import cli
from nlgc.train import numerics

INTEL = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu sse2 avx2 avx512f\n"
OLD = "processor\t: 0\nmodel name\t: Old x86\nflags\t\t: fpu sse2 avx\n"


def test_cpu_name_and_flags_come_from_cpuinfo():
    assert numerics.cpu_name(INTEL) == "Intel(R) Xeon(R)"
    assert numerics.cpu_flags(INTEL) == {"fpu", "sse2", "avx2", "avx512f"}
    assert numerics.cpu_flags("") == set()


def test_pins_only_what_the_user_did_not_set_and_only_on_avx2():
    assert numerics.missing_pins({}, INTEL) == numerics.ISA_PINS
    assert "AVX2" in numerics.ISA_PINS.values()
    mine = numerics.missing_pins({"MKL_CBWR": "COMPATIBLE"}, INTEL)
    assert "MKL_CBWR" not in mine and set(mine) == set(numerics.ISA_PINS) - {"MKL_CBWR"}
    # an AVX2 request on a CPU without AVX2 would stop with an illegal instruction
    assert numerics.missing_pins({}, OLD) == {}


class Started(Exception):
    pass


def test_the_demo_command_starts_again_with_the_pins(monkeypatch, tmp_path):
    started = {}

    def execve(path, argv, env):
        started.update(path=path, argv=argv, env=env)
        raise Started

    monkeypatch.setattr(os, "execve", execve)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(INTEL)  # an AVX2 machine, whatever this one is
    monkeypatch.setattr(numerics, "CPUINFO", cpuinfo)
    for key in numerics.ISA_PINS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "argv", ["nlgc", "demo", "--quick", "--out", "x"])
    with pytest.raises(Started):
        cli.main()
    assert started["path"] == sys.executable
    assert started["argv"] == [sys.executable, "-m", "nlgc", "demo", "--quick", "--out", "x"]
    assert all(started["env"][key] == value for key, value in numerics.ISA_PINS.items())


def test_the_demo_called_from_python_does_not_start_again(monkeypatch, tmp_path):
    def execve(*args):
        raise AssertionError("execve called")

    ran = {}
    monkeypatch.setattr(os, "execve", execve)
    import nlgc.train.demo as demo

    monkeypatch.setattr(demo, "run_demo", lambda out, **options: ran.update(out=out, **options))
    assert cli.main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    assert ran["quick"] is True and ran["out"] == tmp_path and ran["task"] == "classification"

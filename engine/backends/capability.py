"""Whether this CPU computes bf16 natively, as OpenVINO sees it: the check `--precision bf16` and "auto" read.

bf16 is native where OpenVINO lists `BF16` in the CPU's OPTIMIZATION_CAPABILITIES and
/proc/cpuinfo shows `avx512_bf16` or `amx_bf16`. Elsewhere OpenVINO emulates it, slower than
fp32, so it is refused. Tests pass a `Bf16Capability` (or a cpuinfo text, or a cpuinfo file
named by GANTERP_CPUINFO) instead of reading the machine's. Imports openvino only when a
capability is read.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganterp_fast.engine.errors import InputError, MissingExtraError

# The /proc/cpuinfo flags of native bf16 arithmetic: AVX512-BF16 (dot products) and AMX (tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_CPUS = (
    "Intel Xeon with AMX (4th generation 'Sapphire Rapids' and newer) or AVX512-BF16 (Cooper Lake), "
    "AMD Zen 4 and newer (EPYC 9004, Ryzen 7000)"
)
CPUINFO_ENV = "GANTERP_CPUINFO"  # a cpuinfo file read instead of /proc/cpuinfo (tests)


def import_openvino() -> Any:
    """The openvino module, or `MissingExtraError` naming the extra that brings it."""
    try:
        import openvino
    except ImportError as exc:
        raise MissingExtraError("bf16 on the CPU (OpenVINO)", "cpu") from exc
    return openvino


@dataclass(frozen=True)
class Bf16Capability:
    """What this CPU offers for bf16: the flags, OpenVINO's view, and whether it is native."""

    cpu_model: str
    cpu_flags: tuple[str, ...]  # the BF16_CPU_FLAGS present
    openvino_version: str | None  # None: openvino is not installed
    openvino_capabilities: tuple[str, ...]

    @property
    def native(self) -> bool:
        """bf16 arithmetic in hardware, and an OpenVINO that uses it."""
        return bool(self.cpu_flags) and "BF16" in self.openvino_capabilities

    @property
    def kind(self) -> str:
        """The CPU kind the quality gate is stored for: model name and bf16 flags."""
        return f"{self.cpu_model} [{'+'.join(self.cpu_flags) or 'no bf16'}]"

    def describe(self) -> str:
        flags = ", ".join(self.cpu_flags) or "neither avx512_bf16 nor amx_bf16"
        return f"{self.cpu_model} ({flags})"


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model name, the bf16 flags present) from /proc/cpuinfo's text."""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    name = model.group(1).strip() if model else (platform.processor() or platform.machine() or "unknown CPU")
    return name, tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def _read_cpuinfo() -> str:
    path = os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo"
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def bf16_capability(
    *, cpuinfo: str | None = None, openvino_capabilities: Sequence[str] | None = None
) -> Bf16Capability:
    """This machine's bf16 capability; `cpuinfo` / `openvino_capabilities` replace what is read (tests)."""
    if cpuinfo is None and openvino_capabilities is None:
        return _machine_capability()
    return _capability(cpuinfo if cpuinfo is not None else _read_cpuinfo(), openvino_capabilities)


@functools.lru_cache(maxsize=1)
def _machine_capability() -> Bf16Capability:
    return _capability(_read_cpuinfo(), None)


def _capability(cpuinfo: str, openvino_capabilities: Sequence[str] | None) -> Bf16Capability:
    model, flags = parse_cpuinfo(cpuinfo)
    version = None
    try:
        ov = import_openvino()
        version = ov.__version__
        if openvino_capabilities is None:
            openvino_capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except MissingExtraError:
        openvino_capabilities = openvino_capabilities or ()
    return Bf16Capability(model, flags, version, tuple(openvino_capabilities))


def require_native_bf16(capability: Bf16Capability | None = None) -> Bf16Capability:
    """The capability when bf16 is native here; `InputError` (or `MissingExtraError`) otherwise."""
    capability = capability or bf16_capability()
    if capability.openvino_version is None:
        raise MissingExtraError("--precision bf16 (OpenVINO)", "cpu")
    if not capability.native:
        why = (
            "OpenVINO does not list BF16 for it"
            if capability.cpu_flags
            else "it has neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo"
        )
        raise InputError(
            f"--precision bf16 needs a CPU with native bf16, and this one ({capability.cpu_model}) has none: {why} "
            f"(emulated bf16 is slower than fp32). CPUs that have it: {BF16_CPUS}. Use --precision fp32 or auto here"
        )
    return capability

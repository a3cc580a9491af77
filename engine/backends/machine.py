"""The machine: the CPU cores a generator's threads are counted from, and what a benchmark records of it
(CPU, GPU, package versions and load) beside every figure."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def usable_cpus() -> int:
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's FMA units)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = []
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                ((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip())
            )
        except OSError:
            cores = set()
            break
    if cores:
        return len(cores)
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or len(cpus) or os.cpu_count() or 1)
    except ImportError:
        return len(cpus) or os.cpu_count() or 1


def cpu_description() -> dict[str, Any]:
    """CPU model name, logical CPUs usable here, physical cores and the bf16/AMX/VNNI flags."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == (platform.processor() or platform.machine()):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "name": name,
        "logical_cpus": usable_cpus(),
        "physical_cores": physical_cores(),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


def gpu_description(index: int = 0) -> dict[str, Any]:
    """The GPU's name, memory and driver (nvidia-smi), and the GPUs counted; {} without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    rows = [[part.strip() for part in line.split(",")] for line in text.splitlines() if line.count(",") >= 3]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:  # CUDA's index N is the N-th visible GPU
        order = [item.strip() for item in visible.split(",")]
        rows = [row for item in order for row in rows if row[0] == item]
    if not 0 <= index < len(rows):
        return {"gpus": len(rows)}
    _, name, memory, driver = rows[index][:4]
    return {"index": index, "name": name, "memory": memory, "driver": driver, "gpus": len(rows)}


def versions() -> dict[str, str]:
    """Python and the packages that decide the figures."""
    found = {"python": sys.version.split()[0]}
    for package in ("ganterp-fast", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "onnx", "torch"):
        try:
            found[package] = _metadata.version(package)
        except _metadata.PackageNotFoundError:
            continue
    return found


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def describe_device(report: dict[str, Any]) -> str:
    """One line: the CPU (and GPU) the figures were measured on."""
    cpu = report["device"]["cpu"]
    text = (
        f"{cpu['name']}, {cpu['logical_cpus']} CPUs ({cpu['physical_cores']} cores), "
        f"flags {' '.join(cpu['flags']) or 'none of ' + '/'.join(CPU_FLAGS[2:])}"
    )
    gpu = report["device"].get("gpu")
    if gpu is not None:
        if "name" in gpu:
            text = f"GPU {gpu['index']}: {gpu['name']} ({gpu['memory']}, driver {gpu['driver']}); host {text}"
        else:
            text = f"GPU (nvidia-smi not found: name unknown); host {text}"
    return text

"""What machine the benchmarks ran on, and its fp32 peak.

The peak is ``cores x GHz x FLOPs/cycle/core`` with the FLOPs per cycle of the widest fused multiply-add the CPU
flags announce, two FMA pipes per core (``lscpu`` flags):

=============  ======================================  ==============
flag           FLOPs per cycle per core (fp32)          why
=============  ======================================  ==============
``avx512f``    2 FMA units x 16 lanes x 2 = 64          512-bit FMA
``avx2+fma``   2 x 8 x 2 = 32                           256-bit FMA
``avx``        2 x 8 = 16 (separate add and multiply)   no FMA
otherwise      2 x 4 = 8                                SSE
=============  ======================================  ==============

That is the *nominal* peak. AMD Zen 4 (family 25 with AVX-512) runs a 512-bit FMA as two halves on 256-bit pipes,
so its real datapath peak is the AVX2 figure; :func:`fp32_peak` reports both, plus a measured SGEMM rate (MKL,
what a large matrix multiply achieves here) as the practical ceiling. The clock is ``lscpu``'s maximum MHz where
the CPU reports one, else ``/proc/cpuinfo``'s ``cpu MHz`` (in a VM that is usually the nominal TSC frequency; a
boost clock above it makes every percentage of peak an overestimate, never an underestimate).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import load_average

_PACKAGES = ("torch", "monai", "numpy", "SimpleITK", "nibabel", "pydicom", "scipy", "pytorch-ignite", "medseg")
_INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _cpuinfo_mhz() -> float | None:
    try:
        match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return float(match.group(1)) if match else None


def _memory_gib() -> float | None:
    try:
        match = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return round(int(match.group(1)) / 1024**2, 1) if match else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, clock, SIMD flags, memory, OS and package versions (no torch import needed)."""
    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    sockets = int(cpu.get("Socket(s)", "1") or 1)
    cores_per_socket = int(cpu.get("Core(s) per socket", "0") or 0)
    physical_cores = sockets * cores_per_socket or (os.cpu_count() or 1)
    max_mhz = float(cpu["CPU max MHz"]) if cpu.get("CPU max MHz") else None
    return {
        "cpu_model": cpu.get("Model name", platform.processor() or "unknown"),
        "vendor": cpu.get("Vendor ID"),
        "cpu_family": cpu.get("CPU family"),
        "cpu_model_number": cpu.get("Model"),
        "physical_cores": physical_cores,
        "logical_cpus": os.cpu_count(),
        "threads_per_core": cpu.get("Thread(s) per core"),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "max_mhz": max_mhz,
        "cpuinfo_mhz": _cpuinfo_mhz(),
        "simd_flags": [flag for flag in _INTERESTING_FLAGS if flag in flags],
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in _PACKAGES},
        "load_average_at_start": load_average(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def machine_name(info: dict[str, Any]) -> str:
    """A file-name-safe name for the results: CPU model and core count, e.g. ``amd-epyc-2core``."""
    model = re.sub(r"\((r|tm)\)|cpu|processor|@.*$", "", str(info["cpu_model"]).lower())
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-") or "cpu"
    return f"{slug}-{info['physical_cores']}core"


def flops_per_cycle(simd_flags: list[str]) -> int:
    """Nominal fp32 FLOPs per cycle per core from the SIMD flags (table in the module docstring)."""
    if "avx512f" in simd_flags:
        return 64
    if "avx2" in simd_flags and "fma" in simd_flags:
        return 32
    if "avx" in simd_flags:
        return 16
    return 8


def is_zen4_double_pumped(info: dict[str, Any]) -> bool:
    """AMD family 25 (Zen 3 / Zen 4) with AVX-512 is Zen 4, whose 512-bit FMAs issue as two 256-bit halves."""
    return (
        info.get("vendor") == "AuthenticAMD" and str(info.get("cpu_family")) == "25" and "avx512f" in info["simd_flags"]
    )


def fp32_peak(info: dict[str, Any], measured_sgemm_gflops: float | None = None) -> dict[str, Any]:
    """The nominal fp32 peak (the target's yardstick), the datapath peak and the measured SGEMM rate, in GFLOP/s."""
    ghz = (info.get("max_mhz") or info.get("cpuinfo_mhz") or 0.0) / 1000.0
    cores = int(info["physical_cores"])
    nominal_fpc = flops_per_cycle(info["simd_flags"])
    datapath_fpc = 32 if is_zen4_double_pumped(info) else nominal_fpc
    clock_source = "lscpu CPU max MHz" if info.get("max_mhz") else "/proc/cpuinfo cpu MHz"
    return {
        "cores": cores,
        "ghz": round(ghz, 3),
        "clock_source": clock_source,
        "nominal_flops_per_cycle": nominal_fpc,
        "nominal_gflops": round(cores * ghz * nominal_fpc, 1),
        "nominal_formula": f"{cores} cores x {ghz:.3f} GHz x {nominal_fpc} FLOP/cycle",
        "datapath_flops_per_cycle": datapath_fpc,
        "datapath_gflops": round(cores * ghz * datapath_fpc, 1),
        "datapath_note": (
            "Zen 4 executes 512-bit FMAs as two 256-bit halves: 2 x 8 x 2 = 32 FLOP/cycle"
            if datapath_fpc != nominal_fpc
            else "same as nominal"
        ),
        "measured_sgemm_gflops": None if measured_sgemm_gflops is None else round(measured_sgemm_gflops, 1),
    }


def sgemm_task(size: int = 2048, repetitions: int = 8) -> dict[str, Any]:
    """Measured fp32 matrix-multiply rate (GFLOP/s, best of ``repetitions``) in this process: the practical peak."""
    import torch

    from benchmarks.harness import start_measuring

    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator)
    right = torch.randn(size, size, generator=generator)
    for _ in range(2):
        left @ right
    start = start_measuring()
    rates = []
    for _ in range(repetitions):
        tick = time.perf_counter()
        left @ right
        rates.append(2 * size**3 / (time.perf_counter() - tick) / 1e9)
    return {
        "seconds": time.perf_counter() - start,
        "gflops_best": max(rates),
        "gflops_median": sorted(rates)[len(rates) // 2],
        "threads": torch.get_num_threads(),
        "torch_config": {
            "mkldnn": torch.backends.mkldnn.is_available(),
            "mkl": torch.backends.mkl.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
    }

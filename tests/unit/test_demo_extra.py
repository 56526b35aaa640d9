"""`facegate demo` without the `demo` extra says what to install, before any model loads."""

from __future__ import annotations

import json

import pytest

from facegate.edge.cli.main import main
from facegate.edge.eval import samples


def test_demo_without_its_portrait_packages_names_the_demo_extra(monkeypatch, capsys) -> None:
    # as if scikit-image and matplotlib were not installed (the lean `pi` / `edge` install)
    for name, (_, rel, requirement) in list(samples.PORTRAITS.items()):
        monkeypatch.setitem(samples.PORTRAITS, name, (f"no_such_package_{name}", rel, requirement))
    assert main(["demo", "--json"]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert json.loads(out)["error"] == err.strip().split("error: ", 1)[1]  # --json: the refusal as JSON on stdout
    assert "pip install 'facegate[demo]'" in err and "scikit-image and matplotlib" in err


def test_a_single_missing_portrait_says_which_package_brings_it(monkeypatch) -> None:
    monkeypatch.setitem(samples.PORTRAITS, "astronaut", ("no_such_package", "data/astronaut.png", "scikit-image"))
    with pytest.raises(ImportError, match=r"comes with scikit-image.*facegate\[demo\]"):
        samples.portrait_path("astronaut")

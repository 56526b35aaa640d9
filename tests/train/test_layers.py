"""Package layering: ``facegate.export`` imports ``facegate.models``, never the reverse.

The training side reaches the exporter only through the ``facegate.exporters``
entry point; an import of :mod:`facegate.export` from :mod:`facegate.models`
(even a lazy one inside a function) would bring the cycle back.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = "facegate.export"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def _imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module an ``import``, ``from ... import`` or ``importlib.import_module("...")`` names, absolute."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: level 1 is the module's own package, each further dot one up
                parts = package.split(".")
                stem = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found += [(node.lineno, stem)] + [(node.lineno, f"{stem}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def _offenders(folder: Path, package: str) -> tuple[int, list[str]]:
    files = sorted(folder.glob("*.py"))
    bad: dict[str, str] = {}  # "file:line" -> the module it names
    for path in files:
        for line, module in _imported_modules(path.read_text(), package):
            if module == FORBIDDEN or module.startswith(FORBIDDEN + "."):
                bad.setdefault(f"{path.name}:{line}", module)
    return len(files), [f"{where} imports {module}" for where, module in bad.items()]


def test_no_module_of_facegate_models_imports_facegate_export():
    scanned, bad = _offenders(_package_dir("facegate.models"), "facegate.models")
    assert scanned >= 10  # the whole package was read, not an empty folder
    assert bad == []


def test_the_scan_sees_every_form_of_import(tmp_path):
    """The checker itself: absolute, relative, lazy and importlib imports of the export package are all caught."""
    (tmp_path / "a.py").write_text("import facegate.export.onnx\n")
    (tmp_path / "b.py").write_text("def f():\n    from facegate.export import ExportError\n")
    (tmp_path / "c.py").write_text("from ..export.run import export_run\n")
    (tmp_path / "d.py").write_text("import importlib\nimportlib.import_module('facegate.export.run')\n")
    (tmp_path / "e.py").write_text("from .export_helpers import x\nfrom ..models import loop\n"
                                   "import facegate.exporter\n")  # look-alikes that are not the package
    scanned, bad = _offenders(tmp_path, "facegate.models")
    assert scanned == 5
    assert [b.split(" ")[0] for b in bad] == ["a.py:1", "b.py:2", "c.py:1", "d.py:2"]


def test_importing_every_training_module_leaves_the_export_package_unloaded():
    pytest.importorskip("torch")
    names = sorted(f"facegate.models.{p.stem}" for p in _package_dir("facegate.models").glob("*.py")
                   if p.stem != "__init__")
    code = (f"import importlib, sys\nfor n in {names!r}:\n    importlib.import_module(n)\n"
            f"loaded = sorted(m for m in sys.modules if m == {FORBIDDEN!r} or m.startswith({FORBIDDEN + '.'!r}))\n"
            "print(len(sys.modules), loaded)\nassert not loaded, loaded\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "facegate.models.loop" in names and "facegate.models.checkpoint" in names

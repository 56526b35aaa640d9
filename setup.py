"""Package discovery for the three source roots, mapped into one ``facegate`` namespace.

Every folder with an ``__init__.py`` under ``edge/``, ``models/`` and ``export/`` is
found, so a new subpackage can never be left out of the wheel (a hand-written list
once missed ``facegate.edge.enrollment``). Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"facegate.edge": "edge", "facegate.models": "models", "facegate.export": "export"}


def discover() -> list[str]:
    packages = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(folder)]
    return packages


setup(packages=discover(), package_dir=ROOTS)

"""Public-domain portraits that registry packages ship, for the demo and tests.

Eileen Collins (NASA, public domain) is scikit-image's ``astronaut.png``; Grace
Hopper (US Navy, public domain) is matplotlib's ``grace_hopper.jpg``. They are
found inside the installed packages without importing them (both are heavy).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable

#: name -> (package, path inside the package, pip requirement)
PORTRAITS = {
    "astronaut": ("skimage", "data/astronaut.png", "scikit-image"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "matplotlib"),
}


def portrait_path(name: str) -> Path:
    try:
        package, rel, requirement = PORTRAITS[name]
    except KeyError:
        raise ValueError(f"unknown portrait {name!r}; known: {', '.join(PORTRAITS)}") from None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"the {name} portrait comes with {requirement}, which the door itself does not "
                                 f"need: pip install 'facegate[demo]' (or pip install {requirement})")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise BackendUnavailable(f"{path}: missing from the installed {requirement}")
    return path


def sample_portrait(name: str) -> np.ndarray:
    """The portrait as a BGR uint8 array."""
    from ..imageio import load_image

    return load_image(portrait_path(name))

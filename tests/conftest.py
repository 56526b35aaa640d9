"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def mock_factory() -> Iterator[Any]:
    """A fresh gpiozero ``MockFactory`` installed as the default pin factory.

    The previous default is restored and the mock pins are closed afterwards,
    even when the test fails, so pin reservations never leak between tests.
    """
    pytest.importorskip("gpiozero")
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    saved = Device.pin_factory
    Device.pin_factory = factory = MockFactory()
    try:
        yield factory
    finally:
        factory.close()
        factory.reset()
        Device.pin_factory = saved


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for the test.

    On a shared 2-core machine two spinning intra-op threads can make a small
    forward pass tens of times slower; tests measure behaviour, not speed.
    """
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# --- stage fakes: the daemon loop tested without any model ------------------------------
def _template_detection(size: float = 120.0):
    import numpy as np

    from facegate.edge.align import TEMPLATE_112
    from facegate.edge.types import Detection

    scale = size / 112
    marks = (TEMPLATE_112 * scale + 100).astype(np.float32)
    return Detection(box=(100.0, 100.0, 100.0 + size, 100.0 + size), score=0.99, landmarks=marks)


class FakeDetector:
    """One face (template landmarks, 120 px) in any frame that is not all black."""

    type_key = "fake"
    min_face_size = 60

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image, lores=None):
        self.calls += 1
        return [_template_detection()] if image.any() else []


class FakeEmbedder:
    """A unit vector chosen by the crop's mean blue level (40 per person): frames say who they show."""

    name = "fake"
    model_id = "fake-000000000000"
    dim = 4

    def __init__(self) -> None:
        from facegate.edge.embed.base import Thresholds
        from facegate.edge.types import ALIGN_112

        self.thresholds = Thresholds(default=0.5)
        self.crop = ALIGN_112
        self.seen: list = []

    def vector_for(self, who: int):
        import numpy as np

        return np.eye(self.dim, dtype=np.float32)[who % self.dim]

    def embed_crops(self, crops):
        import numpy as np

        self.seen.extend(crops)
        return np.stack([self.vector_for(round(float(c.image[..., 0].mean()) / 40) - 1) for c in crops])

    def close(self) -> None:
        pass


@pytest.fixture
def fake_detector() -> FakeDetector:
    return FakeDetector()


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def tmp_gallery(tmp_path):
    from facegate.edge.gallery import Gallery

    with Gallery(tmp_path / "gallery.db") as g:
        yield g


@pytest.fixture
def file_camera(tmp_path):
    """Write frames (BGR arrays) to a folder and return a ReplaySource over it, as a camera would read it."""
    import cv2

    from facegate.edge.camera import ReplaySource

    def make(frames, **kwargs):
        folder = tmp_path / "frames"
        folder.mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
        return ReplaySource(folder, **{"fps": 50.0, **kwargs})

    return make


_SLOW_FILES = {"test_run_cli.py", "test_scenario.py", "test_no_torch.py", "test_pi_check.py", "test_shipped_bundles.py"}


def pytest_collection_modifyitems(config, items) -> None:
    """Everything under tests/train, and the integration files that run whole models, is ``slow``."""
    for item in items:
        path = item.path
        if path.parent.name == "train" or path.name in _SLOW_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_door_config_of_this_machine(monkeypatch) -> None:
    """The CLI follows $FACEGATE_CONFIG and /etc/facegate/facegate.toml like the daemon: tests never read
    the config of the machine they run on (a developer's own door)."""
    from pathlib import Path

    monkeypatch.delenv("FACEGATE_CONFIG", raising=False)
    monkeypatch.setattr("facegate.edge.cli.defaults.SYSTEM_CONFIG", Path("/nonexistent/facegate/facegate.toml"))

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

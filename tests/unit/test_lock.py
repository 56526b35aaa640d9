"""Lock drivers: fail-secure states, relock timing, lifecycle, door contact."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from facegate.edge.errors import LockError
from facegate.edge.lock import GpioLock, Lock, LogLock

pytest.importorskip("gpiozero")

PIN = 17
CONTACT = 27


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def states(pin) -> list[bool]:
    """The full state history (assert_states alone ignores extra entries)."""
    return [s.state for s in pin.states]


# --- GpioLock -------------------------------------------------------------------
def test_locked_at_construction(mock_factory):
    with GpioLock(PIN) as lock:
        pin = mock_factory.pin(PIN)
        assert pin.function == "output"
        assert pin.state is False
        assert lock.is_locked
        assert isinstance(lock, Lock)
        pin.assert_states([False])
        assert states(pin) == [False]


def test_unlock_pulse_then_relock_after_duration(mock_factory):
    with GpioLock(PIN, pin_factory=mock_factory) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock(0.2)
        assert not lock.is_locked and pin.state is True
        assert 0.0 < lock.relock_in <= 0.2
        assert wait_for(lambda: lock.is_locked)
        assert pin.state is False
        assert lock.relock_in is None
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.2, False)])
        assert states(pin) == [False, True, False]


def test_unlock_defaults_to_unlock_seconds(mock_factory):
    with GpioLock(PIN, unlock_seconds=0.15) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock()
        assert wait_for(lambda: lock.is_locked)
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.15, False)])


def test_lock_cancels_pending_relock(mock_factory):
    with GpioLock(PIN) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock(0.3)
        time.sleep(0.05)
        lock.lock()
        assert lock.is_locked and pin.state is False
        assert lock.relock_in is None
        time.sleep(0.35)  # past the cancelled deadline: nothing else happens
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.05, False)])
        assert states(pin) == [False, True, False]
        lock.lock()  # locking a locked door is a no-op
        assert states(pin) == [False, True, False]


def test_second_unlock_extends_instead_of_stacking(mock_factory):
    with GpioLock(PIN) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock(0.3)
        time.sleep(0.2)
        lock.unlock(0.3)  # new deadline: 0.5 s after the first unlock
        lock.unlock(0.05)  # shorter request never shortens the open time
        assert wait_for(lambda: lock.is_locked)
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.5, False)])
        assert states(pin) == [False, True, False]  # one pulse, no stacked relocks
        assert sum(t.name.startswith("facegate-relock") for t in threading.enumerate()) == 1


def test_relock_not_starved_by_busy_caller(mock_factory):
    with GpioLock(PIN) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock(0.2)
        time.sleep(0.4)  # a slow frame: the caller does not come back in time
        assert lock.is_locked
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.2, False)])


def test_relock_while_caller_cpu_bound(mock_factory):
    with GpioLock(PIN) as lock:
        pin = mock_factory.pin(PIN)
        pin.clear_states()
        lock.unlock(0.15)
        end = time.monotonic() + 0.35
        while time.monotonic() < end:
            sum(range(1000))
        pin.assert_states_and_times([(0.0, False), (0.0, True), (0.15, False)])
        assert states(pin) == [False, True, False]


def test_close_while_unlocked_leaves_locked_and_releases_pin(mock_factory):
    lock = GpioLock(PIN)
    pin = mock_factory.pin(PIN)
    lock.unlock(10)
    assert pin.state is True
    lock.close()
    assert pin.state is False
    assert states(pin) == [False, True, False]
    assert lock.closed and lock.is_locked
    assert "closed" in repr(lock)
    from gpiozero import OutputDevice

    OutputDevice(PIN).close()  # the reservation was released


def test_double_close_and_use_after_close(mock_factory):
    with GpioLock(PIN) as lock:
        pass
    lock.close()  # idempotent
    with pytest.raises(LockError, match="closed"):
        lock.unlock(1)
    with pytest.raises(LockError, match="closed"):
        lock.lock()
    assert lock.is_locked
    assert states(mock_factory.pin(PIN)) == [False]


def test_exception_in_with_block_locks(mock_factory):
    with pytest.raises(RuntimeError):
        with GpioLock(PIN) as lock:
            lock.unlock(10)
            raise RuntimeError("pipeline crashed")
    assert mock_factory.pin(PIN).state is False


def test_active_low_relay(mock_factory):
    lock = GpioLock(PIN, active_high=False)
    pin = mock_factory.pin(PIN)
    assert pin.state is True  # locked = de-energised = pin HIGH
    lock.unlock(0.15)
    assert pin.state is False
    assert wait_for(lambda: lock.is_locked)
    assert pin.state is True
    lock.unlock(10)
    lock.close()
    assert pin.state is True
    # mock pin starts low before gpiozero claims it, then is driven high at once
    pin.assert_states([False, True, False, True, False, True])
    assert states(pin) == [False, True, False, True, False, True]


def test_door_contact_events(mock_factory):
    events: list[str] = []
    with GpioLock(PIN, door_contact_pin=CONTACT, on_door_event=events.append) as lock:
        contact = mock_factory.pin(CONTACT)
        assert contact.pull == "up"
        assert lock.door_closed is False  # pulled up = contact open
        contact.drive_low()
        assert wait_for(lambda: events == ["closed"])
        assert lock.door_closed is True
        contact.drive_high()
        assert wait_for(lambda: events == ["closed", "open"])
        assert lock.door_closed is False
    assert lock.door_closed is None


def test_door_callback_errors_are_contained(mock_factory):
    def boom(event: str) -> None:
        raise RuntimeError(event)

    with GpioLock(PIN, door_contact_pin=CONTACT, on_door_event=boom) as lock:
        mock_factory.pin(CONTACT).drive_low()
        assert lock.is_locked
        lock.unlock(0.05)
        assert wait_for(lambda: lock.is_locked)


def test_pin_in_use_raises_lock_error(mock_factory):
    with GpioLock(PIN):
        with pytest.raises(LockError, match="pin 17"):
            GpioLock(PIN)


def test_no_gpio_raises_lock_error_with_hint(monkeypatch):
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    def no_factory():
        raise BadPinFactory("Unable to load any default pin factory!")

    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(no_factory))
    with pytest.raises(LockError, match='lock.type = "log"') as info:
        GpioLock(PIN)
    assert "GPIOZERO_PIN_FACTORY=mock" in str(info.value)
    assert isinstance(info.value.__cause__, BadPinFactory)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_durations_rejected(mock_factory, seconds):
    with GpioLock(PIN) as lock:
        with pytest.raises(ValueError):
            lock.unlock(seconds)
        assert lock.is_locked
    with pytest.raises(ValueError):
        LogLock(unlock_seconds=seconds)


# --- LogLock --------------------------------------------------------------------
def test_log_lock_history_and_relock(caplog):
    caplog.set_level("INFO", logger="facegate.lock")
    lock = LogLock(unlock_seconds=0.15)
    assert isinstance(lock, Lock)
    assert lock.is_locked
    lock.unlock()
    assert not lock.is_locked
    assert wait_for(lambda: lock.is_locked)
    (t0, s0), (t1, s1), (t2, s2) = lock.history
    assert [s0, s1, s2] == ["locked", "unlocked", "locked"]
    assert t2 - t1 == pytest.approx(0.15, abs=0.05)
    assert any("UNLOCKED" in r.getMessage() for r in caplog.records)
    lock.close()
    assert [s for _, s in lock.history] == ["locked", "unlocked", "locked"]


def test_log_lock_extend_cancel_close():
    with LogLock(unlock_seconds=5) as lock:
        lock.unlock(0.3)
        time.sleep(0.2)
        lock.unlock(0.3)
        assert wait_for(lambda: lock.is_locked)
        assert lock.history[2][0] - lock.history[1][0] == pytest.approx(0.5, abs=0.05)
        lock.unlock(5)
        lock.lock()
        assert lock.is_locked
        lock.unlock(5)
    assert lock.is_locked and lock.closed
    assert [s for _, s in lock.history] == ["locked"] + ["unlocked", "locked"] * 3
    lock.close()
    with pytest.raises(LockError):
        lock.unlock()


class FakeClock:
    """A monotonic clock moved by hand: relock tests without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_log_lock_injected_clock_stamps_history():
    clock = FakeClock()
    with LogLock(unlock_seconds=10, clock=clock) as lock:
        clock.advance(1)
        lock.unlock()
        clock.advance(1)
        lock.lock()
    assert list(lock.history) == [(0.0, "locked"), (1.0, "unlocked"), (2.0, "locked")]


def test_relock_timer_on_an_injected_clock_needs_no_sleep():
    clock = FakeClock()
    with LogLock(unlock_seconds=3, clock=clock) as lock:
        lock.unlock()
        clock.advance(2.9)
        assert not lock.poll() and not lock.is_locked and lock.relock_in == pytest.approx(0.1)
        lock.unlock(0.05)  # shorter: never shortens
        clock.advance(0.2)
        lock.poll()  # (or the timer thread, which reads the same clock, got there first)
        assert lock.is_locked and lock.relock_in is None
        lock.unlock(1)
        clock.advance(0.5)
        lock.unlock(1)  # extends to 1.5 after the first
        clock.advance(0.9)
        assert not lock.poll()
        clock.advance(0.2)
        lock.poll()
        assert lock.is_locked
    assert [s for _, s in lock.history] == ["locked", "unlocked", "locked", "unlocked", "locked"]
    assert [t for t, _ in lock.history] == pytest.approx([0.0, 0.0, 3.1, 3.1, 4.7])


def test_gpio_lock_relocks_on_its_injected_clock(mock_factory):
    clock = FakeClock()
    with GpioLock(PIN, unlock_seconds=3, clock=clock) as lock:
        pin = mock_factory.pin(PIN)
        lock.unlock()
        assert pin.state is True
        clock.advance(3)
        lock.poll()
        assert lock.is_locked and pin.state is False

"""Door lock drivers: a GPIO relay and a logging stand-in, one relock timer.

The door is wired *fail-secure*: the strike holds the door while it is
de-energised, and energising the relay releases it. So everywhere in this
module "energised" means UNLOCKED, the power-on state is locked, and every
way out (``lock()``, ``close()``, the relock timer, an exception in the
caller) ends with the output de-energised.

Relocking is done by a dedicated thread per lock, not by the caller's frame
loop: a slow model, a stalled camera or a crashed pipeline stage cannot keep
the door open longer than asked.
"""

from __future__ import annotations

import atexit
from collections import deque
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from .errors import BackendUnavailable, ConfigError, LockError

if TYPE_CHECKING:  # gpiozero is an optional dependency (the ``edge`` extra)
    from gpiozero import Button, OutputDevice

    from .config import LockConfig

__all__ = ["LOCKS", "Lock", "GpioLock", "LogLock", "create_lock"]

logger = logging.getLogger("facegate.lock")

#: State changes a LogLock remembers.
HISTORY_KEEP = 1000
#: How long close() waits for the relock thread to finish.
_JOIN_TIMEOUT = 2.0


@runtime_checkable
class Lock(Protocol):
    """What the door controller needs from a lock, whatever drives it."""

    def lock(self) -> None:
        """Lock now and cancel any pending relock."""

    def unlock(self, seconds: float | None = None) -> None:
        """Unlock for ``seconds``, then relock on its own."""

    @property
    def is_locked(self) -> bool:
        """True while the door is held (output de-energised)."""

    def close(self) -> None:
        """Lock and release the hardware; safe to call twice."""


def _check_seconds(seconds: float, what: str) -> float:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {seconds!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {seconds!r}")
    return value


class _TimedLock(ABC):
    """Unlock-for-N-seconds semantics shared by every lock driver.

    One long-lived daemon thread per lock sleeps on a condition until the
    relock deadline. A second ``unlock()`` while open only moves the deadline
    (never stacks timers), and ``lock()``/``close()`` clear it. The deadline is
    kept on ``time.monotonic`` so wall-clock jumps cannot shorten or stretch
    an unlock. Subclasses implement :meth:`_set_energised` and :meth:`_release`.

    ``clock`` (monotonic seconds) is injectable: tests drive it by hand and
    call :meth:`poll` instead of sleeping; the thread re-checks it too.
    """

    def __init__(self, unlock_seconds: float = 3.0, *, name: str = "lock",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.unlock_seconds = _check_seconds(unlock_seconds, "unlock_seconds")
        self._clock = clock
        self._name = name
        self._cond = threading.Condition(threading.RLock())
        self._energised = False
        self._deadline: float | None = None  # self._clock() of the relock
        self._closed = False
        self._thread: threading.Thread | None = None
        # told "locked" / "unlocked" / "jammed" (a drive failed) with the lock held: must only queue
        self._listeners: list[Callable[[str], None]] = []

    # -- driver hooks -------------------------------------------------------
    @abstractmethod
    def _set_energised(self, energised: bool) -> None:
        """Drive the output: True releases the door, False holds it."""

    def _release(self) -> None:
        """Free the hardware after the final de-energise (default: nothing)."""

    # -- public API -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_locked(self) -> bool:
        """True while de-energised. A lock whose last de-energise failed reports
        unlocked, closed or not: it never claims a state it could not drive."""
        with self._cond:
            return not self._energised

    @property
    def relock_in(self) -> float | None:
        """Seconds until the pending relock, or None when locked."""
        with self._cond:
            if self._deadline is None:
                return None
            return max(0.0, self._deadline - self._clock())

    def unlock(self, seconds: float | None = None) -> None:
        """Release the door for ``seconds`` (default ``unlock_seconds``).

        While already open, the relock deadline becomes the later of the
        current one and ``now + seconds``: a second grant extends, never
        shortens, and never adds a second timer.
        """
        duration = self.unlock_seconds if seconds is None else _check_seconds(seconds, "seconds")
        with self._cond:
            self._check_open()
            self._ensure_thread()  # before energising: no open door without a timer
            if not self._energised:
                self._apply(True, f"for {duration:g} s")
                self._deadline = self._clock() + duration
            else:
                self._deadline = max(self._deadline or 0.0, self._clock() + duration)
                logger.debug("%s: unlock extended, relock in %.2f s", self._name, self._deadline - self._clock())
            self._cond.notify_all()

    def lock(self) -> None:
        """Hold the door now and cancel the pending relock.

        If the output cannot be driven, the relock thread keeps retrying (every
        0.1 s) and :class:`LockError` is raised: the caller must not carry on
        as if the door were held.
        """
        with self._cond:
            self._check_open()
            self._deadline = None
            if self._energised:
                try:
                    self._apply(False, "lock()")
                except Exception as e:
                    self._deadline = self._clock() + 0.1  # keep trying from the relock thread
                    self._ensure_thread()
                    self._cond.notify_all()
                    logger.error("%s: could not lock: %s; retrying", self._name, e)
                    raise e if isinstance(e, LockError) else LockError(f"{self._name}: could not lock: {e}") from e
            self._cond.notify_all()

    def close(self) -> None:
        """De-energise (lock), release the hardware and stop the timer thread.

        Idempotent. The output is driven off before it is released, even if the
        door was open, so closing can never leave the door unlocked.
        """
        failure: Exception | None = None
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._deadline = None
            self._cond.notify_all()
            try:
                self._set_energised(False)  # unconditionally: never trust cached state here
            except Exception as e:  # still release below; report after
                failure = e
                logger.exception("%s: failed to de-energise on close", self._name)
            else:
                if self._energised:
                    logger.info("%s: locked (close)", self._name)
                self._energised = False
        # Released outside the condition so a door-event callback that calls
        # back into this lock cannot deadlock against gpiozero's event thread.
        try:
            self._release()
        finally:
            atexit.unregister(self.close)
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
        if failure is not None:
            raise LockError(f"{self._name}: could not de-energise the output on close") from failure
        logger.debug("%s: closed", self._name)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LockError(f"{self._name} is closed")

    def _start(self) -> None:
        """Subclasses call this once the output is held: lock at exit too."""
        atexit.register(self.close)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Be told each state the output is driven to ("locked", "unlocked") or "jammed" when driving fails."""
        self._listeners.append(listener)

    def _tell(self, state: str) -> None:
        for listener in self._listeners:
            try:
                listener(state)
            except Exception:  # an observer never changes what the lock does
                logger.exception("%s: state listener failed", self._name)

    def _apply(self, energised: bool, why: str) -> None:
        # Called with self._cond held.
        try:
            self._set_energised(energised)
        except Exception:
            self._tell("jammed")
            raise
        self._energised = energised
        logger.info("%s: %s (%s)", self._name, "UNLOCKED" if energised else "locked", why)
        self._tell("unlocked" if energised else "locked")

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._relock_loop, name=f"facegate-relock-{self._name}", daemon=True
            )
            self._thread.start()

    def poll(self) -> bool:
        """Relock now if the deadline has passed; True if it did. The timer thread calls it."""
        with self._cond:
            if self._closed or self._deadline is None or self._deadline > self._clock():
                return False
            self._deadline = None
            try:
                self._apply(False, "relock timer")
            except Exception:  # keep the thread alive; retry shortly
                logger.exception("%s: relock failed, retrying", self._name)
                self._deadline = self._clock() + 0.1
                return False
            return True

    def _relock_loop(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - self._clock()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self.poll()


class GpioLock(_TimedLock):
    """A relay or MOSFET on one GPIO pin, driven through gpiozero.

    :param pin: GPIO pin of the relay input (gpiozero naming: ``17``, ``"GPIO17"``,
        ``"BOARD11"``).
    :param active_high: True when a HIGH pin energises the relay. Many relay
        boards are active-low: pass False, and "locked" is then the pin HIGH.
    :param unlock_seconds: default duration of :meth:`unlock`.
    :param pin_factory: a gpiozero pin factory (tests pass ``MockFactory()``);
        None uses gpiozero's default, which honours ``GPIOZERO_PIN_FACTORY``.
    :param door_contact_pin: optional reed switch to ground, read with the
        internal pull-up: pin LOW = contact closed = door closed, HIGH = open.
    :param on_door_event: called with ``"open"`` or ``"closed"`` on each change
        of the door contact, from gpiozero's event thread.

    The output is created with ``initial_value=False``: the relay is
    de-energised (door held) from the moment the pin is claimed.
    """

    def __init__(
        self,
        pin: int | str,
        *,
        active_high: bool = True,
        unlock_seconds: float = 3.0,
        pin_factory: Any = None,
        door_contact_pin: int | str | None = None,
        on_door_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(unlock_seconds, name=f"GpioLock(pin={pin})", clock=clock)
        self.pin = pin
        self.active_high = bool(active_high)
        self._on_door_event = on_door_event
        self._device: OutputDevice | None = None
        self._contact: Button | None = None
        try:
            from gpiozero import Button, OutputDevice
            from gpiozero.exc import GPIOZeroError
        except ImportError as e:
            raise BackendUnavailable(
                "gpiozero is not installed: pip install 'facegate[edge]' "
                '(on a machine without GPIO use lock.type = "log")'
            ) from e
        try:
            self._device = OutputDevice(
                pin, active_high=self.active_high, initial_value=False, pin_factory=pin_factory
            )
            if door_contact_pin is not None:
                self._contact = Button(door_contact_pin, pull_up=True, pin_factory=pin_factory)
                self._contact.when_pressed = self._door_closed
                self._contact.when_released = self._door_opened
        except (GPIOZeroError, OSError) as e:
            self._release()
            raise LockError(
                f"cannot open GPIO pin {pin}"
                + (f" / door contact pin {door_contact_pin}" if door_contact_pin is not None else "")
                + f": {str(e).rstrip('.!')}. If this machine has no GPIO, set lock.type = \"log\" in the "
                "config, or GPIOZERO_PIN_FACTORY=mock to simulate the pins"
            ) from e
        self._start()
        logger.info(
            "%s: ready, locked (active_high=%s, door contact=%s)",
            self._name,
            self.active_high,
            door_contact_pin,
        )

    @property
    def door_closed(self) -> bool | None:
        """State of the door contact, or None without one (or after close)."""
        contact = self._contact
        if contact is None or self._closed:
            return None
        return bool(contact.is_pressed)

    def _set_energised(self, energised: bool) -> None:
        if self._device is None:
            raise LockError(f"{self._name} has no output device")
        from gpiozero.exc import GPIOZeroError

        try:
            if energised:
                self._device.on()
            else:
                self._device.off()
            # Read the pin back: a write that did not take must not pass for one that did.
            actual = bool(self._device.value)
        except (GPIOZeroError, OSError) as e:
            raise LockError(f"{self._name}: cannot drive the relay: {e}") from e
        if actual != energised:
            raise LockError(f"{self._name}: the relay output reads {'on' if actual else 'off'} after driving it "
                            f"{'on' if energised else 'off'}")

    def _release(self) -> None:
        for attr in ("_contact", "_device"):
            dev = getattr(self, attr)
            setattr(self, attr, None)
            if dev is not None:
                try:
                    dev.close()
                except Exception:  # releasing must not mask the real error
                    logger.exception("%s: error releasing %s", self._name, attr.lstrip("_"))

    def _door_event(self, event: str) -> None:
        logger.info("%s: door %s", self._name, event)
        if self._on_door_event is not None:
            try:
                self._on_door_event(event)
            except Exception:  # never let a callback kill gpiozero's thread
                logger.exception("%s: on_door_event(%r) failed", self._name, event)

    def _door_closed(self) -> None:
        self._door_event("closed")

    def _door_opened(self) -> None:
        self._door_event("open")

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("locked" if self.is_locked else "unlocked")
        return f"<GpioLock pin={self.pin!r} active_high={self.active_high} {state}>"


class LogLock(_TimedLock):
    """A lock with no hardware: logs and records each state change.

    Used by the demo, in tests and on machines without GPIO. ``history`` holds
    ``(clock(), "locked" | "unlocked")`` entries, starting with the initial
    "locked"; ``clock`` also drives the relock deadline.
    """

    def __init__(self, unlock_seconds: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(unlock_seconds, name="LogLock", clock=clock)
        # bounded: a bench daemon running for months must not grow
        self.history: deque[tuple[float, str]] = deque([(clock(), "locked")], maxlen=HISTORY_KEEP)
        self._start()
        logger.info("%s: ready, locked (no hardware)", self._name)

    def _set_energised(self, energised: bool) -> None:
        state = "unlocked" if energised else "locked"
        if self.history[-1][1] != state:  # close() re-asserts "locked"; keep one entry
            self.history.append((self._clock(), state))

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("locked" if self.is_locked else "unlocked")
        return f"<LogLock {state}>"


def _gpio(cfg: LockConfig, pin_factory: Any = None, on_door_event: Callable[[str], None] | None = None) -> Lock:
    return GpioLock(cfg.pin, active_high=cfg.active_high, unlock_seconds=cfg.unlock_seconds,
                    pin_factory=pin_factory, door_contact_pin=cfg.door_contact_pin, on_door_event=on_door_event)


def _log(cfg: LockConfig, pin_factory: Any = None, on_door_event: Callable[[str], None] | None = None) -> Lock:
    return LogLock(unlock_seconds=cfg.unlock_seconds)


#: ``[lock] type`` -> constructor from the config table.
LOCKS: dict[str, Callable[..., Lock]] = {"gpio": _gpio, "log": _log}


def create_lock(cfg: LockConfig, pin_factory: Any = None,
                on_door_event: Callable[[str], None] | None = None) -> Lock:
    """The lock a ``[lock]`` config table describes, locked."""
    try:
        make = LOCKS[cfg.type]
    except KeyError:
        raise ConfigError(f"lock.type: expected one of {', '.join(LOCKS)}, got {cfg.type!r}") from None
    return make(cfg, pin_factory=pin_factory, on_door_event=on_door_event)

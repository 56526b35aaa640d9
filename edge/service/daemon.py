"""The door daemon: newest camera frame -> pipeline -> policy -> lock.

A camera thread keeps only the newest frame; the main loop judges it and
drives the lock. Whatever happens (SIGTERM, an exception, a stalled loop) the
door ends locked: the lock is locked in ``finally``, and a stall guard thread
locks it if the loop stops making progress while the door is open.

Faults (docs/reliability.md has the whole matrix): a grant is written to the
audit log *before* the door opens, and a grant that cannot be recorded does
not open it; a stage that raises (detector, embedder, liveness) skips the
frame and empties the policy's evidence, and ``max_stage_errors`` in a row
end the daemon; systemd's watchdog is fed only while camera frames arrive,
and ``camera_stall_seconds`` without one end it. Ending is always locked and
non-zero, so systemd restarts it.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from ..audit import AuditLog, hold_embedding
from ..camera import FrameSource, LatestFrameGrabber, create_source
from ..config import Config
from ..errors import AuditError, CameraError, ConfigError, FacegateError, LockError
from ..gallery import Gallery
from ..gallery.files import file_mode
from ..liveness import create_liveness, make_sample
from ..lock import Lock, create_lock
from ..pipeline import FacePipeline, create_pipeline
from ..operating_threshold import check_threshold_safety, operating_threshold, strong_threshold
from ..policy import DecisionPolicy
from ..recognition import require_margin
from ..types import Decision, DoorEvent, DoorState, Frame, Outcome
from .guard import StallGuard
from .memory import pin_mmap_threshold
from .sinks import AuditToSinks, EventSink, build_sinks, crop_to_sinks
from .notify import Notifier, NullNotifier, systemd_notifier
from .preflight import check_ready, open_door_gallery
from .watchdog import FrameWatchdog

log = logging.getLogger(__name__)
#: For the decision-latency figure: a face-free gap this long ends a visit.
VISIT_GAP_SECONDS = 0.5
#: How many recent per-frame figures DaemonStats keeps.
STATS_KEEP = 10_000


@dataclass
class DaemonStats:
    """What the loop did; the demo prints it and the benchmark reads it."""

    frames: int = 0
    faces: int = 0
    grants: int = 0
    denies: int = 0
    lockouts: int = 0
    camera_faults: int = 0
    stage_errors: int = 0  # frames a stage (detector, embedder, liveness, policy) raised on
    audit_failures: int = 0  # audit rows that could not be written
    grants_refused: int = 0  # grants not opened because they could not be audited
    started: float = 0.0
    stopped: float = 0.0
    #: the newest STATS_KEEP per-frame times: a long-running daemon must not grow
    processing_ms: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_KEEP))
    #: seconds from the first frame of a visit with a face to the unlock
    decision_latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_KEEP))

    @property
    def fps(self) -> float:
        elapsed = self.stopped - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

class DoorDaemon:
    """Runs the door. Every part may be injected (tests, demo); by default all
    are built from the config. The lock is always left locked on return."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | Path | None = None,
        source: FrameSource | None = None,
        lock: Lock | None = None,
        pipeline: FacePipeline | None = None,
        gallery: Gallery | None = None,
        audit: AuditLog | None = None,
        notifier: Notifier | None = None,
        on_decision: Callable[[Frame, Decision], None] | None = None,
        stall_seconds: float = 10.0,
        reconnect_backoff: tuple[float, ...] = (0.5, 1, 2, 5, 10),
        sinks: Sequence[EventSink] | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path else None
        self._owned: list = []  # what we built, closed in reverse order
        self.lock = lock if lock is not None else self._own(create_lock(config.lock, on_door_event=self._door_event))
        try:
            storage = config.storage
            mode = file_mode(storage.group_readable)
            self.gallery = gallery if gallery is not None else self._own(
                open_door_gallery(storage.gallery, key_file=storage.key_file, file_mode=mode))
            # No face images are stored unless [storage] save_face_images = true; the
            # audit log keeps them private and prunes them with their events.
            faces = (Path(storage.gallery).parent / "faces"
                     if storage.save_face_images and storage.gallery != ":memory:" else None)
            self.audit = audit if audit is not None else self._own(
                AuditLog(storage.gallery, retention_days=storage.audit_retention_days, faces_dir=faces,
                         file_mode=mode))
            self.pipeline = pipeline or create_pipeline(config)
            self.source = source if source is not None else create_source(config.camera)
            # decisions and lock states also go here (MQTT when [mqtt] enabled = true)
            self.sinks: list[EventSink] = list(sinks) if sinks is not None else [
                self._own(s) for s in build_sinks(self)]
            for sink in self.sinks:
                if hasattr(self.lock, "add_listener"):
                    self.lock.add_listener(sink.lock_state)
            if self.sinks:  # what is audited is published: grants, refusals, remote unlocks
                self.audit = AuditToSinks(self.audit, self.sinks)
        except BaseException:
            self.close()
            raise
        self.policy = self._make_policy(config)
        self.notifier = notifier or systemd_notifier()
        self.on_decision = on_decision
        self.stall_seconds = stall_seconds
        self.reconnect_backoff = reconnect_backoff
        self.stats = DaemonStats()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._visit_start: float | None = None
        self._audit_key: tuple[str, str | None] | None = None
        self._audit_time = 0.0
        self._last_face: float | None = None
        self._stage_errors_in_row = 0
        self.watchdog: FrameWatchdog | None = None

    @staticmethod
    def _make_policy(config: Config) -> DecisionPolicy:
        liveness = create_liveness(config.liveness)
        if liveness is None:
            log.warning("liveness is off ([liveness] enabled = false): a photo of an enrolled person opens the door")
        return DecisionPolicy(config.policy, liveness=liveness)

    def _own(self, obj):
        self._owned.append(obj)
        return obj

    # -- control ------------------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def request_reload(self, *_: object) -> None:
        self._reload.set()

    def install_signal_handlers(self) -> dict:
        """SIGTERM/SIGINT stop, SIGHUP reloads; returns the handlers they replace."""
        handlers = {signal.SIGTERM: self.request_stop, signal.SIGINT: self.request_stop,
                    signal.SIGHUP: self.request_reload}
        return {sig: signal.signal(sig, fn) for sig, fn in handlers.items()}

    @property
    def threshold(self) -> float:
        """The operating threshold: the configured (or model's) one, tightened for the gallery's size."""
        m = self.config.match
        return operating_threshold(m.threshold, self.pipeline.embedder.thresholds, len(self.gallery),
                                   m.identification_fmr)

    def preflight(self) -> None:
        """Refuse to start a door that cannot work (empty gallery, other model, unsafe threshold)."""
        m = self.config.match
        check_ready(self.gallery, self.pipeline.model_id, self.pipeline.embedder.thresholds, m.threshold,
                    m.allow_unsafe_threshold)

    def _door_event(self, event: str) -> None:
        log.info("door %s", event)
        try:
            self.audit.record(DoorEvent(time.time(), DoorState(event)))
        except Exception:
            log.exception("could not record the door event")

    # -- the loop -------------------------------------------------------------------------
    def run(self, max_frames: int | None = None, stop_when_finished: bool = True) -> DaemonStats:
        """Judge frames until stopped (or the replay ends); always ends locked."""
        self.lock.lock()
        guard = StallGuard(self.lock, self.stall_seconds).start()
        grabber = LatestFrameGrabber(self.source, reconnect_backoff=self.reconnect_backoff).start()
        self.stats.started = time.monotonic()
        fault_seen: str | None = None
        last_status = 0.0
        dcfg = self.config.daemon
        watchdog = self.watchdog = FrameWatchdog(self.notifier, enabled=dcfg.watchdog,
                                                 frame_timeout=dcfg.frame_timeout_seconds)
        try:
            self.notifier.notify(f"READY=1\nSTATUS=watching; {len(self.gallery)} people enrolled")
            log.info("daemon ready: %s, %s, %d people", self.source, self.pipeline.model_id, len(self.gallery))
            while not self._stop.is_set():
                guard.beat()
                # fed only while frames arrive: a wedged camera must not look healthy
                watchdog.feed(grabber.last_frame_time)
                stale = watchdog.stale_for(grabber.last_frame_time)
                if stale > self.config.daemon.camera_stall_seconds and not grabber.finished:
                    self.notifier.notify(f"STATUS=no camera frame for {stale:.0f} s")
                    raise CameraError(f"no frame from {self.source} for {stale:.0f} s "
                                      f"({grabber.fault or 'the camera stalled'}); exiting for a restart")
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                frame = grabber.get(timeout=0.5)
                if grabber.fault != fault_seen:
                    fault_seen = grabber.fault
                    if fault_seen:
                        self.stats.camera_faults += 1
                        log.error("camera fault: %s", fault_seen)
                        self.notifier.notify(f"STATUS=camera fault: {fault_seen}")
                    else:
                        log.warning("camera recovered")
                if grabber.error is not None:
                    raise grabber.error
                if frame is None:
                    if grabber.finished:
                        where = getattr(self.source, "name", self.source)
                        if stop_when_finished:
                            log.info("%s ended: stopping", where)
                            break
                        # a source that ends where one that does not was expected: waiting would only spin
                        raise CameraError(f"{where} ended; exiting for a restart")
                    continue
                self.process(frame)
                watchdog.feed(grabber.last_frame_time)
                now = time.monotonic()
                if now - last_status >= self.config.daemon.status_interval_seconds:
                    last_status = now
                    self.notifier.notify(f"STATUS={self.status_line()}")
                if max_frames is not None and self.stats.frames >= max_frames:
                    break
        finally:
            self.stats.stopped = time.monotonic()
            try:
                self.lock.lock()
            finally:
                guard.stop()
                grabber.stop()
                self.notifier.notify("STOPPING=1")
        return self.stats

    def _judge(self, frame: Frame):
        """Detector, embedder, gallery and policy on one frame: every stage that may raise."""
        face, count = (self.pipeline.largest(frame.image) if frame.lores is None
                       else self.pipeline.largest(frame.image, lores=frame.lores))
        match = None
        strong = None
        if face is not None and face.embedding is not None:
            # an empty gallery answers "nobody" (infinite distance): a judged stranger
            m = self.config.match
            people = len(self.gallery)
            threshold = operating_threshold(m.threshold, self.pipeline.embedder.thresholds, people,
                                            m.identification_fmr)
            match = require_margin(self.gallery.identify(face.embedding, threshold), m.margin)
            strong = strong_threshold(self.pipeline.embedder.thresholds, people, m.identification_fmr, threshold)
        quality = face.crop.quality if face is not None else None
        sample = None
        if face is not None and self.policy.liveness is not None:
            sample = make_sample(frame.image, face.detection, frame.timestamp, self.policy.liveness.needs_patch)
        decision = self.policy.observe(match, quality, count, now=frame.timestamp, face=sample,
                                       strong_threshold=strong)
        return face, count, decision

    def _stage_failed(self, frame: Frame, exc: Exception) -> Decision:
        """A stage raised: this frame is not judged and the evidence so far is dropped."""
        self.stats.stage_errors += 1
        self._stage_errors_in_row += 1
        log.error("frame %d: stage error (%d in a row): %s: %s", frame.index, self._stage_errors_in_row,
                  type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        try:
            self.policy.forget_evidence()
        except Exception:  # the policy itself may be what failed
            self.policy = self._make_policy(self.config)
        if self._stage_errors_in_row >= self.config.daemon.max_stage_errors:
            raise exc
        return Decision(timestamp=time.time(), outcome=Outcome.SKIP, name=None, distance=None, threshold=None,
                        model_id=None, reason=f"stage error: {type(exc).__name__}")

    def _audit(self, decision: Decision) -> int | None:
        """Write one audit row; None (logged, counted) when the database or the disk refuses it."""
        try:
            return self.audit.record(decision)
        except (AuditError, FacegateError, sqlite3.Error, OSError) as exc:
            self.stats.audit_failures += 1
            log.error("audit: could not record %s: %s", decision.outcome, exc)
            self.notifier.notify(f"STATUS=audit log failing: {exc}")
            return None

    def process(self, frame: Frame) -> Decision:
        """Judge one frame and act on it."""
        t0 = time.perf_counter()
        try:
            face, count, decision = self._judge(frame)
            self._stage_errors_in_row = 0
        except Exception as exc:
            face, count, decision = None, 0, self._stage_failed(frame, exc)
        self._track_visit(frame, count)
        audited = False
        if decision.outcome == "grant":
            # Audit first: no door opens without its row. A grant that cannot be
            # recorded is refused; the person simply tries again.
            decision = replace(decision, latency_ms=round((time.perf_counter() - t0) * 1000, 1))
            event = self._audit(decision)
            audited = True
            if event is None:
                self.stats.grants_refused += 1
                log.error("grant for %s refused: it could not be audited", decision.name)
                self.policy.revoke_grant(decision.name or "")
                decision = replace(decision, outcome=Outcome.DENY, reason="grant could not be audited: " +
                                   decision.reason)
            else:
                self._unlock()
                self.stats.grants += 1
                if self._visit_start is not None:
                    self.stats.decision_latency_s.append(time.monotonic() - self._visit_start)
                self._hold_embedding(event, face)
                self._save_face(event, decision, face)
        if decision.outcome == "deny":
            self.stats.denies += 1
        elif decision.outcome == "lockout":
            self.stats.lockouts += 1
        ms = (time.perf_counter() - t0) * 1000
        self.stats.frames += 1
        self.stats.faces += count > 0
        self.stats.processing_ms.append(ms)
        if audited:
            pass
        elif self._should_audit(decision, frame.timestamp):
            decision = replace(decision, latency_ms=round(ms, 1))
            event = self._audit(decision)
            if event is not None:
                self._hold_embedding(event, face)
                self._save_face(event, decision, face)
        else:
            log.debug("frame %d: %s %s", frame.index, decision.outcome, decision.reason)
        if face is not None and self.sinks and getattr(self.audit, "last", None) is decision:
            crop_to_sinks(self.sinks, decision, face.crop.image)
        if self.on_decision is not None:
            self.on_decision(frame, decision)
        return decision

    def _hold_embedding(self, event: int, face) -> None:
        """Keep the decision's embedding for a while, so it can be marked wrong (``facegate audit mark``)."""
        if face is None or face.embedding is None:
            return
        try:
            hold_embedding(self.audit, event, face.embedding.vector, face.embedding.model_id,
                           self.gallery.template_cipher())
        except Exception:  # feedback is a convenience: never a reason to stop the door
            log.exception("could not keep the embedding of decision %d", event)

    def _unlock(self) -> None:
        """Open for the configured time; a lock that cannot be driven ends the daemon (locked)."""
        try:
            self.lock.unlock(self.config.lock.unlock_seconds)
        except LockError:
            log.error("the lock cannot be driven: stopping")
            raise

    def _save_face(self, event: int, decision: Decision, face) -> None:
        """The crop of an audited decision, kept by the audit log only when the user turned it on."""
        if face is None or getattr(self.audit, "faces_dir", None) is None:
            return
        try:
            self.audit.save_face(event, decision.outcome, face.crop.image)
        except AuditError as exc:
            log.error("%s", exc)

    def _should_audit(self, decision: Decision, now: float) -> bool:
        """Every grant; a deny or lockout when it starts or once per attempt slice.

        A stranger in front of the camera is denied on every frame; one audit
        row per attempt tells the story without ten rows a second.
        """
        if not decision.outcome.audited:
            return False
        key = (decision.outcome, decision.name)
        if decision.outcome == Outcome.GRANT or key != self._audit_key or (
                now - self._audit_time >= self.policy.config.attempt_seconds):
            self._audit_key, self._audit_time = key, now
            return True
        return False

    def _track_visit(self, frame: Frame, count: int) -> None:
        """A visit starts with the first face frame after VISIT_GAP_SECONDS without one."""
        if count:
            if self._last_face is None or frame.timestamp - self._last_face > VISIT_GAP_SECONDS:
                # measured on the monotonic clock, like the unlock, from when the frame was taken
                self._visit_start = frame.timestamp
            self._last_face = frame.timestamp

    def unlock_remotely(self, source: str, user: str | None = None) -> Decision:
        """A remote unlock (MQTT) through the grant's own lock path: audited first, then the pulse.

        Recorded before the door opens, so no remote unlock goes unaudited: if
        the audit write fails, the door stays locked and the error says why.
        """
        decision = Decision(time.time(), Outcome.GRANT, name=None, distance=None, threshold=None, model_id=None,
                            reason=f"remote unlock via {source}" + (f" (user {user})" if user else ""),
                            extra={"source": source, **({"user": user} if user else {})})
        self.audit.record(decision)
        self.lock.unlock(self.config.lock.unlock_seconds)
        self.stats.grants += 1
        return decision

    def gallery_importer(self):
        """The function that swaps the gallery for a signed household snapshot (see facegate.edge.mqtt.sync)."""
        from ..mqtt.importer import gallery_importer

        return gallery_importer(self.config, self.gallery)

    def status_line(self) -> str:
        s = self.stats
        state = "locked" if self.lock.is_locked else "unlocked"
        limits = self.policy.limits
        return (f"{state}; {s.frames} frames, {self.policy.judged} faces judged, {s.grants} grants, "
                f"{s.denies} denies, {limits.lockouts} lockouts (level {limits.level}), "
                f"{s.camera_faults} camera faults")

    def reload(self) -> None:
        """SIGHUP: re-read the config (keep the old one if the new is bad) and the gallery."""
        mqtt = self.config.mqtt  # the broker link is built once: [mqtt] changes need a restart
        if self.config_path is not None:
            try:
                new = Config.load(self.config_path)
            except ConfigError as exc:
                log.error("reload refused, keeping the running config: %s", exc)
                new = self.config
            try:
                check_threshold_safety(new.match.threshold, self.pipeline.embedder.thresholds,
                                       new.match.allow_unsafe_threshold)
            except ConfigError as exc:
                log.error("reload refused, keeping the running config: %s", exc)
                self.notifier.notify(f"STATUS=reload refused: {exc}")
                new = self.config
            if new.policy != self.config.policy or new.liveness != self.config.liveness:
                old, self.policy = self.policy, self._make_policy(new)
                self.policy.limits.carry_from(old.limits)  # a running lockout survives the reload
            if new.quality != self.config.quality:
                self.pipeline.quality = new.quality
            if (new.camera, new.detector, new.embedder, new.lock, new.storage) != (
                self.config.camera, self.config.detector, self.config.embedder, self.config.lock, self.config.storage):
                log.warning("camera, detector, embedder, lock and storage changes need a restart")
            # what the running door can take now, and what it keeps until a restart
            self.config = replace(self.config, **{f: getattr(new, f) for f in
                                                  ("match", "quality", "policy", "liveness", "daemon", "images")})
        if self.config_path is not None and new.mqtt != mqtt:
            log.warning("[mqtt] changes need a restart")
        self.config = replace(self.config, mqtt=mqtt)
        self.gallery.reload()
        log.info("reloaded: %d people enrolled", len(self.gallery))
        self.notifier.notify(f"STATUS=reloaded; {len(self.gallery)} people enrolled")

    def close(self) -> None:
        """Lock first, then release everything we built, in reverse order."""
        try:
            if getattr(self, "lock", None) is not None:
                self.lock.lock()
        finally:
            for obj in reversed(self._owned):
                try:
                    obj.close()
                except Exception:
                    log.exception("closing %r", obj)
            self._owned.clear()

    def __enter__(self) -> DoorDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_daemon(config_path: str | Path) -> int:
    """``facegate run``: the service's main; exit code for systemd.

    SIGHUP's default action kills the process, and loading the models takes
    seconds: until the daemon's own handlers are in place a SIGHUP (``systemctl
    reload`` right after a start) is only remembered, then served as a reload.
    Every refusal (no gallery, another model, an unsafe threshold) is a
    FacegateError before READY, which the CLI prints as one line (exit 2).
    """
    early: list[int] = []
    saved_hup = signal.signal(signal.SIGHUP, lambda sig, _frame: early.append(sig))
    try:
        log.info("starting with %s", config_path)
        pin_mmap_threshold()
        cfg = Config.load(config_path)
        daemon = DoorDaemon(cfg, config_path=config_path)
    except BaseException:
        signal.signal(signal.SIGHUP, saved_hup)
        raise
    with daemon:
        previous = daemon.install_signal_handlers()
        previous[signal.SIGHUP] = saved_hup
        try:
            if early:
                log.info("SIGHUP during start-up: reloading now")
                daemon.request_reload()
            daemon.preflight()
            # a recording (a replay without loop, a video file as the opencv camera) ends the run cleanly
            daemon.run(stop_when_finished=bool(getattr(daemon.source, "finite", False)))
            log.info("stopped: %s", daemon.status_line())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0

"""`facegate demo`: the real daemon loop on a built-in scenario, no camera needed.

Eileen Collins (scikit-image's ``astronaut.png``) is enrolled from her
portrait; the door then sees camera-like frame sequences made from the
portraits (placement, scale, rotation, blur, noise, light, JPEG, empty frames)
including Grace Hopper (matplotlib's ``grace_hopper.jpg``) as a real stranger.
The lock is simulated (:class:`LogLock`); everything else is the product.

Liveness is off in the demo, and it says so: its frames paste one flat
portrait into a doorway, which is exactly a photo held up to the camera, and
the default door (liveness on) rightly refuses them (docs/liveness.md). The
door's own default is unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from collections.abc import Iterator
from typing import Callable, TextIO

import numpy as np

from ..audit import AuditLog
from ..camera import ReplaySource
from ..config import Config
from ..pipeline import create_pipeline
from ..service import DoorDaemon, NullNotifier
from ..service.memory import pin_mmap_threshold
from ..gallery import Gallery
from ..lock import LogLock
from ..recognition import enroll
from ..errors import BackendUnavailable
from ..eval.samples import PORTRAITS, portrait_path, sample_portrait
from .scenario import ScenarioFrame, demo_shots, iter_shots
from ..types import Decision, Frame

log = logging.getLogger(__name__)

ENROLLED = "Eileen Collins"
TRUTH_NAMES = {"astronaut": ENROLLED, "grace_hopper": "Grace Hopper (stranger)"}


@dataclass
class DemoResult:
    frames: int
    grants: list[tuple[int, str | None]]  # (frame index, truth of that frame)
    wrong_grants: int  # grants on a frame whose largest face is not the enrolled person
    visits_of_enrolled: int
    fps: float
    processing_ms_median: float
    decision_latency_s: list[float]
    lock_history: list[tuple[float, str]]


def demo_config(embedder: str, unlock_seconds: float, mqtt: str | None = None) -> Config:
    base = Config.default()
    cfg = replace(
        base,
        camera=replace(base.camera, type="replay", path="<built-in scenario>"),
        embedder=replace(base.embedder, name=embedder),
        lock=replace(base.lock, type="log", unlock_seconds=unlock_seconds),
        storage=replace(base.storage, gallery=":memory:"),
        daemon=replace(base.daemon, watchdog=False),
        # synthetic frames: pasted portraits move as a plane, as a held-up photo does
        liveness=replace(base.liveness, enabled=False),
    )
    if mqtt is None:
        return cfg
    from ..mqtt.config import demo_mqtt

    return replace(cfg, mqtt=demo_mqtt(mqtt))


def count_visits(frames: list[ScenarioFrame], fps: float, cooldown_seconds: float) -> int:
    """Visits of the enrolled person the door should open for.

    Usable frames of her (not forced dark or blurred) separated by at least
    the cooldown's worth of frames without her start a new visit.
    """
    visits, gap = 0, None
    for f in frames:
        if f.truth == "astronaut" and f.condition not in ("dark", "blurred"):
            if gap is None or gap >= cooldown_seconds * fps:
                visits += 1
            gap = 0
        elif gap is not None:
            gap += 1
    return visits


def require_portraits() -> None:
    """Fail before any model loads when the demo's portraits are not installed (the ``demo`` extra)."""
    missing = []
    for name in PORTRAITS:
        try:
            portrait_path(name)
        except BackendUnavailable:
            missing.append(PORTRAITS[name][2])
    if missing:
        raise BackendUnavailable(
            f"facegate demo needs its public-domain portraits, which ship inside {' and '.join(missing)}: "
            "pip install 'facegate[demo]' (from a clone: pip install -e '.[demo]'); the door itself does not need them")


def run_demo(
    embedder: str | None = None,
    fps: float = 10.0,
    seed: int = 0,
    unlock_seconds: float = 1.5,
    out: TextIO | None = None,
    on_decision: Callable[[Frame, Decision], None] | None = None,
    mqtt: str | None = None,
) -> DemoResult:
    """Play the scenario through the daemon and print the timeline to ``out``."""
    from ..embed import DEFAULT_EMBEDDER

    require_portraits()

    embedder = embedder or DEFAULT_EMBEDDER
    write = (lambda s: print(s, file=out, flush=True)) if out is not None else (lambda s: None)
    pin_mmap_threshold()  # as the daemon does: frame buffers back to the OS, no heap growth
    shots = demo_shots()
    # Frames are rendered as the replay asks for them and only their truth is
    # kept: 130 frames of 640x480 would otherwise be 120 MB of the demo's memory.
    frames: list[ScenarioFrame] = []
    no_pixels = np.empty((0, 0, 3), np.uint8)

    def stream() -> Iterator[np.ndarray]:
        for f in iter_shots(shots, seed=seed):
            frames.append(replace(f, image=no_pixels))
            yield f.image

    cfg = demo_config(embedder, unlock_seconds, mqtt)  # mqtt: HOST:PORT to publish the decisions to
    pipeline = create_pipeline(cfg)
    write(f"facegate demo: {sum(s.frames for s in shots)} frames at {fps:g} fps, model {pipeline.model_id}, "
          "simulated lock")
    write("liveness OFF for this demo: its frames are a flat portrait pasted into a doorway, i.e. a photo, "
          "which a real door (liveness on by default) refuses; see docs/liveness.md")
    grants: list[tuple[int, str | None]] = []
    with Gallery(":memory:") as gallery, AuditLog(":memory:") as audit:
        enroll(pipeline, gallery, ENROLLED, [sample_portrait("astronaut")])
        write(f"enrolled {ENROLLED} from one portrait (one-shot)")
        lock = LogLock(unlock_seconds=unlock_seconds)
        t0 = time.monotonic()
        last: list = [None, 0]  # the line key shown last, and how many frames repeated it

        def show(frame: Frame, decision: Decision) -> None:
            k = frame.index - 1
            truth = frames[k].truth if 0 <= k < len(frames) else None
            state = "locked" if lock.is_locked else "UNLOCKED"
            if decision.outcome == "grant":
                grants.append((frame.index, truth))
            # one line per change of (truth, outcome, lock state): a readable timeline
            key = (truth, decision.outcome, decision.name, state)
            if key == last[0]:
                last[1] += 1
            else:
                if last[1]:
                    write(f"{'':8} ... and {last[1]} more frame(s) alike")
                last[0], last[1] = key, 0
                who = TRUTH_NAMES.get(truth or "", "nobody") if truth else "nobody"
                dist = "" if decision.distance is None or decision.distance == float("inf") else (
                    f" d={decision.distance:.3f}")
                name = f" -> {decision.name}" if decision.name else ""
                write(f"{time.monotonic() - t0:6.2f}s frame {frame.index:3d} [{who:>24}] "
                      f"{decision.outcome:8}{name}{dist}  lock: {state}")
            if on_decision is not None:
                on_decision(frame, decision)

        source = ReplaySource(stream(), fps=fps, name="demo-scenario")
        with DoorDaemon(cfg, source=source, lock=lock, pipeline=pipeline, gallery=gallery, audit=audit,
                        notifier=NullNotifier(), on_decision=show) as daemon:
            stats = daemon.run()
        if last[1]:
            write(f"{'':8} ... and {last[1]} more frame(s) alike")
        # let a pending relock land so the history ends locked
        lock.close()
        history = list(lock.history)
    visits = count_visits(frames, fps, cfg.policy.cooldown_seconds)
    wrong = sum(1 for _, truth in grants if truth != "astronaut")
    result = DemoResult(
        frames=stats.frames, grants=grants, wrong_grants=wrong, visits_of_enrolled=visits, fps=stats.fps,
        processing_ms_median=float(np.median(stats.processing_ms)) if stats.processing_ms else 0.0,
        decision_latency_s=stats.decision_latency_s, lock_history=history,
    )
    write(f"summary: {len(grants)} unlock(s) for {visits} visit(s) of {ENROLLED}; "
          f"{wrong} unlock(s) for anyone else; {stats.denies} denial(s)")
    lat = ", ".join(f"{x:.2f} s" for x in stats.decision_latency_s) or "n/a"
    write(f"processed {stats.frames} frames at {stats.fps:.1f} fps (median {result.processing_ms_median:.0f} ms "
          f"per frame); first face to unlock: {lat}; lock ended {'locked' if history[-1][1] == 'locked' else 'OPEN'}")
    return result

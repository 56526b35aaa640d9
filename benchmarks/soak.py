"""Soak: the door daemon on a looping replay for tens of thousands of frames; JSON out.

    nice -n 19 python benchmarks/soak.py [--frames 50000] [--fps 30] [--out soak.json]

Not part of CI (50,000 frames at 30 fps take half an hour or more). The
real daemon (:class:`DoorDaemon`: camera thread, detector, embedder, SQLite
gallery and audit log in a temporary folder, the stall guard, the lock's relock
thread) plays the demo's scenario (visits of the enrolled person, a stranger,
a crowd, dark and blurred frames) in a loop, paced like a camera (``--fps``;
a daemon slower than that drops frames, newest only, as with a camera). An
unpaced replay (``--fps 0``) spins the camera thread and measures that, not
the door. It reports, as one JSON object:

* ``rss_growth_mb``: the largest resident memory sampled (every 2 s) after a
  warm-up (``--warmup`` frames: models loaded, caches filled) minus the RSS
  at the end of the warm-up; that includes transient peaks (a crowded frame),
  so the first and last quarters of the samples (median, peak) and a fitted
  trend in MB per 10,000 frames say whether anything *grows*;
* ``fds_start`` / ``fds_end``: open file descriptors after warm-up and at the end;
* ``watchdog``: how many WATCHDOG=1 were sent, the longest gap between two
  and how many gaps exceeded half of the unit's WatchdogSec (30 s), i.e. a
  watchdog systemd would have counted as missed;
* the decisions (grants, denies, lockouts), audit rows and failures.

Targets (docs/reliability.md): RSS growth < 5 MB, no descriptor growth, no
missed watchdog.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

WATCHDOG_SEC = 30.0  # systemd/facegate.service


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class WatchdogRecorder:
    """A notifier that keeps the times of WATCHDOG=1 (and nothing else)."""

    def __init__(self) -> None:
        self.feeds: list[float] = []
        self.other = 0

    def notify(self, state: str) -> None:
        if "WATCHDOG=1" in state:
            self.feeds.append(time.monotonic())
        else:
            self.other += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--fps", type=float, default=30.0, help="replay rate, like a camera's (0: unpaced)")
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    from facegate.edge.audit import AuditLog
    from facegate.edge.camera import ReplaySource
    from facegate.edge.config import Config
    from facegate.edge.demo.scenario import build_demo_scenario
    from facegate.edge.embed import DEFAULT_EMBEDDER
    from facegate.edge.eval.samples import sample_portrait
    from facegate.edge.gallery import Gallery
    from facegate.edge.lock import LogLock
    from facegate.edge.pipeline import create_pipeline
    from facegate.edge.recognition import enroll
    from facegate.edge.service import DoorDaemon
    from facegate.edge.service.memory import pin_mmap_threshold

    pin_mmap_threshold()  # as run_daemon does
    work = Path(tempfile.mkdtemp(prefix="facegate-soak-"))
    base = Config.default()
    cfg = replace(base, embedder=replace(base.embedder, name=args.embedder or DEFAULT_EMBEDDER),
                  camera=replace(base.camera, type="replay", path=str(work), loop=True),
                  lock=replace(base.lock, type="log", unlock_seconds=0.5),
                  storage=replace(base.storage, gallery=str(work / "gallery.db")),
                  daemon=replace(base.daemon, watchdog=True))
    pipeline = create_pipeline(cfg)
    with Gallery(cfg.storage.gallery) as g:
        enroll(pipeline, g, "eileen", [sample_portrait("astronaut")])
    # Every 3rd frame of the demo's 130: all its situations, 40 frames (36 MB) held in memory.
    frames = [f.image for f in build_demo_scenario(seed=0)][::3]
    source = ReplaySource(frames, fps=args.fps or None, loop=True, name="soak-replay")
    notes = WatchdogRecorder()
    lock = LogLock(unlock_seconds=0.5)
    samples: list[tuple[int, float]] = []
    baseline: dict[str, float] = {}
    daemon = DoorDaemon(cfg, source=source, lock=lock, pipeline=pipeline, notifier=notes)
    daemon.preflight()

    def sampler(stop: threading.Event) -> None:
        last_progress = time.monotonic()
        while not stop.wait(2.0):
            n = daemon.stats.frames
            if n >= args.warmup:
                if not baseline:
                    baseline.update(rss=rss_mb(), fds=open_fds(), frames=n, t=time.monotonic())
                samples.append((n, rss_mb()))
            if time.monotonic() - last_progress >= 60:  # a progress line a minute, on stderr
                last_progress = time.monotonic()
                print(json.dumps({"progress_frames": n, "rss_mb": round(rss_mb(), 1), "fds": open_fds()}),
                      file=sys.stderr, flush=True)

    stop = threading.Event()
    threading.Thread(target=sampler, args=(stop,), daemon=True).start()
    t0 = time.monotonic()
    with daemon:
        stats = daemon.run(max_frames=args.frames)
        stop.set()
        fds_end = open_fds()
        rss_end = rss_mb()
        with AuditLog(cfg.storage.gallery) as audit:
            audit_rows = audit.count()
    wall = time.monotonic() - t0
    lock.close()
    shutil.rmtree(work, ignore_errors=True)
    feeds = notes.feeds
    gaps = [b - a for a, b in zip(feeds, feeds[1:])]
    peak = max([r for _, r in samples] + [rss_end])
    # A leak grows with frames; a transient peak (a crowded frame) does not. Compare the
    # first and the last quarter of the samples, and fit MB per 10,000 frames.
    q = max(1, len(samples) // 4)
    first, last = [r for _, r in samples[:q]], [r for _, r in samples[-q:]]
    if len(samples) >= 2:
        xs = np.array([n for n, _ in samples], float)
        ys = np.array([r for _, r in samples], float)
        slope = float(np.polyfit(xs, ys, 1)[0]) * 10_000 if np.ptp(xs) > 0 else 0.0
    else:
        slope = float("nan")
    result = {
        "benchmark": "soak",
        "frames": stats.frames,
        "wall_s": round(wall, 1),
        "fps": round(stats.fps, 2),
        "model_id": pipeline.model_id,
        "warmup_frames": int(baseline.get("frames", 0)),
        "rss_baseline_mb": round(baseline.get("rss", float("nan")), 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_after_warmup_mb": round(peak, 1),
        "rss_growth_mb": round(peak - baseline.get("rss", float("nan")), 2),
        "rss_samples": len(samples),
        "rss_first_quarter_mb": {"median": round(float(np.median(first)), 1), "peak": round(max(first), 1)}
        if samples else None,
        "rss_last_quarter_mb": {"median": round(float(np.median(last)), 1), "peak": round(max(last), 1)}
        if samples else None,
        "rss_trend_mb_per_10k_frames": round(slope, 3),
        "fds_start": int(baseline.get("fds", -1)),
        "fds_end": fds_end,
        "watchdog": {
            "feeds": len(feeds),
            "max_gap_s": round(max(gaps), 2) if gaps else None,
            "missed": sum(1 for g in gaps if g > WATCHDOG_SEC / 2),
            "starved_at_end": bool(daemon.watchdog and daemon.watchdog.starved),
        },
        "grants": stats.grants,
        "denies": stats.denies,
        "lockouts": stats.lockouts,
        "stage_errors": stats.stage_errors,
        "audit_failures": stats.audit_failures,
        "audit_rows": audit_rows,
        "camera_faults": stats.camera_faults,
        "lock_ended_locked": lock.is_locked,
        "targets_met": None,
    }
    result["targets_met"] = (result["rss_growth_mb"] < 5 and fds_end <= result["fds_start"]
                             and result["watchdog"]["missed"] == 0)
    text = json.dumps(result)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

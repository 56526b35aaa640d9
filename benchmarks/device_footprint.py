"""The door's footprint on the device path: how big its venv is and how much memory the daemon holds.

    python benchmarks/device_footprint.py --venv VENV [--seconds 60] [--embedder facegate-irn]

VENV is a virtual environment with facegate installed the way a Pi gets it
(``pip install '.[pi]'``, no demo or plotting packages); run this script with
any Python that has the ``demo`` extra (it only uses the portraits to make
camera frames). What it does:

1. Sizes VENV (every file, symlinks not followed) and its largest packages, and
   says whether a demo-only package (scikit-image, matplotlib, scipy) is in it.
2. Writes 640x480 frames (an enrolled portrait, a stranger, an empty doorway)
   into a folder, enrolls the portrait with ``VENV/bin/facegate enroll`` and
   starts ``VENV/bin/facegate run`` on a replay camera at 10 fps, looping, with
   the log lock: the daemon's real loop (camera thread, detector, embedder,
   gallery, policy, audit) on the device's code path.
3. After ``--seconds`` reads the daemon's resident memory from /proc (VmRSS now,
   VmHWM its peak), stops it with SIGTERM (as systemd does) and prints one JSON
   line. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO_ONLY = ("skimage", "matplotlib", "scipy")


def venv_size(venv: Path) -> dict:
    site = next(venv.glob("lib/python3*/site-packages"))
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        if entry.name.endswith((".dist-info", ".pth")) or entry.name == "__pycache__":
            continue
        files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
        key = entry.name.removesuffix(".py")
        sizes[key] = sizes.get(key, 0) + sum(f.lstat().st_size for f in files)
    total = sum(f.lstat().st_size for f in venv.rglob("*") if f.is_file() or f.is_symlink())
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:8]
    return {"venv_mb": round(total / 1e6, 1), "largest_mb": {k: round(v / 1e6, 1) for k, v in top},
            "demo_only_packages_present": [m for m in DEMO_ONLY if (site / m).is_dir()]}


def write_frames(folder: Path) -> Path:
    import cv2
    import numpy as np

    from facegate.edge.eval.samples import sample_portrait

    folder.mkdir(parents=True, exist_ok=True)
    astronaut, hopper = sample_portrait("astronaut"), sample_portrait("grace_hopper")
    empty = np.full((480, 640, 3), 90, np.uint8)
    for i, face in enumerate([None, astronaut, astronaut, astronaut, None, hopper, hopper, None]):
        frame = empty.copy()
        if face is not None:
            face = cv2.resize(face, (300, 300 * face.shape[0] // face.shape[1]))[:400]
            frame[40:40 + face.shape[0], 170:470] = face
        cv2.imwrite(str(folder / f"frame{i:02d}.jpg"), frame)
    cv2.imwrite(str(folder.parent / "enroll.png"), astronaut)
    return folder.parent / "enroll.png"


def proc_memory(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS"), "peak_rss_mb": fields.get("VmHWM")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--embedder", default="facegate-irn")
    args = ap.parse_args(argv)
    facegate = args.venv / "bin" / "facegate"
    row = {"venv": str(args.venv), "embedder": args.embedder, **venv_size(args.venv)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        portrait = write_frames(work / "frames")
        gallery = work / "gallery.db"
        subprocess.run([facegate, "enroll", "eileen", str(portrait), "--gallery", gallery, "--embedder",
                        args.embedder], check=True, capture_output=True)
        config = work / "facegate.toml"
        config.write_text(
            f'[camera]\ntype = "replay"\npath = "{work / "frames"}"\nloop = true\nfps = 10.0\n'
            f'[embedder]\nname = "{args.embedder}"\n[lock]\ntype = "log"\n'
            f'[storage]\ngallery = "{gallery}"\n[daemon]\nwatchdog = false\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FACEGATE"))}
        daemon = subprocess.Popen([facegate, "run", "--config", config], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(args.seconds)
            if daemon.poll() is not None:
                print(json.dumps({**row, "error": daemon.stderr.read()[-800:]}))
                return 1
            mem = proc_memory(daemon.pid)
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
        grants = sum("grant" in line for line in err.splitlines())
        row.update(daemon_seconds=args.seconds, **mem, daemon_exit=daemon.returncode,
                   log_lines_with_a_grant=grants, machine=os.uname().machine, cpus=os.cpu_count(),
                   date=time.strftime("%Y-%m-%d"))
    print(json.dumps(row))
    return 0 if row["daemon_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

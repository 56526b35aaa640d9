"""`facegate doctor`: check each part of an installation and say what to fix."""

from __future__ import annotations

import glob
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config
from ..errors import FacegateError


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


def _run(name: str, fn: Callable[[], tuple[str, str, str] | tuple[str, str]]) -> Check:
    try:
        out = fn()
    except FacegateError as exc:
        return Check(name, "fail", str(exc))
    except Exception as exc:  # doctor reports, it never crashes
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")
    return Check(name, *out)


def diagnose(config_path: Path | None, camera: bool = True) -> list[Check]:
    checks: list[Check] = []
    cfg = Config.default()

    def check_config():
        nonlocal cfg
        if config_path is None:
            return "warn", "no --config given: checking the defaults", "pass --config /etc/facegate/facegate.toml"
        if not Path(config_path).exists():
            return "fail", f"{config_path} does not exist", "copy systemd/facegate.toml there and edit it"
        cfg = Config.load(config_path)
        return "ok", f"{config_path} is valid"

    checks.append(_run("config", check_config))

    state: dict = {}

    def check_model():
        from ..embed import create_embedder

        emb = create_embedder(cfg.embedder.name, threads=1)
        state["model_id"] = emb.model_id
        return "ok", f"{emb.model_id} ({emb.dim}-d, default threshold {emb.thresholds.default:.3f})"

    checks.append(_run("model", check_model))

    def check_detector():
        from ..detect.mtcnn import MtcnnDetector

        MtcnnDetector(min_face_size=cfg.detector.min_face_size)
        return "ok", f"MTCNN, min face {cfg.detector.min_face_size} px"

    checks.append(_run("detector", check_detector))

    def check_gallery():
        from ..gallery import Gallery

        path = Path(cfg.storage.gallery)
        if not path.exists():
            return "warn", f"{path} does not exist yet", f"enroll someone: facegate enroll NAME IMG --gallery {path}"
        with Gallery(path, readonly=True) as g:
            people, ids = len(g), g.model_ids()
        if not people:
            return "warn", f"{path}: nobody enrolled", "facegate enroll NAME IMG"
        if state.get("model_id") and ids and state["model_id"] not in ids:
            return ("fail", f"{path}: templates are from {', '.join(sorted(ids))}, the model is {state['model_id']}",
                    "re-enroll everyone with the configured model, or configure the gallery's model")
        return "ok", f"{path}: {people} people, model {', '.join(sorted(ids))}"

    checks.append(_run("gallery", check_gallery))

    def check_camera():
        from ..camera import create_source

        if not camera:
            return "warn", "skipped (--no-camera)"
        src = create_source(cfg.camera)
        try:
            src.open()
            frame = src.read()
        finally:
            src.close()
        if frame is None:
            return "fail", f"{cfg.camera.type} camera gave no frame", "check the cable / camera.device"
        h, w = frame.image.shape[:2]
        return "ok", f"{cfg.camera.type}: got a {w}x{h} frame"

    checks.append(_run("camera", check_camera))

    def check_gpio():
        if cfg.lock.type == "log":
            return "warn", "lock.type = \"log\": no relay is driven", "set lock.type = \"gpio\" on the door"
        chips = glob.glob("/dev/gpiochip*")
        try:
            import gpiozero  # noqa: F401
        except ImportError:
            return "fail", "gpiozero is not installed", "pip install 'facegate[pi]'"
        if not chips:
            return "fail", "no /dev/gpiochip*: this machine has no GPIO", "use lock.type = \"log\" off the Pi"
        return "ok", f"{', '.join(chips)}; relay on GPIO{cfg.lock.pin}, active_high={cfg.lock.active_high}"

    checks.append(_run("gpio", check_gpio))

    def check_service():
        if not shutil.which("systemctl"):
            return "warn", "systemctl not found: not a systemd machine"
        out = subprocess.run(["systemctl", "is-active", "facegate.service"], capture_output=True, text=True, timeout=5)
        state_ = out.stdout.strip() or out.stderr.strip()
        if state_ == "active":
            return "ok", "facegate.service is active"
        return "warn", f"facegate.service is {state_ or 'unknown'}", "sudo systemctl enable --now facegate"

    checks.append(_run("service", check_service))
    return checks

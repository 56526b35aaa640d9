"""The checks of `facegate doctor`, each a :class:`Check` with the fix a Pi owner needs.

Checks run in order and share what they found (the config, the model id,
the gallery's facts) through one :class:`Doctor`; each is wrapped by
:func:`.report.attempt`, so one broken part never hides the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..cli.defaults import SYSTEM_CONFIG, ConfigChoice, user_gallery
from ..config import Config
from ..errors import ConfigError, GalleryError, GalleryKeyError
from . import clock, devices, unit
from .report import FAIL, OK, WARN, Check

__all__ = ["Doctor", "GalleryFacts"]

log = logging.getLogger(__name__)

EXAMPLE_CONFIG = "/opt/facegate/src/systemd/facegate.toml"


@dataclass(frozen=True)
class GalleryFacts:
    """What the gallery file says, read without its key."""

    people: int
    model_ids: frozenset[str]
    key_id: str | None
    cleartext: int


def read_gallery_facts(path: Path) -> GalleryFacts:
    from ..gallery import schema
    from ..gallery.protection import cleartext_rows, recorded_key_id

    conn = schema.connect(path, readonly=True)
    try:
        people = int(conn.execute("SELECT count(*) FROM people").fetchone()[0])
        ids = frozenset(r[0] for r in conn.execute("SELECT DISTINCT model_id FROM templates"))
        return GalleryFacts(people, ids, recorded_key_id(conn), cleartext_rows(conn))
    finally:
        conn.close()


def _sudo(cmd: str) -> str:
    return cmd if os.geteuid() == 0 else f"sudo {cmd}"


class Doctor:
    """One run of the checks: what is set up (config, unit, devices) against what the door needs."""

    def __init__(self, choice: ConfigChoice, *, camera: bool = True, identity: devices.Identity | None = None,
                 service_identity: devices.Identity | None = None,
                 unit_paths: tuple[Path, ...] | None = None) -> None:
        self.choice = choice
        self.camera = camera
        self.identity = identity
        self.who = identity.name if identity is not None else devices.Identity.current().name
        self.service_identity = service_identity
        self.cfg = Config.default()
        self.model_id: str | None = None
        self.facts: GalleryFacts | None = None
        self.facts_error = False
        #: the config named could not be used: its gallery and key are unknown, not the defaults'
        self.config_failed = False
        self.unit = unit.read_unit(unit_paths)

    @property
    def config_flag(self) -> str:
        return f" --config {self.choice.path}" if self.choice.path is not None else ""

    @property
    def gallery_path(self) -> Path:
        return Path(self.cfg.storage.gallery) if self.choice.path is not None else user_gallery()

    # --- config ----------------------------------------------------------------------
    def check_config(self) -> Check:
        check = self._config()
        self.config_failed = check.status == FAIL
        return check

    def _config(self) -> Check:
        c = self.choice
        if c.unreadable is not None:
            return Check("config", FAIL, f"{c.unreadable} exists but {self.who} cannot read it",
                         "run doctor as root: sudo facegate doctor (the CLI needs sudo for the door's gallery too)")
        if c.path is None:
            return Check("config", WARN, f"no config file: checking the built-in defaults, gallery {user_gallery()}",
                         f"on the door: sudo install -m 0640 -g facegate {EXAMPLE_CONFIG} {SYSTEM_CONFIG}, "
                         "or give --config FILE")
        if not c.path.exists():
            return Check("config", FAIL, f"{c.describe()} does not exist",
                         f"copy the example there: sudo install -m 0640 -g facegate {EXAMPLE_CONFIG} {c.path}")
        try:
            self.cfg = Config.load(c.path)
        except ConfigError as exc:
            return Check("config", FAIL, f"invalid: {' '.join(str(exc).split())}",
                         f"edit the key named above (facegate config check {c.path} says the line; "
                         f"{EXAMPLE_CONFIG} lists every key with its default)")
        msg = f"{c.describe()} is valid; gallery {self.gallery_path}"
        u = self.unit
        if u is not None and u.config is not None and u.config.resolve() != c.path.resolve():
            return Check("config", WARN, f"{msg}, but {u.path} starts the door with {u.config}: "
                         "enroll and the door would use different settings",
                         f"pass --config {u.config}, or set FACEGATE_CONFIG={u.config}")
        return Check("config", OK, msg)

    # --- model and detector ------------------------------------------------------------
    def check_model(self) -> Check:
        from ..embed import create_embedder

        from ..operating_threshold import unsafe_threshold_reason

        emb = create_embedder(self.cfg.embedder.name, threads=1)
        try:
            self.model_id = emb.model_id
            found = f"{emb.model_id} ({emb.dim}-d, default threshold {emb.thresholds.default:.3f})"
            m = self.cfg.match
            unsafe = unsafe_threshold_reason(m.threshold, emb.thresholds)  # what `facegate run` refuses on
            if unsafe is None:
                return Check("model", OK, found)
            where = self.choice.path or "the config"
            if m.allow_unsafe_threshold:
                return Check("model", WARN, f"{found}; {unsafe.split(';')[0]} (allowed by match.allow_unsafe_threshold)",
                             f"measure a threshold for this door: facegate calibrate{self.config_flag}")
            return Check("model", FAIL, f"{found}; {unsafe.split(';')[0]}: facegate run refuses to start",
                         f"remove [match] threshold from {where} (the model's own applies), or set one from "
                         f"facegate calibrate{self.config_flag}")
        finally:
            getattr(emb, "close", lambda: None)()

    def check_detector(self) -> Check:
        from ..detect.mtcnn import MtcnnDetector

        MtcnnDetector(min_face_size=self.cfg.detector.min_face_size)
        return Check("detector", OK, f"MTCNN, min face {self.cfg.detector.min_face_size} px")

    # --- gallery, its model, its key -----------------------------------------------------
    def check_gallery(self) -> Check:
        if self.config_failed:
            self.facts_error = True
            return Check("gallery", WARN, "not checked: the config names it and could not be read (see above)")
        path = self.gallery_path
        enroll = f"{_sudo('facegate enroll')} NAME PHOTO.jpg{self.config_flag}"
        if str(path) == ":memory:":
            return Check("gallery", WARN, "[storage] gallery = \":memory:\": forgotten at every restart",
                         "set [storage] gallery to a file, such as /var/lib/facegate/gallery.db")
        try:
            exists = path.exists()
            if exists:
                with open(path, "rb"):
                    pass
        except PermissionError:
            return Check("gallery", WARN, f"{path}: {self.who} cannot read it", "run doctor with sudo")
        if not exists:
            return Check("gallery", WARN, f"{path} does not exist yet: the door grants no one",
                         f"enroll the household: {enroll}")
        try:
            self.facts = facts = read_gallery_facts(path)
        except GalleryError as exc:
            self.facts_error = True
            return Check("gallery", FAIL, " ".join(str(exc).split()),
                         "follow the message; a damaged file: move it aside and restore your backup "
                         f"({_sudo('facegate gallery import FILE')}{self.config_flag})")
        models = ", ".join(sorted(facts.model_ids)) or "-"
        if not facts.people:
            return Check("gallery", WARN, f"{path}: nobody enrolled, the door grants no one",
                         f"enroll the household: {enroll}")
        if self.model_id and facts.model_ids and self.model_id not in facts.model_ids:
            return Check("gallery", FAIL,
                         f"{path}: the templates are from model {models}, the config's embedder "
                         f"({self.cfg.embedder.name}) is {self.model_id}: nobody would match",
                         f"enroll everyone again with the configured model ({enroll}), or set [embedder] name "
                         "back to the model the gallery was made with")
        return Check("gallery", OK, f"{path}: {facts.people} people, model {models}")

    def check_key(self) -> Check:
        from ..gallery.keys import default_key_path, find_key, load_key

        problems: list[tuple[str, str]] = []
        notes: list[str] = []
        facts = self.facts
        recorded = facts.key_id if facts is not None else None
        u = self.unit
        if u is not None and u.key_source is not None:
            src = u.key_source
            try:
                present = src.exists() if u.key_encrypted else src.is_file()
                if not present:
                    fix = (f"put the key the gallery was sealed with ({recorded}) there: {_sudo('install -m 0600')} "
                           f"KEYFILE {src}" if recorded else
                           f"create one: {_sudo(f'facegate gallery newkey {src}')}")
                    problems.append((f"{u.path} loads the credential from {src}, which does not exist: systemd "
                                     + "will not start the service (status 243/CREDENTIALS)", fix))
                elif recorded and not u.key_encrypted:
                    got = load_key(src, check_mode=False).key_id
                    if got != recorded:
                        problems.append((f"the service would get key {got} from {src}, but the gallery is "
                                         + f"sealed with {recorded}", f"put the gallery's key back at {src}"))
                    else:
                        notes.append(f"the service gets it from {src}")
                else:
                    notes.append(f"the service gets it from {src}")
            except PermissionError:
                notes.append(f"cannot read the service's credential source {src} as {self.who} (run with sudo)")
        if facts is None and self.facts_error:
            return Check("key", WARN, "not checked: the gallery was not read (see above)")
        if facts is None:
            if problems:
                return Check("key", FAIL, *problems[0])
            return Check("key", OK if not notes else WARN, "; ".join(notes) or "no gallery yet: the key is created "
                         "at the first enrollment")
        key_file = self.cfg.storage.key_file if self.choice.path is not None else None
        where = Path(key_file) if key_file is not None else default_key_path(self.gallery_path)
        if recorded is None:
            if facts.cleartext:
                return Check("key", WARN, f"{facts.cleartext} template(s) stored in clear text",
                             f"seal them: {_sudo('facegate gallery encrypt')}{self.config_flag}")
            if problems:
                return Check("key", FAIL, *problems[0])
            return Check("key", OK, "nothing sealed yet")
        try:
            key = find_key(self.gallery_path, key_file)
        except GalleryKeyError as exc:
            text = " ".join(str(exc).split())
            if "Permission denied" in text and os.geteuid() != 0:
                return Check("key", WARN, f"{self.who} cannot read the key: {text}", "run doctor with sudo")
            fix = text.split("run: ", 1)[1] if "run: " in text else f"restore the key file {where} from your backup"
            return Check("key", FAIL, text, fix)
        except PermissionError:
            return Check("key", WARN, f"cannot read {where} as {self.who}", "run doctor with sudo")
        if key is None:
            return Check("key", FAIL, f"the templates are sealed with key {recorded}, and there is no key file at "
                         f"{where}: the CLI cannot read the gallery",
                         f"restore {where} from your backup (chmod 600), or import a passphrase backup "
                         f"({_sudo('facegate gallery import FILE')}{self.config_flag}); without either, enroll "
                         "everyone again")
        if key.key_id != recorded:
            return Check("key", FAIL, f"{key.origin} is key {key.key_id}, but the gallery is sealed with {recorded}",
                         f"put the gallery's own key back at {where} (from your backup)")
        if problems:
            return Check("key", FAIL, *problems[0])
        return Check("key", OK, "; ".join([f"templates sealed with key {recorded}, found in {key.origin}", *notes]))

    # --- devices -------------------------------------------------------------------------
    def check_camera(self) -> Check:
        cam = self.cfg.camera
        if cam.type == "replay":
            return Check("camera", WARN, f"camera.type = \"replay\": frames from {cam.path}, not a camera",
                         "on the door set [camera] type = \"picamera2\" (or \"opencv\")")
        nodes = devices.devices(devices.CAMERA_GLOBS)
        denied = {n: p for n in nodes if (p := devices.access_problem(n, self.identity))}
        if nodes and len(denied) == len(nodes):
            node = nodes[0]
            group = devices.group_of(node)
            return Check("camera", FAIL, f"{self.who} cannot open the camera: {denied[node]}",
                         f"sudo usermod -aG {group} {self.who}, then log out and in (the service gets it from "
                         f"SupplementaryGroups=video)")
        holders = devices.device_holders(nodes)
        if holders and all(h.command == "facegate" for h in holders):
            return Check("camera", WARN, f"the door service has it ({holders[0]}): not opened a second time",
                         "to test the camera alone: sudo systemctl stop facegate, run doctor, then start it again")
        if not self.camera:
            busy = f"; {holders[0]}" if holders else ""
            return Check("camera", WARN, f"not opened (--no-camera){busy}")
        from ..camera import create_source

        error = ""
        frame = None
        src = create_source(cam)
        try:
            src.open()
            frame = src.read()
        except Exception as exc:  # noqa: BLE001 - any backend's failure to open is this check's finding
            error = " ".join(str(exc).split()) or type(exc).__name__
        finally:
            try:
                src.close()
            except Exception:
                log.debug("closing the camera failed", exc_info=True)
        if frame is not None:
            h, w = frame.image.shape[:2]
            return Check("camera", OK, f"{cam.type}: got a {w}x{h} frame")
        what = error or f"{cam.type} camera gave no frame"
        if holders:
            others = "; ".join(str(h) for h in holders[:3])
            service = any("facegate" in h.command or "python" in h.command for h in holders)
            stop = "sudo systemctl stop facegate (the door service holds it), then" if service else \
                f"stop it (kill {holders[0].pid}, or close rpicam-*/libcamera apps), then"
            return Check("camera", FAIL, f"camera busy: {others} ({what})",
                         f"{stop} run doctor again; one program at a time can use the camera")
        if "busy" in what.lower():
            return Check("camera", FAIL, f"camera busy: {what}",
                         "another program holds it: sudo facegate doctor lists which; stop rpicam-* apps or "
                         "sudo systemctl stop facegate")
        from ..camera import CAMERA_FIX

        return Check("camera", FAIL, what, CAMERA_FIX)

    def check_gpio(self) -> Check:
        lock = self.cfg.lock
        if lock.type == "log":
            return Check("gpio", WARN, "lock.type = \"log\": no relay is driven", "set lock.type = \"gpio\" on the door")
        try:
            import gpiozero  # noqa: F401
        except ImportError:
            return Check("gpio", FAIL, "gpiozero is not installed", "pip install 'facegate[pi]' (and apt's python3-lgpio)")
        chips = sorted(devices.devices([devices.GPIO_GLOB]))
        if not chips:
            return Check("gpio", FAIL, f"no {devices.GPIO_GLOB}: this machine has no GPIO",
                         "use lock.type = \"log\" off the Pi")
        denied = {c: p for c in chips if (p := devices.access_problem(c, self.identity))}
        if len(denied) == len(chips):
            group = devices.group_of(chips[0])
            return Check("gpio", FAIL, f"{self.who} cannot open the GPIO chip: {denied[chips[0]]}",
                         f"sudo usermod -aG {group} {self.who}, then log out and in (the service gets it from "
                         "SupplementaryGroups=gpio)")
        service = self.service_identity
        if service is None and (self.identity is None and os.geteuid() == 0):
            service = devices.Identity.service()
        if service is not None and all(devices.access_problem(c, service) for c in chips):
            return Check("gpio", FAIL, f"the service user {service.name} (groups video gpio) cannot open "
                         f"{devices.access_problem(chips[0], service)}",
                         "give the chips to group gpio: a udev rule SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip*\", "
                         "GROUP=\"gpio\", MODE=\"0660\" in /etc/udev/rules.d/60-gpio.rules (sudo groupadd -r gpio "
                         "first if it is missing), then sudo udevadm trigger")
        return Check("gpio", OK, f"{', '.join(chips)}; relay on GPIO{lock.pin}, active_high={lock.active_high}")

    # --- clock and service ---------------------------------------------------------------
    def check_clock(self) -> Check:
        state = clock.clock_state()
        if state.synchronised is None:
            return Check("clock", WARN, "synchronisation unknown (no timedatectl, no adjtimex)",
                         "check the time by hand: the audit log's times come from this clock")
        if state.synchronised:
            return Check("clock", OK, f"synchronised ({state.source})")
        fix = ("turn NTP on: sudo timedatectl set-ntp true" if state.ntp_enabled is False else
               "the NTP client has not reached a server yet: check the network (timedatectl timesync-status)")
        return Check("clock", FAIL, f"not synchronised ({state.source}): audit times and TLS certificate checks "
                     "go wrong", fix + "; a Pi keeps no time while off unless an RTC battery is fitted (Pi 5)")

    def check_service(self) -> Check:
        if not shutil.which("systemctl"):
            return Check("service", WARN, "systemctl not found: not a systemd machine")
        out = subprocess.run(["systemctl", "is-active", "facegate.service"], capture_output=True, text=True,
                             timeout=5, check=False)
        state = out.stdout.strip()
        if not state:
            return Check("service", WARN, "systemd is not running here: cannot ask about facegate.service")
        if state == "active":
            return Check("service", OK, "facegate.service is active")
        return Check("service", WARN, f"facegate.service is {state or 'unknown'}", "sudo systemctl enable --now facegate")

    def checks(self):
        """(name, check) in the order they run: later ones use what earlier ones found."""
        return [("config", self.check_config), ("model", self.check_model), ("detector", self.check_detector),
                ("gallery", self.check_gallery), ("key", self.check_key), ("camera", self.check_camera),
                ("gpio", self.check_gpio), ("clock", self.check_clock), ("service", self.check_service)]

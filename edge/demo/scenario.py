"""Synthetic camera footage for the demo: portraits walking up to a doorway.

The demo and tests need a door camera's view without a camera or anyone's
photos: the public-domain portraits of :mod:`facegate.edge.samples` are cut
out around the head, pasted into a synthetic doorway and degraded the way a
cheap camera degrades frames (blur, noise, exposure, JPEG). Everything comes
from one seeded numpy Generator, so a seed always gives the same pixels and a
failing run can be replayed. Only numpy and OpenCV are used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..eval.samples import sample_portrait

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "HEAD_CROPS",
    "PEOPLE",
    "HeadCrop",
    "ScenarioFrame",
    "Segment",
    "Shot",
    "build_demo_scenario",
    "doorway_background",
    "iter_shots",
    "render_shot",
    "render_shots",
    "scenario_summary",
    "write_scenario",
]

FRAME_WIDTH = 640
FRAME_HEIGHT = 480

#: Portrait name -> the person shown, for timelines and reports.
PEOPLE = {"astronaut": "Eileen Collins", "grace_hopper": "Grace Hopper"}


@dataclass(frozen=True)
class HeadCrop:
    """Where the head is in a portrait, in the portrait's own pixels.

    ``rect`` (x, y, w, h) is the region cut out; ``face_box`` (x1, y1, x2, y2)
    is the face as the MTCNN detector boxes it, so a wanted face size in the
    frame translates into a scale; ``ellipses`` (cx, cy, half-width,
    half-height) outline head and shoulders: their feathered union is the
    paste mask, so no rectangular portrait edge ends up in the frame.
    """

    rect: tuple[int, int, int, int]
    face_box: tuple[int, int, int, int]
    ellipses: tuple[tuple[float, float, float, float], ...]

    @property
    def face_centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.face_box
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def face_height(self) -> float:
        return float(self.face_box[3] - self.face_box[1])


#: Found once, offline: ``MtcnnDetector(min_face_size=40).detect(sample_portrait(name))``
#: gave one face each, astronaut (512x512) box (181, 58, 268, 175), score 0.999,
#: grace_hopper (512x600) box (175, 118, 355, 344), score 1.0 (rounded). The
#: rectangles and ellipses around them were then drawn by eye on the portraits
#: to take in hair / cap, neck and shoulders but little of the flags behind,
#: with the rectangle a feather's width outside the ellipses.
HEAD_CROPS: dict[str, HeadCrop] = {
    "astronaut": HeadCrop(
        rect=(100, 0, 250, 335),
        face_box=(181, 58, 268, 175),
        ellipses=((225.0, 112.0, 73.0, 96.0), (225.0, 255.0, 105.0, 60.0)),
    ),
    "grace_hopper": HeadCrop(
        rect=(55, 0, 415, 575),
        face_box=(175, 118, 355, 344),
        ellipses=((263.0, 185.0, 116.0, 166.0), (263.0, 440.0, 185.0, 110.0)),
    ),
}


@dataclass(frozen=True)
class Shot:
    """A stretch of frames and the per-frame variation drawn for each of them.

    Ranges are (low, high) and drawn uniformly per frame, except ``face_px``
    with ``approach``: then the face grows from low to high over the shot, as
    someone walking up to the door. ``who`` None is an empty doorway.
    ``forced`` marks a deliberately unusable stretch ("dark", "blurred") that
    the quality gate must skip; it overrides lighting or blur.
    """

    who: str | None
    frames: int
    note: str = ""
    face_px: tuple[float, float] = (110.0, 170.0)  # face box height in frame pixels
    approach: bool = False
    centre: tuple[float, float] = (320.0, 200.0)  # face centre in the frame when standing
    jitter_px: float = 8.0  # per-frame sway of the face centre (standard deviation)
    roll_deg: float = 8.0  # in-plane head tilt, uniform in +-roll_deg
    blur_sigma: tuple[float, float] = (0.0, 1.5)  # Gaussian blur: focus, slight movement
    motion_blur_p: float = 0.08  # chance of a motion-blurred frame
    noise_sigma: tuple[float, float] = (1.0, 3.5)  # sensor noise, grey levels
    gain: tuple[float, float] = (0.8, 1.15)  # exposure
    gamma: tuple[float, float] = (0.85, 1.2)
    dark_p: float = 0.0  # chance of an under-exposed frame
    jpeg_quality: tuple[int, int] = (40, 90)
    dropout_p: float = 0.0  # chance the person is out of view (empty frame)
    behind: str | None = None  # a second person further back (smaller face)
    behind_face_px: tuple[float, float] = (80.0, 95.0)
    behind_centre: tuple[float, float] = (470.0, 170.0)
    forced: str = ""  # "", "dark" or "blurred"

    def __post_init__(self) -> None:
        if self.frames < 0:
            raise ValueError(f"frames must be >= 0, got {self.frames}")
        for name in (self.who, self.behind):
            if name is not None and name not in HEAD_CROPS:
                raise ValueError(f"unknown portrait {name!r}; known: {', '.join(HEAD_CROPS)}")
        if self.behind is not None and self.who is None:
            raise ValueError("a person behind needs someone in front")
        if self.forced not in ("", "dark", "blurred"):
            raise ValueError(f"forced must be '', 'dark' or 'blurred', got {self.forced!r}")


#: The brief's other name for a shot.
Segment = Shot


@dataclass(frozen=True)
class ScenarioFrame:
    """One synthetic camera frame and what is really in it.

    ``truth`` is the person the door should judge (the largest face), None
    when no face is in view; ``people`` lists everyone visible, largest face
    first; ``condition`` is "dark", "blurred", "motion" (a motion-blurred
    frame of a normal shot) or ""; ``shot`` indexes the shot it came from.
    """

    image: np.ndarray
    truth: str | None
    note: str
    people: tuple[str, ...] = ()
    condition: str = ""
    shot: int = 0
    face_px: tuple[float, ...] = field(default=())  # rendered face heights, as ``people``


def doorway_background(rng: np.random.Generator, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT) -> np.ndarray:
    """A plain doorway (wall, frame, door, floor) as BGR uint8, with no faces.

    Drawn once per scenario and reused, as a fixed camera sees the same door;
    the colours move a little with the seed.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wall = np.array([178, 196, 208], np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
    light = 1.05 - 0.25 * (yy / height) - 0.10 * np.abs(xx / width - 0.45)  # a ceiling lamp's falloff
    img = wall[None, None, :] * light[..., None]

    floor_y = int(height * 0.86)
    floor = np.array([92, 110, 128], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    img[floor_y:] = floor * (0.85 + 0.15 * (yy[floor_y:, :, None] - floor_y) / (height - floor_y))

    # Door frame and door, slightly off-centre like a real mounting.
    x1, x2, top = int(width * 0.27), int(width * 0.73), int(height * 0.06)
    trim = np.array([215, 222, 226], np.float32)
    img[top:floor_y, x1 - 16:x2 + 16] = trim
    img[top:floor_y, x1 - 16:x1 - 12] *= 0.8
    img[top:floor_y, x2 + 12:x2 + 16] *= 0.8
    door = np.array([60, 92, 128], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)
    shade = 0.9 + 0.2 * (xx[top + 8:floor_y, x1:x2] - x1) / (x2 - x1)
    img[top + 8:floor_y, x1:x2] = door * shade[..., None]
    # Recessed panels and a handle.
    pw = (x2 - x1 - 60) // 2
    for px in (x1 + 20, x1 + 40 + pw):
        for py, ph in ((top + 40, 150), (top + 220, 150)):
            img[py:py + ph, px:px + pw] *= 0.86
            img[py:py + 3, px:px + pw] *= 0.8
    img[int(height * 0.5):int(height * 0.5) + 26, x2 - 34:x2 - 24] = (150, 160, 170)
    # Light switch and a small notice on the wall.
    img[200:236, 70:94] = (225, 230, 232)
    img[250:330, width - 110:width - 50] = (200, 215, 224)
    img[262:268, width - 100:width - 60] = (120, 120, 120)
    img += rng.normal(0.0, 1.5, img.shape).astype(np.float32)  # plaster texture
    return np.clip(img, 0, 255).astype(np.uint8)


@lru_cache(maxsize=None)
def _cutout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The head crop (float32 BGR) and its feathered 0..1 mask, per portrait."""
    spec = HEAD_CROPS[name]
    x, y, w, h = spec.rect
    crop = sample_portrait(name)[y:y + h, x:x + w].astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    for cx, cy, ax, ay in spec.ellipses:
        cv2.ellipse(mask, (round(cx - x), round(cy - y)), (round(ax), round(ay)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * min(w, h))  # soft edge: no cut-out seam
    crop.setflags(write=False)
    mask.setflags(write=False)
    return crop, mask


def _paste(canvas: np.ndarray, name: str, face_px: float, centre: tuple[float, float], roll: float) -> None:
    """Blend one person into ``canvas`` (float32, in place): face ``face_px`` tall at ``centre``."""
    spec = HEAD_CROPS[name]
    crop, mask = _cutout(name)
    scale = face_px / spec.face_height
    h, w = crop.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC  # no aliasing when shrinking
    patch = cv2.resize(crop, size, interpolation=interp)
    pmask = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
    sx, sy = size[0] / w, size[1] / h
    fx, fy = spec.face_centre
    fc = ((fx - spec.rect[0]) * sx, (fy - spec.rect[1]) * sy)
    matrix = cv2.getRotationMatrix2D(fc, roll, 1.0)  # about the face, as a head tilts
    matrix[:, 2] += (centre[0] - fc[0], centre[1] - fc[1])
    dsize = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpAffine(patch, matrix, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(pmask, matrix, dsize, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    canvas *= 1.0 - alpha
    canvas += warped * alpha


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line kernel: the smear of a head moving during exposure."""
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return k / max(float(k.sum()), 1e-6)


def _camera(img: np.ndarray, shot: Shot, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Exposure, blur, sensor noise and JPEG on one float32 frame -> uint8, condition."""
    condition = ""
    dark = shot.forced == "dark" or rng.random() < shot.dark_p
    if dark:  # a dim hallway at night: the auto-exposure gives up
        gain, gamma = rng.uniform(0.22, 0.28), rng.uniform(1.2, 1.3)
        condition = "dark"
    else:
        gain, gamma = rng.uniform(*shot.gain), rng.uniform(*shot.gamma)
    tint = rng.uniform(0.95, 1.05, 3)  # white balance drift
    # Exposure as a per-channel lookup table: cheap on uint8, same result.
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    lut = 255.0 * np.clip(levels * gain * tint[None, :], 0.0, 1.0) ** gamma
    frame = cv2.LUT(np.clip(img + 0.5, 0, 255).astype(np.uint8), np.round(lut).astype(np.uint8)[:, None, :])

    quality = int(rng.integers(shot.jpeg_quality[0], shot.jpeg_quality[1] + 1))
    noise = rng.uniform(*shot.noise_sigma)
    if shot.forced == "blurred":  # a fogged or misfocused lens, sometimes someone hurrying past
        frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(4.5, 5.5))
        if rng.random() < 0.5:  # a motion smear alone would not do: it keeps the edges along it
            frame = cv2.filter2D(frame, -1, _motion_kernel(int(rng.integers(9, 16)), rng.uniform(0, 180)))
        condition = "blurred"
        # Sensor noise and JPEG blocking would pass for detail in the Laplacian
        # sharpness measure; keep both low so the frame is unusable as meant.
        noise, quality = min(noise, 1.0), max(quality, 80)
    else:
        sigma = rng.uniform(*shot.blur_sigma)
        if sigma > 0.2:
            frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        if rng.random() < shot.motion_blur_p:
            frame = cv2.filter2D(frame, -1, _motion_kernel(int(rng.integers(5, 10)), rng.uniform(0, 180)))
            condition = condition or "motion"

    grain = rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(noise)
    frame = np.clip(frame + grain + np.float32(0.5), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), condition


def render_shot(shot: Shot, background: np.ndarray, rng: np.random.Generator, index: int = 0) -> list[ScenarioFrame]:
    """The frames of one shot over ``background``; ``index`` is the shot's number."""
    return list(iter_shot(shot, background, rng, index))


def iter_shot(shot: Shot, background: np.ndarray, rng: np.random.Generator, index: int = 0) -> Iterator[ScenarioFrame]:
    """The frames of one shot, rendered one at a time (the demo keeps only the newest in memory)."""
    for i in range(shot.frames):
        canvas = background.astype(np.float32)
        people: list[tuple[float, str]] = []
        t = i / max(shot.frames - 1, 1)
        if shot.who is not None and not rng.random() < shot.dropout_p:
            if shot.behind is not None:  # drawn first: the front person covers them
                px = rng.uniform(*shot.behind_face_px)
                c = (shot.behind_centre[0] + rng.normal(0, shot.jitter_px / 2),
                     shot.behind_centre[1] + rng.normal(0, shot.jitter_px / 2))
                _paste(canvas, shot.behind, px, c, rng.uniform(-shot.roll_deg, shot.roll_deg))
                people.append((px, shot.behind))
            lo, hi = shot.face_px
            if shot.approach:  # walking up: bigger and a little higher in frame each step
                px = lo + (hi - lo) * t + rng.normal(0, 2.0)
                cx, cy = shot.centre[0] + 40.0 * (1 - t), shot.centre[1] + 25.0 * (1 - t)
            else:
                px = rng.uniform(lo, hi)
                cx, cy = shot.centre
            c = (cx + rng.normal(0, shot.jitter_px), cy + rng.normal(0, shot.jitter_px))
            _paste(canvas, shot.who, px, c, rng.uniform(-shot.roll_deg, shot.roll_deg))
            people.append((px, shot.who))
        image, condition = _camera(canvas, shot, rng)
        if not people and condition == "motion":
            condition = ""  # a smeared empty doorway is just an empty doorway
        people.sort(reverse=True)
        names = tuple(name for _, name in people)
        yield ScenarioFrame(
            image=image,
            truth=names[0] if names else None,
            note=shot.note if names or shot.who is None else f"{shot.note} (out of view)",
            people=names,
            condition=condition,
            shot=index,
            face_px=tuple(round(px, 1) for px, _ in people),
        )


def render_shots(shots: list[Shot], seed: int = 0) -> list[ScenarioFrame]:
    """Render a whole scenario: one background, one Generator, shots in order."""
    return list(iter_shots(shots, seed))


def iter_shots(shots: list[Shot], seed: int = 0) -> Iterator[ScenarioFrame]:
    """:func:`render_shots` one frame at a time: the same pixels, one frame in memory."""
    rng = np.random.default_rng(seed)
    background = doorway_background(rng)
    for k, shot in enumerate(shots):
        yield from iter_shot(shot, background, rng, index=k)


def demo_shots() -> list[Shot]:
    """The demo's story, 130 frames; the notes say what the door should do."""
    eileen, grace = "astronaut", "grace_hopper"
    return [
        Shot(None, 10, "empty doorway"),
        Shot(eileen, 10, "Eileen walks up", face_px=(95.0, 140.0), approach=True),
        Shot(eileen, 15, "Eileen at the door: grant once", face_px=(135.0, 170.0)),
        Shot(None, 15, "empty: Eileen has left"),
        Shot(grace, 10, "stranger (Grace Hopper) walks up", face_px=(95.0, 140.0), approach=True),
        Shot(grace, 15, "stranger at the door: deny", face_px=(130.0, 165.0), dropout_p=0.1),
        Shot(None, 12, "empty"),
        Shot(eileen, 20, "Eileen again: second grant after absence", face_px=(115.0, 165.0)),
        Shot(grace, 6, "stranger in front, Eileen behind: judge the largest, no grant",
             face_px=(165.0, 185.0), centre=(260.0, 215.0), behind=eileen),
        Shot(eileen, 4, "Eileen, too dark: quality gate skips", face_px=(130.0, 160.0), forced="dark"),
        Shot(eileen, 4, "Eileen, blurred: quality gate skips", face_px=(130.0, 160.0), forced="blurred"),
        Shot(None, 9, "empty doorway"),
    ]


def build_demo_scenario(seed: int = 0) -> list[ScenarioFrame]:
    """The scenario ``facegate demo`` plays: visits, a stranger, a crowd, bad frames."""
    return render_shots(demo_shots(), seed=seed)


def scenario_summary(frames: list[ScenarioFrame]) -> list[tuple[int, int, str | None, str]]:
    """(first, last frame index inclusive, truth, note) per shot, for a timeline.

    Grouped by shot, so a frame or two out of view does not split a visit;
    ``truth`` is the shot's most frequent truth.
    """
    out: list[tuple[int, int, str | None, str]] = []
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i].shot != frames[start].shot:
            truths = [f.truth for f in frames[start:i]]
            truth = max(dict.fromkeys(truths), key=truths.count)  # first seen wins ties
            note = frames[start].note.removesuffix(" (out of view)")
            out.append((start, i - 1, truth, note))
            start = i
    return out


def write_scenario(frames: list[ScenarioFrame], folder: str | Path, quality: int = 95) -> list[Path]:
    """Numbered JPEGs (000000.jpg, ...) that a ``ReplaySource`` plays in order.

    The frames already carry their JPEG artefacts; ``quality`` only controls
    how much more the file copy adds.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"{i:06d}.jpg"
        if not cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths

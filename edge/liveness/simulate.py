"""Presentation attacks made from a photo, for the liveness benchmark and tests.

A pinhole camera (640x480, 62 degree field of view) looks at a *card* (a
printed photo or a phone showing one) held in front of a synthetic doorway.
The card is a rectangle in 3D, flat or bent into a cylinder (rendered as
vertical strips, each a plane), posed per frame by a species' trajectory and
drawn with OpenCV's perspective warp; the frame then gets a camera's blur,
noise and JPEG. A phone's screen is drawn at its own resolution with an RGB
stripe pixel grid and integrated over each camera pixel (4x supersampled,
area-averaged), which is where a real camera's moire comes from.

This models geometry faithfully and screens approximately: it is a test
bench for the checks, not a substitute for attacks filmed with a real camera.
Real heads cannot be made from photos; genuine sequences come from elsewhere
(see benchmarks/liveness.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SPECIES", "Card", "Pose", "camera_degrade", "make_card", "render_card", "species_poses"]

WIDTH, HEIGHT = 640, 480
FOV_DEGREES = 62.0
FOCAL = (WIDTH / 2) / math.tan(math.radians(FOV_DEGREES) / 2)
SPECIES = ("print_still", "print_moved", "print_bent", "phone_replay")


@dataclass(frozen=True)
class Card:
    """A picture on a physical rectangle: ``image`` (BGR) spans ``width_cm``.

    ``bend_radius_cm`` bends it about its vertical axis (positive: the edges
    toward the camera, the middle bowed away; negative: the middle toward the
    camera; None: flat).
    ``screen`` draws it as an emissive pixel grid of ``screen_px`` pixels across.
    """

    image: np.ndarray
    width_cm: float
    bend_radius_cm: float | None = None
    screen: bool = False
    screen_px: int = 720


@dataclass(frozen=True)
class Pose:
    yaw: float  # degrees
    pitch: float
    roll: float
    x: float  # card centre, cm, camera frame (x right, y down, z forward)
    y: float
    z: float


def _rotation(p: Pose) -> np.ndarray:
    y, x, r = (math.radians(a) for a in (p.yaw, p.pitch, p.roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def make_card(photo: np.ndarray, species: str, rng: np.random.Generator) -> Card:
    """The card a species presents: a life-size print with a white border, or a phone showing the face."""
    h, w = photo.shape[:2]
    if species == "phone_replay":
        # the face zoomed to fill the screen, as an attacker would show it
        side = int(min(h, w) * 0.62)
        y0, x0 = (h - side) // 2, (w - side) // 2
        shown = photo[y0:y0 + side, x0:x0 + side]
        screen_px = 720
        shown = cv2.resize(shown, (screen_px, screen_px), interpolation=cv2.INTER_CUBIC)
        return Card(shown, width_cm=6.5, screen=True, screen_px=screen_px)
    border = max(4, w // 25)
    printed = cv2.copyMakeBorder(photo, border, border, border, border, cv2.BORDER_CONSTANT, value=(235, 238, 240))
    width = float(rng.uniform(30.0, 36.0))  # the face about life size
    bend = None
    if species == "print_bent":
        bend = float(rng.uniform(7.0, 14.0)) * (1 if rng.random() < 0.6 else -1)
    return Card(printed, width_cm=width, bend_radius_cm=bend)


def species_poses(species: str, frames: int, rng: np.random.Generator, fps: float = 10.0) -> list[Pose]:
    """A hand's trajectory for ``frames`` frames: smooth sweeps plus tremor."""
    t = np.arange(frames) / fps
    z0 = 20.0 if species == "phone_replay" else float(rng.uniform(45.0, 55.0))

    def sweep(amp: float, period: tuple[float, float]) -> np.ndarray:
        return amp * np.sin(2 * np.pi * t / rng.uniform(*period) + rng.uniform(0, 2 * np.pi))

    def tremor(sd: float) -> np.ndarray:
        walk = np.cumsum(rng.normal(0, sd, frames))
        return walk - walk.mean()

    if species == "print_still":
        yaw, pitch, roll = tremor(0.3), tremor(0.3), tremor(0.2)
        x, y, z = tremor(0.05), tremor(0.05), tremor(0.1)
    else:
        big = 1.0 if species != "phone_replay" else 0.7
        yaw = sweep(rng.uniform(10, 25) * big, (2.0, 4.0)) + tremor(0.3)
        pitch = sweep(rng.uniform(5, 15) * big, (2.5, 5.0)) + tremor(0.3)
        roll = sweep(rng.uniform(2, 8), (3.0, 6.0)) + tremor(0.2)
        x = sweep(rng.uniform(3, 8) * big, (2.0, 4.0)) + tremor(0.05)
        y = sweep(rng.uniform(1, 4) * big, (2.5, 5.0)) + tremor(0.05)
        z = sweep(rng.uniform(2, 6) * big, (3.0, 6.0)) + tremor(0.1)
    return [Pose(float(a), float(b), float(c), float(d), float(e) - 2.0, z0 + float(f))
            for a, b, c, d, e, f in zip(yaw, pitch, roll, x, y, z)]


def _strip_corners(card: Card, u0: float, u1: float) -> np.ndarray:
    """3D corners (4, 3) of the card's strip between horizontal positions u0..u1 (cm from the centre)."""
    h_cm = card.width_cm * card.image.shape[0] / card.image.shape[1]
    pts = []
    for u, v in ((u0, -h_cm / 2), (u1, -h_cm / 2), (u1, h_cm / 2), (u0, h_cm / 2)):
        if card.bend_radius_cm is None:
            pts.append((u, v, 0.0))
        else:  # arc length u on a cylinder; z grows away from the camera
            r = card.bend_radius_cm
            pts.append((r * math.sin(u / r), v, -r * (1 - math.cos(u / r))))
    return np.array(pts)


def _screen_texture(card: Card, supersample: int) -> np.ndarray:
    """The phone's screen at subpixel resolution (float32): each pixel three R, G, B stripes over dark gaps.

    Lit subpixels cover 2/9 of each pixel's cell, so the texture is scaled by
    4.5 (linear light, before the camera integrates it): the screen keeps the
    photo's mean brightness, as a camera's auto-exposure would see to.
    """
    img = 30.0 + card.image.astype(np.float32) * (225.0 / 255.0) * np.array([1.0, 0.97, 0.92], np.float32)
    big = np.repeat(np.repeat(img, 3, axis=0), 3, axis=1)  # 3x3 cells per pixel
    mask = np.full((3, 3, 3), 0.05, np.float32)  # crosstalk: the camera's colour filters overlap
    for c, ch in enumerate((2, 1, 0)):  # R, G, B stripes left to right (BGR channels)
        mask[:2, c, ch] = 1.0  # bottom row: the gap between pixel rows
    tiled = np.tile(mask, (card.image.shape[0], card.image.shape[1], 1))
    return big * tiled * (1.0 / float(mask.mean(axis=(0, 1))[0]))


def render_card(background: np.ndarray, card: Card, pose: Pose, supersample: int = 1) -> np.ndarray:
    """The frame a camera sees: ``background`` with the card drawn at ``pose`` (BGR uint8)."""
    s = supersample if card.screen else 1
    out_w, out_h = WIDTH * s, HEIGHT * s
    canvas = (cv2.resize(background, (out_w, out_h), interpolation=cv2.INTER_NEAREST).astype(np.float32)
              if s > 1 else background.copy())
    tex = _screen_texture(card, s) if card.screen else card.image
    th, tw = tex.shape[:2]
    rot = _rotation(pose)
    centre = np.array([pose.x, pose.y, pose.z])
    strips = 1 if card.bend_radius_cm is None else 24
    half = card.width_cm / 2
    if card.screen:  # the phone's black bezel, a little larger than the screen
        bezel = Card(np.zeros((8, 8, 3), np.uint8), card.width_cm * 1.12)
        _draw(canvas, np.zeros((int(th * 1.12), int(tw * 1.12), 3), np.float32), bezel, rot, centre, s, -half * 1.12,
              half * 1.12, 0, 1)
    for k in range(strips):
        u0 = -half + 2 * half * k / strips
        u1 = -half + 2 * half * (k + 1) / strips
        _draw(canvas, tex, card, rot, centre, s, u0, u1, k / strips, (k + 1) / strips)
    if s > 1:
        canvas = cv2.resize(canvas, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)  # pixel integration
        canvas = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return canvas


def _draw(canvas, tex, card, rot, centre, s, u0, u1, f0, f1) -> None:
    th, tw = tex.shape[:2]
    corners3d = _strip_corners(card, u0, u1) @ rot.T + centre
    if np.any(corners3d[:, 2] <= 1.0):
        return
    img_pts = np.stack([FOCAL * corners3d[:, 0] / corners3d[:, 2] + WIDTH / 2,
                        FOCAL * corners3d[:, 1] / corners3d[:, 2] + HEIGHT / 2], axis=-1) * s
    x0, x1 = f0 * tw, f1 * tw
    src = np.array([[x0, 0], [x1, 0], [x1, th], [x0, th]], np.float32)
    m = cv2.getPerspectiveTransform(src, img_pts.astype(np.float32))
    size = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpPerspective(tex, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpPerspective(np.full((th, tw), 255, np.uint8), m, size, flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT)
    # only the strip's own columns of the texture
    xs = np.array([[x0, 0], [x1, 0], [x1, th], [x0, th]], np.float32)
    poly = cv2.perspectiveTransform(xs[None], m)[0]
    strip = np.zeros(alpha.shape, np.uint8)
    cv2.fillConvexPoly(strip, np.round(poly).astype(np.int32), 255)
    keep = (alpha > 0) & (strip > 0)
    canvas[keep] = warped[keep]


def camera_degrade(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap camera: lens blur, sensor noise, JPEG."""
    sigma = rng.uniform(0.4, 0.9)
    out = cv2.GaussianBlur(frame, (0, 0), sigma).astype(np.float32)
    out += rng.normal(0, rng.uniform(1.0, 3.0), out.shape).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(75, 92))])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)

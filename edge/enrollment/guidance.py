"""What a person should change when the quality gate refuses their face, in words they can act on."""

from __future__ import annotations

from ..align import QualityThresholds
from ..types import Quality

__all__ = ["ENROLL_PROMPTS", "advice"]

#: Poses the camera enrollment asks for, in turn: the door sees people from
#: several angles, so a few poses enroll better than one stare.
ENROLL_PROMPTS = (
    "look straight at the camera",
    "turn your head a little to the left",
    "turn your head a little to the right",
    "lift your chin a little",
    "look straight again (glasses on if you wear them, off if you had them on)",
)


def advice(quality: Quality, thresholds: QualityThresholds) -> tuple[str, ...]:
    """One instruction per failed check, each followed by the measurement that failed.

    Yaw is the nose's offset towards the image's right; a camera that does
    not mirror sees a head turned to the person's own left that way, so the
    cure is to turn to their right (and the other way round). A positive
    pitch is a nose low between eyes and mouth: the chin is down.
    """
    q, t = quality, thresholds
    out = []
    if q.face_px < t.min_face_px:
        out.append(f"face too small: come a little closer (face {q.face_px:.0f} px, needs {t.min_face_px:.0f})")
    if q.brightness < t.min_brightness:
        out.append(f"too dark: face a light (brightness {q.brightness:.0f} < {t.min_brightness:.0f})")
    if q.brightness > t.max_brightness:
        out.append(f"too bright: move out of the glare (brightness {q.brightness:.0f} > {t.max_brightness:.0f})")
    if q.sharpness < t.min_sharpness:
        out.append(f"blurred: hold still (sharpness {q.sharpness:.0f} < {t.min_sharpness:.0f})")
    if q.yaw > t.max_yaw:
        out.append(f"head turned: turn a little to your right (yaw {q.yaw:+.2f}, limit {t.max_yaw:.2f})")
    elif q.yaw < -t.max_yaw:
        out.append(f"head turned: turn a little to your left (yaw {q.yaw:+.2f}, limit {t.max_yaw:.2f})")
    if q.pitch > t.max_pitch:
        out.append(f"head tilted: lift your chin a little (pitch {q.pitch:+.2f}, limit {t.max_pitch:.2f})")
    elif q.pitch < -t.max_pitch:
        out.append(f"head tilted: lower your chin a little (pitch {q.pitch:+.2f}, limit {t.max_pitch:.2f})")
    return tuple(out)

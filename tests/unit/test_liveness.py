"""Liveness: planar landmark motion is refused, a turning head passes, too little movement keeps watching."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from facegate.edge.audit import AuditLog
from facegate.edge.config import Config
from facegate.edge.errors import ConfigError
from facegate.edge.liveness import (
    FaceSample,
    Liveness,
    LivenessConfig,
    LivenessResult,
    Verdict,
    create_check,
    create_liveness,
    make_sample,
)
from facegate.edge.liveness.planar import PlanarMotionCheck
from facegate.edge.policy import DecisionPolicy, PolicyConfig
from facegate.edge.types import Detection, Match, Quality

#: A head's 5 landmarks in 3D (x right, y down, z toward the camera), one eye distance = 6.3 cm.
HEAD = np.array([[-0.5, 0, 0], [0.5, 0, 0], [0, 0.55, 0.42], [-0.38, 1.0, 0.08], [0.38, 1.0, 0.08]]) * 6.3
FOCAL = 320 / math.tan(math.radians(31))  # 640 px wide, 62 degrees
GOOD = Quality(face_px=120.0, sharpness=200.0, brightness=120.0, yaw=0.0, pitch=0.0)


#: These tests count camera frames: every one is judged (the door rate limits to 5 a second by default).
EVERY_FRAME = PolicyConfig(min_interval_seconds=0)

def _rot(yaw: float, pitch: float) -> np.ndarray:
    y, p = math.radians(yaw), math.radians(pitch)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return rx @ ry


def landmarks(flat: bool, yaw: float = 0.0, pitch: float = 0.0, x_cm: float = 0.0, z_cm: float = 50.0,
              rng: np.random.Generator | None = None, noise_px: float = 0.3) -> np.ndarray:
    """Where a camera sees the 5 points of a head (or of a photo of one: ``flat``) at a pose."""
    pts = HEAD.copy()
    if flat:
        pts[:, 2] = 0.0
    pts = pts @ _rot(yaw, pitch).T + np.array([x_cm, 0.0, 0.0])
    depth = z_cm - pts[:, 2]
    img = np.stack([320 + FOCAL * pts[:, 0] / depth, 200 + FOCAL * pts[:, 1] / depth], axis=-1)
    if rng is not None:
        img = img + rng.normal(0.0, noise_px, img.shape)
    return img


def sequence(kind: str, frames: int = 30, fps: float = 10.0, seed: int = 0) -> list[FaceSample]:
    """``turning head``, ``moved photo`` (shifted and tilted as a plane), ``still photo`` or ``still head``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        phase = math.sin(2 * math.pi * i / frames)
        if kind == "turning head":
            pts = landmarks(False, yaw=15 * phase, pitch=5 * phase, rng=rng)
        elif kind == "moved photo":
            pts = landmarks(True, yaw=20 * phase, pitch=8 * phase, x_cm=12 * phase, rng=rng)
        elif kind == "still photo":
            pts = landmarks(True, yaw=0.3 * phase, rng=rng)
        elif kind == "still head":
            pts = landmarks(False, yaw=0.3 * phase, rng=rng)
        else:
            raise ValueError(kind)
        out.append(FaceSample(t=i / fps, landmarks=pts, box=(270.0, 150.0, 370.0, 270.0)))
    return out


def match(name: str = "alice") -> Match:
    return Match(name=name, distance=0.4, threshold=0.9, model_id="m1", best_name=name, candidates=3)


def planar_only() -> Liveness:
    cfg = LivenessConfig(checks=("planar",))
    return Liveness([PlanarMotionCheck(cfg)], cfg)


def replay(policy: DecisionPolicy, samples: list[FaceSample], who: str = "alice") -> list:
    return [policy.observe(match(who), GOOD, 1, now=s.t, face=s) for s in samples]


# --- the planar check alone ---------------------------------------------------------------
def test_a_photo_moved_as_a_plane_is_a_spoof() -> None:
    result = PlanarMotionCheck().judge(sequence("moved photo"))
    assert result.verdict is Verdict.SPOOF and result.check == "planar"
    assert "as a plane" in result.reason


def test_a_turning_head_is_live() -> None:
    result = PlanarMotionCheck().judge(sequence("turning head"))
    assert result.verdict is Verdict.LIVE, result.reason


@pytest.mark.parametrize("kind", ["still photo", "still head"])
def test_too_little_movement_cannot_tell_a_photo_from_a_head(kind: str) -> None:
    assert PlanarMotionCheck().judge(sequence(kind)).verdict is Verdict.UNSURE


def test_a_few_frames_are_not_enough_evidence() -> None:
    assert PlanarMotionCheck().judge(sequence("turning head")[:5]).verdict is Verdict.UNSURE


def test_the_planar_verdict_is_the_same_for_any_zoom_of_the_photo() -> None:
    near = [replace(s, landmarks=s.landmarks * 1.6) for s in sequence("moved photo")]
    assert PlanarMotionCheck().judge(near).verdict is Verdict.SPOOF


# --- through the decision policy ------------------------------------------------------------
def test_the_policy_denies_a_planar_face_with_the_reason() -> None:
    policy = DecisionPolicy(EVERY_FRAME, liveness=planar_only())
    outcomes = replay(policy, sequence("moved photo"))
    assert "grant" not in [d.outcome for d in outcomes]
    denied = [d for d in outcomes if d.outcome == "deny"]
    assert denied and denied[0].reason.startswith("spoof: planar:")
    assert denied[0].extra["liveness"] == "planar"


def test_the_policy_grants_a_turning_head_once_it_is_live() -> None:
    policy = DecisionPolicy(EVERY_FRAME, liveness=planar_only())
    outcomes = [d.outcome for d in replay(policy, sequence("turning head"))]
    assert "grant" in outcomes and "deny" not in outcomes
    first = outcomes.index("grant")
    assert first >= LivenessConfig().min_samples - 1 and set(outcomes[:first]) == {"pending"}


def test_too_little_movement_keeps_watching_then_the_timeout_denies() -> None:
    cfg = LivenessConfig(checks=("planar",), timeout_seconds=3.0)
    policy = DecisionPolicy(EVERY_FRAME, liveness=Liveness([PlanarMotionCheck(cfg)], cfg))
    decisions = replay(policy, sequence("still head", frames=40))
    outcomes = [d.outcome for d in decisions]
    assert "grant" not in outcomes
    assert {d.outcome for d in decisions[:30]} == {"pending"}  # 0 .. 2.9 s: watching
    assert all("liveness:" in d.reason for d in decisions[2:30])
    assert decisions[30].outcome == "deny" and decisions[30].reason.startswith("liveness: no live verdict in 3 s")


def test_without_face_samples_a_liveness_policy_never_grants() -> None:
    policy = DecisionPolicy(EVERY_FRAME, liveness=planar_only())
    outcomes = [policy.observe(match(), GOOD, 1, now=i / 10).outcome for i in range(20)]
    assert "grant" not in outcomes


class Always:
    """A check with a fixed answer: to see how the stage combines answers."""

    needs_patch = False

    def __init__(self, verdict: Verdict, type_key: str) -> None:
        self.verdict, self.type_key = verdict, type_key

    def judge(self, samples) -> LivenessResult:
        return LivenessResult(self.verdict, self.type_key, f"always {self.verdict}")


def test_a_failed_check_denies_even_when_the_other_passes() -> None:
    stage = Liveness([Always(Verdict.LIVE, "first"), Always(Verdict.SPOOF, "second")])
    policy = DecisionPolicy(EVERY_FRAME, liveness=stage)
    outcomes = replay(policy, sequence("turning head"))
    assert {d.outcome for d in outcomes} == {"deny"}
    assert outcomes[0].reason == "spoof: second: always spoof"


def test_a_failed_check_is_not_undone_by_later_frames() -> None:
    flip = Always(Verdict.SPOOF, "flip")
    stage = Liveness([flip])
    policy = DecisionPolicy(EVERY_FRAME, liveness=stage)
    samples = sequence("turning head")
    assert replay(policy, samples[:3])[-1].outcome == "deny"
    flip.verdict = Verdict.LIVE
    assert {d.outcome for d in replay(policy, samples[3:10])} == {"deny"}


def test_every_check_must_say_live_for_a_grant() -> None:
    stage = Liveness([Always(Verdict.LIVE, "a"), Always(Verdict.UNSURE, "b")])
    outcomes = {d.outcome for d in replay(DecisionPolicy(EVERY_FRAME, liveness=stage), sequence("turning head"))}
    assert "grant" not in outcomes


def test_frames_of_another_person_never_join_a_claimed_identity() -> None:
    """A photo of alice alternating with the attacker's own (moving) face is not one moving head."""
    stage = planar_only()
    photo, head = sequence("moved photo"), sequence("turning head", seed=1)
    for i in range(30):
        stage.add("alice", photo[i])
        stage.add("mallory", head[i])
    assert stage.judge("alice", 3.0).verdict is Verdict.SPOOF
    assert stage.judge("mallory", 3.0).verdict is Verdict.LIVE


def test_a_new_visit_is_judged_afresh() -> None:
    policy = DecisionPolicy(EVERY_FRAME, liveness=planar_only())
    replay(policy, sequence("moved photo"))
    later = [replace(s, t=s.t + 100.0) for s in sequence("turning head")]
    assert "grant" in [d.outcome for d in replay(policy, later)]


# --- the audit trail ------------------------------------------------------------------------
def test_the_spoof_reason_is_kept_in_the_audit_log() -> None:
    policy = DecisionPolicy(EVERY_FRAME, liveness=planar_only())
    denied = next(d for d in replay(policy, sequence("moved photo")) if d.outcome == "deny")
    with AuditLog(":memory:") as audit:
        audit.record(denied)
        (event,) = audit.recent()
    assert event.outcome == "deny" and event.reason.startswith("spoof: planar: moved")


# --- configuration ------------------------------------------------------------------------------
def test_liveness_is_on_by_default_with_both_checks() -> None:
    stage = create_liveness(Config.default().liveness)
    assert stage is not None and [c.type_key for c in stage.checks] == ["planar", "screen"]


def test_the_liveness_table_is_read_and_checked() -> None:
    cfg = Config.from_dict({"liveness": {"checks": ["planar"], "timeout_seconds": 4}})
    assert cfg.liveness.checks == ("planar",) and cfg.liveness.timeout_seconds == 4.0
    assert create_liveness(Config.from_dict({"liveness": {"enabled": False}}).liveness) is None
    with pytest.raises(ConfigError, match="liveness.checks"):
        Config.from_dict({"liveness": {"checks": ["blink"]}})
    with pytest.raises(ConfigError, match="liveness.planar_parallax"):
        Config.from_dict({"liveness": {"planar_parallax": 0.5}})
    with pytest.raises(ConfigError, match="unknown key"):
        Config.from_dict({"liveness": {"enable": False}})
    with pytest.raises(ConfigError, match="liveness.checks"):
        create_check("blink")


def test_grey_ir_frames_give_the_same_samples() -> None:
    """An IR camera's grey frames feed both checks: landmarks and a grey patch."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (480, 640), dtype=np.uint8)
    det = Detection(box=(200.0, 100.0, 360.0, 260.0), score=0.99, landmarks=landmarks(False).astype(np.float32))
    from_grey = make_sample(grey, det, 1.0, patch=True)
    from_bgr = make_sample(np.dstack([grey] * 3), det, 1.0, patch=True)
    assert from_grey.patch is not None and from_grey.patch.shape == (96, 96)
    assert np.array_equal(from_grey.patch, from_bgr.patch) and from_grey.origin[0] % 8 == 0


def test_two_photos_swapped_in_front_of_the_camera_are_not_a_moving_head() -> None:
    """A print of a frontal pose, then one of a turned pose: each is flat, the jump between them is no parallax."""
    rng = np.random.default_rng(5)
    frontal = [landmarks(True, yaw=0.3 * math.sin(i), rng=rng) for i in range(15)]
    turned_photo = landmarks(False, yaw=25.0)  # the turned head, as printed: flat from here on
    turned = [turned_photo + rng.normal(0, 0.3, (5, 2)) for _ in range(15)]
    samples = [FaceSample(t=i / 10, landmarks=p, box=(270.0, 150.0, 370.0, 270.0)) for i, p in
               enumerate(frontal + turned + frontal)]
    assert PlanarMotionCheck().judge(samples).verdict is Verdict.UNSURE

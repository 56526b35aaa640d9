"""DecisionPolicy: k-of-n, identity consistency, cooldown, lockout, gates."""

from __future__ import annotations

import pytest

from facegate.edge.errors import ConfigError
from facegate.edge.policy import DecisionPolicy, PolicyConfig
from facegate.edge.types import Match, Quality

GOOD = Quality(face_px=120.0, sharpness=200.0, brightness=120.0, yaw=0.0, pitch=0.0)
BLURRY = Quality(face_px=120.0, sharpness=3.0, brightness=120.0, yaw=0.0, pitch=0.0, reasons=("blurry",))
WALL0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def match(name: str, distance: float = 0.5, model: str = "m1") -> Match:
    return Match(name=name, distance=distance, threshold=0.9, model_id=model, best_name=name, candidates=3)


def stranger(nearest: str = "alice") -> Match:
    return Match(name=None, distance=1.25, threshold=0.9, model_id="m1", best_name=nearest, candidates=3)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **cfg) -> DecisionPolicy:
    """A policy judging every frame (the rate limit has its own tests) unless told otherwise."""
    return DecisionPolicy(PolicyConfig(**{"min_interval_seconds": 0.0, **cfg}), clock=clock,
                          wallclock=lambda: WALL0 + clock.t)


def step(policy: DecisionPolicy, clock: FakeClock, item, dt: float = 0.1):
    """Advance the clock and observe one frame.

    item: a name (accepted), "?" (stranger), None (no face), "blur:<name>".
    """
    clock.t += dt
    if item is None:
        return policy.observe(None, None, 0)
    if item == "?":
        return policy.observe(stranger(), GOOD, 1)
    if item.startswith("blur:"):
        return policy.observe(match(item[5:]), BLURRY, 1)
    return policy.observe(match(item), GOOD, 1)


def run(policy, clock, items, dt: float = 0.1) -> list[str]:
    return [step(policy, clock, it, dt).outcome for it in items]


# --- k of n -----------------------------------------------------------------------
def test_k_of_n_grant(clock):
    p = make(clock)
    first = step(p, clock, "alice")
    assert first.outcome == "pending" and first.name == "alice"
    d = step(p, clock, "alice")
    assert d.outcome == "grant"
    assert (d.name, d.distance, d.threshold, d.model_id) == ("alice", 0.5, 0.9, "m1")
    assert d.frames_used == 2
    assert d.timestamp == pytest.approx(WALL0 + clock.t)
    assert "2 of last 2" in d.reason


def test_k_of_n_with_rejections_in_between(clock):
    p = make(clock, k=3, n=5)
    assert run(p, clock, ["alice", "?", "alice", "?", "alice"]) == ["pending"] * 4 + ["grant"]


def test_alternation_with_rejected_frames(clock):
    assert run(make(clock), clock, ["alice", "?", "alice"]) == ["pending", "pending", "grant"]
    # k == n: every judged frame must match, so alternation never grants
    p = make(clock, k=3, n=3)
    assert "grant" not in run(p, clock, ["alice", "?"] * 10)


def test_alternation_with_no_face_frames(clock):
    p = make(clock)
    assert run(p, clock, ["alice", None, "alice"]) == ["pending", "idle", "grant"]


def test_mixing_two_people_never_grants(clock):
    p = make(clock, cooldown_seconds=0)
    outcomes = run(p, clock, ["alice", "bob"] * 20)
    assert set(outcomes) <= {"pending", "deny"}
    d = step(p, clock, "alice")
    assert d.outcome == "deny" and "conflicting identities" in d.reason
    # once bob has left the last n frames, alice alone is granted
    assert run(p, clock, ["alice", "alice"]) == ["deny", "grant"]


def test_grant_only_to_the_face_in_front_now(clock):
    p = make(clock, cooldown_seconds=0)
    assert run(p, clock, ["alice", "alice"]) == ["pending", "grant"]
    # 2 of the last 3 frames are alice, but the current face is not her
    d = step(p, clock, "?")
    assert d.outcome == "deny" and d.name is None
    d = step(p, clock, "bob")
    assert d.outcome == "deny" and d.name is None


def test_name_beyond_threshold_is_not_accepted(clock):
    p = make(clock)
    for _ in range(5):
        clock.t += 0.1
        d = p.observe(match("alice", distance=0.95), GOOD, 1)
        assert d.outcome != "grant"


def test_window_expiry(clock):
    p = make(clock)
    assert step(p, clock, "alice").outcome == "pending"
    assert step(p, clock, "alice", dt=2.5).outcome == "pending"  # first frame forgotten
    assert step(p, clock, "alice", dt=0.1).outcome == "grant"


def test_model_change_clears_evidence(clock):
    p = make(clock)
    clock.t += 0.1
    assert p.observe(match("alice", model="m1"), GOOD, 1).outcome == "pending"
    clock.t += 0.1
    assert p.observe(match("alice", model="m2"), GOOD, 1).outcome == "pending"
    clock.t += 0.1
    assert p.observe(match("alice", model="m2"), GOOD, 1).outcome == "grant"


# --- cooldown ---------------------------------------------------------------------
def test_cooldown_one_grant_per_visit(clock):
    p = make(clock)
    outcomes = run(p, clock, ["alice"] * 100)  # 10 s in front of the door
    assert outcomes.count("grant") == 1
    assert outcomes[2:] == ["cooldown"] * 98
    # away 4 s (< cooldown 5 s): still the same visit
    run(p, clock, [None] * 40)
    assert run(p, clock, ["alice"] * 3) == ["pending", "cooldown", "cooldown"]
    # away 6 s: a new visit, granted again
    run(p, clock, [None] * 60)
    assert run(p, clock, ["alice"] * 3) == ["pending", "grant", "cooldown"]


def test_cooldown_is_per_person(clock):
    p = make(clock)
    assert run(p, clock, ["alice", "alice"]) == ["pending", "grant"]
    run(p, clock, [None] * 25)  # window empties; alice still cooling down
    assert run(p, clock, ["bob", "bob"]) == ["pending", "grant"]


def test_cooldown_absence_counts_only_accepted_frames(clock):
    p = make(clock)
    assert run(p, clock, ["alice", "alice"]) == ["pending", "grant"]
    # alice stays but is unusable (blurred) for 6 s: no accepted frame -> absent
    assert set(run(p, clock, ["blur:alice"] * 60)) == {"skip"}
    assert run(p, clock, ["alice", "alice"]) == ["pending", "grant"]


# --- deny, attempts, lockout ---------------------------------------------------------
def test_stranger_denied(clock):
    p = make(clock)
    first, second = (step(p, clock, "?") for _ in range(2))
    assert first.outcome == "pending"
    assert second.outcome == "deny" and second.name is None
    assert second.distance == 1.25 and "nearest alice" in second.reason


# Lockout counts rejected judged faces: tests/unit/test_policy_limits.py


# --- gates ------------------------------------------------------------------------
def test_bad_quality_skipped_not_judged(clock):
    p = make(clock)
    assert step(p, clock, "alice").outcome == "pending"
    d = step(p, clock, "blur:alice")
    assert d.outcome == "skip" and "blurry" in d.reason and d.name is None
    d = step(p, clock, "alice")
    assert d.outcome == "grant" and d.frames_used == 2


def test_no_face_is_idle(clock):
    p = make(clock)
    d = step(p, clock, None)
    assert d.outcome == "idle" and d.name is None and d.frames_used == 0
    assert d.distance is None and d.model_id is None


def test_face_without_match_is_skipped(clock):
    p = make(clock)
    d = p.observe(None, GOOD, 1, now=1.0)
    assert d.outcome == "skip"


def test_quality_none_means_no_gate(clock):
    p = make(clock)
    assert p.observe(match("alice"), None, 1, now=1.0).outcome == "pending"
    assert p.observe(match("alice"), None, 2, now=1.1).outcome == "grant"


def test_rate_limit(clock):
    p = make(clock, min_interval_seconds=0.5)
    assert run(p, clock, ["alice", "alice"]) == ["pending", "skip"]
    assert step(p, clock, "alice", dt=0.5).outcome == "grant"


def test_explicit_now_overrides_clock():
    p = DecisionPolicy(clock=lambda: pytest.fail("clock used"), wallclock=lambda: 0.0)
    assert p.observe(match("alice"), GOOD, 1, now=10.0).outcome == "pending"
    assert p.observe(match("alice"), GOOD, 1, now=10.3).outcome == "grant"


def test_match_without_face_is_a_bug(clock):
    with pytest.raises(ValueError):
        make(clock).observe(match("alice"), GOOD, 0)


@pytest.mark.parametrize(
    "kwargs",
    [{"k": 0}, {"k": 3, "n": 2}, {"window_seconds": 0}, {"cooldown_seconds": -1},
     {"max_denied": 0}, {"lockout_seconds": float("nan")}, {"k": 2.5}, {"n": True}],
)
def test_config_validation(kwargs):
    with pytest.raises(ConfigError, match="policy"):
        PolicyConfig(**kwargs)

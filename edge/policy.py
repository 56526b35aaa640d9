"""When a stream of per-frame matches becomes an unlock: the door's rules.

Pure logic with an injected clock and no I/O, so every rule is unit-tested
with synthetic matches. One :meth:`DecisionPolicy.observe` call per frame, for
the frame's largest face, returns a :class:`~facegate.edge.types.Decision`.

The rules (``k``, ``n`` etc. are :class:`PolicyConfig` fields):

Frames
    * no face (``face_count == 0``) -> ``idle``; not judged.
    * a face whose ``quality`` is not ok, a face with no match (``match is
      None``), or a face within ``min_interval_seconds`` of the previous
      judged frame -> ``skip``; not judged.
    * any other face frame is *judged*. It is accepted for person P when
      ``match.name == P`` and ``match.distance <= match.threshold``;
      otherwise it is rejected. Judged frames go into the evidence window: the
      last ``n`` judged frames not older than ``window_seconds``. A change of
      ``model_id`` empties the window.

Grant (all must hold)
    * not locked out;
    * the CURRENT frame is accepted for P (the face now in front of the door
      is the one that matched);
    * at least ``k`` frames of the window are accepted for P;
    * no frame of the window is accepted for anyone other than P;
    * P is not cooling down (below). Otherwise the outcome is ``cooldown``.

Deny / pending
    * if the grant rule fails and the window is full (``n`` frames) or holds
      more than ``n - k`` rejected frames (``k`` is out of reach) -> ``deny``;
    * otherwise -> ``pending`` (not enough evidence yet).

Cooldown (one unlock per visit)
    After P is granted, every judged frame accepted for P (whatever its
    outcome) refreshes P's "last seen" time. P can be granted again only once
    ``now - last_seen >= cooldown_seconds``: P must have produced no accepted
    frame for ``cooldown_seconds``. Other people are not affected.

Rate limit, rejected faces and lockout (:mod:`facegate.edge.policy_limits`)
    * At most one face is judged per ``min_interval_seconds`` (0.2 s by
      default: 5 a second, whatever the camera's rate).
    * Every judged face that matches nobody is a *rejected face*. When
      ``max_denied`` of them fall within ``lockout_window_seconds`` the door
      is locked out: ``lockout_seconds`` the first time, ``lockout_escalation``
      times longer for each lockout that follows within
      ``lockout_reset_seconds`` of the last one, at most
      ``max_lockout_seconds``. The frame that completes the count returns
      ``lockout`` with the length and level in ``extra`` (the daemon audits
      it); the evidence window is cleared. ``lockout_seconds = 0`` disables
      lockout (faces are still counted, see ``denied_attempts``).
    * During a lockout every face frame returns ``lockout`` and is not
      counted, with one documented exception: when the caller passes a
      ``strong_threshold`` to :meth:`DecisionPolicy.observe`, an enrolled
      person P whose last ``n`` judged faces (rate limited as above) all match
      P within it is granted (cooldown still applies); the lockout stays in
      force for everyone else. Without ``strong_threshold`` nobody is.

Liveness (when a :class:`~facegate.edge.liveness.Liveness` stage is given)
    * Every face frame accepted for P that passes the quality gate adds its
      :class:`~facegate.edge.liveness.FaceSample` (``face``) to P's samples
      for this visit (rate-limited frames too: more geometry, no judgement).
    * On each judged frame accepted for P the stage is asked. Any failed check
      -> ``deny`` at once, reason ``"spoof: <check>: ..."`` (or ``"liveness:
      no live verdict ..."`` after its timeout); a failed check is not undone
      by later frames of the visit.
    * A grant additionally needs every check to say live; until they do the
      outcome is ``pending`` ("liveness: ..."): never a grant on too little
      evidence. The stage forgets everything when the visit ends (no face for
      ``window_seconds``) or a lockout starts.
    * The strong match that passes a lockout (below) needs a live verdict too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .liveness import FaceSample, Liveness, LivenessResult, Verdict
from .policy_limits import FaceLockout, LockoutStart
from .settings import check_fields, fail, setting
from .types import Decision, Match, Outcome, Quality

__all__ = ["PolicyConfig", "DecisionPolicy"]


@dataclass(frozen=True)
class PolicyConfig:
    """Tunables of :class:`DecisionPolicy` (the ``[policy]`` table); see the module docstring.

    Bounds sit on the fields and are checked on construction, whether the
    values come from the config file or from code.
    """

    k: int = setting(2, ge=1, le=100)  # accepted frames needed for the same person...
    n: int = setting(3, ge=1, le=100)  # ...among the last n judged frames
    window_seconds: float = setting(2.0, gt=0, le=60)  # judged frames older than this are forgotten
    cooldown_seconds: float = setting(5.0, ge=0, le=3600)  # absence needed before the same person is granted again
    max_denied: int = setting(15, ge=1, le=1000)  # rejected judged faces within lockout_window_seconds...
    lockout_window_seconds: float = setting(60.0, gt=0, le=86400)
    lockout_seconds: float = setting(60.0, ge=0, le=86400)  # ...lock everyone out this long (0 = never)
    lockout_escalation: float = setting(2.0, ge=1, le=10)  # each lockout soon after the last is this much longer
    max_lockout_seconds: float = setting(900.0, ge=0, le=86400)  # ...up to this
    lockout_reset_seconds: float = setting(3600.0, gt=0, le=604800)  # quiet time that resets the escalation
    attempt_seconds: float = setting(10.0, gt=0, le=3600)  # the daemon audits a running deny/lockout once per this
    min_interval_seconds: float = setting(0.2, ge=0, le=60)  # rate limit between judged faces; 0 = every frame

    def __post_init__(self) -> None:
        check_fields(self, "policy")
        if self.k > self.n:
            fail("policy.k", self.k, f"at most policy.n ({self.n})")


@dataclass(frozen=True)
class _Judged:
    t: float
    name: str | None  # None = rejected
    model_id: str


class DecisionPolicy:
    """Turns per-frame matches into grant/deny decisions (see module rules).

    ``clock`` (monotonic seconds) drives every rule; ``wallclock`` only stamps
    :attr:`Decision.timestamp`. Not thread-safe: call from the frame loop.
    """

    def __init__(
        self,
        config: PolicyConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        liveness: Liveness | None = None,
    ) -> None:
        self.config = config or PolicyConfig()
        self.liveness = liveness
        self._clock = clock
        self._wallclock = wallclock
        self.reset()

    def reset(self) -> None:
        """Forget all evidence, cooldowns, attempts and any lockout."""
        self._window: deque[_Judged] = deque()
        self._last_judged: float | None = None
        self._cooldown: dict[str, float] = {}  # name -> last accepted frame since its grant
        cfg = self.config
        self._limits = FaceLockout(cfg.max_denied, cfg.lockout_window_seconds, cfg.lockout_seconds,
                                   cfg.lockout_escalation, cfg.max_lockout_seconds, cfg.lockout_reset_seconds)
        self._strong: deque[_Judged] = deque()  # judged faces during a lockout
        self.judged = 0  # judged faces, in all
        self._visit_last_face: float | None = None  # the liveness stage judges one visit at a time
        if getattr(self, "liveness", None) is not None:
            self.liveness.reset()

    def revoke_grant(self, name: str) -> None:
        """The caller could not carry a grant out (it could not be audited): no cooldown for it."""
        self._cooldown.pop(name, None)
        self.forget_evidence()

    def forget_evidence(self) -> None:
        """Drop the judged frames (not the lockout): after a stage error, never grant across the gap."""
        self._window.clear()
        self._strong.clear()
        self._last_judged = None

    # -- queries ---------------------------------------------------------------
    def lockout_remaining(self, now: float | None = None) -> float:
        """Seconds of lockout left (0.0 when not locked out)."""
        now = self._clock() if now is None else now
        return self._limits.remaining(now)

    @property
    def denied_attempts(self) -> int:
        """Rejected judged faces currently counted towards a lockout."""
        return self._limits.count

    @property
    def limits(self) -> FaceLockout:
        """The lockout counter (level, lockouts and rejected faces in all)."""
        return self._limits

    # -- the per-frame entry point --------------------------------------------------
    def observe(
        self,
        match: Match | None,
        quality: Quality | None,
        face_count: int,
        now: float | None = None,
        face: FaceSample | None = None,
        strong_threshold: float | None = None,
    ) -> Decision:
        """Judge one frame: ``match``/``quality``/``face`` are for its largest face.

        ``match`` None with ``face_count == 0`` means no face. ``quality`` None
        means no quality gate was applied to this face. ``face`` is what the
        liveness stage needs of it (ignored without one; without it a policy
        with liveness never grants). ``strong_threshold``: see the lockout
        rule in the module docstring.
        """
        now = self._clock() if now is None else float(now)
        if face_count < 0:
            raise ValueError(f"face_count must be >= 0, got {face_count}")
        if face_count == 0 and match is not None:
            raise ValueError("a match was given for a frame with no face")
        cfg = self.config

        self._expire(now)
        has_face = face_count > 0

        if has_face:
            self._visit_last_face = now
        left = self._limits.remaining(now)
        if left > 0:
            if not has_face:
                return self._decide("idle", reason=f"no face (locked out for {left:.1f} s more)")
            if strong_threshold is not None and match is not None and (quality is None or quality.ok):
                self._add_sample(match, face)
                return self._judge_during_lockout(match, now, face_count, strong_threshold, left)
            return self._decide(
                "lockout", match=match, reason=f"locked out for {left:.1f} s more", lockout_remaining=left
            )
        self._strong.clear()

        if not has_face:
            return self._decide("idle", reason="no face")
        if quality is not None and not quality.ok:
            return self._decide("skip", match=match, reason="quality: " + ", ".join(quality.reasons))
        if match is None:
            return self._decide("skip", reason="face without a match")
        self._add_sample(match, face)
        if (
            cfg.min_interval_seconds > 0
            and self._last_judged is not None
            and now - self._last_judged < cfg.min_interval_seconds
        ):
            return self._decide("skip", match=match, reason="rate limited")

        return self._judge(match, now, face_count)

    # -- internals ---------------------------------------------------------------
    def _add_sample(self, match: Match, face: FaceSample | None) -> None:
        """A face accepted for P (quality passed) adds its geometry to P's liveness samples."""
        if self.liveness is not None and face is not None and match.name is not None \
                and match.distance <= match.threshold:
            self.liveness.add(match.name, face)

    def _judge(self, match: Match, now: float, face_count: int) -> Decision:
        cfg = self.config
        self._last_judged = now
        self.judged += 1
        accepted = match.name is not None and match.distance <= match.threshold
        name = match.name if accepted else None
        if not accepted:
            started = self._limits.reject(now)
            if started is not None:
                return self._lockout_started(match, started)
        if self._window and self._window[-1].model_id != match.model_id:
            self._window.clear()  # never mix evidence from two models
        self._window.append(_Judged(now, name, match.model_id))
        while len(self._window) > cfg.n:
            self._window.popleft()

        cooling = False
        if name is not None and name in self._cooldown:
            # Check against the previous sighting, then refresh: P is still here.
            cooling = now - self._cooldown[name] < cfg.cooldown_seconds
            if cooling:
                self._cooldown[name] = now
            else:
                del self._cooldown[name]

        names = [j.name for j in self._window]
        used = len(names)
        rejected = names.count(None)
        others = sorted({x for x in names if x is not None and x != name})
        extra = {"faces": face_count, "best_name": match.best_name}

        live: LivenessResult | None = None
        if name is not None and self.liveness is not None:
            live = self.liveness.judge(name, now)
            if live.verdict is Verdict.SPOOF:  # any failed check denies, whatever else passed
                why = (f"liveness: {live.reason}" if live.check == "timeout"
                       else f"spoof: {live.check}: {live.reason}")
                return self._decide("deny", match, frames_used=used, reason=why, liveness=live.check, **extra)

        if name is not None and not others and names.count(name) >= cfg.k:
            support = f"{names.count(name)} of last {used} judged frames matched {name}"
            if cooling:
                return self._decide(
                    "cooldown", match, name=name, frames_used=used,
                    reason=f"{support}; already granted, not absent for {cfg.cooldown_seconds:g} s yet",
                    **extra,
                )
            if live is not None and live.verdict is not Verdict.LIVE:
                return self._decide("pending", match, name=name, frames_used=used,
                                    reason=f"{support}; liveness: {live.reason}", **extra)
            self._cooldown[name] = now
            if live is not None:
                support += f"; live ({live.reason})"
            return self._decide("grant", match, name=name, frames_used=used, reason=support, **extra)

        if used >= cfg.n or rejected > cfg.n - cfg.k:
            if others:
                # how many, never who: a refusal names no resident (README, edge/audit.py)
                ids = {x for x in names if x is not None}
                why = f"conflicting identities in last {used} judged frames: {len(ids)} enrolled people"
            else:
                why = f"{rejected} of last {used} judged frames rejected"
            if not accepted:
                why += f"; nearest {match.best_name or '?'} at {match.distance:.3f} (threshold {match.threshold:.3f})"
            return self._decide("deny", match, frames_used=used, reason=why, **extra)

        have = names.count(name) if name is not None else 0
        return self._decide(
            "pending", match, name=name, frames_used=used,
            reason=f"{have} of {cfg.k} matching frames needed, {used} of {cfg.n} judged",
            **extra,
        )

    def _lockout_started(self, match: Match, started: LockoutStart) -> Decision:
        self._window.clear()
        self._last_judged = None
        if self.liveness is not None:
            self.liveness.reset()
        cfg = self.config
        return self._decide(
            "lockout", match,
            reason=(f"{started.rejected} rejected faces within {cfg.lockout_window_seconds:g} s: "
                    f"locked out for {started.seconds:g} s (level {started.level})"),
            lockout_seconds=started.seconds, lockout_level=started.level, lockout_remaining=started.seconds,
        )

    def _judge_during_lockout(self, match: Match, now: float, face_count: int, strong: float,
                              left: float) -> Decision:
        """The one way through a lockout: n of n judged faces strongly matching one enrolled person."""
        cfg = self.config
        if self._last_judged is not None and now - self._last_judged < cfg.min_interval_seconds:
            return self._decide("lockout", match, reason=f"locked out for {left:.1f} s more (rate limited)",
                                lockout_remaining=left)
        self._last_judged = now
        self.judged += 1
        ok = match.name is not None and match.distance <= min(strong, match.threshold)
        self._strong.append(_Judged(now, match.name if ok else None, match.model_id))
        while len(self._strong) > cfg.n or (self._strong and now - self._strong[0].t > cfg.window_seconds):
            self._strong.popleft()
        names = {j.name for j in self._strong}
        models = {j.model_id for j in self._strong}
        if ok and len(self._strong) == cfg.n and names == {match.name} and len(models) == 1:
            name = match.name
            assert name is not None
            if name in self._cooldown and now - self._cooldown[name] < cfg.cooldown_seconds:
                self._cooldown[name] = now
                return self._decide("cooldown", match, name=name, frames_used=cfg.n,
                                    reason="strong match during lockout; already granted")
            if self.liveness is not None:  # a strong match of a photo is still a photo
                live = self.liveness.judge(name, now)
                if live.verdict is not Verdict.LIVE:
                    why = ("spoof: " + f"{live.check}: {live.reason}" if live.verdict is Verdict.SPOOF
                           else f"liveness: {live.reason}")
                    return self._decide("lockout", match, reason=f"locked out for {left:.1f} s more; strong "
                                        f"match of {name} but {why}", lockout_remaining=left,
                                        liveness=live.check)
            self._cooldown[name] = now
            self._strong.clear()
            return self._decide(
                "grant", match, name=name, frames_used=cfg.n,
                reason=(f"{cfg.n} of {cfg.n} judged frames matched {name} within the strong threshold "
                        f"{strong:.3f} during a lockout ({left:.0f} s left)"),
                faces=face_count, lockout_remaining=left, strong_threshold=round(strong, 4),
            )
        return self._decide("lockout", match, reason=f"locked out for {left:.1f} s more", lockout_remaining=left)

    def _expire(self, now: float) -> None:
        """Forget what is too old."""
        cfg = self.config
        self._limits.expire(now)
        while self._window and now - self._window[0].t > cfg.window_seconds:
            self._window.popleft()
        for name in [p for p, t in self._cooldown.items() if now - t >= cfg.cooldown_seconds]:
            del self._cooldown[name]
        if self._visit_last_face is not None and now - self._visit_last_face >= cfg.window_seconds:
            self._visit_last_face = None
            if self.liveness is not None:
                self.liveness.reset()  # a new visit is judged afresh

    def _decide(
        self,
        outcome: str,
        match: Match | None = None,
        *,
        name: str | None = None,
        reason: str = "",
        frames_used: int = 0,
        **extra: object,
    ) -> Decision:
        return Decision(
            timestamp=self._wallclock(),
            outcome=Outcome(outcome),
            name=name,
            distance=None if match is None else match.distance,
            threshold=None if match is None else match.threshold,
            model_id=None if match is None else match.model_id,
            reason=reason,
            frames_used=frames_used,
            extra={k: v for k, v in extra.items() if v is not None},
        )

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

Visits, denied attempts and lockout
    * A visit is a run of face frames (idle frames excluded) with gaps shorter
      than ``window_seconds``. A visit longer than ``attempt_seconds`` is cut
      into slices of ``attempt_seconds``, each counted as its own visit, so a
      continuous stream of faces is still rate-limited.
    * A visit (or slice) is a *denied attempt* when it produced at least one
      ``deny`` and neither a ``grant`` nor a ``cooldown``. It is counted when
      it ends: at ``last face + window_seconds`` or at ``start +
      attempt_seconds``. A stranger standing in front of the camera for T
      seconds therefore counts as ``ceil(T / attempt_seconds)`` attempts
      (10 s -> 1 with the defaults), never one per frame.
    * When ``max_denied`` attempts fall within ``lockout_window_seconds``, the
      door is locked out for ``lockout_seconds``: every face frame returns
      ``lockout`` and nothing is judged or granted; the evidence window and the
      attempt count are cleared. The frame that completes the count returns
      ``lockout`` (idle frames stay ``idle``). ``lockout_seconds = 0`` disables
      lockout (attempts are still counted, see ``denied_attempts``).

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
      evidence. The stage forgets everything when the visit ends or a
      lockout starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .liveness import FaceSample, Liveness, LivenessResult, Verdict
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
    max_denied: int = setting(5, ge=1, le=1000)  # denied attempts (visits) within lockout_window_seconds...
    lockout_window_seconds: float = setting(60.0, gt=0, le=86400)
    lockout_seconds: float = setting(60.0, ge=0, le=86400)  # ...lock everyone out this long (0 = never)
    attempt_seconds: float = setting(10.0, gt=0, le=3600)  # a continuous visit counts as one attempt per slice
    min_interval_seconds: float = setting(0.0, ge=0, le=60)  # rate limit between judged frames; 0 = every frame

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
        self._attempts: deque[float] = deque()  # times denied attempts were counted
        self._lockout_until: float | None = None
        # current visit
        self._visit_start: float | None = None
        self._visit_last_face: float | None = None
        self._visit_denied = False
        self._visit_recognised = False
        if getattr(self, "liveness", None) is not None:
            self.liveness.reset()

    # -- queries ---------------------------------------------------------------
    def lockout_remaining(self, now: float | None = None) -> float:
        """Seconds of lockout left (0.0 when not locked out)."""
        now = self._clock() if now is None else now
        if self._lockout_until is None:
            return 0.0
        return max(0.0, self._lockout_until - now)

    @property
    def denied_attempts(self) -> int:
        """Denied attempts currently counted towards a lockout."""
        return len(self._attempts)

    # -- the per-frame entry point --------------------------------------------------
    def observe(
        self,
        match: Match | None,
        quality: Quality | None,
        face_count: int,
        now: float | None = None,
        face: FaceSample | None = None,
    ) -> Decision:
        """Judge one frame: ``match``/``quality``/``face`` are for its largest face.

        ``match`` None with ``face_count == 0`` means no face. ``quality`` None
        means no quality gate was applied to this face. ``face`` is what the
        liveness stage needs of it (ignored without one; without it a policy
        with liveness never grants).
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
            self._track_visit(now)

        if self._lockout_until is not None:
            left = self._lockout_until - now
            if not has_face:
                return self._decide("idle", reason=f"no face (locked out for {left:.1f} s more)")
            return self._decide(
                "lockout", match=match, reason=f"locked out for {left:.1f} s more", lockout_remaining=left
            )

        if not has_face:
            return self._decide("idle", reason="no face")
        if quality is not None and not quality.ok:
            return self._decide("skip", match=match, reason="quality: " + ", ".join(quality.reasons))
        if match is None:
            return self._decide("skip", reason="face without a match")
        if self.liveness is not None and face is not None and match.name is not None \
                and match.distance <= match.threshold:
            self.liveness.add(match.name, face)
        if (
            cfg.min_interval_seconds > 0
            and self._last_judged is not None
            and now - self._last_judged < cfg.min_interval_seconds
        ):
            return self._decide("skip", match=match, reason="rate limited")

        return self._judge(match, now, face_count)

    # -- internals ---------------------------------------------------------------
    def _judge(self, match: Match, now: float, face_count: int) -> Decision:
        cfg = self.config
        self._last_judged = now
        accepted = match.name is not None and match.distance <= match.threshold
        name = match.name if accepted else None
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
                self._visit_denied = True
                why = (f"liveness: {live.reason}" if live.check == "timeout"
                       else f"spoof: {live.check}: {live.reason}")
                return self._decide("deny", match, frames_used=used, reason=why, liveness=live.check, **extra)

        if name is not None and not others and names.count(name) >= cfg.k:
            support = f"{names.count(name)} of last {used} judged frames matched {name}"
            if cooling:
                self._visit_recognised = True
                return self._decide(
                    "cooldown", match, name=name, frames_used=used,
                    reason=f"{support}; already granted, not absent for {cfg.cooldown_seconds:g} s yet",
                    **extra,
                )
            if live is not None and live.verdict is not Verdict.LIVE:
                return self._decide("pending", match, name=name, frames_used=used,
                                    reason=f"{support}; liveness: {live.reason}", **extra)
            self._visit_recognised = True
            self._cooldown[name] = now
            if live is not None:
                support += f"; live ({live.reason})"
            return self._decide("grant", match, name=name, frames_used=used, reason=support, **extra)

        if used >= cfg.n or rejected > cfg.n - cfg.k:
            self._visit_denied = True
            if others:
                ids = sorted({x for x in names if x is not None})
                why = f"conflicting identities in last {used} judged frames: {', '.join(ids)}"
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

    def _expire(self, now: float) -> None:
        """Forget what is too old, and close a visit that ended in a gap."""
        cfg = self.config
        if self._lockout_until is not None and now >= self._lockout_until:
            self._lockout_until = None  # lockout over: start afresh
        while self._window and now - self._window[0].t > cfg.window_seconds:
            self._window.popleft()
        for name in [p for p, t in self._cooldown.items() if now - t >= cfg.cooldown_seconds]:
            del self._cooldown[name]
        while self._attempts and now - self._attempts[0] > cfg.lockout_window_seconds:
            self._attempts.popleft()
        if self._visit_last_face is not None and now - self._visit_last_face >= cfg.window_seconds:
            self._end_visit(self._visit_last_face + cfg.window_seconds)
            self._visit_start = self._visit_last_face = None
            if self.liveness is not None:
                self.liveness.reset()  # a new visit is judged afresh

    def _track_visit(self, now: float) -> None:
        """Count this face frame into the current visit (or a new slice of it)."""
        cfg = self.config
        if self._visit_start is not None and now - self._visit_start >= cfg.attempt_seconds:
            self._end_visit(self._visit_start + cfg.attempt_seconds)
            self._visit_start = None
        if self._visit_start is None:
            self._visit_start = now
            self._visit_denied = self._visit_recognised = False
        self._visit_last_face = now

    def _end_visit(self, at: float) -> None:
        """Count a denied attempt if the visit warrants it; maybe lock out."""
        cfg = self.config
        denied = self._visit_denied and not self._visit_recognised
        self._visit_denied = self._visit_recognised = False
        if not denied or self._lockout_until is not None:
            return
        self._attempts.append(at)
        while self._attempts and at - self._attempts[0] > cfg.lockout_window_seconds:
            self._attempts.popleft()
        if cfg.lockout_seconds > 0 and len(self._attempts) >= cfg.max_denied:
            self._lockout_until = at + cfg.lockout_seconds
            self._attempts.clear()
            self._window.clear()
            self._last_judged = None
            if self.liveness is not None:
                self.liveness.reset()

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

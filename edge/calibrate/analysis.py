"""From a household's scores to a calibration: threshold, margin, per-person checks, advice.

Pure arithmetic on a :class:`~.scores.ScoreSet`; reading probes, the gallery
and the config, and printing, happen elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .scores import ScoreSet
from .stats import CONFIDENCE, MarginChoice, ThresholdChoice, choose_margin, choose_threshold, rate_lower_bound

__all__ = ["Calibration", "PersonCheck", "calibrate_scores", "DEFAULT_TARGET_FMR"]

#: A door should rather ask for one more frame than let a stranger in.
DEFAULT_TARGET_FMR = 1e-4
#: A person whose probes match less often than this at the threshold needs better enrollment images.
MIN_PERSON_RATE = 0.9
#: ...and at least this many of their probes miss (one miss in five is not yet a pattern).
MIN_MISSES = 2
#: Above this 95 % bound on the FNMR the advice asks for more probes.
FNMR_BOUND_ADVICE = 0.1
#: How many close (but not matching) pairs the advice names.
CLOSE_PAIRS_NAMED = 3
#: Two people whose nearest templates are within this factor of the threshold are "close" (siblings).
CLOSE_FACTOR = 1.15


@dataclass(frozen=True)
class PersonCheck:
    """One enrolled person at the chosen threshold."""

    name: str
    probes: int
    matched: int  # probes within the threshold of their own templates
    identified: int  # probes whose 1:K answer (threshold and margin) is this person
    nearest_other: str | None
    nearest_other_distance: float | None

    @property
    def rate(self) -> float | None:
        return self.matched / self.probes if self.probes else None


@dataclass(frozen=True)
class Calibration:
    model_id: str
    choice: ThresholdChoice
    margin: MarginChoice | None  # None with fewer than two people enrolled
    people: tuple[PersonCheck, ...]
    closest_pair: tuple[str, str, float] | None
    impostor_sources: dict[str, int]
    advice: tuple[str, ...]
    #: the binary head on P(same): threshold as a probability (accept P >= it), None without a head
    head: ThresholdChoice | None = None
    previous_threshold: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def head_probability(self) -> float | None:
        return None if self.head is None else 1.0 - self.head.threshold

    def to_json(self) -> dict:
        c = self.choice
        out = {
            "model_id": self.model_id,
            "threshold": _num(c.threshold),
            "target_fmr": c.target_fmr,
            "fmr": _num(c.fmr),
            "fmr_upper_95": _num(c.fmr_upper),
            "fnmr": _num(c.fnmr),
            "fnmr_upper_95": _num(c.fnmr_upper),
            "impostor_comparisons": c.impostor_comparisons,
            "genuine_comparisons": c.genuine_comparisons,
            "false_matches": c.false_matches,
            "false_non_matches": c.false_non_matches,
            "supported": c.supported,
            "impostor_comparisons_needed": c.needed,
            "confidence": CONFIDENCE,
            "impostor_sources": self.impostor_sources,
            "margin": None if self.margin is None else {**asdict(self.margin), "margin": _num(self.margin.margin)},
            "people": [{**asdict(p), "rate": _num(p.rate)} for p in self.people],
            "closest_pair": None if self.closest_pair is None else {
                "a": self.closest_pair[0], "b": self.closest_pair[1], "distance": _num(self.closest_pair[2])},
            "advice": list(self.advice),
            "previous_threshold": self.previous_threshold,
        }
        if self.head is not None:
            h = self.head
            out["binary_head"] = {"probability_threshold": _num(1.0 - h.threshold), "fmr": _num(h.fmr),
                                  "fmr_upper_95": _num(h.fmr_upper), "fnmr": _num(h.fnmr),
                                  "supported": h.supported}
        out.update(self.extra)
        return out


def _num(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 6)


def calibrate_scores(scores: ScoreSet, model_id: str, target_fmr: float = DEFAULT_TARGET_FMR,
                     previous_threshold: float | None = None) -> Calibration:
    """Pick the threshold and the margin, check every person and pair, and say what to improve."""
    choice = choose_threshold(scores.genuine, scores.impostor, target_fmr)
    t = choice.threshold
    within = scores.probe_best_d <= t
    correct = within & (scores.probe_best == scores.probe_person)
    wrong = within & (scores.probe_best != scores.probe_person)
    margins = scores.probe_second_d - scores.probe_best_d
    margin = None
    if len(scores.people) >= 2:
        margin = choose_margin(margins[correct], margins[wrong])

    nearest: dict[str, tuple[str, float]] = {}
    for a, b, d in scores.pairs:  # nearest first
        nearest.setdefault(a, (b, d))
        nearest.setdefault(b, (a, d))
    checks = []
    for name in scores.people:
        mine = scores.probe_person == name
        own_d = scores.genuine[mine]  # one genuine score per probe, in probe order
        ident = mine & correct & (margins >= (margin.margin if margin else 0.0))
        other = nearest.get(name)
        checks.append(PersonCheck(name, int(mine.sum()), int(np.count_nonzero(own_d <= t)), int(ident.sum()),
                                  other[0] if other else None, other[1] if other else None))

    by_source, start = {}, 0
    for source, n in scores.impostor_sources.items():  # ScoreSet.impostor is concatenated in this order
        by_source[source] = int(np.count_nonzero(scores.impostor[start:start + n] <= t))
        start += n
    advice = _advice(choice, margin, checks, scores)
    n_house = scores.impostor_sources.get("household", 0)
    k_house = by_source.get("household", 0)
    if n_house and k_house and rate_lower_bound(k_house, n_house) > target_fmr:
        # 95 % sure the household's own impostor rate is above the target: the background set,
        # from another camera, is the easier impostor; say so rather than hide it in the total
        advice.insert(1 if not choice.supported else 0,
                      f"the household's own impostor comparisons false-match at {k_house / n_house:.2g} "
                      f"({k_house} of {n_house:,}), above the target {target_fmr:g}: faces from this camera are "
                      f"harder impostors than the background set; to hold the target among yourselves use "
                      f"--no-background with more probes, or check the look-alikes below")
    head = None
    if scores.head_genuine is not None and scores.head_impostor is not None:
        head = choose_threshold(scores.head_genuine, scores.head_impostor, target_fmr)
    return Calibration(model_id, choice, margin, tuple(checks), scores.pairs[0] if scores.pairs else None,
                       dict(scores.impostor_sources), tuple(advice), head, previous_threshold,
                       {"false_matches_by_source": by_source})


def _advice(choice: ThresholdChoice, margin: MarginChoice | None, checks: list[PersonCheck],
            scores: ScoreSet) -> list[str]:
    out = []
    if not choice.supported:
        # one more probe is compared with every background face and every other enrolled person
        n_bg = scores.impostor_sources.get("background", 0) // max(1, len(scores.genuine) + len(scores.people))
        per_probe = max(1, n_bg + len(scores.people) - 1)
        more = choice.more_needed
        supported_fmr = choice.fmr_upper
        out.append(
            f"target FMR {choice.target_fmr:g} not supported: {choice.impostor_comparisons:,} impostor comparisons "
            f"bound the FMR at {supported_fmr:.2g} (95 %); {choice.needed:,} without a false match are needed, "
            f"{more:,} more: about {math.ceil(more / per_probe):,} more probe images (each adds ~{per_probe:,} "
            f"impostor comparisons), the bundle's background set, more enrolled people, or grants marked wrong; "
            f"or ask for --target-fmr {_round_up(supported_fmr)}")
    if choice.genuine_comparisons and choice.fnmr_upper > FNMR_BOUND_ADVICE:
        out.append(f"the false non-match rate is poorly known: {choice.false_non_matches} of "
                   f"{choice.genuine_comparisons} genuine comparisons refused bounds it only at "
                   f"{100 * choice.fnmr_upper:.0f} % (95 %); more probes per person (a few dozen each) pin it down")
    unprobed = [p.name for p in checks if p.probes == 0]
    if unprobed:
        names = ", ".join(unprobed[:8]) + (f" and {len(unprobed) - 8} more" if len(unprobed) > 8 else "")
        out.append(f"no probe images of {names}: their genuine match rate is unknown; calibrate with their probes too")
    for p in checks if choice.supported else ():  # at an unsupported (strict) threshold they would mislead
        if p.rate is not None and p.rate < MIN_PERSON_RATE and p.probes - p.matched >= MIN_MISSES:
            out.append(f"{p.name}: only {p.matched} of {p.probes} probes match at the threshold: re-enroll with "
                       f"better images (frontal, even light, sharp, a few poses; with and without glasses)")
    close = 0
    for a, b, d in scores.pairs:  # nearest first
        if d <= choice.threshold:
            out.append(f"{a} and {b} match each other (nearest templates {d:.3f} <= threshold "
                       f"{choice.threshold:.3f}): siblings or a mixed-up enrollment; check both enrollments, and "
                       f"identification relies on the margin")
        elif d <= CLOSE_FACTOR * choice.threshold and close < CLOSE_PAIRS_NAMED:
            close += 1
            out.append(f"{a} and {b} are close ({d:.3f}, threshold {choice.threshold:.3f}): enroll more images of "
                       f"each so the margin can tell them apart")
    if margin is not None and margin.wrong:
        out.append(f"{margin.wrong} probe(s) were nearer another person than their own within the threshold; "
                   f"the margin {margin.margin:.3f} refuses them and {margin.correct_lost} of {margin.correct} "
                   f"correct identifications")
    return out


def _round_up(x: float) -> str:
    """A round FMR at or above ``x`` (1, 2 or 5 times a power of ten)."""
    e = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        if m * 10**e >= x:
            return f"{m * 10 ** e:.0e}".replace("e-0", "e-")
    return f"{x:.1g}"

"""Error rates over thresholds, and what a finite number of comparisons can support.

Scores are dissimilarities: a comparison is accepted when ``score <= t``
(Euclidean distance; the binary head's ``1 - P(same)``). FMR(t) is the share
of impostor comparisons accepted, FNMR(t) the share of genuine ones refused.

Why the bound: a door that saw no false match in n impostor comparisons has
not shown an FMR of 0, only (with 95 % confidence) one below about 3/n, the
"rule of three" (exactly ``1 - 0.05 ** (1/n)``); with k errors the bound is
the one-sided Clopper-Pearson limit. A target FMR is *supported* only when
the bound at the chosen threshold is at most the target, so 1e-4 needs about
30,000 impostor comparisons. The threshold picked is the largest one whose
bound meets the target (the point estimate would be optimistic); when none
does, nothing is claimed and :attr:`ThresholdChoice.needed` says how many
more comparisons would be enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CONFIDENCE", "ThresholdChoice", "MarginChoice", "choose_margin", "choose_threshold",
           "comparisons_needed", "error_rates", "rate_lower_bound", "rate_upper_bound"]

#: One-sided confidence of every bound this package states.
CONFIDENCE = 0.95


def rate_upper_bound(errors: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of an error rate seen as ``errors`` in ``n`` trials.

    With no error it is ``1 - (1 - confidence) ** (1 / n)`` (about 3/n at 95 %).
    """
    if n <= 0 or errors >= n:
        return 1.0
    alpha = 1.0 - confidence
    if errors <= 0:
        return -math.expm1(math.log(alpha) / n)

    k = np.arange(errors + 1, dtype=np.float64)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])

    def cdf(p: float) -> float:  # P(X <= errors | n, p)
        return float(np.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p)).sum())

    lo, hi = errors / n, 1.0 - 1e-15
    for _ in range(200):  # cdf falls with p: find where it crosses alpha
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(hi, 1e-300):
            break
    return hi


def rate_lower_bound(errors: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson lower bound: the rate is above it with ``confidence``."""
    if n <= 0 or errors <= 0:
        return 0.0
    if errors >= n:
        return (1.0 - confidence) ** (1.0 / n)
    alpha = 1.0 - confidence
    k = np.arange(errors, dtype=np.float64)  # P(X >= errors) = 1 - P(X <= errors - 1)
    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])

    def tail(p: float) -> float:
        return 1.0 - float(np.exp(log_choose + k * math.log(p) + (n - k) * math.log1p(-p)).sum())

    lo, hi = 1e-300, errors / n
    for _ in range(200):  # the tail rises with p: find where it reaches alpha
        mid = (lo + hi) / 2
        if tail(mid) < alpha:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * hi:
            break
    return lo


def comparisons_needed(target: float, confidence: float = CONFIDENCE) -> int:
    """Impostor comparisons without a single false match that support FMR <= ``target``."""
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target}")
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-target))


def error_rates(genuine: np.ndarray, impostor: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at each threshold; empty score sets give NaN."""
    t = np.asarray(thresholds, dtype=np.float64)
    g, i = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    fmr = np.searchsorted(i, t, side="right") / len(i) if len(i) else np.full(t.shape, np.nan)
    fnmr = 1.0 - np.searchsorted(g, t, side="right") / len(g) if len(g) else np.full(t.shape, np.nan)
    return fmr, fnmr


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold for a target FMR, and how far the data supports it."""

    threshold: float
    target_fmr: float
    fmr: float  # impostors accepted at the threshold / impostor comparisons
    fmr_upper: float  # its 95 % upper bound: what the data supports
    fnmr: float  # genuine refused at the threshold / genuine comparisons
    fnmr_upper: float
    impostor_comparisons: int
    genuine_comparisons: int
    false_matches: int
    false_non_matches: int
    supported: bool
    #: impostor comparisons (with no false match) that would support the target
    needed: int

    @property
    def more_needed(self) -> int:
        return max(0, self.needed - self.impostor_comparisons)


def choose_threshold(genuine: np.ndarray, impostor: np.ndarray, target_fmr: float,
                     confidence: float = CONFIDENCE) -> ThresholdChoice:
    """The largest threshold whose FMR upper bound is at most ``target_fmr``.

    Accepting ``score <= t``, the k-th smallest impostor score is the first
    that must be refused when k false matches are allowed, so ``t`` sits just
    below it. When even k = 0 does not meet the target, the choice is the
    k = 0 threshold (the strictest claim the data allows) with
    ``supported=False``: callers must not present it as meeting the target.
    """
    g = np.asarray(genuine, dtype=np.float64)
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    n = int(len(imp))
    if not 0 < target_fmr < 1:
        raise ValueError(f"target FMR must be in (0, 1), got {target_fmr}")
    needed = comparisons_needed(target_fmr, confidence)
    if n == 0:
        t = float(np.max(g)) if len(g) else 0.0
        k = 0
    else:
        # Largest k with bound(k, n) <= target: the bound rises with k and exceeds k / n,
        # so k lies in [0, target * n]; bisect.
        lo, hi = 0, min(int(math.floor(target_fmr * n)), n - 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if rate_upper_bound(mid, n, confidence) <= target_fmr:
                lo = mid
            else:
                hi = mid - 1
        k = lo
        t = float(np.nextafter(imp[k], -np.inf))
    false_matches = int(np.count_nonzero(imp <= t))
    false_non = int(np.count_nonzero(g > t))
    bound = rate_upper_bound(false_matches, n, confidence)
    return ThresholdChoice(
        threshold=t,
        target_fmr=float(target_fmr),
        fmr=false_matches / n if n else float("nan"),
        fmr_upper=bound,
        fnmr=false_non / len(g) if len(g) else float("nan"),
        fnmr_upper=rate_upper_bound(false_non, len(g), confidence),
        impostor_comparisons=n,
        genuine_comparisons=int(len(g)),
        false_matches=false_matches,
        false_non_matches=false_non,
        supported=n > 0 and bound <= target_fmr,
        needed=needed,
    )


@dataclass(frozen=True)
class MarginChoice:
    """The identification margin: how much nearer the best person must be than the runner-up."""

    margin: float
    #: correct identifications (within the threshold, best = the true person) that the margin refuses
    correct_lost: int
    correct: int
    #: wrong identifications (within the threshold, best = someone else) seen, all refused by the margin
    wrong: int


def choose_margin(correct_margins: np.ndarray, wrong_margins: np.ndarray, floor: float = 0.0) -> MarginChoice:
    """The smallest margin that refuses every wrong identification seen (at least ``floor``).

    A wrong identification within the threshold is a household member taken
    for another (siblings); the margin must refuse those, and every correct
    identification it refuses as well is a cost to report.
    """
    c = np.asarray(correct_margins, dtype=np.float64)
    w = np.asarray(wrong_margins, dtype=np.float64)
    margin = float(floor)
    if len(w):
        margin = max(margin, float(np.nextafter(np.max(w), np.inf)))
    # a margin m refuses identifications with margin < m
    return MarginChoice(margin=margin, correct_lost=int(np.count_nonzero(c < margin)), correct=int(len(c)),
                        wrong=int(len(w)))

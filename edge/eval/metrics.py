"""Verification metrics from distances: ROC, AUC, EER, TAR at FAR, accuracy.

Distances: smaller means more alike; a pair is accepted when distance <= t.
"""

from __future__ import annotations

import numpy as np


def accuracy_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> float:
    correct = np.count_nonzero(genuine <= threshold) + np.count_nonzero(impostor > threshold)
    return correct / (len(genuine) + len(impostor))


def best_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The threshold with the highest accuracy (midpoint between neighbouring scores)."""
    scores = np.sort(np.concatenate([genuine, impostor]))
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        return 0.0
    candidates = np.concatenate([[finite[0] - 1e-6], (finite[1:] + finite[:-1]) / 2, [finite[-1] + 1e-6]])
    g = np.sort(genuine)
    i = np.sort(impostor)
    # accepted genuine = count(g <= t); rejected impostors = count(i > t)
    acc = np.searchsorted(g, candidates, side="right") + (len(i) - np.searchsorted(i, candidates, side="right"))
    return float(candidates[int(np.argmax(acc))])


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(a random genuine distance < a random impostor distance), ties count half."""
    g = np.asarray(genuine, dtype=np.float64)
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    below = np.searchsorted(i, g, side="left")
    equal = np.searchsorted(i, g, side="right") - below
    greater = len(i) - below - equal
    return float((greater + 0.5 * equal).sum() / (len(g) * len(i)))


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold: where FRR(t) meets FAR(t)."""
    g = np.sort(genuine)
    i = np.sort(impostor)
    cand = np.unique(np.concatenate([g, i]))
    cand = cand[np.isfinite(cand)]
    frr = 1 - np.searchsorted(g, cand, side="right") / len(g)
    far = np.searchsorted(i, cand, side="right") / len(i)
    k = int(np.argmin(np.abs(frr - far)))
    return float((frr[k] + far[k]) / 2), float(cand[k])


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Largest threshold whose false-accept rate on ``impostor`` is at most ``far``.

    Accepting d <= t, the k-th smallest impostor distance (k = floor(far * n))
    is the first one that must be rejected, so t sits just below it.
    """
    n = len(impostor)
    k = int(np.floor(far * n))
    if k >= n:
        return float(np.max(impostor))
    kth = float(np.partition(impostor, k)[k])
    return float(np.nextafter(kth, -np.inf))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """True-accept rate at the threshold giving ``far``; returns (tar, threshold)."""
    t = threshold_at_far(impostor, far)
    return float(np.count_nonzero(genuine <= t) / len(genuine)), t


def cross_validated_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    """LFW-style accuracy: per fold, the threshold is chosen on the other folds.

    Returns the per-fold accuracies and thresholds.
    """
    accs, thresholds = [], []
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        t = best_threshold(distances[train & same], distances[train & ~same])
        thresholds.append(t)
        accs.append(accuracy_at(distances[test & same], distances[test & ~same], t))
    return accs, thresholds

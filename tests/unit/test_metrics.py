import numpy as np

from facegate.edge.eval import metrics


def test_perfectly_separated_scores():
    g = np.array([0.1, 0.2, 0.3])
    i = np.array([0.8, 0.9, 1.0, 1.1])
    assert metrics.roc_auc(g, i) == 1.0
    eer, _ = metrics.eer(g, i)
    assert eer == 0.0
    t = metrics.best_threshold(g, i)
    assert 0.3 < t < 0.8
    assert metrics.accuracy_at(g, i, t) == 1.0


def test_auc_counts_ties_half_and_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    g = rng.normal(0.8, 0.2, 200).round(2)
    i = rng.normal(1.2, 0.2, 300).round(2)
    brute = np.mean([(1.0 if a < b else 0.5 if a == b else 0.0) for a in g for b in i])
    assert abs(metrics.roc_auc(g, i) - brute) < 1e-12


def test_threshold_at_far_accepts_at_most_that_fraction_of_impostors():
    rng = np.random.default_rng(1)
    impostor = rng.uniform(0, 2, 100_000)
    for far in (1e-2, 1e-3, 1e-4):
        t = metrics.threshold_at_far(impostor, far)
        accepted = np.count_nonzero(impostor <= t)
        assert accepted <= far * len(impostor)
        assert accepted >= far * len(impostor) - 1  # and not needlessly strict


def test_tar_at_far_on_a_hand_worked_case():
    impostor = np.arange(1, 1001) / 1000.0  # 0.001 .. 1.0
    genuine = np.array([0.0005, 0.0015, 0.0025, 0.5])
    tar, t = metrics.tar_at_far(genuine, impostor, 2e-3)  # 2 impostors may pass: t just below 0.003
    assert 0.002 <= t < 0.003
    assert tar == 0.75


def test_cross_validated_accuracy_picks_thresholds_on_other_folds():
    d = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4])
    same = np.array([True, False, True, False, True, False, True, False])
    folds = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    accs, thresholds = metrics.cross_validated_accuracy(d, same, folds)
    assert len(accs) == 4
    assert accs[:3] == [1.0, 1.0, 1.0]
    assert accs[3] == 0.0  # fold 4 is inverted: a threshold learnt elsewhere must fail it

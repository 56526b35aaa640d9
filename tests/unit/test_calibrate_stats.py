"""Threshold selection and its statistics on synthetic scores whose true FMR and FNMR are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facegate.edge.calibrate.stats import (
    choose_margin,
    choose_threshold,
    comparisons_needed,
    error_rates,
    rate_lower_bound,
    rate_upper_bound,
)


def normal_cdf(x: float, mean: float, sd: float) -> float:
    return 0.5 * (1 + math.erf((x - mean) / (sd * math.sqrt(2))))


def test_no_error_in_n_comparisons_bounds_the_rate_at_about_three_over_n():
    for n in (100, 3_000, 30_000, 1_000_000):
        assert rate_upper_bound(0, n) == pytest.approx(3 / n, rel=0.02)
    assert comparisons_needed(1e-4) == 29_956  # ln(0.05) / ln(1 - 1e-4)
    assert rate_upper_bound(0, 29_956) <= 1e-4 < rate_upper_bound(0, 29_955)


def test_bounds_with_errors_match_clopper_pearson_tables():
    assert rate_upper_bound(1, 100) == pytest.approx(0.0466, abs=2e-4)
    assert rate_upper_bound(5, 1000) == pytest.approx(0.01048, abs=5e-5)
    assert rate_upper_bound(10, 10) == 1.0 and rate_upper_bound(0, 0) == 1.0
    assert rate_lower_bound(1, 100) == pytest.approx(0.000513, abs=2e-6)  # 1 - 0.95 ** (1/100)
    assert rate_lower_bound(5, 100) == pytest.approx(0.01972, abs=2e-4)
    assert rate_lower_bound(0, 100) == 0.0
    assert rate_lower_bound(16, 13_572) < 16 / 13_572 < rate_upper_bound(16, 13_572)


def test_threshold_at_target_fmr_on_known_normal_distributions():
    rng = np.random.default_rng(7)
    genuine = rng.normal(0.6, 0.1, 20_000)
    impostor = rng.normal(1.3, 0.1, 2_000_000)
    c = choose_threshold(genuine, impostor, 1e-4)
    true_fmr = normal_cdf(c.threshold, 1.3, 0.1)
    true_fnmr = 1 - normal_cdf(c.threshold, 0.6, 0.1)
    assert c.supported and c.fmr_upper <= 1e-4
    # conservative (a 95 % bound, not the point estimate) but not absurdly so
    assert 0.5e-4 < true_fmr <= 1.05e-4
    assert c.fmr == pytest.approx(true_fmr, rel=0.25)
    assert c.fnmr == pytest.approx(true_fnmr, abs=1e-3)
    # every impostor at or below the threshold is counted, none above
    assert c.false_matches == np.count_nonzero(impostor <= c.threshold)
    assert c.impostor_comparisons == 2_000_000 and c.genuine_comparisons == 20_000


def test_error_rates_are_the_shares_accepted_and_refused():
    fmr, fnmr = error_rates(np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.5, 1.0, 1.5, 2.0]), np.array([0.25, 1.0]))
    assert fmr.tolist() == [0.0, 0.5] and fnmr.tolist() == [0.5, 0.0]


def test_a_target_the_data_cannot_support_is_refused_and_says_what_is_needed():
    rng = np.random.default_rng(1)
    impostor = rng.normal(1.3, 0.1, 5_000)  # 5,000 comparisons support ~6e-4 at best
    c = choose_threshold(rng.normal(0.6, 0.1, 100), impostor, 1e-4)
    assert not c.supported
    assert c.false_matches == 0 and c.threshold < impostor.min()  # the strictest claim the data allows
    assert c.fmr_upper == pytest.approx(3 / 5_000, rel=0.01)
    assert c.needed == 29_956 and c.more_needed == 24_956
    # the same data supports a looser target
    assert choose_threshold(rng.normal(0.6, 0.1, 100), impostor, 1e-3).supported


def test_no_impostors_supports_nothing():
    c = choose_threshold(np.array([0.3, 0.4]), np.array([]), 1e-2)
    assert not c.supported and c.impostor_comparisons == 0 and c.more_needed == c.needed


@pytest.mark.parametrize("target", [0.0, 1.0, -1e-4, 2.0])
def test_a_target_outside_zero_and_one_is_an_error(target):
    with pytest.raises(ValueError):
        choose_threshold(np.array([0.3]), np.array([1.0]), target)


def test_margin_refuses_every_wrong_identification_seen_and_counts_the_cost():
    correct = np.array([0.02, 0.10, 0.30, 0.40])
    wrong = np.array([0.01, 0.05])
    m = choose_margin(correct, wrong)
    assert 0.05 < m.margin < 0.0501
    assert m.wrong == 2 and m.correct == 4 and m.correct_lost == 1  # the 0.02 one
    assert choose_margin(correct, np.array([])).margin == 0.0
    assert choose_margin(correct, np.array([]), floor=0.03).correct_lost == 1

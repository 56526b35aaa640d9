"""A household's scores as the door computes them, and the calibration built on them (synthetic embeddings)."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.edge.calibrate.analysis import calibrate_scores
from facegate.edge.calibrate.scores import Household, gather_scores, head_probability, person_distances

DIM = 32


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def around(centre: np.ndarray, n: int, spread: float, rng) -> np.ndarray:
    return unit(centre + spread * rng.normal(size=(n, DIM)))


@pytest.fixture
def household():
    """ann and bob are strangers to each other; cat and dan are near-twins."""
    rng = np.random.default_rng(3)
    ann, bob, cat = unit(rng.normal(size=(3, DIM)))
    dan = unit(cat + 0.03 * rng.normal(size=DIM))
    centres = {"ann": ann, "bob": bob, "cat": cat, "dan": dan}
    templates = {k: around(c, 1, 0.05, rng) for k, c in centres.items()}
    probes = {k: around(c, 12, 0.05, rng) for k, c in centres.items()}
    background = unit(rng.normal(size=(3000, DIM)))
    return Household(templates, probes), background, centres


def test_each_probe_is_genuine_against_its_person_and_impostor_against_the_others(household):
    h, background, _ = household
    s = gather_scores(h, background)
    assert len(s.genuine) == 48 and s.people == ["ann", "bob", "cat", "dan"]
    assert s.impostor_sources == {"household": 48 * 3, "background": 3000 * 4 + 3000 * 48, "visitors": 0,
                                  "feedback": 0}
    assert len(s.impostor) == sum(s.impostor_sources.values())
    # a person's score is the nearest of their templates
    d = person_distances(h.probes["ann"][:1], h)
    assert d[0, 0] == pytest.approx(np.linalg.norm(h.probes["ann"][0] - h.templates["ann"][0]), abs=1e-5)
    assert s.pairs[0][:2] == ("cat", "dan")  # the twins are the closest pair


def test_calibration_names_the_twins_and_calibrates_a_margin(household):
    h, background, _ = household
    # At 1e-3 the twins' few comparisons do not set the threshold (at 1e-4 they would pull it
    # below their own distances), so they fall within it and only the margin tells them apart.
    cal = calibrate_scores(gather_scores(h, background), "m-1", target_fmr=1e-3)
    assert cal.choice.supported and cal.choice.impostor_comparisons > 150_000
    assert cal.closest_pair[:2] == ("cat", "dan")
    assert any("cat and dan" in a for a in cal.advice)
    # and the household's own impostor rate, above the target, is not hidden in the background's total
    assert any(a.startswith("the household's own impostor comparisons false-match") for a in cal.advice)
    # ann and bob are found every time; the twins are sometimes taken for each other
    by = {p.name: p for p in cal.people}
    assert by["ann"].identified == by["ann"].probes == 12
    assert cal.margin is not None and cal.margin.wrong > 0 and cal.margin.margin > 0
    s = gather_scores(h, background)
    wrong = (s.probe_best != s.probe_person) & (s.probe_best_d <= cal.choice.threshold)
    assert np.all((s.probe_second_d - s.probe_best_d)[wrong] < cal.margin.margin)
    js = cal.to_json()
    for key in ("threshold", "target_fmr", "fmr", "fnmr", "impostor_comparisons", "genuine_comparisons", "supported"):
        assert key in js
    assert js["supported"] is True and js["target_fmr"] == 1e-3
    assert sum(js["false_matches_by_source"].values()) == js["false_matches"]
    assert js["false_matches_by_source"]["household"] > 0  # the twins


def test_a_person_whose_probes_do_not_match_is_told_to_re_enroll(household):
    h, background, centres = household
    rng = np.random.default_rng(9)
    poor = dict(h.probes)
    poor["bob"] = around(centres["bob"], 12, 0.4, rng)  # bad light, blur: far from the template
    cal = calibrate_scores(gather_scores(Household(h.templates, poor), background), "m-1")
    bob = next(p for p in cal.people if p.name == "bob")
    assert bob.rate < 0.9
    assert any(a.startswith("bob: only") and "re-enroll" in a for a in cal.advice)


def test_without_the_background_set_a_small_household_cannot_claim_1e_4(household):
    h, _, _ = household
    cal = calibrate_scores(gather_scores(h, None), "m-1", target_fmr=1e-4)
    assert not cal.choice.supported
    assert cal.choice.impostor_comparisons == 144
    assert any("not supported" in a and "more" in a for a in cal.advice)
    assert cal.to_json()["supported"] is False


def test_marked_wrong_grants_and_visitors_join_the_impostors(household):
    h, background, centres = household
    rng = np.random.default_rng(5)
    stranger = unit(rng.normal(size=DIM))
    cat_as_dan = around(centres["cat"], 1, 0.05, rng)[0]  # cat let in as dan: compared with everyone but cat
    s = gather_scores(h, background, wrong_grants=[(stranger, None), (cat_as_dan, "cat")],
                      visitors=unit(rng.normal(size=(5, DIM))))
    assert s.impostor_sources["feedback"] == 4 + 3
    assert s.impostor_sources["visitors"] == 5 * 4


def test_the_binary_head_is_calibrated_on_its_probability(household):
    h, background, _ = household
    weights, bias = -np.full(DIM, 12.0, np.float32), 6.0  # P(same) falls as |a - b| grows
    p = head_probability(h.probes["ann"][:2], h.templates["ann"], weights, bias)
    assert p.shape == (2, 1) and np.all((0 < p) & (p < 1))
    s = gather_scores(h, background, head=(weights, bias))
    assert len(s.head_genuine) == len(s.genuine) and len(s.head_impostor) == len(s.impostor)
    cal = calibrate_scores(s, "m-1")
    assert cal.head is not None and 0 < cal.head_probability < 1
    assert cal.to_json()["binary_head"]["probability_threshold"] == pytest.approx(cal.head_probability, abs=1e-6)
    # accepting P >= the chosen probability lets in no more impostors than the bound allows
    accepted = np.count_nonzero(1 - s.head_impostor >= cal.head_probability)
    assert accepted == cal.head.false_matches


def test_nobody_enrolled_is_an_error():
    with pytest.raises(ValueError, match="enroll"):
        gather_scores(Household({}), None)

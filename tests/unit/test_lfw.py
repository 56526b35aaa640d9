"""The LFW-half protocol: splits, pairs, and the distance bookkeeping of the evaluation."""

import numpy as np
import pytest

from facegate.edge.eval.evaluate import EmbeddingTable, genuine_distances, impostor_distances, pair_distances
from facegate.edge.eval.lfw import Pair, load_protocol, parse_pairs

from ..helpers import need_lfw


def test_pairs_file_parses_into_ten_identity_disjoint_folds():
    proto = load_protocol(need_lfw())
    assert len(proto.pairs) == 6000
    assert sum(p.same for p in proto.pairs) == 3000
    assert not proto.split_a & proto.split_b
    assert not proto.rest & (proto.split_a | proto.split_b)
    assert len(proto.images_of(proto.split_b)) == 6311  # the figure the protocol README implies
    for _, a, b in proto.pair_paths((6,)):
        assert a.is_file() and b.is_file()


def test_parse_pairs_rejects_a_truncated_file(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("1\t2\nA\t1\t2\nB\t1\tC\t1\n")
    with pytest.raises(ValueError, match="expected 4 pairs"):
        parse_pairs(f)


def test_missing_lfw_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="LFW not found"):
        load_protocol(tmp_path)


def _table():
    v = np.array([[1, 0], [0.8, 0.6], [0, 1], [0, 1]], dtype=np.float32)
    return EmbeddingTable(["a1", "a2", "b1", "c1"], v, np.array([True, True, True, False]), "m")


def test_a_pair_with_a_face_not_acquired_is_scored_as_rejected():
    t = _table()
    pairs = [(Pair(6, "A", 1, "A", 2), "a1", "a2"), (Pair(6, "A", 1, "C", 1), "a1", "c1")]
    d = pair_distances(t, pairs)
    assert d[0] == pytest.approx(np.hypot(0.2, 0.6))
    assert d[1] == np.inf


def test_impostor_and_genuine_distances_cover_each_acquired_pair_once():
    t = _table()
    people = ["A", "A", "B", "C"]
    imp = np.sort(impostor_distances(t, people))
    # acquired: a1, a2 (A), b1 (B): impostor pairs a1-b1, a2-b1
    np.testing.assert_allclose(imp, np.sort([np.sqrt(2), np.hypot(0.8, 0.4)]), atol=1e-6)
    np.testing.assert_allclose(genuine_distances(t, people), [np.hypot(0.2, 0.6)], atol=1e-6)

"""Genuine and impostor scores of one household, as the door would compute them.

The door compares a face with each enrolled person and keeps the nearest of
that person's templates, so every score here is a face against a person
(minimum distance over the person's templates), except where said otherwise:

* **genuine**: each probe of person P (camera session, probe folder, or a
  denial marked wrong) against P;
* **impostor, household**: each probe of P against every other enrolled person;
* **impostor, background**: each stranger of the bundle's background set
  against every enrolled person, and against every probe (single-image
  comparisons: a stranger against a household face as the door's camera sees
  it; with one template per person, the common one-shot enrollment, the two
  are the same comparison);
* **impostor, visitors**: each probe of someone not enrolled against every
  enrolled person;
* **impostor, feedback**: each grant marked wrong against every enrolled
  person other than the one it turned out to be.

Identification (1:K) also needs the runner-up: for every genuine probe the
best and second-best person, so the margin can be calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Household", "ScoreSet", "gather_scores", "head_probability", "person_distances"]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between L2-normalised rows, (len(a), len(b))."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    d = 2.0 - 2.0 * (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T)
    return np.sqrt(np.maximum(d, 0.0))


@dataclass(frozen=True)
class Household:
    """Enrolled templates and probe embeddings per person (each (n, dim) float32, L2-normalised)."""

    templates: dict[str, np.ndarray]
    probes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def people(self) -> list[str]:
        return sorted(self.templates)

    @classmethod
    def from_rows(cls, names: list[str], matrix: np.ndarray, probes: dict[str, np.ndarray] | None = None) -> Household:
        """From a gallery's ``templates(model_id)``: a name per row and the matrix."""
        templates: dict[str, list[np.ndarray]] = {}
        for name, row in zip(names, np.asarray(matrix, np.float32)):
            templates.setdefault(name, []).append(row)
        return cls({k: np.stack(v) for k, v in templates.items()}, dict(probes or {}))


def person_distances(queries: np.ndarray, household: Household) -> np.ndarray:
    """(len(queries), people) distance of each query to each person (nearest template)."""
    people = household.people
    out = np.full((len(queries), len(people)), np.inf)
    for j, name in enumerate(people):
        if len(queries):
            out[:, j] = _distances(queries, household.templates[name]).min(axis=1)
    return out


def head_probability(queries: np.ndarray, refs: np.ndarray, weights: np.ndarray, bias: float,
                     chunk: int = 256) -> np.ndarray:
    """The binary head's P(same) = sigmoid(w . |q - r| + b) for every (query, ref), (len(q), len(r))."""
    q = np.asarray(queries, np.float32)
    r = np.asarray(refs, np.float32)
    w = np.asarray(weights, np.float32)
    out = np.empty((len(q), len(r)), dtype=np.float64)
    for s in range(0, len(q), chunk):
        logits = np.abs(q[s:s + chunk, None, :] - r[None, :, :]) @ w + bias
        out[s:s + chunk] = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return out


def _head_person(queries: np.ndarray, household: Household, head: tuple[np.ndarray, float]) -> np.ndarray:
    """Head probability per (query, person): the most confident of the person's templates."""
    people = household.people
    out = np.zeros((len(queries), len(people)))
    for j, name in enumerate(people):
        if len(queries):
            out[:, j] = head_probability(queries, household.templates[name], *head).max(axis=1)
    return out


@dataclass(frozen=True)
class ScoreSet:
    """Everything calibration needs, computed once.

    ``probe_person`` is the true person of each genuine probe, ``probe_best``/
    ``probe_best_d``/``probe_second_d`` its 1:K answer (second is inf when only
    one person is enrolled). Head scores are ``1 - P(same)`` (None without a head).
    """

    people: list[str]
    genuine: np.ndarray
    probe_person: np.ndarray
    probe_best: np.ndarray
    probe_best_d: np.ndarray
    probe_second_d: np.ndarray
    impostor: np.ndarray
    impostor_sources: dict[str, int]
    #: nearest templates of each pair of enrolled people: (a, b, distance), nearest first
    pairs: list[tuple[str, str, float]]
    head_genuine: np.ndarray | None = None
    head_impostor: np.ndarray | None = None


def gather_scores(
    household: Household,
    background: np.ndarray | None = None,
    wrong_grants: list[tuple[np.ndarray, str | None]] | None = None,
    head: tuple[np.ndarray, float] | None = None,
    visitors: np.ndarray | None = None,
) -> ScoreSet:
    """Genuine and impostor scores (see the module docstring) from embeddings alone.

    ``wrong_grants`` are (embedding, who it really was or None) of grants
    marked wrong; denials marked wrong come in as probes of their person.
    ``head`` is the bundle's binary head (weights, bias) to score as well.
    ``visitors`` are probes of people not enrolled: impostors against everyone.
    """
    people = household.people
    if not people:
        raise ValueError("nobody is enrolled: enroll the household before calibrating")
    col = {name: j for j, name in enumerate(people)}
    probe_rows, probe_names = [], []
    for name, vecs in sorted(household.probes.items()):
        if name not in col:
            raise ValueError(f"probes for {name!r}, who is not enrolled")
        probe_rows.append(np.asarray(vecs, np.float32).reshape(-1, household.templates[name].shape[1]))
        probe_names += [name] * len(probe_rows[-1])
    dim = next(iter(household.templates.values())).shape[1]
    probes = np.concatenate(probe_rows) if probe_rows else np.zeros((0, dim), np.float32)
    truth = np.array([col[n] for n in probe_names], dtype=np.intp)
    own = np.zeros((len(probes), len(people)), dtype=bool)
    own[np.arange(len(probes)), truth] = True

    d = person_distances(probes, household)
    genuine = d[own]
    parts = {"household": d[~own]}
    bg = np.zeros((0, dim), np.float32) if background is None else np.asarray(background, np.float32)
    parts["background"] = np.concatenate([person_distances(bg, household).ravel(), _distances(bg, probes).ravel()])
    vis = np.zeros((0, dim), np.float32) if visitors is None else np.asarray(visitors, np.float32)
    parts["visitors"] = person_distances(vis, household).ravel()
    fb: list[np.ndarray] = []
    fb_vecs, fb_keep = [], []
    for vec, who in wrong_grants or []:
        keep = np.array([name != who for name in people])
        fb.append(person_distances(np.asarray(vec, np.float32)[None], household)[0][keep])
        fb_vecs.append(np.asarray(vec, np.float32))
        fb_keep.append(keep)
    parts["feedback"] = np.concatenate(fb) if fb else np.zeros(0)

    order = np.argsort(d, axis=1) if len(probes) else np.zeros((0, len(people)), dtype=np.intp)
    rows = np.arange(len(probes))
    best = order[:, 0] if len(probes) else np.zeros(0, np.intp)
    second = d[rows, order[:, 1]] if len(people) > 1 and len(probes) else np.full(len(probes), np.inf)

    pairs = []
    for a in range(len(people)):
        for b in range(a + 1, len(people)):
            pd = _distances(household.templates[people[a]], household.templates[people[b]])
            pairs.append((people[a], people[b], float(pd.min())))
    pairs.sort(key=lambda p: p[2])

    head_g = head_i = None
    if head is not None:
        hp = _head_person(probes, household, head)
        hb = _head_person(bg, household, head)
        hbp = head_probability(bg, probes, *head) if len(bg) and len(probes) else np.zeros((0,))
        hf = [(_head_person(v[None], household, head)[0])[k] for v, k in zip(fb_vecs, fb_keep)]
        head_g = 1.0 - hp[own]
        hv = _head_person(vis, household, head)
        head_i = 1.0 - np.concatenate([hp[~own], hb.ravel(), np.ravel(hbp), hv.ravel(), *hf])

    return ScoreSet(
        people=people,
        genuine=genuine,
        probe_person=np.array(probe_names, dtype=object),
        probe_best=np.array([people[j] for j in best], dtype=object),
        probe_best_d=d[rows, best] if len(probes) else np.zeros(0),
        probe_second_d=second,
        impostor=np.concatenate(list(parts.values())),
        impostor_sources={k: int(len(v)) for k, v in parts.items()},
        pairs=pairs,
        head_genuine=head_g,
        head_impostor=head_i,
    )

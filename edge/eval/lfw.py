"""LFW and the project's LFW-half protocol (see shared/data/README.md).

Split A = people in folds 1-5 of pairs.txt, split B = people in folds 6-10,
Rest = everybody else. Training may use A + Rest; every reported figure is
measured on split B only, so no test identity is ever trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where the shared data sits relative to a checkout; tests skip without it. A developer's path:
#: the CLI's ``eval`` never falls back to it (an installed package has no checkout beside it).
DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw"
#: The LFW folder when ``--data`` is not given.
LFW_ENV = "FACEGATE_LFW"


def lfw_root(explicit: str | Path | None, env: dict[str, str] | None = None) -> Path | None:
    """The LFW folder a command was told about: ``--data``, else ``$FACEGATE_LFW``, else None."""
    import os

    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    return Path(env[LFW_ENV]) if env.get(LFW_ENV) else None
EVAL_FOLDS = (6, 7, 8, 9, 10)


@dataclass(frozen=True)
class Pair:
    fold: int  # 1..10
    name_a: str
    index_a: int
    name_b: str
    index_b: int

    @property
    def same(self) -> bool:
        return self.name_a == self.name_b


@dataclass(frozen=True)
class LfwProtocol:
    root: Path
    pairs: tuple[Pair, ...]

    @property
    def images_dir(self) -> Path:
        return self.root / "lfw-deepfunneled"

    def image_path(self, name: str, index: int) -> Path:
        return self.images_dir / name / f"{name}_{index:04d}.jpg"

    def people_in_folds(self, folds: tuple[int, ...] | range) -> set[str]:
        out: set[str] = set()
        for p in self.pairs:
            if p.fold in folds:
                out.update((p.name_a, p.name_b))
        return out

    @property
    def split_a(self) -> set[str]:
        return self.people_in_folds(range(1, 6))

    @property
    def split_b(self) -> set[str]:
        return self.people_in_folds(EVAL_FOLDS)

    def all_people(self) -> list[str]:
        return sorted(p.name for p in self.images_dir.iterdir() if p.is_dir())

    @property
    def rest(self) -> set[str]:
        return set(self.all_people()) - self.split_a - self.split_b

    def images_of(self, people: set[str] | list[str]) -> list[Path]:
        """Every image of the given people, in a stable order."""
        out: list[Path] = []
        for name in sorted(people):
            out.extend(sorted((self.images_dir / name).glob("*.jpg")))
        return out

    def pair_paths(self, folds: tuple[int, ...]) -> list[tuple[Pair, Path, Path]]:
        return [
            (p, self.image_path(p.name_a, p.index_a), self.image_path(p.name_b, p.index_b))
            for p in self.pairs
            if p.fold in folds
        ]


def parse_pairs(path: Path) -> tuple[Pair, ...]:
    """Read View-2 pairs.txt: a header 'folds n', then per fold n matched and n mismatched."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    n_folds, n = int(lines[0][0]), int(lines[0][1])
    body = lines[1:]
    if len(body) != n_folds * 2 * n:
        raise ValueError(f"{path}: expected {n_folds * 2 * n} pairs, found {len(body)}")
    pairs = []
    for k, row in enumerate(body):
        fold = k // (2 * n) + 1
        if len(row) == 3:
            pairs.append(Pair(fold, row[0], int(row[1]), row[0], int(row[2])))
        elif len(row) == 4:
            pairs.append(Pair(fold, row[0], int(row[1]), row[2], int(row[3])))
        else:
            raise ValueError(f"{path}: malformed line {k + 2}: {' '.join(row)}")
    return tuple(pairs)


def load_protocol(root: str | Path | None = None) -> LfwProtocol:
    root = Path(root) if root else DEFAULT_ROOT
    if not (root / "pairs.txt").is_file() or not (root / "lfw-deepfunneled").is_dir():
        raise FileNotFoundError(f"{root}: LFW not found (needs pairs.txt and lfw-deepfunneled/)")
    return LfwProtocol(root=root, pairs=parse_pairs(root / "pairs.txt"))


def pick_central(detections: list, image_shape: tuple[int, ...]):
    """The labelled LFW face is the one at the image centre, not always the largest."""
    if not detections:
        return None
    cy, cx = image_shape[0] / 2, image_shape[1] / 2

    def off(d) -> float:
        x1, y1, x2, y2 = d.box
        return float(np.hypot((x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy))

    return min(detections, key=off)

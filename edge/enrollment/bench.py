"""How often the enrollment checks would wrongly refuse or wrongly take a photo, measured on LFW.

``python -m facegate.edge.enrollment.bench [--data ../shared/data/lfw] [--people 150]``
prints one JSON object. For each of the first N LFW people with two or more
photos that pass the quality gate, the first gated photo is enrolled and the
second judged: refused as unlike the person (a false refusal), skipped as a
copy (a false skip). Each second photo is also judged as a new name against
everyone else enrolled: refused as matching someone else is a false
"matches X" (the door's false-match rate at this threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from ..config import Config
    from ..imageio import load_image
    from ..pipeline import create_pipeline
    from ..types import Embedding
    from .sanity import REFUSED, SKIPPED, EnrollRules, TemplateCheck

    ap = argparse.ArgumentParser(prog="python -m facegate.edge.enrollment.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "lfw")
    ap.add_argument("--people", type=int, default=150)
    args = ap.parse_args(argv)
    root = args.data / "lfw-deepfunneled"
    if not root.is_dir():
        print(f"no LFW at {root}", file=sys.stderr)
        return 2
    pipeline = create_pipeline(Config.default())
    rules = EnrollRules.for_threshold(pipeline.embedder.thresholds.default)
    start = time.perf_counter()
    firsts: dict[str, np.ndarray] = {}
    seconds: dict[str, np.ndarray] = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        if len(firsts) >= args.people:
            break
        photos = sorted(person.glob("*.jpg"))
        if len(photos) < 2:
            continue
        vecs = []
        for path in photos[:6]:
            face, _ = pipeline.largest(load_image(path))
            if face is not None and face.embedding is not None:
                vecs.append(face.embedding.vector)
            if len(vecs) == 2:
                break
        if len(vecs) == 2:
            firsts[person.name], seconds[person.name] = vecs
    names = list(firsts)
    matrix = np.stack([firsts[n] for n in names])
    mismatch = skipped = other = 0
    for n in names:
        emb = Embedding(seconds[n], pipeline.model_id)
        status, why, _ = TemplateCheck(n, pipeline.model_id, rules, names, matrix).judge(emb)
        mismatch += status == REFUSED and "does not look like" in why
        skipped += status == SKIPPED
        others = [m for m in names if m != n]
        rows = np.stack([firsts[m] for m in others])
        status, why, _ = TemplateCheck(f"new {n}", pipeline.model_id, rules, others, rows).judge(emb)
        other += status == REFUSED
    k = len(names)
    print(json.dumps({
        "model_id": pipeline.model_id, "threshold": round(rules.threshold, 4),
        "duplicate_distance": round(rules.duplicate_distance, 4), "people": k,
        "second_photo_refused_as_unlike": mismatch, "second_photo_refused_rate": round(mismatch / k, 4),
        "second_photo_skipped_as_copy": skipped,
        "new_name_refused_as_matching_someone": other, "impostor_comparisons": k * (k - 1),
        "seconds": round(time.perf_counter() - start, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

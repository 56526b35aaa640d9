"""Equal-budget ablation: run every ``models/recipes/ablation_*.toml`` in turn, one JSON row each.

    python benchmarks/ablation.py [--runs ../runs/ablation] [--only random,semi_hard] [--set threads=1]

Each recipe extends ``_ablation_common.toml`` (same data, seed, batches and
training-time budget), so the rows differ only in the miner or loss terms
under test. Resumable: a run whose folder holds ``result.json`` is not run
again (its row is printed from that file); an unfinished one continues from
its checkpoint. Each run is a separate process (``facegate train run``), so a
crash or Ctrl-C loses at most the current step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "models" / "recipes"
FIGURES = ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4",
           "failures_to_acquire", "head_accuracy_at_0.5", "head_accuracy_mean")


def row_for(name: str, result: dict) -> dict:
    cfg, report = result.get("config", {}), result.get("eval") or {}
    return {"run": name, "miner": cfg.get("miner"),
            **{k: cfg.get(k) for k in ("triplet", "distill_dlib", "distill_facenet", "distill_facenet_mode",
                                       "binary_head", "max_minutes")},
            "centre_teachers": cfg.get("centre_teachers", False),  # runs from before the key: not centred
            "steps": result.get("steps"), "seconds": result.get("seconds"), "stop_reason": result.get("stop_reason"),
            **{k: report[k] for k in FIGURES if k in report}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", type=Path, default=RECIPES, help="folder of ablation_*.toml (default: %(default)s)")
    ap.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "ablation",
                    help="one sub-folder per run (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated run names (recipe names without 'ablation_')")
    ap.add_argument("--cache", type=Path, default=None, help="override the recipes' training cache")
    ap.add_argument("--eval-cache", type=Path, default=None, help="override the recipes' evaluation set")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    ap.add_argument("--dry-run", action="store_true", help="list what would run")
    args = ap.parse_args(argv)

    only = {x.strip() for x in args.only.split(",") if x.strip()}
    recipes = sorted(args.recipes.glob("ablation_*.toml"))
    failed = 0
    for recipe in recipes:
        name = recipe.stem.removeprefix("ablation_")
        if only and name not in only:
            continue
        out = args.runs.resolve() / name
        result_file = out / "result.json"
        if not result_file.is_file():
            cmd = [sys.executable, "-m", "facegate.models.cli", "train", "run", "--config", str(recipe),
                   "--out", str(out), "--resume", "--no-progress"]
            if args.cache:
                cmd += ["--cache", str(args.cache.resolve())]
            if args.eval_cache:
                cmd += ["--eval-cache", str(args.eval_cache.resolve())]
            for s in args.set:
                cmd += ["--set", s]
            if args.dry_run:
                print(" ".join(cmd), file=sys.stderr)
                continue
            print(f"== {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
            # from the project root: the recipes' relative paths (../cache/...) are relative to it
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, cwd=ROOT)
            try:
                rc = proc.wait()
            except KeyboardInterrupt:  # the run got the same Ctrl-C: let it finish its step and checkpoint
                rc = proc.wait()
                return 130
            if rc != 0 or not result_file.is_file():
                print(json.dumps({"run": name, "error": f"exit code {rc}"}), flush=True)
                failed += 1
                if rc == 130:  # interrupted: stop the series, resume later
                    return 130
                continue
        print(json.dumps(row_for(name, json.loads(result_file.read_text()))), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

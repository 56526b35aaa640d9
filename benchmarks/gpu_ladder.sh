#!/usr/bin/env bash
# Train ladder rungs side by side on a borrowed GPU from a pack, and write back what a CPU machine needs.
#   python -m facegate.models.pack pack ../cache/views_box ../runs/irn_full .gpu/pack     (here)
#   benchmarks/gpu_ladder.sh .gpu/pack OUT models/recipes/ladder/irn_r160_gpu.toml ...  (there)
# The machine needs python3 with torch, numpy and OpenCV; the checkout itself is the package when facegate is
# not installed. Each recipe's run comes back as OUT/<recipe>.pt.partN (fp16, no optimiser: join them with
# python -m facegate.models.pack join) and OUT/<recipe>.log. LADDER_SET='{"max_steps": 2}' overrides every
# recipe (a dry run).
set -euo pipefail
pack=$1; out=$2; shift 2
py=${PYTHON:-python3}
work=${WORK:-/tmp/facegate-gpu}
mkdir -p "$out" "$work"
if ! "$py" -c "import facegate.models.ladder" 2>/dev/null; then
    mkdir -p "$work/pkg/facegate"
    ln -sfn "$PWD/edge" "$work/pkg/facegate/edge"
    ln -sfn "$PWD/models" "$work/pkg/facegate/models"
    export PYTHONPATH="$work/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -m facegate.models.pack unpack "$pack" "$work/views" "$work/teacher"
train='
import json, logging, os, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
from facegate.models.ladder import LadderConfig, train_rung
cfg = LadderConfig.from_toml(sys.argv[1], **json.loads(os.environ.get("LADDER_SET") or "{}"))
print(json.dumps(train_rung(cfg)))
'
pids=()
for recipe in "$@"; do
    "$py" -c "$train" "$recipe" > "$out/$(basename "$recipe" .toml).log" 2>&1 &
    pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
for recipe in "$@"; do
    run=$("$py" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["out"])' "$recipe")
    [ -f "$run/checkpoint.pt" ] && "$py" -m facegate.models.pack slim "$run" "$out/$(basename "$recipe" .toml).pt"
done
exit $rc

#!/usr/bin/env bash
# Export one ladder rung and measure each of its bundles through the door's full pipeline.
#   benchmarks/ship_rung.sh RUN_FOLDER NAME [VIEWS] [OUT]
# Writes <OUT>/<NAME>-{onnx,tflite}-{int8,fp32}/ (defaults: VIEWS ../cache/views_box, OUT ../export), each
# manifest with its parity to PyTorch (500 real crops of the rung's own view) and its own LFW-half figures
# (facegate eval lfw --record). FORMATS="onnx" skips TFLite; EXPORT_ARGS adds export flags (a run trained without
# an eval set needs --evaluation REPORT.json from facegate train eval --json). Prints JSON lines.
set -euo pipefail
run=$1; name=$2; views=${3:-../cache/views_box}; out=${4:-../export}
fg=${FACEGATE:-.venv/bin/facegate}
for fmt in ${FORMATS:-onnx tflite}; do
    "$fg" export "$fmt" "$run" --out "$out" --name "$name" --calib "$views" --threads 2 --json ${EXPORT_ARGS:-}
    for precision in int8 fp32; do
        "$fg" eval lfw --embedder "$out/$name-$fmt-$precision" --record --json --workers 2
    done
done

#!/usr/bin/env bash
# One command: set up, then count people in real footage with a real TFLite
# model and print one JSON update per counted frame.
#   scripts/demo.sh [extra crowdsign run arguments, e.g. --frames 100]
# Uses the COCO SSD detector and the OpenCV sample video from ../shared until
# crowdsign ships a model of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/venv.sh
.venv/bin/python models/tools/set_max_detections.py \
    ../shared/models/ssd_mobilenet_v1_coco_quant.tflite --max 100 \
    --card models/cards/ssd_mobilenet_v1_coco_quant.toml \
    -o build/models/ssd_mobilenet_v1_coco_quant_max100.tflite
exec .venv/bin/crowdsign run -c examples/replay-video.toml --json "${@:---frames=300}"

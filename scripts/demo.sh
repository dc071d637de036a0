#!/usr/bin/env bash
# One command: set up, then count people in real footage with crowdsign's own
# int8 density model and print one JSON update per counted frame.
#   scripts/demo.sh [extra crowdsign run arguments, e.g. --frames 100]
# Needs nothing from ../shared: the sample video is OpenCV's vtest.avi, taken
# from Debian's opencv-doc package when ../shared is not beside this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/venv.sh
scripts/fetch-sample.sh
exec .venv/bin/crowdsign run -c examples/replay-video.toml --json "${@:---frames=300}"

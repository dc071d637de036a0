#!/usr/bin/env bash
# One command: set up, then run the whole test suite (what .ci/run calls):
# the unit and daemon tests (tests/), then the image (image-build/build.sh,
# cached under /var/cache/crowdsign-ci) booted in QEMU with the virtual-rig
# tests (hw-tests/).
#   scripts/test.sh                  everything
#   scripts/test.sh tests/test_x.py  only pytest with these arguments
#   CROWDSIGN_RIG=0 scripts/test.sh  tests/ only, no image, no VM
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/venv.sh test
.venv/bin/python -m pip install -q -r hw-tests/requirements.txt
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
# A failure in tests/ still lets the rig run, so one CI run reports both.
status=0
.venv/bin/python -m pytest -q || status=$?
if [ "${CROWDSIGN_RIG:-1}" = 0 ]; then
    exit $status
fi
if [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "test.sh: the virtual rig needs an amd64 host; skipped" >&2
    exit $status
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
start=$SECONDS
$sudo image-build/build.sh
echo "test.sh: image ready in $((SECONDS - start)) s" >&2
start=$SECONDS
.venv/bin/python -m pytest -q -rs -p no:cacheprovider hw-tests || status=$?
echo "test.sh: virtual rig tests took $((SECONDS - start)) s" >&2
exit $status

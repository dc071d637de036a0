#!/usr/bin/env bash
# Puts the sample footage (OpenCV's vtest.avi, 768x576, 10 fps) at build/sample/vtest.avi.
# Taken from ../shared when this checkout has it beside it, else extracted from
# Debian's opencv-doc package (downloaded, not installed: no root needed).
set -euo pipefail
cd "$(dirname "$0")/.."
target=build/sample/vtest.avi
[ -s "$target" ] && exit 0
mkdir -p build/sample
if [ -s ../shared/video/vtest.avi ]; then
    ln -sf "$(cd ../shared/video && pwd)/vtest.avi" "$target"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download opencv-doc >/dev/null)
dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb \
    | tar -x -O ./usr/share/doc/opencv-doc/examples/data/vtest.avi > "$target.part"
mv "$target.part" "$target"

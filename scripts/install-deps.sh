#!/usr/bin/env bash
# Debian/Raspberry Pi OS packages crowdsign needs to build, run and test.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again.
#   packages:     the daemon and its tests (systemd-python builds against libsystemd-dev;
#                 strace for tests/test_privacy_strace.py, socat for the serial tests)
#   rig_packages: the image and the virtual rig (image-build/, hw-tests/), on amd64 hosts:
#                 mmdebstrap, mke2fs, mkfs.vfat + mtools, qemu-system-x86_64,
#                 systemd-analyze (systemd), nsenter/setpriv (util-linux)
set -euo pipefail
packages=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev socat strace)
rig_packages=(systemd util-linux mmdebstrap e2fsprogs dosfstools mtools qemu-system-x86)
missing() {
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=($(missing "${packages[@]}"))
need_rig=()
[ "$(dpkg --print-architecture)" = amd64 ] && need_rig=($(missing "${rig_packages[@]}"))
if [ ${#need[@]} -gt 0 ] || [ ${#need_rig[@]} -gt 0 ]; then
    $sudo apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
if [ ${#need_rig[@]} -gt 0 ]; then
    # Without recommends: qemu's would pull in firmware, GUI and network helpers.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_rig[@]}"
fi

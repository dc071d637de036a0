#!/usr/bin/env bash
# Debian/Raspberry Pi OS packages crowdsign needs to build, run and test.
# Used by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
packages=(python3 python3-venv python3-dev gcc pkg-config libsystemd-dev socat)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

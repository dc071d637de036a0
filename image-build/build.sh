#!/usr/bin/env bash
# Builds the crowdsign amd64 image for the virtual rig (hw-tests/): a Debian
# bookworm root filesystem made by mmdebstrap, crowdsign installed in a venv
# from this checkout, read-only root, volatile journal, no swap.
#
#   image-build/build.sh [--out DIR] [--cache DIR] [--no-test-rig]
#
# Writes to OUT (default build/image/):
#   rootfs.ext4          the root filesystem (whole-disk ext4, label rootfs)
#   bootfs.img           the boot partition (FAT, label bootfs) with an example crowdsign.toml
#   vmlinuz, initrd.img  the image's own kernel and initramfs, for qemu -kernel/-initrd
#   image.env            what was built: cache keys, sizes, build seconds
#
# Two layers, each cached under CACHE (default /var/cache/crowdsign-ci) by a
# hash of what goes into it, so a second build only copies files:
#   base-KEY.tar     Debian packages + a venv with crowdsign's dependency wheels;
#                    KEY hashes packages-amd64.txt, pyproject.toml, this script's base recipe.
#   image-KEY/       the finished image; KEY adds the daemon's source, systemd/,
#                    image-build/, the model and the video.
# --no-test-rig leaves out the serial-console autologin (an image for real use).
# Needs root (mmdebstrap --mode=root, mke2fs -d keeps ownership), mmdebstrap,
# e2fsprogs, dosfstools, mtools; scripts/install-deps.sh installs them.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$REPO/../shared"
OUT="$REPO/build/image"
CACHE="${CROWDSIGN_CACHE:-/var/cache/crowdsign-ci}"
MIRROR="${CROWDSIGN_MIRROR:-http://deb.debian.org/debian}"
TEST_RIG=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --cache) CACHE="$2"; shift 2 ;;
        --no-test-rig) TEST_RIG=0; shift ;;
        *) echo "usage: $0 [--out DIR] [--cache DIR] [--no-test-rig]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "image-build: needs root (mmdebstrap --mode=root, file ownership)" >&2; exit 1; }
for tool in mmdebstrap mke2fs mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || { echo "image-build: $tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done
log() { printf 'image-build [%3ds]: %s\n' "$SECONDS" "$*" >&2; }
NICE=(nice -n 10)
mkdir -p "$CACHE" "$OUT"
HERE="$REPO/image-build"
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
# --- 1. the model: crowdsign's own (models/crowdsign_density_gray), the default everywhere
MODEL="$REPO/models/crowdsign_density_gray/crowdsign_density_gray.tflite"
VIDEO="$SHARED/video/vtest.avi"

# --- 2. wheels: dependencies (cached by pyproject.toml) and crowdsign itself
# setuptools writes build/ and *.egg-info beside the sources: build from a copy.
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/daemon" "$SRC/"
rm -rf "$SRC"/daemon/*.egg-info
wheels_key="$(hash_of "$REPO/pyproject.toml" <(echo py311-bookworm-amd64))"
WHEELS="$CACHE/wheels-$wheels_key"
if [ ! -f "$WHEELS/.done" ]; then
    log "wheels: building crowdsign's dependencies with Debian's python3 (systemd-python from source)"
    rm -rf "$CACHE"/wheels-* "$CACHE/buildvenv"
    /usr/bin/python3 -m venv "$CACHE/buildvenv"
    "$CACHE/buildvenv/bin/pip" install -q --upgrade pip wheel "setuptools>=77"
    "${NICE[@]}" "$CACHE/buildvenv/bin/pip" wheel -q --wheel-dir "$WHEELS" "$SRC[systemd]"
    rm -f "$WHEELS"/crowdsign-*.whl
    touch "$WHEELS/.done"
fi
DIST="$OUT/dist"
rm -rf "$DIST" && mkdir -p "$DIST"
"$CACHE/buildvenv/bin/pip" wheel -q --no-deps --no-build-isolation --wheel-dir "$DIST" "$SRC" 2>/dev/null \
    || "$CACHE/buildvenv/bin/pip" wheel -q --no-deps --wheel-dir "$DIST" "$SRC"
WHEEL="$(ls "$DIST"/crowdsign-*.whl)"

# --- 3. base layer: Debian + the venv with the dependency wheels ------------
packages="$(grep -v '^#' "$HERE/packages-amd64.txt" | xargs | tr ' ' ',')"
# The recipe of this layer is the text between the markers below.
base_recipe="$(sed -n '/^# >>> base recipe/,/^# <<< base recipe/p' "$0")"
base_key="$(hash_of "$HERE/packages-amd64.txt" <(echo "$base_recipe") <(echo "$wheels_key"))"
BASE="$CACHE/base-$base_key.tar"
if [ ! -f "$BASE" ]; then
    log "base: mmdebstrap bookworm ($packages)"
    rm -f "$CACHE"/base-*.tar "$CACHE"/base-*.tar.part
# >>> base recipe
    # Kernel drivers a VM never loads stay out (docs, man pages and locales are
    # deleted at the end: dpkg excludes on directories that essential packages
    # share break later packages).
    excludes=("/lib/modules/*/kernel/drivers/gpu/*" "/lib/modules/*/kernel/drivers/net/*"
              "/lib/modules/*/kernel/drivers/media/*" "/lib/modules/*/kernel/drivers/infiniband/*"
              "/lib/modules/*/kernel/drivers/scsi/*" "/lib/modules/*/kernel/drivers/staging/*"
              "/lib/modules/*/kernel/drivers/bluetooth/*" "/lib/modules/*/kernel/drivers/isdn/*"
              "/lib/modules/*/kernel/drivers/iio/*" "/lib/modules/*/kernel/drivers/hwmon/*"
              "/lib/modules/*/kernel/drivers/mtd/*" "/lib/modules/*/kernel/drivers/usb/*"
              "/lib/modules/*/kernel/drivers/input/*" "/lib/modules/*/kernel/drivers/hid/*"
              "/lib/modules/*/kernel/drivers/md/*" "/lib/modules/*/kernel/drivers/platform/*"
              "/lib/modules/*/kernel/sound/*" "/lib/modules/*/kernel/net/*"
              "/lib/modules/*/kernel/fs/btrfs/*" "/lib/modules/*/kernel/fs/xfs/*"
              "/lib/modules/*/kernel/fs/ocfs2/*" "/lib/modules/*/kernel/fs/nfs*/*"
              "/lib/modules/*/kernel/fs/smb/*" "/lib/modules/*/kernel/fs/ceph/*"
              "/lib/modules/*/kernel/fs/gfs2/*" "/lib/modules/*/kernel/fs/f2fs/*")
    dpkgopts=()
    for p in "${excludes[@]}"; do dpkgopts+=(--dpkgopt="path-exclude=$p"); done
    # A small initramfs: only what finds a virtio disk with ext4 on it.
    initramfs_conf='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools"
        echo MODULES=list > "$1/etc/initramfs-tools/conf.d/crowdsign.conf"
'
    venv_hook='set -e; mkdir -p "$1/tmp/wheels" && cp '"$WHEELS"'/*.whl "$1/tmp/wheels/"
        chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin python3 -m venv /opt/crowdsign/venv
        chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c "/opt/crowdsign/venv/bin/pip install -q \
            --no-index --find-links /tmp/wheels --no-cache-dir /tmp/wheels/*.whl"
        rm -rf "$1/tmp/wheels"
        printf "%s\n" virtio_pci virtio_blk ext4 vfat nls_cp437 nls_ascii >> "$1/etc/initramfs-tools/modules"
        chroot "$1" update-initramfs -u -k all'
    "${NICE[@]}" mmdebstrap --mode=root --variant=minbase --format=tar \
        --include="$packages" "${dpkgopts[@]}" \
        --aptopt='APT::Install-Recommends "false"' \
        --essential-hook="$initramfs_conf" \
        --customize-hook="$venv_hook" \
        --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/man/* \
            "$1"/usr/share/info/* "$1"/usr/share/lintian/* "$1"/usr/share/bash-completion/*
            find "$1"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
            find "$1"/usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true' \
        bookworm "$BASE.part" "$MIRROR"
# <<< base recipe
    mv "$BASE.part" "$BASE"
fi

# --- 4. the image: base + crowdsign + unit + config + model + video --------
image_key="$(cd "$REPO" && hash_of <(echo "$base_key $TEST_RIG") \
    <(find daemon systemd image-build pyproject.toml -type f -not -name '*.pyc' \
        -not -path '*.egg-info*' | sort | xargs sha256sum) \
    "$MODEL" "${MODEL%.tflite}.toml" <(sha256sum "$VIDEO"))"
CACHED="$CACHE/image-$image_key"
if [ ! -f "$CACHED/.done" ]; then
    log "image: crowdsign $(basename "$WHEEL") on base $base_key"
    ROOT="$(mktemp -d "$CACHE/root.XXXXXX")"
    trap 'rm -rf "$SRC" "$ROOT"' EXIT
    tar -C "$ROOT" -xpf "$BASE"
    run_in() { chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

    mkdir -p "$ROOT/tmp/dist" && cp "$WHEEL" "$ROOT/tmp/dist/"
    run_in /opt/crowdsign/venv/bin/pip install -q --no-index --no-deps --no-cache-dir "/tmp/dist/$(basename "$WHEEL")"
    rm -rf "$ROOT/tmp/dist"
    # pip is not needed at run time; the root filesystem is read-only anyway.
    run_in /opt/crowdsign/venv/bin/python -m pip uninstall -q -y pip setuptools 2>/dev/null || true
    ln -sf /opt/crowdsign/venv/bin/crowdsign "$ROOT/usr/bin/crowdsign"

    # Model, labels, video: into the image only.
    models="$ROOT/usr/share/crowdsign/models"
    mkdir -p "$models" "$ROOT/usr/share/crowdsign/video" "$ROOT/usr/share/doc/crowdsign"
    cp "$MODEL" "${MODEL%.tflite}.toml" "$models/"
    ln -sf "$(basename "${MODEL%.tflite}").toml" "$models/default.toml"
    cp "$VIDEO" "$ROOT/usr/share/crowdsign/video/"
    cp "$REPO/README.md" "$ROOT/usr/share/doc/crowdsign/"

    # The unit, its drop-ins, the journal in RAM.
    install -m 0644 "$REPO/systemd/crowdsign.service" "$ROOT/usr/lib/systemd/system/crowdsign.service"
    install -D -m 0644 "$REPO/systemd/crowdsign-network-output.conf" \
        "$ROOT/usr/share/crowdsign/systemd/crowdsign-network-output.conf"
    install -D -m 0644 "$REPO/systemd/journald-volatile.conf" \
        "$ROOT/etc/systemd/journald.conf.d/crowdsign-volatile.conf"
    rm -rf "$ROOT/var/log/journal"
    # Device groups the unit asks for (Raspberry Pi OS has them; Debian has video and dialout).
    for g in spi gpio i2c; do
        grep -q "^$g:" "$ROOT/etc/group" || run_in groupadd --system "$g"
    done

    # Config: /etc, and the boot partition's (which wins) made below.
    install -D -m 0644 "$HERE/amd64/etc/crowdsign/crowdsign.toml" "$ROOT/etc/crowdsign/crowdsign.toml"
    install -m 0644 "$HERE/amd64/etc/fstab" "$ROOT/etc/fstab"
    mkdir -p "$ROOT/boot/firmware"
    echo crowdsign > "$ROOT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tcrowdsign\n' > "$ROOT/etc/hosts"
    ln -sf /usr/share/zoneinfo/Etc/UTC "$ROOT/etc/localtime"

    if [ "$TEST_RIG" = 1 ]; then
        install -D -m 0644 "$REPO/systemd/serial-getty-autologin.conf" \
            "$ROOT/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
    fi
    # Services that write to the root filesystem or wait for a network: off.
    run_in systemctl mask systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
        dpkg-db-backup.timer fstrim.timer e2scrub_all.timer e2scrub_reap.service \
        systemd-networkd-wait-online.service >/dev/null 2>&1 || true
    run_in systemctl enable crowdsign.service
    run_in systemctl set-default multi-user.target
    # Read-only root: a transient machine id each boot; /usr and /etc "up to date".
    : > "$ROOT/etc/machine-id"
    rm -f "$ROOT/var/lib/dbus/machine-id"
    run_in /lib/systemd/systemd-update-done 2>/dev/null || touch "$ROOT/etc/.updated" "$ROOT/var/.updated"
    systemd-analyze verify --root="$ROOT" crowdsign.service

    # Kernel and initramfs for qemu -kernel/-initrd.
    STAGE="$CACHED.part"
    rm -rf "$STAGE" && mkdir -p "$STAGE"
    cp "$(ls "$ROOT"/boot/vmlinuz-* | tail -1)" "$STAGE/vmlinuz"
    cp "$(ls "$ROOT"/boot/initrd.img-* | tail -1)" "$STAGE/initrd.img"
    rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/cache/debconf/*-old

    # Root filesystem: used size plus 25 % and 64 MiB, ext4 without a journal (never written).
    used_mib=$(du -sm --apparent-size "$ROOT" | cut -f1)
    size_mib=$(( used_mib * 125 / 100 + 64 ))
    mke2fs -q -t ext4 -O ^has_journal -L rootfs -d "$ROOT" "$STAGE/rootfs.ext4" "${size_mib}M"

    # Boot partition: the technician's crowdsign.toml goes here (commented example).
    mkfs.vfat -C -n bootfs "$STAGE/bootfs.img" 8192 >/dev/null
    sed 's/^/# /; s/^# $/#/' "$HERE/amd64/etc/crowdsign/crowdsign.toml" > "$STAGE/crowdsign.toml.example"
    MTOOLS_SKIP_CHECK=1 mcopy -i "$STAGE/bootfs.img" "$STAGE/crowdsign.toml.example" ::crowdsign.toml.example
    rm "$STAGE/crowdsign.toml.example"
    {
        echo "BASE_KEY=$base_key"
        echo "IMAGE_KEY=$image_key"
        echo "ROOTFS_USED_MIB=$used_mib"
        echo "ROOTFS_MIB=$size_mib"
        echo "TEST_RIG=$TEST_RIG"
    } > "$STAGE/image.env"
    touch "$STAGE/.done"
    find "$CACHE" -maxdepth 1 -name 'image-*' ! -name "image-$image_key*" -exec rm -rf {} +
    mv "$STAGE" "$CACHED"
    rm -rf "$ROOT"
else
    log "image: cached $CACHED"
fi
for f in rootfs.ext4 bootfs.img vmlinuz initrd.img image.env; do
    cp --sparse=always "$CACHED/$f" "$OUT/$f"
done
log "done: $OUT ($(grep ROOTFS_USED_MIB "$OUT/image.env" | cut -d= -f2) MiB used of a $(grep ROOTFS_MIB= "$OUT/image.env" | cut -d= -f2) MiB root)"

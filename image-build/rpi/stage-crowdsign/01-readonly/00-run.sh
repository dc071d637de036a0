#!/bin/bash -e
# Read-only root: ro in fstab and on the kernel command line, RAM for what the
# OS writes, no swap. pi-gen's export-image fills in ROOTDEV/BOOTDEV.
on_chroot <<'CHROOT'
apt-get purge -y dphys-swapfile || true
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer systemd-firstboot.service
CHROOT
sed -i -E 's#^(\S+\s+/\s+ext4\s+)defaults#\1defaults,ro#' "${ROOTFS_DIR}/etc/fstab"
sed -i -E 's#^(\S+\s+/boot/firmware\s+vfat\s+)defaults#\1defaults,ro#' "${ROOTFS_DIR}/etc/fstab"
cat >> "${ROOTFS_DIR}/etc/fstab" <<'FSTAB'
tmpfs /tmp             tmpfs mode=1777,nosuid,nodev,size=64M        0 0
tmpfs /var/tmp         tmpfs mode=1777,nosuid,nodev,size=16M        0 0
tmpfs /var/log         tmpfs mode=0755,nosuid,nodev,noexec,size=16M 0 0
tmpfs /var/lib/systemd tmpfs mode=0755,nosuid,nodev,noexec,size=4M  0 0
FSTAB
sed -i 's/$/ ro fastboot noswap/' "${ROOTFS_DIR}/boot/firmware/cmdline.txt"
: > "${ROOTFS_DIR}/etc/machine-id"

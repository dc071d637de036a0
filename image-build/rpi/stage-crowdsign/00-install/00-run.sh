#!/bin/bash -e
# pi-gen stage: crowdsign in a venv, its model, unit, journal in RAM, config on the boot partition.
F="$(dirname "$0")/files"

install -d "${ROOTFS_DIR}/tmp/wheels"
cp "${F}"/wheels/*.whl "${ROOTFS_DIR}/tmp/wheels/"
on_chroot <<'CHROOT'
python3 -m venv --system-site-packages /opt/crowdsign/venv
/opt/crowdsign/venv/bin/pip install --no-index --find-links /tmp/wheels 'crowdsign[systemd]'
ln -sf /opt/crowdsign/venv/bin/crowdsign /usr/bin/crowdsign
rm -rf /tmp/wheels
CHROOT

install -d "${ROOTFS_DIR}/usr/share/crowdsign/models"
install -m 0644 "${F}"/ssd_mobilenet_v1_coco_quant_max100.tflite "${F}"/coco_labels.txt \
    "${ROOTFS_DIR}/usr/share/crowdsign/models/"
sed 's|^labels = .*|labels = "coco_labels.txt"|' "${F}/ssd_mobilenet_v1_coco_quant_max100.toml" \
    > "${ROOTFS_DIR}/usr/share/crowdsign/models/ssd_mobilenet_v1_coco_quant_max100.toml"
ln -sf ssd_mobilenet_v1_coco_quant_max100.toml "${ROOTFS_DIR}/usr/share/crowdsign/models/default.toml"

install -m 0644 "${F}/crowdsign.service" "${ROOTFS_DIR}/usr/lib/systemd/system/crowdsign.service"
install -D -m 0644 "${F}/journald-volatile.conf" \
    "${ROOTFS_DIR}/etc/systemd/journald.conf.d/crowdsign-volatile.conf"
install -D -m 0644 "${F}/crowdsign.toml" "${ROOTFS_DIR}/etc/crowdsign/crowdsign.toml"
# The technician's copy on the FAT boot partition: edit, rename to crowdsign.toml.
sed 's/^/# /' "${F}/crowdsign.toml" > "${ROOTFS_DIR}/boot/firmware/crowdsign.toml.example"

cat "${F}/config.txt.crowdsign" >> "${ROOTFS_DIR}/boot/firmware/config.txt"
# The UART drives the sign: no serial console on it.
sed -i 's/console=serial0,[0-9]* //' "${ROOTFS_DIR}/boot/firmware/cmdline.txt"

on_chroot <<'CHROOT'
for g in video dialout spi gpio i2c; do getent group "$g" >/dev/null || groupadd --system "$g"; done
systemctl mask serial-getty@ttyAMA0.service serial-getty@serial0.service
systemctl enable crowdsign.service
CHROOT

#!/bin/sh
# mmdebstrap --essential-hook: runs before the kernel is installed, so the
# one initramfs build already uses this configuration: a small initramfs
# with just the drivers a QEMU guest needs (virtio, and fw_cfg so systemd
# can read credentials from the firmware before any service starts).
set -eu
R="$1"
mkdir -p "$R/etc/initramfs-tools/conf.d"
printf 'MODULES=list\n' > "$R/etc/initramfs-tools/conf.d/imgbuild.conf"
printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net sd_mod ahci ata_piix ext4 qemu_fw_cfg \
    >> "$R/etc/initramfs-tools/modules"

#!/bin/sh
# mmdebstrap --customize-hook: makes the bootstrapped tree a machine that
# boots under QEMU and elsewhere, gets its network by DHCP, and lets the
# build log in with a key handed over at boot (never baked in).
set -eu
R="$1"

# Network: DHCP on any wired interface; DNS through systemd-resolved.
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$R/etc/systemd/network/20-wired.network"
chroot "$R" systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"

echo debian > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

# Root by label, so the same disk boots as /dev/vda1, /dev/sda1 or NVMe;
# the file system grows with the disk at boot.
printf 'LABEL=rootfs / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1\n' > "$R/etc/fstab"
cat > "$R/etc/systemd/system/imgbuild-grow-partition.service" <<'UNIT'
[Unit]
Description=Grow the root partition to the end of its disk
DefaultDependencies=no
Before=systemd-growfs-root.service
After=local-fs-pre.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'disk=/dev/$(lsblk -no pkname "$(findmnt -no SOURCE /)"); echo ", +" | sfdisk -q --force --no-reread -N 1 "$disk" && partx -u "$disk" || true'

[Install]
WantedBy=local-fs.target
UNIT
chroot "$R" systemctl enable imgbuild-grow-partition.service

# SSH: a fresh host key per machine, root by key only. The build's key
# arrives as the systemd credential ssh.authorized_keys.root, which
# systemd-tmpfiles (provision.conf) writes before sshd starts.
rm -f "$R"/etc/ssh/ssh_host_*
cat > "$R/etc/ssh/sshd_config.d/imgbuild.conf" <<'SSH'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSH
cat > "$R/etc/systemd/system/ssh-host-key.service" <<'UNIT'
[Unit]
Description=Generate the SSH host key on first boot
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
RequiredBy=ssh.service
UNIT
chroot "$R" systemctl enable ssh-host-key.service

# A boot loader on the disk, so the image also boots by itself (BIOS):
# GRUB's core image is built here and written into the disk by the host.
mkdir -p "$R/boot/grub"
cp -a "$R/usr/lib/grub/i386-pc" "$R/boot/grub/"
cat > "$R/boot/grub/grub.cfg" <<'GRUB'
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry 'Debian GNU/Linux' {
  linux /vmlinuz root=LABEL=rootfs rw console=tty0 console=ttyS0,115200 quiet
  initrd /initrd.img
}
GRUB
chroot "$R" grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc -o /boot/grub/i386-pc/core.img \
    -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 normal linux serial terminal

# What only slows a build machine down (timers, time sync, the login
# prompts) is masked on the build's kernel command line, not here: the
# image that is written keeps every unit a machine needs at run time.

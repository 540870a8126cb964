"""7. The local QEMU build, side by side with Packer's qemu builder, and the
guest's boot to sshd on its own. Used by bench.py.

Both tools build from the same bootstrapped base (imgbuild's cache), boot it
with the same QEMU arguments (direct kernel boot, the SSH key as a systemd
credential through fw_cfg, virtio disk and NIC, TCG), run the same
provisioners and write a zstd-compressed qcow2.
"""

import json
import os
import re
import select
import shutil
import socket
import statistics
import subprocess
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

# What the last provisioner prints: when sshd started listening and when it
# accepted the tool's login, both on the guest's monotonic clock, so the delay
# between them is measured the same way for both tools.
REPORT = ("journalctl -o short-monotonic -u ssh.service --no-pager"
          " | grep -E 'Server listening on 0.0.0.0|Accepted publickey' || true")
LISTENING = re.compile(r"\[\s*(\d+\.\d+)\] \S+ sshd\[\d+\]: Server listening on 0\.0\.0\.0")
ACCEPTED = re.compile(r"\[\s*(\d+\.\d+)\] \S+ sshd\[\d+\]: Accepted publickey")

# Packer's output lines that end each of its phases.
PACKER_PHASES = [
    ("prepare (disk, ports)", "Starting VM, booting disk image"),
    ("boot + wait for SSH", "Connected to SSH!"),
    ("provision", "Gracefully halting virtual machine..."),
    ("shut down", "Converting hard drive..."),
]
# imgbuild's steps in the same phases.
IMGBUILD_PHASES = {
    "prepare (disk, ports)": ["check tools", "prepare output", "prepare base image",
                              "create overlay"],
    "boot + wait for SSH": ["boot", "wait for SSH"],
    "provision": ["provision"],
    "shut down": ["shut down"],
    "write image": ["write image"],
}


def build_command_line():
    """The kernel command line of imgbuild's build boots, read from its source."""
    with open(os.path.join(ROOT, "src/builder/qemu/bootstrap.rs")) as f:
        text = f.read()
    m = re.search(r'BUILD_BOOT_COMMAND_LINE: &str = "(.*?)";', text, re.S)
    return re.sub(r"\\\n\s*", "", m.group(1))


def guest_args(base, console, public_key):
    """QEMU arguments of imgbuild's build machine (src/builder/qemu/machine.rs),
    less the disk, network, memory and CPU count, which Packer sets itself."""
    return [
        ["-machine", "q35,sata=off,i8042=off,smbus=off"],
        ["-accel", "tcg,thread=multi"],
        ["-cpu", "qemu64"],
        ["-nodefaults"],
        ["-no-user-config"],
        ["-display", "none"],
        ["-vnc", "none"],
        ["-serial", f"file:{console}"],
        ["-device", "virtio-rng-pci"],
        ["-kernel", os.path.join(base, "vmlinuz")],
        ["-initrd", os.path.join(base, "initrd.img")],
        ["-append", build_command_line()],
        ["-fw_cfg", "name=opt/io.systemd.credentials/ssh.authorized_keys.root,string="
                    + public_key.replace(",", ",,")],
    ]


def virtual_size(disk):
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", disk],
                                     capture_output=True, check=True, text=True).stdout)
    return info["virtual-size"]


def run_lines(cmd, log_path, env, cwd, limit=1800):
    """Runs cmd; returns (seconds, [(seconds since start, line)]), every line
    timed as it arrives. Output also goes to log_path."""
    started = time.monotonic()
    lines = []
    with open(log_path, "w") as out:
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=env, cwd=cwd, text=True, errors="replace")
        for line in child.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
            out.write(line)
            if time.monotonic() - started > limit:
                child.kill()
        child.wait()
    took = time.monotonic() - started
    if child.returncode != 0:
        tail = "\n".join(l for _, l in lines[-25:])
        raise RuntimeError(f"{cmd[0]} exited with {child.returncode}; see {log_path}:\n{tail}")
    return took, lines


def sshd_delay(lines):
    """Seconds from sshd listening to the tool's login, on the guest's clock."""
    text = "\n".join(l for _, l in lines)
    listening, accepted = LISTENING.search(text), ACCEPTED.search(text)
    if not (listening and accepted):
        raise RuntimeError("the provisioner's sshd report is missing from the output")
    return float(accepted.group(1)) - float(listening.group(1)), float(listening.group(1))


class Local:
    def __init__(self, bench, cache, parse_timings):
        self.b = bench
        self.t = bench.tools
        self.cache = cache
        self.parse_timings = parse_timings
        self.key = bench.services.key
        with open(self.key + ".pub") as f:
            self.public_key = f.read().strip()

    def base(self):
        """The newest cached base (the one imgbuild's warm-up build used)."""
        bases = os.path.join(self.cache, "imgbuild", "bases")
        found = [os.path.join(bases, d) for d in os.listdir(bases)
                 if os.path.exists(os.path.join(bases, d, "disk.qcow2"))]
        return max(found, key=lambda d: os.path.getmtime(os.path.join(d, "disk.qcow2")))

    def imgbuild(self, i, file50):
        out = os.path.join(self.b.scratch, f"qemu-out-{i}")
        template = os.path.join(self.b.scratch, f"qemu-{i}.toml")
        with open(os.path.join(BENCH, "qemu.toml")) as f:
            text = (f.read().replace("@OUTPUT@", out).replace("@FILE50@", file50)
                    .replace("@REPORT@", json.dumps(REPORT)))
        with open(template, "w") as f:
            f.write(text)
        env = self.t.env()
        env["XDG_CACHE_HOME"] = self.cache
        log_path = self.t.log_path("qemu-imgbuild")
        took, lines = run_lines([self.t.imgbuild_bin, "build", template, "--manifest",
                                 os.path.join(self.b.scratch, "manifest.json")],
                                log_path, env, self.b.scratch)
        # The image is named with its build number (bench-local-1.0-N.qcow2).
        images = [f for f in os.listdir(out) if f.endswith(".qcow2")]
        if len(images) != 1:
            raise RuntimeError(f"expected one image in {out}, found {images}; see {log_path}")
        size = os.path.getsize(os.path.join(out, images[0]))
        shutil.rmtree(out, ignore_errors=True)
        steps = self.parse_timings(log_path)
        phases = {p: sum(steps.get(s, 0.0) for s in ss) for p, ss in IMGBUILD_PHASES.items()}
        return took, phases, sshd_delay(lines), size

    def packer(self, i, base, file50):
        out = os.path.join(self.b.scratch, f"packer-out-{i}")
        console = os.path.join(self.b.scratch, f"packer-console-{i}.log")
        template = {
            "builders": [{
                "type": "qemu",
                "iso_url": os.path.join(base, "disk.qcow2"),
                "iso_checksum": "none",
                "disk_image": True,
                "use_backing_file": True,
                "qemu_img_args": {"create": ["-F", "qcow2"],
                                  "convert": ["-o", "compression_type=zstd"]},
                "disk_size": f"{virtual_size(os.path.join(base, 'disk.qcow2')) // 2**20}M",
                "format": "qcow2",
                "disk_compression": True,
                "disk_interface": "virtio",
                "disk_cache": "unsafe",
                "disk_discard": "unmap",
                "net_device": "virtio-net-pci",
                "machine_type": "q35",
                "accelerator": "tcg",
                "memory": 1024,
                "cpus": 2,
                "headless": True,
                "boot_wait": "0s",
                "disable_vnc": True,
                "communicator": "ssh",
                "ssh_username": "root",
                "ssh_private_key_file": self.key,
                "ssh_timeout": "8m",
                "shutdown_command": "systemctl poweroff --no-block",
                "shutdown_timeout": "2m",
                "output_directory": out,
                "vm_name": "bench-local-1.0.qcow2",
                "qemuargs": guest_args(base, console, self.public_key),
            }],
            "provisioners": [
                {"type": "shell", "inline": ["echo provisioned > /etc/bench-local"]},
                {"type": "file", "source": file50, "destination": "/root/payload"},
                {"type": "shell", "inline": ["sync", REPORT]},
            ],
        }
        path = os.path.join(self.b.scratch, f"qemu-{i}.packer.json")
        with open(path, "w") as f:
            json.dump(template, f, indent=2)
        log_path = self.t.log_path("qemu-packer")
        took, lines = run_lines(["packer", "build", "-color=false", path], log_path,
                                self.t.env(), self.b.scratch)
        # The image is named with its build number (bench-local-1.0-N.qcow2).
        images = [f for f in os.listdir(out) if f.endswith(".qcow2")]
        if len(images) != 1:
            raise RuntimeError(f"expected one image in {out}, found {images}; see {log_path}")
        size = os.path.getsize(os.path.join(out, images[0]))
        shutil.rmtree(out, ignore_errors=True)
        phases, start = {}, 0.0
        for phase, marker in PACKER_PHASES:
            at = next((t for t, l in lines if marker in l), None)
            if at is None:
                raise RuntimeError(f"Packer never printed {marker!r}; see {log_path}")
            phases[phase], start = at - start, at
        phases["write image"] = took - start
        return took, phases, sshd_delay(lines), size

    def boot_alone(self, base):
        """QEMU started with the build's arguments, timed to the SSH banner;
        then systemd's own account of the boot."""
        work = os.path.join(self.b.scratch, "boot-alone")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        overlay = os.path.join(work, "overlay.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        os.path.join(base, "disk.qcow2"), overlay], check=True)
        port = free_port()
        args = ["qemu-system-x86_64", "-m", "1024", "-smp", "2",
                "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
                "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22",
                "-device", "virtio-net-pci,netdev=n0"]
        for a in guest_args(base, os.path.join(work, "console.log"), self.public_key):
            args += a
        started = time.monotonic()
        qemu = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            banner = wait_banner(port, started + 600)
            ssh = ["ssh", "-q", "-F", "/dev/null", "-i", self.key, "-o", "BatchMode=yes",
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                   "-p", str(port), "root@127.0.0.1"]
            out = subprocess.run(ssh + ["systemd-analyze; systemctl show -p "
                                        "ActiveEnterTimestampMonotonic --value ssh.service"],
                                 capture_output=True, text=True, timeout=300).stdout
        finally:
            qemu.kill()
            qemu.wait()
        kernel = re.search(r"([\d.]+)s \(kernel\)", out)
        ssh_active = re.search(r"^(\d+)$", out, re.M)
        return (banner, float(kernel.group(1)) if kernel else None,
                int(ssh_active.group(1)) / 1e6 if ssh_active else None)

    def run(self, file50):
        f, b = self.b.figures, self.b
        # Warm-up: also bootstraps the base if the cache has none.
        self.imgbuild("warmup", file50)
        base = self.base()
        packer = self.packer("warmup", base, file50) if b.warmup else None
        walls = {"imgbuild": [], "packer": []}
        phases = {"imgbuild": {}, "packer": {}}
        delays = {"imgbuild": [], "packer": []}
        ratio, sizes = [], {"imgbuild": [], "packer": []}
        for i in range(b.pairs):
            a = self.imgbuild(i, file50)
            p = self.packer(i, base, file50)
            for tool, (took, ph, (delay, _), size) in [("imgbuild", a), ("packer", p)]:
                walls[tool].append(took)
                delays[tool].append(delay)
                sizes[tool].append(size)
                for k, v in ph.items():
                    phases[tool].setdefault(k, []).append(v)
            ratio.append(a[0] / p[0])
        note = ("TCG; same base, QEMU arguments and provisioners; images " + ", ".join(
            f"{t} {min(s) / 2**20:.1f}–{max(s) / 2**20:.1f} MiB" for t, s in sizes.items()))
        f.add("qemu.wall", "7. local QEMU build, imgbuild (cached base; shell, 50 MB upload, sync)",
              walls["imgbuild"], "s")
        f.add("qemu.packer.wall", "7. local QEMU build, Packer qemu builder", walls["packer"], "s",
              note)
        f.add("qemu.ratio", "7. local QEMU build ratio imgbuild/Packer", ratio, "x",
              "target ≤ 0.5×")
        for phase in IMGBUILD_PHASES:
            for tool in ["imgbuild", "packer"]:
                f.add(f"qemu.{tool}.{phase}", f"7.   {phase}, {tool}", phases[tool][phase], "s")
        f.add("qemu.delay.imgbuild", "7. sshd listening → login accepted, imgbuild",
              delays["imgbuild"], "s", "guest clock; target ≤ 2 s in every run")
        f.add("qemu.delay.packer", "7. sshd listening → login accepted, Packer",
              delays["packer"], "s")
        boots = [self.boot_alone(base) for _ in range(b.pairs)]
        f.add("qemu.boot.banner", "7. guest boot to SSH banner on its own (QEMU start → banner)",
              [x[0] for x in boots], "s", "TCG, the build's QEMU arguments; target ≤ 10 s")
        if all(x[2] is not None for x in boots):
            f.add("qemu.boot.sshd", "7.   of which kernel start → ssh.service active (guest clock)",
                  [x[2] for x in boots], "s")
        if all(x[1] is not None for x in boots):
            f.add("qemu.boot.kernel", "7.   of which kernel and initrd (systemd-analyze)",
                  [x[1] for x in boots], "s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port, deadline):
    """Seconds until sshd's banner arrives on the forwarded port. QEMU's
    forwarder accepts a connection at once and holds it, silent, while the
    guest is still booting, so each connection waits for the banner a short
    while (2 s, growing, as imgbuild's probe does) before trying afresh: a
    long wait on a held connection would measure the wait, not the boot."""
    started = time.monotonic()
    wait = 2.0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                ready, _, _ = select.select([c], [], [], wait)
                if ready and c.recv(1, socket.MSG_PEEK):
                    return time.monotonic() - started
        except OSError:
            pass
        wait = min(wait * 1.5, 15.0)
        time.sleep(0.1)
    raise RuntimeError("the guest's sshd never answered")

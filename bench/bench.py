#!/usr/bin/env python3
"""imgbuild benchmarks, side by side with Packer and with OpenSSH.

Run through bench/run, which installs what is missing and builds imgbuild.
Every comparison alternates the tools run by run (A B A B ...) after a
warm-up, so each ratio compares two runs made moments apart on the same
(possibly busy) machine. Medians, minimums and maximums are reported; ratios
are computed per pair.

Everything talks to 127.0.0.1 only: moto's EC2 server plays AWS, a private
OpenSSH sshd plays the instance (both tools reach it through ssh_host /
ssh_port), and files land in a scratch folder on /dev/shm.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SUPPORT = os.path.join(ROOT, "tests", "support")
REGION = "us-east-1"
KEY_PAIR = "bench"
# The login on the "instance". Not root: root's shell startup files on a
# developer machine (pyenv, nvm, conda...) can cost more per SSH command than
# everything a tool does; a fresh cloud user's do not.
USER = "imgbuild-bench"
MB = 1_000_000
# imgbuild (libssh2) negotiates ChaCha20-Poly1305 with OpenSSH; Packer and
# OpenSSH's own client AES-128-GCM, the fastest cipher on a CPU with AES
# instructions. scp runs with both: the same cipher, and the machine's best.
CHACHA = "chacha20-poly1305@openssh.com"
GCM = "aes128-gcm@openssh.com"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=30.0):
    until = time.monotonic() + limit
    while time.monotonic() < until:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Failed(Exception):
    pass


def run_timed(cmd, log_path, env=None, cwd=None, limit=1800):
    """Runs cmd to completion; returns (seconds, peak RSS in MB). Output goes to log_path."""
    with open(log_path, "wb") as out:
        started = time.monotonic()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = started + limit
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                raise Failed(f"{cmd[0]} ran longer than {limit}s; see {log_path}")
            time.sleep(0.002)
        took = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        with open(log_path, errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        raise Failed(f"{' '.join(cmd[:3])} … exited with {child.returncode}:\n{tail}")
    return took, usage.ru_maxrss / 1024


# ---------------------------------------------------------------- services


class Services:
    """moto, sshd and the scratch folders; stopped by close()."""

    def __init__(self, scratch):
        self.scratch = scratch
        self.children = []
        self.moto_port = free_port()
        self.start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                            "-p", str(self.moto_port)])
        wait_port(self.moto_port)
        until = time.monotonic() + 30
        while True:
            try:
                OPENER.open(f"{self.moto}/moto-api/", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > until:
                    raise
                time.sleep(0.1)
        self.key = os.path.join(scratch, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        self.reset_moto()
        self.start_sshd()
        self.proxy_port = None

    @property
    def moto(self):
        return f"http://127.0.0.1:{self.moto_port}"

    def start(self, name, cmd, **kw):
        out = open(os.path.join(self.scratch, f"{name}.log"), "ab")
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.children.append(child)
        return child

    def ensure_user(self):
        """A local user with an empty home, like a fresh cloud image's login user."""
        home = f"/var/lib/{USER}"
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            log(f"creating the local user {USER} (home {home}, shell /bin/bash)")
            subprocess.run([*sudo, "useradd", "--system", "--create-home", "--home-dir", home,
                            "--shell", "/bin/bash", USER], check=True)
            # A locked password ("!") makes sshd refuse even key logins without PAM.
            subprocess.run([*sudo, "usermod", "--password", "*", USER], check=True)

    def start_sshd(self):
        self.ensure_user()
        d = os.path.join(self.scratch, "sshd")
        os.makedirs(d, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                        "-f", os.path.join(d, "ssh_host_ed25519_key")], check=True)
        shutil.copy(self.key + ".pub", os.path.join(d, "authorized_keys"))
        self.ssh_port = free_port()
        with open(os.path.join(SUPPORT, "sshd_config.template")) as f:
            text = f.read()
        text = (text.replace("@PORT@", str(self.ssh_port)).replace("@DIR@", d)
                .replace("@AUTH@", f"AuthorizedKeysFile {d}/authorized_keys")
                .replace("LogLevel VERBOSE", "LogLevel INFO")
                # Many sessions per connection: Packer opens several per provisioner.
                + "MaxSessions 100\nMaxStartups 100:30:200\n")
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as f:
            f.write(text)
        self.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", config])
        wait_port(self.ssh_port)

    def ec2(self, action, params=None, endpoint=None):
        body = urllib.parse.urlencode({"Action": action, "Version": "2016-11-15",
                                       **(params or {})}).encode()
        request = urllib.request.Request(
            (endpoint or self.moto) + "/", data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20200101/"
                                      f"{REGION}/ec2/aws4_request, SignedHeaders=host, "
                                      "Signature=x"})
        return OPENER.open(request, timeout=60).read().decode()

    def reset_moto(self):
        """A fresh account before each build, so no run pays for an earlier one's leftovers."""
        OPENER.open(urllib.request.Request(f"{self.moto}/moto-api/reset", data=b"",
                                           method="POST"), timeout=60).read()
        with open(self.key + ".pub") as f:
            material = f.read().strip()
        import base64
        self.ec2("ImportKeyPair", {"KeyName": KEY_PAIR,
                                   "PublicKeyMaterial": base64.b64encode(material.encode())})
        # The first describe after a reset loads moto's AMI catalogue; not the tools' time.
        self.ec2("DescribeImages", {"Owner.1": "amazon", "Filter.1.Name": "name",
                                    "Filter.1.Value.1": "al2023-ami-2023*-x86_64"})

    def start_proxy(self, running_after, available_after):
        """Starts a state-delaying proxy in front of moto; returns its endpoint."""
        self.proxy_port = free_port()
        self.proxy_log = os.path.join(self.scratch, f"proxy-events-{self.proxy_port}.jsonl")
        open(self.proxy_log, "w").close()
        self.start("proxy", [sys.executable, os.path.join(BENCH, "ec2_state_proxy.py"),
                             str(self.proxy_port), self.moto, str(running_after),
                             str(available_after), self.proxy_log])
        wait_port(self.proxy_port)
        return f"http://127.0.0.1:{self.proxy_port}"

    def proxy_events(self):
        with open(self.proxy_log) as f:
            lines = [json.loads(l) for l in f if l.strip()]
        open(self.proxy_log, "w").close()
        return lines

    def close(self):
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# ---------------------------------------------------------------- tools


class Tools:
    def __init__(self, args, services, scratch):
        self.imgbuild_bin = args.imgbuild
        self.s = services
        self.scratch = scratch
        self.home = os.path.join(scratch, "home")
        os.makedirs(self.home, exist_ok=True)
        self.runs = 0

    def env(self, endpoint=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "PACKER_", "IMGBUILD_", "RUST_LOG"))}
        env.update(HOME=self.home, CI="true", CHECKPOINT_DISABLE="1",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   AWS_REGION=REGION, AWS_ENDPOINT_URL=endpoint or self.s.moto,
                   PACKER_CACHE_DIR=os.path.join(self.home, "packer_cache"))
        return env

    def log_path(self, name):
        self.runs += 1
        return os.path.join(self.scratch, "logs", f"{self.runs:03d}-{name}.log")

    def imgbuild(self, template, variables, endpoint=None, name="imgbuild", cwd=None, extra=()):
        cmd = [self.imgbuild_bin, "build", template, "--manifest",
               os.path.join(self.scratch, "manifest.json"), *extra]
        for k, v in variables.items():
            cmd += ["--var", f"{k}={v}"]
        return run_timed(cmd, self.log_path(name), env=self.env(endpoint), cwd=cwd or self.scratch)

    def packer(self, template, variables, endpoint=None, name="packer"):
        cmd = ["packer", "build", "-color=false"]
        for k, v in variables.items():
            cmd += ["-var", f"{k}={v}"]
        cmd.append(template)
        return run_timed(cmd, self.log_path(name), env=self.env(endpoint), cwd=self.scratch)

    def scp(self, sources, destination, cipher, name="scp"):
        cmd = ["scp", "-O", "-q", "-F", "/dev/null", "-c", cipher, "-i", self.s.key,
               "-P", str(self.s.ssh_port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               *sources, destination]
        return run_timed(cmd, self.log_path(name), env=self.env())


# ---------------------------------------------------------------- templates


def ssh_templates(scratch, services, provisioners_toml, provisioners_json, name):
    """The same provisioners for imgbuild's `ssh` source and Packer's `null` builder."""
    toml = f'''name = "bench"
version = "1.0"

[source.box]
type = "ssh"
ssh_host = "127.0.0.1"
ssh_port = {services.ssh_port}
ssh_username = "{USER}"
ssh_private_key_file = "{services.key}"

{provisioners_toml}
'''
    packer = {
        "builders": [{
            "type": "null", "communicator": "ssh", "ssh_host": "127.0.0.1",
            "ssh_port": services.ssh_port, "ssh_username": USER,
            "ssh_private_key_file": services.key,
        }],
        "provisioners": provisioners_json,
    }
    t = os.path.join(scratch, f"{name}.toml")
    p = os.path.join(scratch, f"{name}.packer.json")
    with open(t, "w") as f:
        f.write(toml)
    with open(p, "w") as f:
        json.dump(packer, f, indent=2)
    return t, p


def file_provisioner(source, destination, direction="upload"):
    toml = (f'[[provisioner]]\ntype = "file"\nsource = "{source}"\n'
            f'destination = "{destination}"\ndirection = "{direction}"\n')
    return toml, {"type": "file", "source": source, "destination": destination,
                  "direction": direction}


def shell_provisioner(line):
    return (f'[[provisioner]]\ntype = "shell"\ninline = ["{line}"]\n',
            {"type": "shell", "inline": [line]})


# ---------------------------------------------------------------- statistics


class Figures:
    def __init__(self):
        self.rows = []  # (key, label, values, unit, note)

    def add(self, key, label, values, unit, note=""):
        self.rows.append((key, label, list(values), unit, note))
        line = summary_line(label, values, unit, note)
        print(line, flush=True)

    def value(self, key):
        for k, _, values, _, _ in self.rows:
            if k == key:
                return statistics.median(values)
        return None


def fmt(v, unit):
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"
    if unit == "x":
        return f"{v:.3f}×"
    if unit == "MB/s":
        return f"{v:.0f} MB/s"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:g} {unit}"


def summary_line(label, values, unit, note=""):
    values = list(values)
    med = statistics.median(values)
    text = f"{label}: median {fmt(med, unit)}"
    if len(values) > 1:
        text += f" (min {fmt(min(values), unit)}, max {fmt(max(values), unit)}, n={len(values)})"
    return text + (f" — {note}" if note else "")


# ---------------------------------------------------------------- measurements


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.pairs = 1 if self.quick else args.pairs
        self.warmup = 0 if self.quick else 1
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.scratch = tempfile.mkdtemp(prefix="imgbuild-bench-", dir=base)
        os.chmod(self.scratch, 0o755)  # the login user reads and writes in here
        os.makedirs(os.path.join(self.scratch, "logs"))
        self.remote = os.path.join(self.scratch, "remote")
        self.figures = Figures()
        self.notes = []
        self.services = None

    def rounds(self):
        """Warm-up rounds (not reported) then measured ones: yields (index, measured)."""
        for i in range(self.warmup + self.pairs):
            yield i, i >= self.warmup

    def clean_remote(self):
        shutil.rmtree(self.remote, ignore_errors=True)
        os.makedirs(self.remote)
        os.chmod(self.remote, 0o777)

    def make_file(self, name, size):
        path = os.path.join(self.scratch, name)
        chunk = os.urandom(1 << 20)
        with open(path, "wb") as f:
            left = size
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        return path

    def run(self):
        s = self.services = Services(self.scratch)
        self.tools = Tools(self.args, s, self.scratch)
        small, big = (5 * MB, 20 * MB) if self.quick else (50 * MB, 500 * MB)
        self.small_size, self.big_size = small, big
        self.file_small = self.make_file("f-small", small)
        self.file_big = self.make_file("f-big", big)
        every = ["e2e", "transfer", "shell", "wait", "concurrency", "qemu", "rebuild"]
        wanted = set(self.args.only or every)
        for name in every:
            if name in wanted:
                log(f"measuring {name}")
                getattr(self, f"bench_{name}")()

    # 1. end to end
    def bench_e2e(self):
        t, s = self.tools, self.services
        variables = {"ssh_port": s.ssh_port, "key_file": s.key, "file50": self.file_small,
                     "file500": self.file_big, "remote": self.remote}
        ours, theirs, ratio = [], [], []
        for _, measured in self.rounds():
            s.reset_moto()
            self.clean_remote()
            a, _ = t.imgbuild(os.path.join(BENCH, "e2e.toml"), variables, name="e2e-imgbuild")
            s.reset_moto()
            self.clean_remote()
            b, _ = t.packer(os.path.join(BENCH, "e2e.packer.json"),
                            {**variables, "endpoint": s.moto}, name="e2e-packer")
            if measured:
                ours.append(a), theirs.append(b), ratio.append(a / b)
        sizes = f"{self.small_size // MB} MB + {self.big_size // MB} MB uploads, 3 shell provisioners"
        self.figures.add("e2e.imgbuild", f"1. end-to-end build, imgbuild ({sizes})", ours, "s")
        self.figures.add("e2e.packer", "1. end-to-end build, Packer", theirs, "s")
        self.figures.add("e2e.ratio", "1. end-to-end ratio imgbuild/Packer", ratio, "x",
                         "target ≤ 0.25×")

    # 2 and 6. transfers and memory
    def bench_transfer(self):
        t, s = self.tools, self.services
        size = self.big_size
        up_dest = os.path.join(self.remote, "up")
        down_src = self.file_big
        down_dest = os.path.join(self.scratch, "down")
        empty = os.path.join(self.scratch, "empty")
        open(empty, "w").close()
        base_t, base_p = ssh_templates(self.scratch, s, "", [], "base")
        up = file_provisioner(self.file_big, up_dest)
        up_t, up_p = ssh_templates(self.scratch, s, up[0], [up[1]], "upload")
        down = file_provisioner(down_src, down_dest, "download")
        down_t, down_p = ssh_templates(self.scratch, s, down[0], [down[1]], "download")
        target = f"{USER}@127.0.0.1:"
        names = ["imgbuild", "packer", "scp", "scp-gcm"]
        res = {(d, n): [] for d in ["up", "down"] for n in names}
        rss_values = []
        for _, measured in self.rounds():
            # Each tool's transfer time is its run with the transfer minus the
            # same run without it (connection, start-up), measured back to back.
            def rate(run_with, run_without):
                self.clean_remote()
                with_t, rss = run_with()
                without_t, _ = run_without()
                self.clean_remote()
                if os.path.exists(down_dest):
                    os.remove(down_dest)
                return size / MB / max(with_t - without_t, 1e-3), rss

            got = {}
            got[("up", "imgbuild")], rss = rate(
                lambda: t.imgbuild(up_t, {}, name="up-imgbuild"),
                lambda: t.imgbuild(base_t, {}, name="base-imgbuild"))
            got[("up", "packer")], _ = rate(lambda: t.packer(up_p, {}, name="up-packer"),
                                            lambda: t.packer(base_p, {}, name="base-packer"))
            for name, cipher in [("scp", CHACHA), ("scp-gcm", GCM)]:
                got[("up", name)], _ = rate(
                    lambda: t.scp([self.file_big], target + up_dest, cipher, name="up-" + name),
                    lambda: t.scp([empty], target + up_dest, cipher, name="base-" + name))
            got[("down", "imgbuild")], _ = rate(
                lambda: t.imgbuild(down_t, {}, name="down-imgbuild"),
                lambda: t.imgbuild(base_t, {}, name="base-imgbuild"))
            got[("down", "packer")], _ = rate(
                lambda: t.packer(down_p, {}, name="down-packer"),
                lambda: t.packer(base_p, {}, name="base-packer"))
            for name, cipher in [("scp", CHACHA), ("scp-gcm", GCM)]:
                got[("down", name)], _ = rate(
                    lambda: t.scp([target + down_src], down_dest, cipher, name="down-" + name),
                    lambda: t.scp([target + empty], down_dest + ".empty", cipher,
                                  name="base-" + name))
            if measured:
                for k, v in got.items():
                    res[k].append(v)
                rss_values.append(rss)
        mb = self.big_size // MB
        f = self.figures
        for d, word in [("up", "upload"), ("down", "download")]:
            f.add(f"{d}.imgbuild", f"2. {word} {mb} MB, imgbuild (libssh2, {CHACHA})",
                  res[(d, "imgbuild")], "MB/s")
            f.add(f"{d}.scp", f"2. {word} {mb} MB, OpenSSH scp -O -c {CHACHA}",
                  res[(d, "scp")], "MB/s")
            f.add(f"{d}.scp-gcm", f"2. {word} {mb} MB, OpenSSH scp -O -c {GCM}",
                  res[(d, "scp-gcm")], "MB/s")
            f.add(f"{d}.packer", f"2. {word} {mb} MB, Packer ({GCM})", res[(d, "packer")], "MB/s")
            ratio = lambda a, b: [x / y for x, y in zip(res[(d, a)], res[(d, b)])]
            f.add(f"{d}.ratio.scp", f"2. {word} ratio imgbuild / scp, same cipher",
                  ratio("imgbuild", "scp"), "x", "target ≥ 0.8×")
            f.add(f"{d}.ratio.scp-gcm", f"2. {word} ratio imgbuild / scp with {GCM}",
                  ratio("imgbuild", "scp-gcm"), "x")
            f.add(f"{d}.ratio.packer", f"2. {word} ratio imgbuild / Packer",
                  ratio("imgbuild", "packer"), "x")
        f.add("rss", f"6. imgbuild peak RSS during the {mb} MB upload", rss_values, "MB",
              "target ≤ 64 MB")

    # 3. per-provisioner overhead
    def bench_shell(self):
        t, s = self.tools, self.services
        n = 5 if self.quick else 20
        shells = [shell_provisioner("true") for _ in range(n)]
        many_t, many_p = ssh_templates(self.scratch, s, "\n".join(x[0] for x in shells),
                                       [x[1] for x in shells], "shells")
        base_t, base_p = ssh_templates(self.scratch, s, "", [], "base")
        ours, theirs = [], []
        for _, measured in self.rounds():
            a1, _ = t.imgbuild(many_t, {}, name="shells-imgbuild")
            a0, _ = t.imgbuild(base_t, {}, name="base-imgbuild")
            b1, _ = t.packer(many_p, {}, name="shells-packer")
            b0, _ = t.packer(base_p, {}, name="base-packer")
            if measured:
                ours.append((a1 - a0) / n * 1000)
                theirs.append((b1 - b0) / n * 1000)
        self.figures.add("shell.imgbuild", f"3. per shell provisioner (`true`, {n} in a row), imgbuild",
                         ours, "ms", "target ≤ 50 ms")
        self.figures.add("shell.packer", "3. per shell provisioner, Packer", theirs, "ms")

    # 4. noticing state changes
    def bench_wait(self):
        t, s = self.tools, self.services
        running_after, available_after = (2, 3) if self.quick else (10, 17)
        endpoint = s.start_proxy(running_after, available_after)
        template_t = os.path.join(self.scratch, "wait.toml")
        with open(os.path.join(BENCH, "e2e.toml")) as f:
            text = f.read()
        # The e2e build without its files: only the waits and one command.
        text = text.split("[[provisioner]]")[0] + '[[provisioner]]\ntype = "shell"\ninline = ["true"]\n'
        with open(template_t, "w") as f:
            f.write(text)
        with open(os.path.join(BENCH, "e2e.packer.json")) as f:
            packer = json.load(f)
        packer["provisioners"] = [{"type": "shell", "inline": ["true"]}]
        template_p = os.path.join(self.scratch, "wait.packer.json")
        with open(template_p, "w") as f:
            json.dump(packer, f, indent=2)
        variables = {"ssh_port": s.ssh_port, "key_file": s.key, "file50": "", "file500": "",
                     "remote": self.remote}
        late = {("imgbuild", "instance"): [], ("imgbuild", "image"): [],
                ("packer", "instance"): [], ("packer", "image"): []}
        for _, measured in self.rounds():
            for tool in ["imgbuild", "packer"]:
                s.reset_moto()
                s.proxy_events()
                if tool == "imgbuild":
                    t.imgbuild(template_t, variables, endpoint=endpoint, name="wait-imgbuild")
                else:
                    t.packer(template_p, {**variables, "endpoint": endpoint}, endpoint=endpoint,
                             name="wait-packer")
                events = s.proxy_events()
                for kind in ["instance", "image"]:
                    seen = [e["late"] for e in events if e["kind"] == kind]
                    if not seen:
                        raise Failed(f"{tool}: the proxy saw no {kind} state change")
                    if measured:
                        late[(tool, kind)].append(seen[0] * 1000)
        note = f"instance running {running_after} s after launch, image available {available_after} s after CreateImage"
        f = self.figures
        f.add("wait.instance.imgbuild", "4. instance running noticed after, imgbuild",
              late[("imgbuild", "instance")], "ms", note + "; target ≤ 1500 ms")
        f.add("wait.instance.packer", "4. instance running noticed after, Packer",
              late[("packer", "instance")], "ms")
        f.add("wait.image.imgbuild", "4. image available noticed after, imgbuild",
              late[("imgbuild", "image")], "ms", "target ≤ 1500 ms")
        f.add("wait.image.packer", "4. image available noticed after, Packer",
              late[("packer", "image")], "ms")

    # 5. concurrency
    def bench_concurrency(self):
        t, s = self.tools, self.services
        n = 8
        with open(os.path.join(BENCH, "e2e.toml")) as f:
            text = f.read()
        head, rest = text.split("[source.aws]", 1)
        source, _ = rest.split("[[provisioner]]", 1)
        body = "[source.aws]" + source
        one = head + body + '[[provisioner]]\ntype = "shell"\ninline = ["uname -a"]\n'
        many = head + "".join(body.replace("source.aws", f"source.b{i}") for i in range(n))
        many += '[[provisioner]]\ntype = "shell"\ninline = ["uname -a"]\n'
        paths = []
        for name, text in [("one", one), ("many", many)]:
            p = os.path.join(self.scratch, f"concurrency-{name}.toml")
            with open(p, "w") as f:
                f.write(text)
            paths.append(p)
        variables = {"ssh_port": s.ssh_port, "key_file": s.key, "file50": "", "file500": "",
                     "remote": self.remote}
        f = self.figures
        # Against moto as it is, a build is nearly all CPU work (moto, sshd,
        # the tool) on this machine's cores; with state changes that take
        # time, as on EC2, it is mostly waiting.
        delayed = (2, 3) if self.quick else (5, 5)
        proxy = s.start_proxy(*delayed)
        for label, endpoint in [("moto as it is", None),
                                (f"instances running after {delayed[0]} s, images available "
                                 f"after {delayed[1]} s", proxy)]:
            ones, manys, ratio = [], [], []
            for _, measured in self.rounds():
                s.reset_moto()
                a, _ = t.imgbuild(paths[0], variables, endpoint=endpoint, name="concurrency-1")
                s.reset_moto()
                b, _ = t.imgbuild(paths[1], variables, endpoint=endpoint,
                                  name=f"concurrency-{n}")
                if measured:
                    ones.append(a), manys.append(b), ratio.append(b / a)
            key = "delayed" if endpoint else "direct"
            f.add(f"conc.{key}.one", f"5. imgbuild, 1 amazon-ebs source ({label})", ones, "s")
            f.add(f"conc.{key}.many", f"5. imgbuild, {n} amazon-ebs sources at once ({label})",
                  manys, "s")
            f.add(f"conc.{key}.ratio", f"5. ratio {n} sources / 1 source ({label})", ratio, "x",
                  "target ≤ 2×")

    # 7. local QEMU build
    def bench_qemu(self):
        t = self.tools
        # A cache of the bench's own, so that "uncached" means uncached and the
        # user's cache is neither used nor touched.
        cache = os.path.join(os.environ.get("XDG_CACHE_HOME")
                             or os.path.join(os.path.expanduser("~"), ".cache"), "imgbuild-bench")
        bases = os.path.join(cache, "imgbuild", "bases")
        if self.args.bootstrap:
            shutil.rmtree(os.path.join(cache, "imgbuild"), ignore_errors=True)
        elif not (os.path.isdir(bases) and os.listdir(bases)):
            # Bootstrapping downloads a few hundred MB from a Debian mirror.
            self.notes.append("7. local QEMU build skipped: no cached base "
                              "(run with --bootstrap once to build and time it)")
            print("7. local QEMU build: skipped (no cached base; --bootstrap builds it)", flush=True)
            return

        if self.args.bootstrap:
            out = os.path.join(self.scratch, "qemu-out-uncached")
            template = os.path.join(self.scratch, "qemu-uncached.toml")
            with open(os.path.join(BENCH, "qemu.toml")) as f:
                text = (f.read().replace("@OUTPUT@", out).replace("@FILE50@", self.file_small)
                        .replace("@REPORT@", '"true"'))
            with open(template, "w") as f:
                f.write(text)
            env = t.env()
            env["XDG_CACHE_HOME"] = cache
            log_path = t.log_path("qemu-uncached")
            took, _ = run_timed([t.imgbuild_bin, "build", template, "--manifest",
                                 os.path.join(self.scratch, "manifest.json")], log_path, env=env)
            shutil.rmtree(out, ignore_errors=True)
            steps = parse_timings(log_path)
            self.figures.add("qemu.uncached.wall", "7. local QEMU build (uncached base), wall",
                             [took], "s")
            self.figures.add("qemu.uncached.base",
                             "7.   step: prepare base image (bootstrap with mmdebstrap)",
                             [steps.get("prepare base image", 0.0)], "s")
        from local import Local
        Local(self, cache, parse_timings).run(self.file_small)


    # 9. a scheduled rebuild with nothing changed
    def bench_rebuild(self):
        t, s = self.tools, self.services
        variables = {"ssh_port": s.ssh_port, "key_file": s.key, "remote": self.remote}
        template = os.path.join(BENCH, "rebuild.toml")
        s.reset_moto()
        self.clean_remote()
        t.imgbuild(template, variables, name="rebuild-first")
        walls = []
        for _, measured in self.rounds():
            took, _ = t.imgbuild(template, variables, name="rebuild-unchanged",
                                 extra=["--if-changed"])
            log_path = os.path.join(self.scratch, "logs", f"{t.runs:03d}-rebuild-unchanged.log")
            with open(log_path, errors="replace") as f:
                if "unchanged: us-east-1: ami-" not in f.read():
                    raise Failed(f"the --if-changed run built something: {log_path}")
            if measured:
                walls.append(took)
        self.figures.add("rebuild.unchanged",
                         "9. unchanged `--if-changed` rebuild against moto, wall", walls, "s",
                         "no instance; target well under 2 s")


def parse_duration(text):
    text = text.strip()
    m = re.fullmatch(r"(\d+)m (\d+)s", text)
    if m:
        return int(m.group(1)) * 60 + int(m.group(2))
    m = re.fullmatch(r"([\d.]+)s", text)
    if m:
        return float(m.group(1))
    raise ValueError(text)


def parse_timings(log_path):
    """The per-step times of imgbuild's "build finished in X (step T, step T, …)" line."""
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"build finished in [^(]+\((.*)\)\s*$", line)
            if m:
                out = {}
                for part in m.group(1).split(", "):
                    step, _, took = part.rpartition(" ")
                    if re.fullmatch(r"\d+m", step.rpartition(" ")[2]):
                        step, _, minutes = step.rpartition(" ")
                        took = f"{minutes} {took}"
                    out[step] = out.get(step, 0) + parse_duration(took)
                return out
    raise Failed(f"no step timings in {log_path}")


# ---------------------------------------------------------------- report


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB RAM, {platform.platform()}"


def section(label):
    """The figure number a table row belongs to ("7" for "| 7.   step …")."""
    m = re.match(r"\|\s*(\d+)\.", label)
    return m.group(1) if m else None


def write_results(bench, path):
    if bench.args.only and os.path.exists(path):
        return update_results(bench, path)
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run` (see `bench/README.md` for what each figure measures).",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {machine()}; load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- imgbuild: {version(['git', '-C', ROOT, 'describe', '--always', '--dirty'])} "
        f"({bench.args.profile} build)",
        f"- Packer: {version(['packer', 'version'])}",
        f"- moto: {version([sys.executable, '-c', 'import moto; print(moto.__version__)'])}",
        f"- OpenSSH: {version(['ssh', '-V'])}",
        f"- pairs per comparison: {bench.pairs} after {bench.warmup} warm-up round(s), "
        "tools alternating run by run",
        "",
        "| figure | median | min | max | n | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for _, label, values, unit, note in bench.figures.rows:
        lines.append(table_row(label, values, unit, note))
    finish_results(bench, lines, path)


def table_row(label, values, unit, note):
    return (f"| {label} | {fmt(statistics.median(values), unit)} | "
            f"{fmt(min(values), unit)} | {fmt(max(values), unit)} | {len(values)} | {note} |")


def finish_results(bench, lines, path):
    """Adds the run's notes and RESULTS.notes.md, and writes the file."""
    for note in bench.notes:
        lines += ["", note]
    extra = os.path.join(BENCH, "RESULTS.notes.md")
    if os.path.exists(extra):
        with open(extra) as f:
            lines += ["", f.read().rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def update_results(bench, path):
    """Replaces only the rows measured, leaving the rest (and the header,
    which describes the run that measured them) as they were; a line under
    the header says when and how the new rows were measured."""
    with open(path) as f:
        old = f.read().split("\n")
    rows = [(k, label, values, unit, note) for k, label, values, unit, note in bench.figures.rows]
    measured = {section("| " + label) for _, label, _, _, _ in rows}
    table_start = next(i for i, l in enumerate(old) if l.startswith("| figure |"))
    header = [l for l in old[:table_start] if not l.startswith("- sections ")]
    while header and header[-1] == "":
        header.pop()
    header.append(
        f"- sections {', '.join(sorted(measured))} measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with imgbuild "
        f"{version(['git', '-C', ROOT, 'describe', '--always', '--dirty'])} "
        f"({bench.args.profile} build), {version(['packer', 'version'])}; "
        f"{bench.pairs} pairs after {bench.warmup} warm-up round(s); load average at the end: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    table = []
    i = table_start + 2
    while i < len(old) and old[i].startswith("|"):
        table.append(old[i])
        i += 1
    fresh = {label: table_row(label, values, unit, note)
             for _, label, values, unit, note in rows}
    # A row measured again is replaced where it stands; a new one goes at the
    # end of its section; rows not measured this time stay as they were.
    kept = [fresh.pop(r.split(" | ")[0][2:], r) for r in table]
    for label, line in fresh.items():
        last = max((i for i, r in enumerate(kept) if section(r) == section("| " + label)),
                   default=len(kept) - 1)
        kept.insert(last + 1, line)
    finish_results(bench, header + ["", old[table_start], old[table_start + 1]] + kept, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="each measurement once, small sizes: proves the harness works")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--bootstrap", action="store_true",
                        help="7.: also time an uncached build: bootstrap the QEMU base afresh "
                             "(downloads packages from a Debian mirror)")
    parser.add_argument("--only", action="append",
                        choices=["e2e", "transfer", "shell", "wait", "concurrency", "qemu",
                                 "rebuild"])
    parser.add_argument("--imgbuild", required=True, help="the imgbuild binary")
    parser.add_argument("--profile", default="release")
    parser.add_argument("--results", help="write the results table here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs)")
    args = parser.parse_args()

    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ok = False
    try:
        bench.run()
        ok = True
    except Failed as e:
        log(f"failed: {e}")
    finally:
        if bench.services:
            bench.services.close()
        if args.results and bench.figures.rows:
            write_results(bench, args.results)
            log(f"results written to {args.results}")
        if args.keep or not ok:
            log(f"logs kept in {bench.scratch}")
            for name in ["f-small", "f-big", "down"]:
                p = os.path.join(bench.scratch, name)
                if os.path.exists(p):
                    os.remove(p)
            shutil.rmtree(os.path.join(bench.scratch, "remote"), ignore_errors=True)
        else:
            shutil.rmtree(bench.scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

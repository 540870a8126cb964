#!/usr/bin/env python3
"""An HTTP proxy in front of moto's EC2 server that makes state changes slow.

moto reports an instance `running` and an image `available` on the first
describe. Behind this proxy, an instance stays `pending` for RUNNING_AFTER
seconds after its RunInstances call, and an image stays `pending` for
AVAILABLE_AFTER seconds after its CreateImage call; only the
DescribeInstances / DescribeImages responses are rewritten.

The first response that shows the real state is logged as one JSON line,
{"kind": "instance"|"image", "id": ..., "late": seconds}, where `late` is how
long after the state change the client asked: the time a builder needs to
notice it.

Usage: ec2_state_proxy.py LISTEN_PORT MOTO_URL RUNNING_AFTER AVAILABLE_AFTER LOG
Stdlib only.
"""

import http.client
import http.server
import json
import re
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
# id -> (kind, time the state changes); removed once the change was seen.
PENDING = {}
# Hop-by-hop headers are not forwarded.
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def parse(body):
    try:
        return urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return {}


def log_event(kind, ident, late):
    with open(CONFIG["log"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, "id": ident, "late": round(late, 4)}) + "\n")


def hold(text, kind, id_tag, state_block):
    """Rewrites the state of every tracked, not yet due resource to pending."""
    now = time.monotonic()
    for ident, (k, due) in list(PENDING.items()):
        if k != kind:
            continue
        start = text.find(f"<{id_tag}>{ident}</{id_tag}>")
        if start < 0:
            continue
        if now < due:
            match = state_block.search(text, start)
            if match:
                block = (
                    match.group(0)
                    .replace("<code>16</code>", "<code>0</code>")
                    .replace(f">{match.group('state')}<", ">pending<")
                )
                text = text[: match.start()] + block + text[match.end():]
        else:
            del PENDING[ident]
            log_event(kind, ident, now - due)
    return text


INSTANCE_STATE = re.compile(
    r"<instanceState>\s*<code>\d+</code>\s*<name>(?P<state>running)</name>\s*</instanceState>"
)
IMAGE_STATE = re.compile(r"<imageState>(?P<state>available)</imageState>")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.forward(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.forward(self.rfile.read(length))

    def forward(self, body):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(CONFIG["host"], CONFIG["port"], timeout=60)
        sent = time.monotonic()
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        action = (parse(body).get("Action") or [""])[0]
        if response.status == 200 and action:
            text = data.decode("utf-8", "replace")
            with LOCK:
                if action == "RunInstances":
                    for ident in re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text):
                        PENDING[ident] = ("instance", sent + CONFIG["running_after"])
                elif action == "CreateImage":
                    for ident in re.findall(r"<imageId>(ami-[0-9a-f]+)</imageId>", text):
                        PENDING[ident] = ("image", sent + CONFIG["available_after"])
                elif action == "DescribeInstances":
                    text = hold(text, "instance", "instanceId", INSTANCE_STATE)
                elif action == "DescribeImages":
                    text = hold(text, "image", "imageId", IMAGE_STATE)
            data = text.encode()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP and key.lower() not in {"server", "date"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    upstream = urllib.parse.urlsplit(argv[2])
    CONFIG.update(
        host=upstream.hostname,
        port=upstream.port,
        running_after=float(argv[3]),
        available_after=float(argv[4]),
        log=argv[5],
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


CONFIG = {}

if __name__ == "__main__":
    sys.exit(main(sys.argv))

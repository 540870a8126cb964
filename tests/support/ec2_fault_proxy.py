#!/usr/bin/env python3
"""An HTTP proxy in front of moto's EC2 server that answers a fraction of
calls the way a busy EC2 does: HTTP 503 with EC2's XML error body, code
`Unavailable` or `RequestLimitExceeded`, without passing the call on.

Which calls fail is decided by SEED alone: the n-th call of each action
fails when a generator seeded with (SEED, action, n) says so, so a run can
be repeated exactly however the calls of concurrent builds interleave.

Usage: ec2_fault_proxy.py LISTEN_PORT MOTO_URL SEED FRACTION LOG
                          [--actions A,B,...] [--delay SECONDS]
  --actions  fault only these actions (default: every action)
  --delay    hold every answer this long (a slow EC2)
  --refuse ACTION:CODE:STATUS[:MESSAGE]  answer the next call of ACTION
             with this error code, HTTP status (and message) instead of
             passing it on; repeated,
             the calls of ACTION get the refusals in the order given, and
             later ones pass (with SEED's faults off for that action)
  --hold-after ACTION:SECONDS  hold the first call that comes after a
             call of ACTION was passed on this long (a window in which a
             test can act, e.g. signal the build, however busy the machine)
  --max-seconds  exit after this long (default 900), so a test that dies
             cannot leave it running
Every call is logged to LOG as one line, "ACTION CODE" (CODE is `ok` for a
call passed on, `held` when the --hold-after hold begins). Prints "ready" once it listens. Stdlib only.
"""

import argparse
import http.client
import http.server
import os
import random
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
# action -> how many calls of it were seen
COUNTS = {}
# --hold-after: "armed" once ACTION passed, "done" once a call was held
HOLD = {"armed": False, "done": False}
# Hop-by-hop headers are not forwarded.
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
FAULTS = ("Unavailable", "RequestLimitExceeded")
MESSAGES = {
    "Unavailable": "The service is unavailable. Please try again shortly.",
    "RequestLimitExceeded": "Request limit exceeded.",
}


def action_of(body):
    try:
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return ""
    return (form.get("Action") or [""])[0]


def refusal_for(action):
    """(code, status, message) of the next --refuse for `action`, or None."""
    with LOCK:
        queue = ARGS.refuse.get(action)
        return queue.pop(0) if queue else None


def fault_for(action):
    """The error code this call gets, or None to pass it on."""
    if action in ARGS.refused_actions:
        return None
    if not action or (ARGS.actions and action not in ARGS.actions):
        return None
    with LOCK:
        n = COUNTS.get(action, 0)
        COUNTS[action] = n + 1
    draw = random.Random(f"{ARGS.seed}:{action}:{n}")
    if draw.random() >= ARGS.fraction:
        return None
    return draw.choice(FAULTS)


def hold_now():
    """Whether this call is the one --hold-after holds."""
    with LOCK:
        if HOLD["armed"] and not HOLD["done"]:
            HOLD["done"] = True
            return True
        return False


def passed(action):
    with LOCK:
        if ARGS.hold_after and action == ARGS.hold_after[0]:
            HOLD["armed"] = True


def log(action, code):
    with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(f"{action or '-'} {code}\n")


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
        action = action_of(body)
        refusal = refusal_for(action)
        code, status, message = refusal if refusal else (fault_for(action), 503, None)
        if ARGS.delay:
            time.sleep(ARGS.delay)
        if hold_now():
            log(action, "held")
            time.sleep(ARGS.hold_after[1])
        if code:
            log(action, code)
            data = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message or MESSAGES.get(code, code)}</Message></Error></Errors>"
                "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(ARGS.host, ARGS.port, timeout=60)
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        log(action, "ok")
        passed(action)
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP and key.lower() not in {"server", "date"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen_port", type=int)
    parser.add_argument("moto_url")
    parser.add_argument("seed")
    parser.add_argument("fraction", type=float)
    parser.add_argument("log")
    parser.add_argument("--actions", default="")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--refuse", action="append", default=[])
    parser.add_argument("--hold-after", default="")
    args = parser.parse_args(argv[1:])
    if args.hold_after:
        action, seconds = args.hold_after.split(":")
        args.hold_after = (action, float(seconds))
    refuse = {}
    for spec in args.refuse:
        action, code, status, *message = spec.split(":", 3)
        refuse.setdefault(action, []).append((code, int(status), "".join(message)))
    args.refuse = refuse
    args.refused_actions = set(refuse)
    upstream = urllib.parse.urlsplit(args.moto_url)
    args.host, args.port = upstream.hostname, upstream.port
    args.actions = {a for a in args.actions.split(",") if a}
    global ARGS
    ARGS = args
    threading.Timer(args.max_seconds, lambda: os._exit(0)).start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen_port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
    return 0


ARGS = None

if __name__ == "__main__":
    sys.exit(main(sys.argv))

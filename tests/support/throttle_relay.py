#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that limits each direction of each connection
to RATE bytes a second: a slow link between imgbuild and a test sshd.

Usage: throttle_relay.py LISTEN_PORT TARGET_PORT RATE MAX_SECONDS
Prints "ready" on stdout once it listens. It exits by itself after
MAX_SECONDS (so a test that dies cannot leave it running) and on SIGTERM.
Stdlib only.
"""

import os
import signal
import socket
import sys
import threading
import time

CHUNK = 16 * 1024


def pump(src, dst, rate):
    """Copies src to dst, never faster than `rate` bytes a second."""
    started = time.monotonic()
    sent = 0
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            sent += len(data)
            # Sleep until the bytes sent so far are due at `rate`.
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(conn, target_port, rate):
    try:
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=10)
    except OSError:
        conn.close()
        return
    upstream.settimeout(None)
    for sock in (conn, upstream):
        # Small buffers, so the rate limit holds at the sender, not after
        # megabytes sit in the kernel.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    threading.Thread(target=pump, args=(conn, upstream, rate), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, conn, rate), daemon=True).start()


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    listen_port, target_port = int(argv[1]), int(argv[2])
    rate, max_seconds = float(argv[3]), float(argv[4])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Timer(max_seconds, lambda: os._exit(0)).start()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        serve(conn, target_port, rate)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

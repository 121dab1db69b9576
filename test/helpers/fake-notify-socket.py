#!/usr/bin/env python3
"""A stand-in for systemd's notification socket, for tests of sd_notify senders.

Usage: fake-notify-socket.py SOCKET_PATH

Binds a Unix datagram socket at SOCKET_PATH (point NOTIFY_SOCKET at it) and
prints one JSON object per line on stdout, flushed at once:

  {"event": "listening", "path": "..."}                 once, when bound
  {"event": "message", "message": "READY=1\\nSTATUS=up",
   "fields": {"READY": "1", "STATUS": "up"},
   "pid": 1234, "fds": 0}                              per datagram

`pid` is the sender's process id from SCM_CREDENTIALS (what systemd uses to
find the unit), `fds` the number of file descriptors passed with SCM_RIGHTS.
Like systemd, it closes every received descriptor at once: `systemd-notify`
(without --no-block) sends `BARRIER=1` with the write end of a pipe and waits
until that end is closed everywhere, so closing it completes the barrier.
BARRIER=1 datagrams are reported too (as any other message).

Runs until SIGTERM/SIGINT or until stdin is closed (so it never outlives a
test runner that dies), then removes the socket file and exits 0.
"""

import array
import json
import os
import select
import signal
import socket
import struct
import sys

MAX_FDS = 64
UCRED = struct.Struct("iII")  # pid, uid, gid


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: fake-notify-socket.py SOCKET_PATH\n")
        return 2
    path = sys.argv[1]
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.bind(path)

    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def emit(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"event": "listening", "path": path})
    ancillary = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize) + socket.CMSG_SPACE(UCRED.size)
    watch = [sock, sys.stdin]
    try:
        while not stopping:
            try:
                ready, _, _ = select.select(watch, [], [], 0.5)
            except InterruptedError:
                continue
            if sys.stdin in ready:
                if os.read(sys.stdin.fileno(), 4096) == b"":
                    break
            if sock not in ready:
                continue
            data, anc, _flags, _addr = sock.recvmsg(65536, ancillary)
            fds = []
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                    fds.extend(a)
                elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[: UCRED.size])[0]
            for fd in fds:
                os.close(fd)
            text = data.decode("utf-8", errors="replace")
            fields = {}
            for line in text.split("\n"):
                if "=" in line:
                    key, value = line.split("=", 1)
                    fields[key] = value
            emit({"event": "message", "message": text, "fields": fields, "pid": pid, "fds": len(fds)})
    finally:
        sock.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The Python baseline: SocketScience's algorithm (wire.md), timed.

roundtrip N: encode N `ping` envelopes (msgpack + base64 + frame), then
             receive-and-dispatch each as SocketScience.receive does: strip,
             test the frame's forms in its order, remove the header and the
             trailer with its two regular-expression substitutions, base64,
             msgpack, and call the registered callbacks.
fanout N:    one encode and three such receive-and-dispatch per message
             (three instances in one room).
lean N:      roundtrip with the header cut off by slicing instead of the
             regular expressions: faster than SocketScience, for reference.
Prints one line: `<mode> <median> <min> <max>`, ns per message over 5 runs.
"""
import base64
import random
import re
import statistics
import sys
import time

import msgpack

callbacks = {}
served = [0]


def register(kind, cb):
    callbacks.setdefault(kind, []).append(cb)


def send(payload):
    encoded = base64.b64encode(msgpack.dumps(payload)).decode("ascii")
    return ".\n\u0002{:04}{}\u0003".format(random.randint(0, 9999), encoded)


HEADER = re.compile(r"^.\n\u0002\d{4}")
TRAILER = re.compile(r"\u0003")


def handle(payload):
    for kind, value in payload.items():
        if kind in callbacks:
            for cb in callbacks[kind]:
                cb(value)


def receive(content):
    """SocketScience.receive's path for a frame (wire.md: base64 body)."""
    content = content.replace("\u200b", "").replace("\u200c", "").strip()
    if content.startswith("\u0002") and content.endswith("\u0003"):
        raise AssertionError("old-style frame")
    elif content.startswith("\u0002") and not content.endswith("\u0003"):
        raise AssertionError("old-style first chunk")
    elif not content.startswith("\u0002") and content.endswith("\u0003") and not content.startswith(".\n\u0002"):
        raise AssertionError("old-style last chunk")
    elif content.startswith("\u0016"):
        raise AssertionError("old-style chunk")
    elif content.startswith(".\n\u0002"):
        body = TRAILER.sub("", HEADER.sub("", content))
        handle(msgpack.loads(base64.b64decode(body)))


def receive_lean(content):
    content = content.replace("\u200b", "").replace("\u200c", "").strip()
    if content.startswith(".\n\u0002") and content.endswith("\u0003"):
        handle(msgpack.loads(base64.b64decode(content[7:-1])))


def on_ping(ping):
    # What a typed handler gets: the fields, checked.
    location = ping["location"]
    timestamp = ping["timestamp"]
    if isinstance(location, str) and isinstance(timestamp, float):
        served[0] += 1


register("ping", on_ping)


def run(mode, n):
    recv = receive_lean if mode == "lean" else receive
    start = time.perf_counter_ns()
    for i in range(n):
        text = send({"ping": {"location": "Henders/EC2", "timestamp": 1700000000.0 + i}})
        recv(text)
        if mode == "fanout":
            recv(text)
            recv(text)
    return (time.perf_counter_ns() - start) / n


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    runs = [run(mode, n) for _ in range(5)]
    expected = 5 * n * (3 if mode == "fanout" else 1)
    assert served[0] == expected, (served[0], expected)
    print(f"{mode} {statistics.median(runs):.0f} {min(runs):.0f} {max(runs):.0f}")


if __name__ == "__main__":
    main()

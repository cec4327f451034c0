#!/usr/bin/env python3
"""The Python baseline: SocketScience's algorithm (wire.md), timed.

roundtrip N: encode N `ping` envelopes (msgpack + base64 + frame), then
             receive-and-dispatch each (strip, check, base64, msgpack, call
             the registered callback).
fanout N:    one encode and three receive-and-dispatch per message (three
             instances in one room).
Prints one line: `<mode> <median> <min> <max>`, ns per message over 5 runs.
"""
import base64
import random
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


def receive(content):
    content = content.replace("\u200b", "").replace("\u200c", "").strip()
    if content.startswith(".\n\u0002") and content.endswith("\u0003"):
        payload = msgpack.loads(base64.b64decode(content[7:-1]))
        for kind, value in payload.items():
            for cb in callbacks.get(kind, ()):
                cb(value)


def on_ping(ping):
    # What a typed handler gets: the fields, checked.
    location = ping["location"]
    timestamp = ping["timestamp"]
    if isinstance(location, str) and isinstance(timestamp, float):
        served[0] += 1


register("ping", on_ping)


def run(mode, n):
    start = time.perf_counter_ns()
    for i in range(n):
        text = send({"ping": {"location": "Henders/EC2", "timestamp": 1700000000.0 + i}})
        receive(text)
        if mode == "fanout":
            receive(text)
            receive(text)
    return (time.perf_counter_ns() - start) / n


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    runs = [run(mode, n) for _ in range(5)]
    expected = 5 * n * (3 if mode == "fanout" else 1)
    assert served[0] == expected, (served[0], expected)
    print(f"{mode} {statistics.median(runs):.0f} {min(runs):.0f} {max(runs):.0f}")


if __name__ == "__main__":
    main()

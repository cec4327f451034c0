#!/usr/bin/env python3
"""What SmokeDetector's Python SocketScience does with a chat message: the
project's own transcription, for the interop tests (tests/interop.rs).

Transcribed (behaviour, not code) from Charcoal-SE/SmokeDetector:

- socketscience.py at commit 12f49e68b2c6b76ceedcfa8681ab71275db850af:
  `SocketScience.send`, `receive`, `register` and `handle`;
- chatcommunicate.py at commit 202568cacf888709d7a06e4b39a404a5b795520a:
  `on_msg`, the part that hands chat messages to `SocketScience.receive`.

What they do, step by step, as `Instance` below does it:

on_msg (chatcommunicate): a message posted by SmokeDetector's own account in
    a room with the "direct" role goes to `SocketScience.receive`. So does
    every other account's message in such a room, unless it is a reply, or
    its (HTML) content starts with "sd " (any case), "!!/" or "sdc " (any
    case): those are commands. Before `receive`, U+200B and U+200C are
    removed from the message's source text.
send: `msgpack.dumps(payload)` with the library's defaults, standard base64,
    and the frame ".\\n\\x02" + "{:04}" of a random 0-9999 + base64 + "\\x03".
receive: strips whitespace; if the text starts with ".\\n\\x02", drops 7
    characters at the front and 1 at the end, `base64.b64decode`s the rest
    (lenient: it skips characters outside the alphabet, and raises
    `binascii.Error` on bad padding), `msgpack.loads` it (defaults: str as
    str, bin as bytes, only str and bytes map keys, `ExtraData` after the
    first object) and hands the result to `handle`; otherwise logs (warn)
    "SocketScience received malformed direct message" and the text (debug).
handle: for every key of the payload, in order, every callback registered
    for that key is called with its value. Then, if the payload has
    "metasmoke_state": if its value equals "down", it reads
    payload["location"] to log (info) and tell the "debug" rooms that
    metasmoke is down, sets metasmoke's status down, and schedules
    `check_recent_pings` in 90 s; if it equals "up", it reads
    payload["location"] to log and tell the "debug" rooms that metasmoke is
    up, and sets the status up. Then, if the payload has "ping", it appends
    {"timestamp": payload["ping"], "location": payload["location"]} to its
    pings and cancels the pending switch to active mode, if any.

Nothing catches an exception on the way: in SmokeDetector it escapes into
ChatExchange's socket thread, and that instance stops reading the room.
Here it is caught at the top and reported.

What SmokeDetector calls outside these (its log, `tell_rooms_with`, the
metasmoke status, `Tasks.later`) is replaced by stand-ins that record each
call as a line of text in `effects`, so that a test sees everything a
message made SmokeDetector do.

Protocol: `smokedetector.py serve` reads one JSON request per line on stdin
and writes one JSON answer per line on stdout, so that one process serves a
whole test run:

    {"on_msg": [TEXT, ...], "callbacks": [KIND, ...], "own_account": BOOL}
        -> [OUTCOME, ...]: each text posted in a "direct" room by
           SmokeDetector's own account (or, with "own_account": false, by
           another one), in a fresh instance with a recording callback
           registered for each kind in "callbacks".
    {"send": [PAYLOAD, ...], "digits": N}
        -> [FRAME or {"raised": ...}, ...]: `SocketScience.send` of each
           payload (JSON text, read with `json.loads`, so key order is kept
           and NaN/Infinity are floats); the frame it posts.
    {"send_receive": [PAYLOAD, ...], "callbacks": [KIND, ...]}
        -> [OUTCOME, ...]: one instance sends each payload, and another
           receives the frame it posted, as "on_msg" does.

OUTCOME: {"payload": compact JSON text of what msgpack.loads gave (bytes as
{"$bin": hex}, key order kept) or null, "calls": [[KIND, repr(value)], ...],
"effects": [TEXT, ...], "malformed": bool, "raised": exception type name or
null, "error": its message or null}.
"""

import base64
import json
import random
import sys

try:
    import msgpack
except ImportError:
    sys.exit("smokedetector.py: the Python `msgpack` library is missing: python3 -m pip install msgpack")

FRAME_START = ".\n\u0002"


class Raised(Exception):
    """An exception SmokeDetector's receive path let escape, with what
    happened before it."""


class Instance:
    """One SmokeDetector process, as far as SocketScience goes."""

    def __init__(self, callbacks=()):
        self.callbacks = {}
        self.pings = []
        self.switch_task = None
        self.effects = []
        self.calls = []
        self.payload = None
        self.malformed = False
        self.posted = []
        for kind in callbacks:
            self.register(kind, self.recorder(kind))

    # -- stand-ins for what SocketScience calls ------------------------------

    def log(self, level, text):
        self.effects.append("log {}: {}".format(level, text))

    def tell_rooms_with(self, role, text):
        if role == "direct":
            self.posted.append(text)
        self.effects.append("tell {}: {}".format(role, text))

    def recorder(self, kind):
        def record(value):
            self.calls.append([kind, repr(value)])
        return record

    # -- SocketScience -------------------------------------------------------

    def send(self, payload, digits=None):
        body = base64.b64encode(msgpack.dumps(payload)).decode("utf-8")
        if digits is None:
            digits = random.randint(0, 9999)
        self.tell_rooms_with("direct", "{}{:04}{}\u0003".format(FRAME_START, digits, body))

    def register(self, kind, callback):
        self.callbacks.setdefault(kind, []).append(callback)

    def receive(self, content):
        content = content.strip()
        if not content.startswith(FRAME_START):
            self.malformed = True
            self.log("warn", "SocketScience received malformed direct message")
            self.log("debug", content)
            return
        payload = msgpack.loads(base64.b64decode(content[7:-1]))
        self.payload = payload
        self.handle(payload)

    def handle(self, content):
        for kind, value in content.items():
            for callback in self.callbacks.get(kind, ()):
                callback(value)
        if "metasmoke_state" in content:
            state = content["metasmoke_state"]
            if state == "down":
                where = content["location"]
                self.log("info", "{} says metasmoke is down, switching to active ping monitoring.".format(where))
                self.tell_rooms_with("debug", "{} says metasmoke is down,".format(where)
                                     + " switching to active ping monitoring.")
                self.effects.append("MSStatus.set_down()")
                self.effects.append("Tasks.later(check_recent_pings, after=90)")
            if state == "up":
                where = content["location"]
                self.log("info", "{} says metasmoke is up, disabling ping monitoring.".format(where))
                self.tell_rooms_with("debug", "{} says metasmoke is up,".format(where)
                                     + " disabling ping monitoring.")
                self.effects.append("MSStatus.set_up()")
        if "ping" in content:
            self.pings.append({"timestamp": content["ping"], "location": content["location"]})
            self.effects.append("pings.append({!r})".format(self.pings[-1]))
            if self.switch_task is not None:
                self.effects.append("switch_task.cancel()")

    # -- chatcommunicate -----------------------------------------------------

    def on_msg(self, source, own_account=True, content=None, is_reply=False):
        """A chat message in a room with the "direct" role: `source` is its
        text as posted, `content` its HTML (the source, when not given)."""
        content = source if content is None else content
        if not own_account:
            lower = content.lower()
            if is_reply or lower.startswith("sd ") or content.startswith("!!/") or lower.startswith("sdc "):
                return
        self.receive(source.replace("\u200b", "").replace("\u200c", ""))


def to_json(value):
    def bin_as_hex(o):
        if isinstance(o, (bytes, bytearray)):
            return {"$bin": o.hex()}
        raise TypeError("cannot show {}".format(type(o).__name__))

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=bin_as_hex)


def outcome(instance, run):
    raised = error = None
    try:
        run()
    except Exception as e:  # SmokeDetector lets it escape; here it is reported
        raised, error = type(e).__name__, str(e)[:300]
    payload = None
    if instance.payload is not None:
        try:
            payload = to_json(instance.payload)
        except (TypeError, ValueError) as e:
            payload = "cannot show: {}".format(e)
    return {
        "payload": payload,
        "calls": instance.calls,
        "effects": instance.effects,
        "malformed": instance.malformed,
        "raised": raised,
        "error": error,
    }


def on_msg(text, callbacks, own_account=True):
    instance = Instance(callbacks)
    return outcome(instance, lambda: instance.on_msg(text, own_account))


def send(payload_json, digits):
    sender = Instance()
    try:
        sender.send(json.loads(payload_json), digits)
    except Exception as e:
        return {"raised": type(e).__name__, "error": str(e)[:300]}
    return sender.posted[-1]


def send_receive(payload_json, callbacks):
    frame = send(payload_json, None)
    if isinstance(frame, dict):
        return dict(frame, send_raised=True)
    return on_msg(frame, callbacks)


def answer(request):
    callbacks = request.get("callbacks", [])
    if "on_msg" in request:
        own = request.get("own_account", True)
        return [on_msg(text, callbacks, own) for text in request["on_msg"]]
    if "send" in request:
        return [send(p, request.get("digits")) for p in request["send"]]
    if "send_receive" in request:
        return [send_receive(p, callbacks) for p in request["send_receive"]]
    raise ValueError("unknown request: {}".format(sorted(request)))


def main():
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: smokedetector.py serve  (JSON requests on stdin, one per line)")
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = {"ok": answer(json.loads(line))}
        except Exception as e:
            result = {"failed": "{}: {}".format(type(e).__name__, e)}
        sys.stdout.write(json.dumps(result, ensure_ascii=True, allow_nan=True) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

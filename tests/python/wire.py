#!/usr/bin/env python3
"""The SocketScience wire, written with the real Python `msgpack` library.

The interop tests (tests/interop.rs) run this script to check that Rust
nodes and SmokeDetector's Python SocketScience read each other's chat
messages. It follows /work/shared/design/wire.md and docs/wire-format.md:

    frame = ".\\n\\x02" + "{:04}".format(digits)
            + base64.b64encode(msgpack.dumps(payload)).decode() + "\\x03"

Commands (input is JSON on stdin, output one JSON value per line on stdout,
so that newlines and control characters in frames travel safely):

    encode   stdin: [{"payload": {...}, "digits": 42, "secret": "..."}, ...]
             out:   each frame, as a JSON string. "digits" is optional
                    (random 0-9999, as SocketScience does). With "secret",
                    the body is signed as docs/wire-format.md says: a last
                    entry "_sig", HMAC-SHA256 of every byte before it.
    decode   stdin: ["frame text", ...]
             out:   each payload dict as compact JSON (key order kept), or
                    {"$error": "..."} if it is not a frame. Reads what the
                    design says: strips U+200B/U+200C and whitespace, checks
                    the prefix, the four digits and the suffix, decodes
                    base64, then JSON if the body starts with `{`, else
                    MessagePack.
    verify   stdin: [{"frame": "...", "secret": "..."}, ...]
             out:   true if the frame's MessagePack body ends with a "_sig"
                    entry that is the HMAC-SHA256 under the secret of every
                    byte before it, else false.

What SmokeDetector's own receive path does with a chat message is
transcribed in smokedetector.py, next to this file.

Bytes (msgpack bin) in a decoded payload print as {"$bin": "<hex>"}.
"""

import base64
import hashlib
import hmac
import json
import random
import sys

try:
    import msgpack
except ImportError:
    sys.exit("wire.py: the Python `msgpack` library is missing: python3 -m pip install msgpack")

FRAME_START = ".\n\x02"
FRAME_END = "\x03"
ZERO_WIDTH = ("\u200b", "\u200c")
# The "_sig" key (fixstr) and the head of a 32-byte bin8 value.
SIG_HEAD = b"\xa4_sig\xc4\x20"


def encode(payload, digits=None, secret=None):
    """A frame for `payload`, exactly as SocketScience.send writes it; signed
    if a secret is given."""
    if digits is None:
        digits = random.randint(0, 9999)
    if secret is None:
        body = msgpack.dumps(payload)
    else:
        # The map's header counts "_sig"; the signature covers what precedes it.
        covered = msgpack.dumps(dict(payload, _sig=bytes(32)))[: -len(SIG_HEAD) - 32]
        body = covered + SIG_HEAD + hmac.new(secret.encode(), covered, hashlib.sha256).digest()
    return FRAME_START + "{:04}".format(digits) + base64.b64encode(body).decode("utf-8") + FRAME_END


def clean(text):
    for zw in ZERO_WIDTH:
        text = text.replace(zw, "")
    return text.strip()


def decode(text):
    """The payload of a frame, read as the design says (both codecs)."""
    text = clean(text)
    if not text.startswith(FRAME_START) or not text.endswith(FRAME_END):
        raise ValueError("not a frame")
    rest = text[len(FRAME_START):-len(FRAME_END)]
    if len(rest) < 4 or not rest[:4].isdigit():
        raise ValueError("the four digits are missing")
    body = base64.b64decode(rest[4:], validate=True)
    if body[:1] == b"{":
        return json.loads(body.decode("utf-8"))
    return msgpack.loads(body)


def verify(frame, secret):
    body = base64.b64decode(clean(frame)[len(FRAME_START) + 4 : -len(FRAME_END)])
    covered, head, sig = body[:-len(SIG_HEAD) - 32], body[-len(SIG_HEAD) - 32 : -32], body[-32:]
    expected = hmac.new(secret.encode(), covered, hashlib.sha256).digest()
    return head == SIG_HEAD and hmac.compare_digest(sig, expected)


def to_json(value):
    def bin_as_hex(o):
        if isinstance(o, (bytes, bytearray)):
            return {"$bin": o.hex()}
        raise TypeError("cannot print {}".format(type(o).__name__))

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=bin_as_hex)


def main():
    commands = ("encode", "decode", "verify")
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit("usage: wire.py {} < input.json".format("|".join(commands)))
    command = sys.argv[1]
    items = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    out = []
    for item in items:
        if command == "encode":
            out.append(to_json(encode(item["payload"], item.get("digits"), item.get("secret"))))
        elif command == "decode":
            try:
                out.append(to_json(decode(item)))
            except Exception as e:
                out.append(to_json({"$error": "{}: {}".format(type(e).__name__, e)}))
        else:
            out.append(to_json(verify(item["frame"], item["secret"])))
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()

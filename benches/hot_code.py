#!/usr/bin/env python3
"""The code a benchmark runs every time, from a callgrind profile.

    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no \\
        --compress-strings=no --callgrind-out-file=cg.out \\
        target/release/examples/compare roundtrip-msgpack 20000
    benches/hot_code.py cg.out 99000

Prints how many distinct instructions ran at least THRESHOLD times (with
`compare ... 20000`, five passes of 20 000 messages: 99 000 is nearly
once per message, allowing for a first message that goes another way),
how many 64-byte cache lines hold them, and the functions with the most
of them.
Set beside the level-1 instruction cache (`lscpu`), it tells whether a
loop's code still fits (see BENCHMARKS.md).
"""
import collections
import sys


def hot_code(path, threshold):
    executed = collections.Counter()
    function_of = {}
    function = None
    positions = None
    after_call = False
    with open(path) as profile:
        for line in profile:
            if line.startswith("positions:"):
                positions = len(line.split()) - 1
            elif line.startswith("fn="):
                function = line[3:].rstrip("\n")
            elif line.startswith("calls="):
                # The next cost line is the call's inclusive cost.
                after_call = True
            elif line.startswith("0x"):
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                address = int(fields[0], 16)
                if len(fields) > positions:
                    executed[address] += int(fields[positions])
                function_of[address] = function
    return [a for a, n in executed.items() if n >= threshold], function_of


def main():
    path, threshold = sys.argv[1], int(sys.argv[2])
    hot, function_of = hot_code(path, threshold)
    lines = {a // 64 for a in hot}
    print(f"{len(hot)} instructions, {len(lines)} cache lines ({len(lines) * 64} bytes)")
    per_function = collections.Counter(function_of[a] for a in hot)
    for function, n in per_function.most_common(30):
        print(f"{n:6d}  {function[:110]}")


if __name__ == "__main__":
    main()

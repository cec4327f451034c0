#!/usr/bin/env bash
# The MessagePack roundtrip (or another `compare` mode) over many code
# layouts: the same code, linked with its functions in SEEDS shuffled orders
# (lld's --shuffle-sections), for this tree and for a baseline commit.
#
#   benches/layouts.sh [SEEDS] [ROUNDS] [BASELINE] [MODE]
#
# Why: on this machine the roundtrip's clock moves by up to 10 % with where
# the linker puts the functions alone (the same code, a few bytes of the
# benchmark's own code apart; see BENCHMARKS.md, "Reading the figures").
# One build is one draw. Each binary (the as-built one, then SEEDS
# shuffled ones, per tree) runs ROUNDS times, all interleaved in a random
# order; per binary the median of its runs' fastest passes; per tree the
# median and the mean over its layouts. The baseline is checked out in a
# git worktree under target/layouts (after `cargo clean`, `git worktree
# prune` forgets it).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-12}
rounds=${2:-3}
baseline=${3:-fa3ad7a}
mode=${4:-roundtrip-msgpack}
out=target/layouts
mkdir -p "$out"
build() { # tree target-dir name
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo build -q --release --example compare)
  cp "$2/release/examples/compare" "$out/$3-0"
  for s in $(seq "$seeds"); do
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo rustc -q --release --example compare -- \
      -C link-arg=-Wl,--shuffle-sections="*=$s")
    cp "$2/release/examples/compare" "$out/$3-$s"
  done
}
echo "building $((seeds + 1)) layouts of this tree ..." >&2
build . "$PWD/target" head
if [ ! -d "$out/baseline-tree" ]; then
  git worktree add -q --detach "$out/baseline-tree" "$baseline"
fi
git -C "$out/baseline-tree" checkout -q --detach "$baseline"
echo "building $((seeds + 1)) layouts of $baseline ..." >&2
build "$out/baseline-tree" "$PWD/$out/baseline-target" baseline
echo "running: $rounds rounds of $(( 2 * (seeds + 1) )) binaries ..." >&2
python3 - "$out" "$seeds" "$rounds" "$mode" "$baseline" <<'PY'
import random, statistics, subprocess, sys
out, seeds, rounds, mode, baseline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
trees = {"baseline": baseline, "head": "this tree"}
bins = [(t, f"{out}/{t}-{s}") for t in trees for s in range(seeds + 1)]
fastest = {b: [] for _, b in bins}
rng = random.Random(0)
for _ in range(rounds):
    rng.shuffle(bins)
    for _, b in bins:
        line = subprocess.run([b, mode, "200000"], capture_output=True, text=True, check=True).stdout
        fastest[b].append(float(line.split()[2]))
stats = {}
for t, label in trees.items():
    per = sorted(statistics.median(fastest[b]) for tt, b in bins if tt == t)
    stats[t] = (statistics.median(per), statistics.mean(per))
    print(f"{label:>10}: {len(per)} layouts, ns per message: median {stats[t][0]:.0f}, "
          f"mean {stats[t][1]:.1f}, fastest {per[0]:.0f}, slowest {per[-1]:.0f}")
(bm, ba), (hm, ha) = stats["baseline"], stats["head"]
print(f"this tree / {baseline}: median {100 * (hm / bm - 1):+.1f} %, mean {100 * (ha / ba - 1):+.1f} %")
PY

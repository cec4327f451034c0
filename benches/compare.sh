#!/usr/bin/env bash
# Python SocketScience's algorithm against socketscience, same machine, one
# go: ns per message for each, and the ratios.
#
#   benches/compare.sh [N] [ROUNDS]
#
# Every mode runs once per round (each run: 5 timed passes of N messages,
# giving their median, min and max), the rounds one after the other, so
# that a neighbour's load on a shared machine falls on every mode alike.
# Printed per mode: the median of the rounds' medians [the fastest pass -
# the slowest pass]. Ratios are given twice: of those medians, and of the
# fastest passes (the least disturbed estimate on a noisy machine).
#
# roundtrip: encode one `ping` envelope, receive and dispatch it once
#            (socketscience: its real send and receive paths, on one thread).
# naive:     the same map by hand: serde_json + base64 + frame and back.
# minimal:   the least work with the library's crates (rmp-serde straight
#            into a struct, SIMD base64), no metadata, queues or checks.
# fanout:    one encode, three receive-and-dispatch (three instances; for
#            socketscience, three nodes on a LocalChat, tasks and all).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
rounds=${2:-3}
python3 -c 'import msgpack' 2>/dev/null || python3 -m pip install -q msgpack
cargo build -q --release --example compare
compare=target/release/examples/compare

modes=(py_round py_lean py_fan rs_mp rs_json naive minimal rs_fan)
run() {
  case $1 in
    py_round) python3 benches/python_baseline.py roundtrip "$n" ;;
    py_lean) python3 benches/python_baseline.py lean "$n" ;;
    py_fan) python3 benches/python_baseline.py fanout "$n" ;;
    rs_mp) "$compare" roundtrip-msgpack "$n" ;;
    rs_json) "$compare" roundtrip-json "$n" ;;
    naive) "$compare" naive "$n" ;;
    minimal) "$compare" minimal "$n" ;;
    rs_fan) "$compare" fanout "$n" 2>/dev/null ;;
  esac
}
declare -A meds mins maxs
for round in $(seq "$rounds"); do
  echo "round $round of $rounds ..." >&2
  for mode in "${modes[@]}"; do
    read -r _ med lo hi < <(run "$mode")
    meds[$mode]="${meds[$mode]:-} $med"
    mins[$mode]="${mins[$mode]:-} $lo"
    maxs[$mode]="${maxs[$mode]:-} $hi"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
least() { tr ' ' '\n' <<<"$1" | grep . | sort -n | head -1; }
most() { tr ' ' '\n' <<<"$1" | grep . | sort -n | tail -1; }
declare -A med lo hi
for mode in "${modes[@]}"; do
  med[$mode]=$(median "${meds[$mode]}")
  lo[$mode]=$(least "${mins[$mode]}")
  hi[$mode]=$(most "${maxs[$mode]}")
done

echo "machine: $(nproc) cores, $(uname -m), $(python3 --version), $(rustc --version | cut -d' ' -f1-2)"
echo "N = $n messages per pass, $rounds rounds; ns per message: median of the rounds' medians [fastest - slowest pass]"
row() { printf '%-44s %8s  [%s - %s]\n' "$1" "${med[$2]}" "${lo[$2]}" "${hi[$2]}"; }
row "python roundtrip (SocketScience's receive)" py_round
row "python roundtrip, lean (slicing, no regex)" py_lean
row "socketscience roundtrip, msgpack" rs_mp
row "socketscience roundtrip, json" rs_json
row "naive floor roundtrip (serde_json + base64)" naive
row "minimal roundtrip (rmp-serde + SIMD base64)" minimal
row "python fanout (1 encode, 3 dispatches)" py_fan
row "socketscience fanout, LocalChat, 3 nodes" rs_fan
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
both() { echo "$(ratio "${med[$1]}" "${med[$2]}")x (fastest: $(ratio "${lo[$1]}" "${lo[$2]}")x)"; }
echo "python / socketscience roundtrip: msgpack $(both py_round rs_mp), json $(both py_round rs_json)"
echo "lean python / socketscience roundtrip: msgpack $(both py_lean rs_mp), json $(both py_lean rs_json)"
echo "socketscience / naive floor (time): json $(both rs_json naive), msgpack $(both rs_mp naive)"
echo "python / minimal roundtrip: $(both py_round minimal); socketscience msgpack / minimal: $(both rs_mp minimal)"
echo "python / socketscience fanout: $(both py_fan rs_fan)"
awk -v f="${med[rs_fan]}" -v l="${lo[rs_fan]}" 'BEGIN { printf "socketscience fanout: %.2f million handler runs per second (fastest pass: %.2f)\n", 3000 / f, 3000 / l }'

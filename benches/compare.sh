#!/usr/bin/env bash
# Python SocketScience's algorithm against socketscience, same machine, one
# go: ns per message for each (median of 5 runs, and the range), and the
# ratios.
#
#   benches/compare.sh [N]
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
python3 -c 'import msgpack' 2>/dev/null || python3 -m pip install -q msgpack
cargo build -q --release --example compare
compare=target/release/examples/compare

read -r _ py_round py_round_lo py_round_hi < <(python3 benches/python_baseline.py roundtrip "$n")
read -r _ py_lean py_lean_lo py_lean_hi < <(python3 benches/python_baseline.py lean "$n")
read -r _ py_fan py_fan_lo py_fan_hi < <(python3 benches/python_baseline.py fanout "$n")
read -r _ rs_mp rs_mp_lo rs_mp_hi < <("$compare" roundtrip-msgpack "$n")
read -r _ rs_json rs_json_lo rs_json_hi < <("$compare" roundtrip-json "$n")
read -r _ naive naive_lo naive_hi < <("$compare" naive "$n")
read -r _ minimal minimal_lo minimal_hi < <("$compare" minimal "$n")
read -r _ rs_fan rs_fan_lo rs_fan_hi < <("$compare" fanout "$n" 2>/dev/null)

echo "machine: $(nproc) cores, $(uname -m), $(python3 --version), $(rustc --version | cut -d' ' -f1-2)"
echo "N = $n messages per run; ns per message: median [min - max] of 5 runs"
row() { printf '%-44s %8s  [%s - %s]\n' "$1" "$2" "$3" "$4"; }
row "python roundtrip (SocketScience's receive)" "$py_round" "$py_round_lo" "$py_round_hi"
row "python roundtrip, lean (slicing, no regex)" "$py_lean" "$py_lean_lo" "$py_lean_hi"
row "socketscience roundtrip, msgpack" "$rs_mp" "$rs_mp_lo" "$rs_mp_hi"
row "socketscience roundtrip, json" "$rs_json" "$rs_json_lo" "$rs_json_hi"
row "naive floor roundtrip (serde_json + base64)" "$naive" "$naive_lo" "$naive_hi"
row "minimal roundtrip (rmp-serde + SIMD base64)" "$minimal" "$minimal_lo" "$minimal_hi"
row "python fanout (1 encode, 3 dispatches)" "$py_fan" "$py_fan_lo" "$py_fan_hi"
row "socketscience fanout, LocalChat, 3 nodes" "$rs_fan" "$rs_fan_lo" "$rs_fan_hi"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "python / socketscience roundtrip: msgpack $(ratio "$py_round" "$rs_mp")x, json $(ratio "$py_round" "$rs_json")x (against the lean python: $(ratio "$py_lean" "$rs_mp")x, $(ratio "$py_lean" "$rs_json")x)"
echo "socketscience / naive floor (time): json $(ratio "$rs_json" "$naive")x, msgpack $(ratio "$rs_mp" "$naive")x"
echo "python / minimal roundtrip: $(ratio "$py_round" "$minimal")x; socketscience msgpack / minimal: $(ratio "$rs_mp" "$minimal")x"
echo "python / socketscience fanout: $(ratio "$py_fan" "$rs_fan")x"
awk -v f="$rs_fan" 'BEGIN { printf "socketscience fanout: %.2f million handler runs per second\n", 3000 / f }'

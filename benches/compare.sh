#!/usr/bin/env bash
# Python SocketScience's algorithm against socketscience, same machine, one
# go: ns per message for each, and their ratio.
#
#   benches/compare.sh [N]
#
# roundtrip: encode one `ping` envelope, receive and dispatch it once.
# fanout:    one encode, three receive-and-dispatch (three instances).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
python3 -c 'import msgpack' 2>/dev/null || python3 -m pip install -q msgpack
cargo build -q --release --example compare

py_round=$(python3 benches/python_baseline.py roundtrip "$n" | awk '{print $2}')
py_fan=$(python3 benches/python_baseline.py fanout "$n" | awk '{print $2}')
rust_round=$(target/release/examples/compare roundtrip "$n")
rust_fan=$(target/release/examples/compare fanout "$n" 2>/dev/null | awk '{print $2}')
rs_mp=$(echo "$rust_round" | awk '/roundtrip-msgpack/ {print $2}')
rs_json=$(echo "$rust_round" | awk '/roundtrip-json/ {print $2}')

echo "machine: $(nproc) cores, $(uname -m), $(python3 --version), $(rustc --version)"
printf '%-34s %12s %12s %8s\n' "work (N=$n, median of 5 runs)" "python ns" "rust ns" "ratio"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
printf '%-34s %12s %12s %8s\n' "roundtrip, rust msgpack" "$py_round" "$rs_mp" "$(ratio "$py_round" "$rs_mp")"
printf '%-34s %12s %12s %8s\n' "roundtrip, rust json" "$py_round" "$rs_json" "$(ratio "$py_round" "$rs_json")"
printf '%-34s %12s %12s %8s\n' "fanout (1 encode, 3 dispatches)" "$py_fan" "$rust_fan" "$(ratio "$py_fan" "$rust_fan")"
awk -v f="$rust_fan" 'BEGIN { printf "rust fanout: %.2f million handler runs per second\n", 3000 / f }'

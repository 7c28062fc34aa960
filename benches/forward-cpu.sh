#!/usr/bin/env bash
# CPU per packet of `blindspot capture` for two builds on the same load: the
# cost of handing tunnelled packets between workers (src/sensor/forward.rs),
# and what it adds to untunnelled traffic.
#
#   sudo benches/forward-cpu.sh BEFORE_BIN AFTER_BIN [SECONDS] [PPS] [ROUNDS]
#                               (defaults 6 s, 30000 packets/s, 3 rounds)
#
# Builds two loads from the fixtures with benches/synth_capture.rs: the
# plain one (addresses rewritten per copy) and its VXLAN twin (`--vxlan`:
# one outer header for every frame, so the kernel's fanout sends the whole
# load to one worker, which hands about half on: the worst case). For each
# load and round, each binary runs with --workers 2 on one end of a veth
# pair in a namespace of its own while tcpreplay sends at PPS onto the
# other; the process's CPU time (the sum of its threads' run time from
# /proc/PID/task/*/schedstat, in ns, before SIGTERM) over the packets its last
# stats record counts is the figure. Also an idle
# run per binary (nothing sent): CPU per second with no traffic. Prints the
# median per binary and the ratio AFTER / BEFORE. The sender shares the
# machine: compare the two binaries of one run, not runs of other days.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
[ "$(id -u)" -eq 0 ] || { echo "forward-cpu.sh: needs root (network namespace, AF_PACKET)" >&2; exit 1; }
command -v tcpreplay >/dev/null || { echo "forward-cpu.sh: needs tcpreplay" >&2; exit 1; }
before=${1:?before binary}; after=${2:?after binary}
secs=${3:-6}; pps=${4:-30000}; rounds=${5:-3}
mkdir -p bench-data
cargo build --release --quiet --example synth_capture
synth=target/release/examples/synth_capture
fx=(fixtures/local/*.pcap)
[ -s bench-data/fwd-plain.pcap ] || $synth bench-data/fwd-plain.pcap $((8 << 20)) "${fx[@]}" >/dev/null
[ -s bench-data/fwd-vxlan.pcap ] || $synth --vxlan bench-data/fwd-vxlan.pcap $((8 << 20)) "${fx[@]}" >/dev/null
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s}'; }

# shellcheck source=benches/veth-ns.sh
. benches/veth-ns.sh bsf

# one BIN FILE|idle: prints "cpu_ns packets forwarded kernel_drops"
one() {
    local bin=$1 load=$2 out=bench-data/fwd-run.jsonl
    rm -f "$out"
    ip netns exec "$ns" "$bin" capture -i "$b" --workers 2 -o "$out" 2>/dev/null &
    local pid=$!
    sleep 1
    local t0; t0=$(cpu_ns "$pid")
    if [ "$load" = idle ]; then
        sleep "$secs"
    else
        ip netns exec "$ns" tcpreplay -i "$a" -K --pps "$pps" --duration "$secs" --loop 0 "$load" >/dev/null 2>&1
    fi
    local t1; t1=$(cpu_ns "$pid")
    kill -TERM "$pid"; wait "$pid" || true
    tail -n 1 "$out" | python3 -c '
import json, sys
s = json.load(sys.stdin)
fw = sum(q.get("forwarded", 0) for q in s["queues"])
print('"$((t1 - t0))"', s["packets"], fw, s["drops"]["kernel"])'
}

declare -A runs
for load in idle bench-data/fwd-plain.pcap bench-data/fwd-vxlan.pcap; do
    for r in $(seq 1 "$rounds"); do
        for which in before after; do
            bin=$before; [ "$which" = after ] && bin=$after
            read -r cpu packets fw drops < <(one "$bin" "$load")
            if [ "$load" = idle ]; then
                v=$(python3 -c "print(f'{$cpu / 1e6 / $secs:.2f}')")   # ms CPU per s
            else
                v=$(python3 -c "print(f'{$cpu / max($packets, 1):.0f}')")  # ns CPU per packet
            fi
            printf '%-28s %-6s round %d: %8s %s (packets %s, forwarded %s, kernel drops %s)\n' \
                "$(basename "$load")" "$which" "$r" "$v" \
                "$([ "$load" = idle ] && echo 'ms CPU/s' || echo 'ns CPU/packet')" "$packets" "$fw" "$drops"
            runs["$load,$which"]+="$v "
        done
    done
done
echo
for load in idle bench-data/fwd-plain.pcap bench-data/fwd-vxlan.pcap; do
    python3 - "$(basename "$load")" "${runs[$load,before]}" "${runs[$load,after]}" <<'EOF'
import statistics, sys
name, b, a = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mb, ma = statistics.median(b), statistics.median(a)
unit = "ms CPU/s" if name == "idle" else "ns CPU/packet"
print(f"{name:28s} median before {mb:8.1f}  after {ma:8.1f} {unit}  ratio {ma / mb if mb else float('nan'):.3f}")
EOF
done

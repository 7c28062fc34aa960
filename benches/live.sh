#!/usr/bin/env bash
# Live capture rate against replay's rate on the same packets, in one run.
#
#   sudo benches/live.sh [SECONDS_PER_STEP]     (default 4)
#
# Builds bench-data/live.pcap (64 MiB of the fixtures, addresses rewritten so
# flows stay distinct: benches/synth_capture.rs), makes a veth pair in a
# network namespace of its own, and runs `blindspot capture` (release build,
# default 2 workers) on one end while tcpreplay sends the file onto the other
# at rising rates (--pps), then at --topspeed. For each step it reports the
# rate tcpreplay achieved and the kernel drops in blindspot's last stats
# record; the highest rate with no drop is the live figure. Then it times
# `blindspot replay` (2 workers, best of three) on the same file from the page cache and
# reports its packets/s beside it. tcpreplay and blindspot share the
# machine's cores: on a 2-core machine the sender takes one of them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
step=${1:-4}
[ "$(id -u)" -eq 0 ] || { echo "live.sh: needs root (network namespace, AF_PACKET)" >&2; exit 1; }
command -v tcpreplay >/dev/null || { echo "live.sh: needs tcpreplay" >&2; exit 1; }
mkdir -p bench-data
cargo build --release --quiet --bin blindspot --example synth_capture
bin=$here/target/release/blindspot
file=bench-data/live.pcap
fx=(../shared/pcaps/*.pcap ../shared/pcaps/*.pcapng fixtures/local/*.pcap)
fx=("${fx[@]/*foxio-tls-alpn-h2-ipv6.pcap}")   # BSD loopback: tcpreplay cannot send it
[ -s "$file" ] || target/release/examples/synth_capture "$file" $((64 << 20)) ${fx[@]}
packets=$($bin replay "$file" -o - | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["packets"])')

# shellcheck source=benches/veth-ns.sh
. benches/veth-ns.sh bsl

echo "file: $file, $packets packets, $(stat -c %s "$file") bytes"
printf '%-12s %14s %14s %12s\n' step sent_pps captured drops
best=0
for rate in 25000 50000 100000 200000 400000 top; do
    out=bench-data/live-$rate.jsonl
    ip netns exec "$ns" "$bin" capture -i "$b" -o "$out" 2>/dev/null &
    pid=$!
    sleep 1
    if [ "$rate" = top ]; then speed=(--topspeed); else speed=(--pps "$rate"); fi
    sent=$(ip netns exec "$ns" tcpreplay -i "$a" -K "${speed[@]}" --duration "$step" --loop 0 "$file" 2>&1 \
        | awk '/Rated:/ {for (i=1;i<=NF;i++) if ($i ~ /pps/) print $(i-1)}' | head -n1)
    sleep 0.5
    kill -TERM "$pid"; wait "$pid" || true
    read -r captured drops < <(tail -n 1 "$out" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["packets"], s["drops"]["kernel"])')
    printf '%-12s %14s %14s %12s\n' "$rate" "$sent" "$captured" "$drops"
    if [ "$drops" -eq 0 ]; then best=$sent; fi
    rm -f "$out"
done

cat "$file" > /dev/null
t=999
for _ in 1 2 3; do   # best of three
    r=$( { /usr/bin/time -f '%e' "$bin" replay "$file" -o /dev/null; } 2>&1 | tail -n1)
    t=$(python3 -c "print(min($t, $r))")
done
replay_pps=$(python3 -c "print(round($packets / max($t, 1e-3)))")
echo
echo "live capture without drops: $best packets/s (highest step with kernel drops = 0)"
echo "replay, same packets:       $replay_pps packets/s ($t s)"
python3 -c "print(f'live / replay:              {float(\"$best\") / $replay_pps:.3f}')"

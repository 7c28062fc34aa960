#!/usr/bin/env bash
# Memory and time of `blindspot replay` under the floods one attacker on a
# segment can send, with the default configuration: peak RSS must stay
# within the bounds the README states ("Memory"), and what was refused must
# be counted in the stats record.
#
#   benches/floods.sh            (writes bench-data/flood-*.pcap once)
#
# - syn:    2 000 000 TCP SYNs from random sources (half-open flows; the
#           flow table evicts at flow.max_flows / flow.memcap)
# - frag:   500 000 first IPv4 fragments that never complete
# - macs:   1 000 000 neighbours announcing themselves (ARP and IPv6 NS)
# - hello1: 200 000 one-byte segments carrying whole ClientHellos (curl's,
#           from the project's own capture): a quadratic path would show here
# - conns:  300 000 short TCP connections with payload within ~1 s of packet
#           time: sessions the detector holds for their turn, up to its cap
#
# Each flood is replayed with one thread (--workers 0) and two workers (the
# default), best of 3 wall time, and its peak RSS; then the counters that
# say what was refused.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mkdir -p bench-data
cargo build --release --quiet --bin blindspot --example flood_capture
bin=target/release/blindspot
gen=target/release/examples/flood_capture
declare -A count=([syn]=2000000 [frag]=500000 [macs]=1000000 [hello1]=200000 [conns]=300000)
for k in syn frag macs hello1 conns; do
  f=bench-data/flood-$k.pcap
  [ -s "$f" ] || "$gen" "$k" "$f" "${count[$k]}"
done

printf '%-7s %-9s %9s %9s %10s  %s\n' flood workers packets seconds "peak MiB" counters
for k in ${FLOODS:-syn frag macs hello1 conns}; do
  f=bench-data/flood-$k.pcap
  for w in 0 2; do
    best=
    for _ in 1 2 3; do
      out=$( { /usr/bin/time -f '%e %M' "$bin" replay "$f" --workers "$w" -o - | tail -n 1 > bench-data/flood-stats.json; } 2>&1 | tail -n 1)
      t=${out% *}; rss=${out#* }
      if [ -z "$best" ] || awk "BEGIN{exit !($t < ${best% *})}"; then best="$t $rss"; fi
    done
    python3 - "$k" "$w" "$best" <<'PY'
import json, sys
k, w, best = sys.argv[1], sys.argv[2], sys.argv[3].split()
s = json.load(open("bench-data/flood-stats.json"))
pick = {
    "syn": {"flows": ["created", "evicted", "evicted_memcap", "active_max"]},
    "frag": {"fragments": ["dropped_cap", "timed_out", "reassembled"]},
    "macs": {"devices": ["ips_over_cap", "macs_over_cap", "device_cache_cleared"]},
    "hello1": {"flows": ["created"], "tls": ["incomplete", "handshake_overflow"]},
    "conns": {"flows": ["created"], "detections": ["order_held_over_cap", "order_late"]},
}[k]
c = " ".join(f"{sec}.{n}={s[sec].get(n, 0)}" for sec, names in pick.items() for n in names)
print(f"{k:<7} {w:<9} {s['packets']:>9} {float(best[0]):>9.2f} {int(best[1]) / 1024:>10.0f}  {c}")
PY
  done
done

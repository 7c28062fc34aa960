#!/usr/bin/env bash
# Behaviour check for refactors: the sorted record sets of every capture
# (the project's own fixtures, the third-party ones in ../shared/pcaps when
# present, and a synthetic capture built from them) with --workers 0, 1 and
# 2, saved before a change and compared after it.
#
#   benches/compare-records.sh save  DIR    before the first commit of a refactor
#   benches/compare-records.sh check DIR    after the last: exit 1 on any difference
#
# BLINDSPOT_BIN names another binary to run (a build of the commit before).
#
# `stats` records are compared apart (a counter may move with a change; the
# check names each one that differs), every other record must be identical.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
mode=${1:?usage: compare-records.sh save|check DIR}
dir=${2:?usage: compare-records.sh save|check DIR}
cargo build --release --quiet --bin blindspot --example synth_capture
bin=${BLINDSPOT_BIN:-target/release/blindspot}
mkdir -p bench-data "$dir"
caps=(fixtures/local/*.pcap fixtures/devices/*.pcap fixtures/detect/*.pcap fixtures/hostile/*.pcap)
if [ -d ../shared/pcaps ]; then
  caps+=(../shared/pcaps/*.pcap ../shared/pcaps/*.pcapng)
else
  echo "SKIPPED the third-party captures: ../shared/pcaps is absent" >&2
fi
synth=bench-data/compare-synth.pcap
[ -s "$synth" ] || target/release/examples/synth_capture "$synth" 67108864 "${caps[@]}" 2>/dev/null
caps+=("$synth")
status=0
for cap in "${caps[@]}"; do
  name=$(basename "$cap")
  for w in ${COMPARE_WORKERS:-0 1 2}; do
    out=$(mktemp)
    "$bin" replay "$cap" --workers "$w" -o - 2>/dev/null | sort > "$out" || true
    grep -v '"type":"stats"' "$out" > "$out.records" || true
    grep '"type":"stats"' "$out" > "$out.stats" || true
    if [ "$mode" = save ]; then
      mv "$out.records" "$dir/$name.w$w.jsonl"
      mv "$out.stats" "$dir/$name.w$w.stats"
    else
      if ! cmp -s "$out.records" "$dir/$name.w$w.jsonl"; then
        echo "DIFFERENT records: $name --workers $w"; status=1
      fi
      if ! cmp -s "$out.stats" "$dir/$name.w$w.stats"; then
        echo "stats moved: $name --workers $w"
        python3 - "$dir/$name.w$w.stats" "$out.stats" <<'PY'
import json, sys
a, b = (json.loads(open(p).read() or "{}") for p in sys.argv[1:3])
def walk(x, y, path):
    for k in sorted(set(x) | set(y)):
        u, v = x.get(k), y.get(k)
        if isinstance(u, dict) and isinstance(v, dict):
            walk(u, v, path + [k])
        elif u != v and k != "ts":
            print("  stats." + ".".join(path + [k]) + f": {u} -> {v}")
walk(a, b, [])
PY
      fi
      rm -f "$out.records" "$out.stats"
    fi
    rm -f "$out"
  done
done
[ "$mode" = save ] && echo "saved $(ls "$dir" | wc -l) files in $dir"
exit $status

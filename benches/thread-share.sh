#!/usr/bin/env bash
# Serial share of a replay, on any machine (issue 17): each thread's share of
# the process's CPU time over a `replay --workers N` run, read from
# /proc/PID/task/*/stat (utime + stime, threads named) every 20 ms until the
# process ends. A stage that one thread must carry caps the speed-up on many
# cores: with a serial share s, Amdahl allows at most 1 / s. The target is
# that no thread but a flow worker holds more than 1/16 of the CPU. The
# decoders (decode-N) and encoders (encode-N) are pools as large as the
# worker count: their share is printed per thread and as a pool, and they
# count as parallel; the serial stages are the reader (the main thread,
# `blindspot`), the correlator and the sink.
#
#   benches/thread-share.sh [FILE] [WORKERS]   (default: bench-data/synth.pcap, 2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
file=${1:-bench-data/synth.pcap}
workers=${2:-2}
[ -s "$file" ] || { echo "no $file: run benches/throughput.sh first, or name a capture" >&2; exit 1; }
cargo build --release --quiet --bin blindspot
cat "$file" > /dev/null
python3 - target/release/blindspot "$file" "$workers" <<'PY'
import os, subprocess, sys, time
binary, path, workers = sys.argv[1:4]
p = subprocess.Popen([binary, "replay", path, "--workers", workers, "-o", "/dev/null"])
tick = os.sysconf("SC_CLK_TCK")
last = {}
while p.poll() is None:
    try:
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            try:
                stat = open(f"/proc/{p.pid}/task/{tid}/stat").read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            last[(tid, name)] = int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        pass
    time.sleep(0.02)
total = sum(last.values()) or 1
print(f"{path}, --workers {workers}: {total / tick:.2f} s of CPU")
by_name = {}
for (tid, name), t in last.items():
    by_name[name] = by_name.get(name, 0) + t
POOLS = ("worker-", "decode-", "encode-")
for name, t in sorted(by_name.items(), key=lambda kv: -kv[1]):
    share = t / total
    flag = "" if name.startswith(POOLS) or share <= 1 / 16 else "  <- over 1/16"
    print(f"  {name:<14} {t / tick:7.2f} s  {share * 100:5.1f} %{flag}")
for pool in POOLS:
    t = sum(v for n, v in by_name.items() if n.startswith(pool))
    if t:
        print(f"  pool {pool[:-1]:<9} {t / tick:7.2f} s  {t / total * 100:5.1f} % (parallel)")
serial_threads = [(n, v) for n, v in by_name.items() if not n.startswith(POOLS)]
name, worst = max(serial_threads, key=lambda kv: kv[1], default=("-", 0))
serial = sum(v for _, v in serial_threads) / total
print(f"largest serial thread {name} {worst / total * 100:.1f} %; all serial threads {serial * 100:.1f} %")
print(f"Amdahl bound with the serial threads as one stage: {1 / max(serial, 1e-9):.1f}x; "
      f"as a pipeline (the largest one limits): {total / max(worst, 1):.1f}x")
PY

#!/usr/bin/env bash
# Serial share of a replay, on any machine (issue 17): each thread's share of
# the process's CPU time over a `replay --workers N` run, threads named:
# from `perf record -e cpu-clock` (5 kHz, to each thread's end) where perf
# is installed, else from /proc/PID/task/*/stat (utime + stime) read every
# 20 ms, which misses each thread's last moments. A stage that one thread must carry caps the speed-up on many
# cores: with a serial share s, Amdahl allows at most 1 / s. The target is
# that no thread but a flow worker holds more than 1/16 of the CPU. The
# decoders (decode-N) and encoders (encode-N) are pools as large as the
# worker count: their share is printed per thread and as a pool, and they
# count as parallel; the serial stages are the reader (the main thread,
# `blindspot`), the correlator and the sink.
#
#   benches/thread-share.sh [FILE] [WORKERS]   (default: bench-data/synth.pcap, 2)
#
# BLINDSPOT_BIN names another binary to run (a build of the commit before).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
file=${1:-bench-data/synth.pcap}
workers=${2:-2}
[ -s "$file" ] || { echo "no $file: run benches/throughput.sh first, or name a capture" >&2; exit 1; }
bin=${BLINDSPOT_BIN:-target/release/blindspot}
[ -n "${BLINDSPOT_BIN:-}" ] || cargo build --release --quiet --bin blindspot
cat "$file" > /dev/null
python3 - "$bin" "$file" "$workers" <<'PY'
import os, shutil, subprocess, sys, tempfile, time
binary, path, workers = sys.argv[1:4]
cmd = [binary, "replay", path, "--workers", workers, "-o", "/dev/null"]
last = {}
if shutil.which("perf"):
    # perf samples every thread's CPU clock to its end (a thread that has
    # exited is no longer in /proc, so sampling /proc loses its last moments).
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-o", data, "--"] + cmd,
                       check=True, stderr=subprocess.DEVNULL)
        rep = subprocess.run(["perf", "report", "-i", data, "--sort", "pid", "--stdio", "-F", "sample,pid"],
                             capture_output=True, text=True, check=True).stdout
    tick = 4999
    for line in rep.splitlines():
        f = line.split()
        if len(f) == 2 and f[0].isdigit() and ":" in f[1]:
            tid, name = f[1].split(":", 1)
            last[(tid, name)] = int(f[0])
else:
    p = subprocess.Popen(cmd)
    tick = os.sysconf("SC_CLK_TCK")
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
POOLS = ("worker-", "decode-", "encode-", "load-")
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

#!/usr/bin/env bash
# A/B whole-process comparison of two blindspot builds on one capture, runs
# interleaved (A, B, A, B, ...) so that a noisy second of a shared machine
# falls on both: best of N wall times each, and B's ratio to A.
#
#   benches/ab.sh A_BIN B_BIN FILE [RUNS] [-- REPLAY ARGS...]
#
# For a refactor: A = the build before it, B = after it; ratios of
# --workers 0 and --workers 2 are printed (or the replay args given).
# Before the change the same script with A = B gives the noise.
set -euo pipefail
a=${1:?usage: ab.sh A_BIN B_BIN FILE [RUNS] [-- ARGS]}
b=${2:?}
file=${3:?}
runs=${4:-5}
shift $(( $# >= 4 ? 4 : 3 ))
[ "${1:-}" = "--" ] && shift
cat "$file" > /dev/null
python3 - "$a" "$b" "$file" "$runs" "$@" <<'PY'
import subprocess, sys, time
a, b, f, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
extra = sys.argv[5:]
sets = [extra] if extra else [["--workers", "0"], ["--workers", "2"]]
for args in sets:
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, binary in enumerate((a, b)):
            t = time.monotonic()
            subprocess.run([binary, "replay", f, "-o", "/dev/null", *args], check=True,
                           stderr=subprocess.DEVNULL)
            best[i] = min(best[i], time.monotonic() - t)
    print(f"replay {' '.join(args)}: A {best[0]:.3f} s, B {best[1]:.3f} s, B/A {best[1] / best[0]:.3f}")
PY

#!/usr/bin/env bash
# The iterative solver (conjugate gradients and stochastic traces) on the crossed +
# multiple-membership design whose Cholesky factor is dense in every ordering, in one run:
#   - crossed-mm at 10^4, 10^5 and 10^6 rows (about 20 rows per level: the design's density is
#     fixed while its levels grow 20×): wall time, peak memory, CG iterations per Newton
#     iteration, and the Monte-Carlo errors;
#   - the direct solver on the sizes where it runs (10^4, 10^5), for agreement: criterion, θ, β;
#   - the true parameters of the simulation recovered (|θ̂ − θ| / SE, |β̂ − β| / SE);
#   - the probe work on one rank and on two (`mpirun -np 2`, one thread each), at 10^6, with 16
#     and 64 probes (medians of three interleaved runs);
#   - the preconditioner of the solves (block-Jacobi, symmetric block Gauss–Seidel) at 10^5 and 10^6;
#   - the bootstrap on the iterative path at 10^6, 8 replicates on one rank and on two: its rate;
#   - the MovieLens-shaped `ratings` design at 3·10^7 rows (200,000 users × 20,000 items), alone.
# The table goes to standard output and to bench/RESULTS-iterative.md.
#
# Usage: bash bench/iterative.sh
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench) holds the simulated files (about 1.1 GB);
# MLM_BENCH_RATINGS=0 leaves out the ratings fit (about 3 minutes with its simulation, 1.3 GB); MLM_BENCH_1E7=1 adds
# crossed-mm at 10^7 rows (about 65 s and 1.8 GB, 720 MB of data).
# Needs: GNU time, python3, h5dump (hdf5-tools), mpirun (openmpi-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}
mkdir -p "$data"
for tool in /usr/bin/time python3 h5dump mpirun; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (Debian: time hdf5-tools openmpi-bin)" >&2; exit 1; }
done
swift build -c release --product mlm >/dev/null
mlm=$PWD/.build/release/mlm
source bench/blas.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")
crossedmm="y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)))"
formula=$crossedmm
results=$data/iterative.jsonl
: > "$results"

# run NAME FILE OUTJSON [mpirun ranks] -- mlm fit arguments...: one timed fit, one line of results.
run() {
  local name=$1 file=$2 json=$3 ranks=$4; shift 4
  local prefix=()
  [ "$ranks" != 0 ] && prefix=(mpirun -np "$ranks" --oversubscribe)
  /usr/bin/time -f "%e %M" -o "$data/time.txt" "${prefix[@]}" "$mlm" fit "$file" --formula "$formula" --json "$json" "$@" \
    > /dev/null 2> "$data/stderr.txt" || { echo "bench: $name failed:" >&2; cat "$data/stderr.txt" >&2; exit 1; }
  read -r seconds kb < "$data/time.txt"
  # Under mpirun, GNU time sees mpirun's own memory: the ranks' peak is read from the fit's report instead.
  truth=$(h5dump -A "$file" | python3 -c '
import re, sys, json
text = sys.stdin.read()
print(json.dumps({m.group(1): float(m.group(2)) for m in re.finditer(r"ATTRIBUTE \"((?:beta|sd|cor)_[^\"]*|sigma)\" \{.*?\(0\): ([-0-9.e]+)", text, re.S)}))')
  python3 - "$name" "$json" "$seconds" "$kb" "$ranks" "$truth" "$*" "$data/stderr.txt" >> "$results" <<'EOF'
import json, re, sys
name, path, seconds, kb, ranks, truth, arguments, stderr = sys.argv[1:]
fit = json.load(open(path))
# With --verbose: the seconds the iterative solver spent in its parts.
m = re.search(r"iterative solver: ([0-9.]+) s .*probes ([0-9.]+) s, low eigenpairs ([0-9.]+) s, solves ([0-9.]+) s",
              open(stderr).read())
split = dict(zip(["total", "probes", "eigenpairs", "solves"], map(float, m.groups()))) if m else None
print(json.dumps({"name": name, "seconds": float(seconds), "kb": int(kb), "ranks": int(ranks), "arguments": arguments,
                  "truth": json.loads(truth), "fit": fit, "split": split}))
EOF
  echo "bench: $name ${seconds}s $((kb / 1024)) MB" >&2
}

sizes="10000 100000 1000000"
[ "${MLM_BENCH_1E7:-0}" != 0 ] && sizes="$sizes 10000000"
for rows in $sizes; do
  file=$data/crossed-mm-$rows.h5
  [ -f "$file" ] || "$mlm" simulate --design crossed-mm --rows "$rows" --seed 1 --out "$file" >/dev/null
  run "iterative-$rows" "$file" "$data/iterative-$rows.json" 0 --solver iterative
  if [ "$rows" -le 100000 ]; then
    run "direct-$rows" "$file" "$data/direct-$rows.json" 0 --solver direct
  fi
done
# Probe work on one rank and on two, one thread each (2 cores), interleaved three times, with the
# default probes and with 64 (where the probes dominate): the same fit, bit for bit.
file=$data/crossed-mm-1000000.h5
for probes in 16 64; do
  for repeat in 1 2 3; do
    for ranks in 1 2; do
      run "ranks-$probes-$ranks-$repeat" "$file" "$data/iterative-1e6-p$probes-np$ranks.json" "$ranks" --solver iterative \
        --threads 1 --probes "$probes" --verbose
    done
  done
  cmp -s "$data/iterative-1e6-p$probes-np1.json" "$data/iterative-1e6-p$probes-np2.json" \
    && echo "bench: 1 and 2 ranks wrote the same JSON ($probes probes)" >&2 || echo "bench: 1 and 2 ranks DIFFER" >&2
done

# The preconditioner of the solves for β̂, û and the AI matrix: block-Jacobi (the default) and
# symmetric block Gauss–Seidel, at 10^5 and 10^6 rows, interleaved three times.
for rows in 100000 1000000; do
  for repeat in 1 2 3; do
    for pc in block-jacobi gauss-seidel; do
      run "precond-$pc-$rows-$repeat" "$data/crossed-mm-$rows.h5" "$data/precond-$pc-$rows.json" 0 --solver iterative \
        --preconditioner "$pc" --verbose
    done
  done
done

# The bootstrap: 8 replicates on the same ranks and threads; its rate is the replicates over the
# time they add to the fit alone (the median above).
run "bootstrap-1000000-1rank" "$file" "$data/boot-1e6-np1.json" 1 --solver iterative --threads 1 --bootstrap 8 --seed 1
run "bootstrap-1000000-2ranks" "$file" "$data/boot-1e6-np2.json" 2 --solver iterative --threads 1 --bootstrap 8 --seed 1

if [ "${MLM_BENCH_RATINGS:-1}" != 0 ]; then
  file=$data/ratings-3e7.h5
  [ -f "$file" ] || "$mlm" simulate --design ratings --rows 30000000 --seed 1 --out "$file" >/dev/null
  formula="y ~ x + (1 | user) + (1 | item)"
  run "ratings-30000000" "$file" "$data/ratings-3e7.json" 0 --solver iterative
fi

python3 bench/iterative_table.py "$results" "$commit" | tee bench/RESULTS-iterative.md

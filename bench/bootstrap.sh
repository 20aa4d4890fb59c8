#!/usr/bin/env bash
# Bootstrap throughput: replicates per second of `mlm fit --bootstrap` on 1 and on 2 MPI ranks
# (one thread each), against lme4's bootMer, in one run on one machine. The table goes to
# standard output and to bench/RESULTS-bootstrap.md.
#
# Usage: bash bench/bootstrap.sh
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench) holds the simulated files.
# Needs: mpirun (openmpi-bin), Rscript with lme4 and hdf5r, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}
mkdir -p "$data"
swift build -c release --product mlm >/dev/null
mlm=.build/release/mlm
# lme4 with the same BLAS as mlm: the OpenBLAS kernels mlm runs on (it names them in
# OPENBLAS_CORETYPE when OpenBLAS falls back to old ones on a CPU it does not know), for R too.
source bench/blas.sh
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

crossed="y ~ x + w + (1 + x | A) + (1 | B)"
multimember="y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | area)"
insteval="y ~ 1 + service*dept + (1|s) + (1|d)"
# name; file; formula; --ml or not; rows to simulate (0: a fixture); mlm replicates; lme4 replicates (0: none)
cases=(
  "insteval (ML);Tests/MultilevelTests/Fixtures/insteval.h5;$insteval;--ml;0;40;20"
  "crossed;$data/crossed-1e5.h5;$crossed;;100000;8;0"
  "crossed;$data/crossed-1e6.h5;$crossed;;1000000;8;0"
  "multimember;$data/multimember-1e5.h5;$multimember;;100000;20;0"
  "multimember;$data/multimember-1e6.h5;$multimember;;1000000;20;0"
  "multimember;$data/multimember-1e7.h5;$multimember;;10000000;20;0"
)
rate() { sed -n 's/^bootstrap: [0-9]*\/[0-9]*, \([0-9.e+-]*\)\/s.*/\1/p' "$1" | tail -1; }
rows=()
for case in "${cases[@]}"; do
  IFS=';' read -r name file formula ml n b nsim <<< "$case"
  design=${name%% *}
  if [ "$n" != 0 ] && [ ! -f "$file" ]; then "$mlm" simulate --design "$design" --rows "$n" --seed 1 --out "$file" >/dev/null; fi
  rates=()
  for ranks in 1 2; do
    mpirun -np "$ranks" --oversubscribe "$mlm" fit "$file" --formula "$formula" $ml --threads 1 \
      --bootstrap "$b" --seed 1 --json "$data/boot.json" >/dev/null 2> "$data/boot.err"
    rates+=("$(rate "$data/boot.err")")
    echo "mlm  $name $(basename "$file"), $ranks rank(s): $(tail -1 "$data/boot.err")" >&2
  done
  lme4=null
  if [ "$nsim" != 0 ]; then
    flag=0; [ -n "$ml" ] && flag=1
    lme4=$(ML=$flag Rscript bench/lme4_bootstrap.R "$file" "$formula" "$nsim" | tail -1)
    echo "lme4 $name: $lme4" >&2
  fi
  nobs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['nobs'])" "$data/boot.json")
  rows+=("$name|$nobs|$b|${rates[0]}|${rates[1]}|$lme4")
done

python3 - "$commit" "${rows[@]}" <<'EOF2' | tee bench/RESULTS-bootstrap.md
import json, platform, subprocess, sys, datetime
commit, rows = sys.argv[1], sys.argv[2:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"# Bootstrap throughput: mlm against lme4\n")
import os
kernels = os.environ.get("OPENBLAS_CORETYPE", "as detected")
print(f"{datetime.date.today()}, commit {commit}, {cpu}, {cores} cores, OpenBLAS kernels {kernels} for mlm and R; `bash bench/bootstrap.sh`.\n")
print("Replicates per second of the bootstrap phase (simulation and refits, after the fit), one thread per rank.\n")
print("| case | rows | replicates | mlm 1 rank (/s) | mlm 2 ranks (/s) | speed-up | lme4 bootMer (/s) | mlm 1 rank ÷ lme4 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for row in rows:
    name, nobs, b, r1, r2, lme4 = row.split("|", 5)
    r1, r2 = float(r1), float(r2)
    l = json.loads(lme4) if lme4 != "null" else None
    lr = l["replicates_per_second"] if l else None
    print(f"| {name} | {int(nobs):,} | {b} | {r1:.3g} | {r2:.3g} | {r2 / r1:.2f}× | "
          + (f"{lr:.3g} ({l['nsim']} replicates) | {r1 / lr:.1f}× |" if l else "— | — |"))
EOF2

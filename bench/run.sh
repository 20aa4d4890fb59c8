#!/usr/bin/env bash
# mlm against lme4, in one run on one machine: simulates the data, fits each case with mlm
# (release build) and with lme4 (Rscript, the same OpenBLAS), and prints a table of wall
# time, peak memory, speed ratio and agreement; the table also goes to bench/RESULTS.md.
#
# Usage: bash bench/run.sh [--quick]
#   --quick   only the 10^5-row cases and insteval (a few minutes), written to bench/RESULTS-quick.md
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench) holds the simulated files (about 1.5 GB
# for the full run); MLM_BENCH_REPEATS (default 3) repeats the cases under 10^6 rows;
# MLM_BENCH_OPTIMIZERS (default "newton bobyqa") lists the optimisers mlm fits each case with.
# MLM_BENCH_TIMEOUT (default 900) is the most seconds one mlm fit may take.
# Needs: Rscript with lme4, jsonlite and hdf5r (Debian: r-cran-lme4 r-cran-hdf5r), GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
[ "${1:-}" = "--quick" ] && quick=true
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}
repeats=${MLM_BENCH_REPEATS:-3}
optimizers=${MLM_BENCH_OPTIMIZERS:-newton bobyqa}
limit=${MLM_BENCH_TIMEOUT:-900}
mkdir -p "$data"
for tool in Rscript /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (Debian: r-base-core r-cran-lme4 r-cran-hdf5r time)" >&2; exit 1; }
done
Rscript -e 'suppressMessages({library(lme4); library(hdf5r); library(jsonlite)})' \
  || { echo "bench: R needs lme4, hdf5r and jsonlite (Debian: r-cran-lme4 r-cran-hdf5r)" >&2; exit 1; }
swift build -c release --product mlm >/dev/null
mlm=.build/release/mlm
# lme4 with the same BLAS as mlm: the OpenBLAS kernels mlm runs on (it names them in
# OPENBLAS_CORETYPE when OpenBLAS falls back to old ones on a CPU it does not know), for R too.
source bench/blas.sh
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")

crossed="y ~ x + w + (1 + x | A) + (1 | B)"
multimember="y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | area)"
insteval="y ~ 1 + service*dept + (1|s) + (1|d)"
crossedmm="y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)))"
# name; file; formula; REML or ML; rows to simulate (0: a fixture); fit with lme4 too
cases=(
  "insteval;Tests/MultilevelTests/Fixtures/insteval.csv;$insteval;ML;0;yes"
  "crossed;$data/crossed-1e5.h5;$crossed;REML;100000;yes"
  "multimember;$data/multimember-1e5.h5;$multimember;REML;100000;yes"
)
if ! $quick; then
  cases+=(
    "crossed;$data/crossed-1e6.h5;$crossed;REML;1000000;yes"
    "multimember;$data/multimember-1e6.h5;$multimember;REML;1000000;yes"
    "multimember;$data/multimember-1e7.h5;$multimember;REML;10000000;no"
    "crossed;$data/crossed-1e7.h5;$crossed;REML;10000000;no"
    "crossed-mm;$data/crossed-mm-1e6.h5;$crossedmm;REML;1000000;no"
  )
fi

results=$data/results.jsonl
: > "$results"
for case in "${cases[@]}"; do
  IFS=';' read -r name file formula criterion rows lme4 <<< "$case"
  if [ "$rows" != 0 ]; then
    "$mlm" simulate --design "$name" --rows "$rows" --seed 1 --out "$file" >/dev/null
  fi
  n=$repeats
  [ "$rows" -ge 1000000 ] && n=1
  flag=""
  [ "$criterion" = ML ] && flag="--ml"
  lme4_json=null lme4_wall=null lme4_rss=null
  if [ "$lme4" = yes ]; then
    /usr/bin/time -f "%e %M" -o "$data/time" Rscript bench/lme4_fit.R "$file" "$formula" "$criterion" "$n" "$data/lme4.json" >&2
    read -r lme4_wall lme4_rss < "$data/time"
    lme4_json=$(cat "$data/lme4.json")
  fi
  # Each optimiser, against the same lme4 run.
  for optimizer in $optimizers; do
    walls=() rss=()
    for _ in $(seq "$n"); do
      # A fit mlm refuses (its factor predicted not to fit in memory) is reported with its line, and
      # one still running after MLM_BENCH_TIMEOUT seconds as such; neither is tabulated.
      status=0
      timeout "$limit" /usr/bin/time -f "%e %M" -o "$data/time" "$mlm" fit "$file" --formula "$formula" $flag \
        --optimizer "$optimizer" --json "$data/mlm.json" >/dev/null 2>"$data/mlm.err" || status=$?
      outcome=""
      if [ "$status" = 124 ]; then
        outcome="not finished after $limit s"
      elif [ "$status" != 0 ]; then
        outcome="refused after $(cut -d' ' -f1 "$data/time" | tail -1) s: $(grep 'mlm: error' "$data/mlm.err")"
      fi
      if [ -n "$outcome" ]; then
        echo "mlm  $name $(basename "$file") $optimizer: $outcome" >&2
        python3 -c 'import json, sys; print(json.dumps({"case": sys.argv[1], "file": sys.argv[2], "optimizer": sys.argv[3], "outcome": sys.argv[4]}))' \
          "$name" "$file" "$optimizer" "$outcome" >> "$results"
        continue 2
      fi
      read -r w m < "$data/time"
      walls+=("$w"); rss+=("$m")
    done
    echo "mlm  $name $(basename "$file") $optimizer: wall ${walls[*]} s, peak RSS ${rss[*]} KB" >&2
    python3 - "$name" "$file" "$criterion" "$data/mlm.json" "${walls[*]}" "${rss[*]}" "$lme4_json" "$lme4_wall" "$lme4_rss" "$commit" >> "$results" <<'EOF'
import json, statistics, sys
name, file, criterion, mlm_json, walls, rss, lme4, lme4_wall, lme4_rss, commit = sys.argv[1:]
m = json.load(open(mlm_json))
o = m["optimizer"]
print(json.dumps({
    "case": name, "file": file, "criterion": criterion, "rows": m["nobs"],
    "mlm_wall": statistics.median(map(float, walls.split())), "mlm_rss_kb": statistics.median(map(int, rss.split())),
    "mlm_criterion": m["REMLcrit"] if criterion == "REML" else m["deviance"], "mlm_theta": m["theta"],
    "optimizer": o["algorithm"], "mlm_iterations": o["iterations"], "mlm_evaluations": o["evaluations"],
    "mlm_gradients": o["gradients"], "repeats": len(walls.split()),
    "lme4": json.loads(lme4), "lme4_wall": None if lme4_wall == "null" else float(lme4_wall),
    "lme4_rss_kb": None if lme4_rss == "null" else int(lme4_rss), "commit": commit}))
EOF
  done
done

out=bench/RESULTS.md
$quick && out=bench/RESULTS-quick.md
python3 bench/table.py "$results" "$out"

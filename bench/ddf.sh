#!/usr/bin/env bash
# The time --ddf satterthwaite adds to a fit (issue 15's target: less than the fit's own), on
# InstEval and on the crossed design at 10^6 rows, with lmerTest's in the same run.
#
# Usage: bash bench/ddf.sh   (writes bench/RESULTS-ddf.md)
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench) holds the simulated file; MLM_BENCH_REPEATS
# (default 5) mlm runs per case and setting (medians reported); MLM_BENCH_R_REPEATS (default 3 for
# InstEval, 1 at 10^6 rows) lmerTest's.
# Needs: Rscript with lme4, lmerTest, jsonlite and hdf5r; GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}
repeats=${MLM_BENCH_REPEATS:-5}
mkdir -p "$data"
swift build -c release --product mlm >/dev/null
mlm=.build/release/mlm
source bench/blas.sh
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")
[ -f "$data/crossed-1e6.h5" ] || "$mlm" simulate --design crossed --rows 1000000 --seed 1 --out "$data/crossed-1e6.h5" >/dev/null

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# The wall time of `mlm fit` (seconds), one run per line.
times() {
  local file=$1 formula=$2; shift 2
  for _ in $(seq "$repeats"); do
    /usr/bin/time -f "%e" "$mlm" fit "$file" --formula "$formula" "$@" 2>&1 >/dev/null | tail -1
  done
}
out=bench/RESULTS-ddf.md
{
  echo "# --ddf satterthwaite: the time it adds (commit $commit, $(date -u +%Y-%m-%d))"
  echo
  echo "Medians of $repeats runs of \`mlm fit\` (wall seconds, release build) without and with"
  echo "\`--ddf satterthwaite\` (df and p of every β, F-test of every term); lmerTest in the same run:"
  echo "lme4::lmer, lmerTest::lmer (which computes the Hessian and Jacobian in the fit), and summary() +"
  echo "anova(type = 3) after it. OpenBLAS kernels: ${OPENBLAS_CORETYPE:-as detected}. The agreement columns"
  echo "are the largest relative difference of mlm's df and θ̂ from lmerTest's (lme4's θ̂, by BOBYQA at its default"
  echo "tolerances: where the θ̂ differ, the df differ as much)."
  echo
  echo "| case | mlm fit | mlm fit --ddf | added | added / fit | lme4 fit | lmerTest fit + tests | added by lmerTest | df agree | θ̂ agree |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$out"
for case in "insteval;Tests/MultilevelTests/Fixtures/insteval.csv;y ~ 1 + service * dept + (1 | s) + (1 | d);3" \
            "crossed 10^6;$data/crossed-1e6.h5;y ~ x + w + (1 + x | A) + (1 | B);${MLM_BENCH_R_REPEATS:-1}"; do
  IFS=';' read -r name file formula rrepeats <<< "$case"
  plain=$(times "$file" "$formula" | median)
  tested=$(times "$file" "$formula" --ddf satterthwaite | median)
  "$mlm" fit "$file" --formula "$formula" --ddf satterthwaite --json "$data/ddf.json" >/dev/null
  r=$(Rscript bench/lmertest_ddf.R "$file" "$formula" "$rrepeats")
  row=$(python3 - "$data/ddf.json" "$r" "$plain" "$tested" <<'PY'
import json, sys
fit = json.load(open(sys.argv[1])); r = json.loads(sys.argv[2]); plain, tested = float(sys.argv[3]), float(sys.argv[4])
df = list(fit["ddf"]["df"].values())
worst = max(abs(a - b) / abs(b) for a, b in zip(df, r["df"]))
theta = max(abs(a - b) / max(abs(b), 1e-3) for a, b in zip(fit["theta"], r["theta"]))
added = tested - plain
lmertest = r["lmertest_fit"] + r["lmertest_tests"]
print(f"{plain:.2f} | {tested:.2f} | {added:.2f} | {added / plain:.2f} | {r['lmer']:.2f} | {lmertest:.2f} | "
      f"{lmertest - r['lmer']:.2f} | {worst:.1e} | {theta:.1e} |")
PY
)
  echo "| $name | $row" >> "$out"
  echo "bench: $name done" >&2
done
cat "$out"

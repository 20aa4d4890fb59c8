#!/usr/bin/env bash
# GLMMs (issue 14) against lme4's glmer, in one run on one machine (release build, lme4 with
# the same OpenBLAS): VerbAgg (crossed, 7,584 rows), the simulated `crossed-binary` design
# (y ~ x + w + (1 | A) + (1 | B), binomial) at 10^5 and 10^6 rows with both, and at 10^7 rows
# with mlm alone: wall time, peak memory, the ratio, and the agreement of the deviance and θ.
# The table goes to standard output and to bench/RESULTS-glmm.md.
#
# Usage: bash bench/glmm.sh
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench); MLM_GLMM_GLMER_LIMIT (default 10800),
# the most seconds one glmer fit may take (a fit past it is reported as such). A glmer fit is
# kept in the data folder (glmer-<file>.json and .time) and reused by later runs on the same
# file (glmer does not change with mlm); delete those files to refit. MLM_GLMM_ONLY_GLMER=1 runs
# only the glmer fits not kept yet.
# Needs: Rscript with lme4, hdf5r and jsonlite; GNU time; python3.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}/glmm
limit=${MLM_GLMM_GLMER_LIMIT:-10800}
mkdir -p "$data"
swift build -c release --product mlm >/dev/null
# A copy: glmer at 10^6 rows takes long, and a rebuild meanwhile must not replace the binary under it.
cp .build/release/mlm "$data/mlm"
mlm=$data/mlm
source bench/blas.sh
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")
crossed="y ~ x + w + (1 | A) + (1 | B)"
verbagg="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
# name; file; formula; rows to simulate (0: a fixture); fit with glmer too
cases=(
  "VerbAgg;Tests/MultilevelTests/Fixtures/verbagg.csv;$verbagg;0;yes"
  "crossed-binary;$data/crossed-binary-1e5.h5;$crossed;100000;yes"
  "crossed-binary;$data/crossed-binary-1e6.h5;$crossed;1000000;yes"
  "crossed-binary;$data/crossed-binary-1e7.h5;$crossed;10000000;no"
)
results=$data/results.jsonl
: > "$results"
for case in "${cases[@]}"; do
  IFS=';' read -r name file formula rows glmer <<< "$case"
  if [ "$rows" != 0 ] && [ ! -f "$file" ]; then
    "$mlm" simulate --design "$name" --rows "$rows" --seed 1 --out "$file" >/dev/null
  fi
  glmer_json=null glmer_wall=null glmer_rss=null glmer_status=null
  kept=$data/glmer-$(basename "$file")
  if [ "$glmer" = yes ] && [ ! -f "$kept.json" ]; then
    status=0
    timeout "$limit" /usr/bin/time -f "%e %M" -o "$kept.time" Rscript bench/lme4_fit.R "$file" "$formula" ML 1 \
      "$kept.json" binomial >&2 || status=$?
    [ "$status" = 0 ] || { rm -f "$kept.json"; glmer_status=$status; }
  fi
  if [ "$glmer" = yes ] && [ -f "$kept.json" ]; then
    read -r glmer_wall glmer_rss < "$kept.time"
    glmer_json=$(cat "$kept.json")
  fi
  [ "${MLM_GLMM_ONLY_GLMER:-0}" = 1 ] && continue
  # mlm: three runs under 10^6 rows (the median is tabulated), one at 10^6 and above.
  n=3
  [ "$rows" -ge 1000000 ] && n=1
  walls=() rss=()
  for _ in $(seq "$n"); do
    /usr/bin/time -f "%e %M" -o "$data/time" "$mlm" fit "$file" --formula "$formula" --family binomial \
      --json "$data/mlm.json" >/dev/null
    read -r w r < "$data/time"
    walls+=("$w") rss+=("$r")
  done
  python3 - "$name" "$file" "$rows" "$data/mlm.json" "${walls[*]}" "${rss[*]}" "$glmer_json" "$glmer_wall" "$glmer_rss" \
    "$glmer_status" >> "$results" <<'EOF'
import json, statistics, sys
name, file, rows, mlm, walls, rss, gj, gw, gr, gs = sys.argv[1:11]
fit = json.load(open(mlm))
walls = [float(w) for w in walls.split()]
line = {"name": name, "file": file, "rows": int(rows) or fit["nobs"], "mlm_walls": walls, "mlm_wall": statistics.median(walls),
        "mlm_rss_kb": max(int(r) for r in rss.split()), "mlm_deviance": fit["deviance"], "mlm_theta": fit["theta"],
        "mlm_evaluations": fit["optimizer"]["stage1"]["evaluations"] + fit["optimizer"]["stage2"]["evaluations"],
        "mlm_pirls": fit["optimizer"]["pirls_iterations"]}
if gj != "null":
    g = json.loads(gj)
    line.update({"glmer_wall": float(gw), "glmer_rss_kb": int(gr), "glmer_seconds": g["median"], "glmer_deviance": g["criterion"],
                 "glmer_theta": g["theta"], "glmer_evaluations": g["evaluations"]})
elif gs != "null":
    line["glmer_status"] = int(gs)
print(json.dumps(line))
EOF
done
[ "${MLM_GLMM_ONLY_GLMER:-0}" = 1 ] && exit 0
python3 - "$results" "$commit" "${BLAS_KERNELS:-}" <<'EOF' | tee bench/RESULTS-glmm.md
import json, sys
path, commit = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(path)]
print("# GLMMs: mlm against glmer (bench/glmm.sh)\n")
print(f"Commit {commit}; release build; lme4's glmer with its defaults (Laplace, bobyqa then Nelder_Mead), "
      "the same OpenBLAS. Wall times of the whole process (mlm: median of 3 under 10^6 rows; glmer: its lmer/glmer call, "
      "`system.time`, without reading the data), peak memory of the process. Δ deviance = mlm − glmer "
      "(negative: mlm's optimum is lower).\n")
print("| case | rows | mlm s | mlm MB | glmer s | glmer MB | ratio | Δ deviance | max |Δθ| | mlm evaluations / PIRLS | glmer evaluations |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    g = "glmer_seconds" in r
    cells = [r["name"], f'{r["rows"]:,}', f'{r["mlm_wall"]:.2f}', f'{r["mlm_rss_kb"] / 1024:.0f}']
    if g:
        cells += [f'{r["glmer_seconds"]:.1f}', f'{r["glmer_rss_kb"] / 1024:.0f}', f'{r["glmer_seconds"] / r["mlm_wall"]:.1f}×',
                  f'{r["mlm_deviance"] - r["glmer_deviance"]:+.2e}',
                  f'{max(abs(a - b) for a, b in zip(r["mlm_theta"], r["glmer_theta"])):.1e}']
    elif "glmer_status" in r:
        cells += [f'stopped (status {r["glmer_status"]})', "", "", "", ""]
    else:
        cells += ["—", "", "", "", ""]
    cells += [f'{r["mlm_evaluations"]} / {r["mlm_pirls"]}', str(r.get("glmer_evaluations", ""))]
    print("| " + " | ".join(cells) + " |")
EOF

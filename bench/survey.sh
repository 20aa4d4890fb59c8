#!/usr/bin/env bash
# Sampling-weighted fits (issue 13) on simulated two-stage samples, in one run:
#   - `survey` (schools drawn by size and effect, pupils by x) at 10^6 pupils, R replicated
#     samples (seeds 1..R): bias of the weighted (pseudo-likelihood, --survey-weights, with the
#     size and the effective scaling of the level-1 weights) and of the
#     unweighted (ML) estimates of β, τ² and σ² against the population's values, with Monte-Carlo
#     SEs; the coverage of the 95% Wald intervals from the linearised SEs, and their mean against
#     the replicates' SD;
#   - `survey-informative` (pupils drawn by their residual too) likewise, fewer replicates: the
#     O(1/n) bias a 20-pupil cluster leaves in the pseudo-likelihood;
#   - one weighted fit at 10^7 pupils: wall time and peak memory.
# The table goes to standard output and to bench/RESULTS-survey.md.
#
# Usage: bash bench/survey.sh
# Environment: MLM_BENCH_DATA (default /tmp/mlm-bench); MLM_SURVEY_REPLICATES (default 200) and
# MLM_SURVEY_INFORMATIVE_REPLICATES (default 20); MLM_SURVEY_ROWS (default 1000000).
# Needs: GNU time, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${MLM_BENCH_DATA:-/tmp/mlm-bench}
replicates=${MLM_SURVEY_REPLICATES:-200}
informative=${MLM_SURVEY_INFORMATIVE_REPLICATES:-20}
rows=${MLM_SURVEY_ROWS:-1000000}
mkdir -p "$data/survey"
swift build -c release --product mlm >/dev/null
# A copy: the run takes half an hour, and a rebuild meanwhile must not replace the binary under it.
cp .build/release/mlm "$data/survey/mlm"
mlm=$data/survey/mlm
source bench/blas.sh
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Package.swift || echo "+changes")
out=$data/survey/replicates.jsonl
: > "$out"
record() {  # design wall rss weighted.json plain.json|- seed: one JSON line
  python3 -c 'import json, sys
d, wall, rss, w, p, seed = sys.argv[1:7]
line = {"design": d, "seed": int(seed), "wall": float(wall), "rss_kb": int(rss), "weighted": json.load(open(w))}
if p != "-": line["plain"] = json.load(open(p))
print(json.dumps(line))' "$@" >> "$out"
}
run() {  # design seed
  local file=$data/survey/sample.h5
  "$mlm" simulate --design "$1" --rows "$rows" --seed "$2" --out "$file" >/dev/null
  "$mlm" fit "$file" --formula "y ~ x + (1 | school)" --ml --json "$data/survey/plain.json" >/dev/null
  for scaling in size effective; do
    /usr/bin/time -f "%e %M" -o "$data/survey/time" "$mlm" fit "$file" --formula "y ~ x + (1 | school)" \
      --survey-weights "w_pupil, w_school" --weight-scaling $scaling --strata stratum --single-psu centered --json "$data/survey/weighted.json" >/dev/null
    read -r wall rss < "$data/survey/time"
    record "$1/$scaling" "$wall" "$rss" "$data/survey/weighted.json" "$data/survey/plain.json" "$2"
  done
}
for seed in $(seq "$replicates"); do run survey "$seed"; echo "survey $seed/$replicates" >&2; done
for seed in $(seq "$informative"); do run survey-informative "$seed"; echo "survey-informative $seed/$informative" >&2; done
# One fit at 10^7 pupils.
big=$data/survey/survey-1e7.h5
"$mlm" simulate --design survey --rows 10000000 --seed 1 --out "$big" >/dev/null
/usr/bin/time -f "%e %M" -o "$data/survey/time" "$mlm" fit "$big" --formula "y ~ x + (1 | school)" \
  --survey-weights "w_pupil, w_school" --strata stratum --single-psu centered --json "$data/survey/big.json" >/dev/null
read -r wall rss < "$data/survey/time"
record survey-1e7 "$wall" "$rss" "$data/survey/big.json" - 1
# R's apiclus2 and apistrat (survey package): against the references of bench/make_survey_references.R.
fixtures=Tests/MultilevelTests/Fixtures
for scaling in size effective none; do
  "$mlm" fit $fixtures/apiclus2.csv --formula "api00 ~ ell + meals + (1 | dnum)" --survey-weights "w_school, w_district" \
    --weight-scaling $scaling --json "$data/survey/apiclus2-$scaling.json" >/dev/null
done
"$mlm" fit $fixtures/apiclus2.csv --formula "api00 ~ ell + meals" --survey-weights pw --psu dnum --json "$data/survey/svyglm-apiclus2.json" >/dev/null
"$mlm" fit $fixtures/apistrat.csv --formula "api00 ~ ell + meals" --survey-weights pw --psu dnum --strata stype \
  --json "$data/survey/svyglm-apistrat.json" >/dev/null
python3 bench/survey_table.py "$out" "$commit" "$rows" "$data/survey" $fixtures/survey_reference.json | tee bench/RESULTS-survey.md

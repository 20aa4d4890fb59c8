#!/usr/bin/env bash
# InstEval, ML, y ~ 1 + service*dept + (1|s) + (1|d): mlm (release) against lme4 on the same
# machine, in the same run, on the same CSV. Prints each tool's wall times and their medians.
# Usage: bash bench/insteval.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-5}
data=Tests/MultilevelTests/Fixtures/insteval.csv
formula="y ~ 1 + service*dept + (1|s) + (1|d)"
swift build -c release --product mlm >/dev/null
times=()
for _ in $(seq "$repeats"); do
  start=$(date +%s.%N)
  .build/release/mlm fit "$data" --formula "$formula" --ml >/dev/null
  end=$(date +%s.%N)
  times+=("$(echo "$end - $start" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mlm_median=$(median "${times[@]}")
printf 'mlm  ML fit seconds (whole command, incl. reading): %s (median %.3f)\n' "$(printf '%.3f ' "${times[@]}")" "$mlm_median"
lme4_line=$(Rscript bench/lme4_fit.R "$data" "$formula" ML "$repeats")
echo "$lme4_line  (lmer only, data already in memory)"
lme4_median=$(echo "$lme4_line" | sed -n 's/.*(median \([0-9.]*\)).*/\1/p')
printf 'ratio lme4/mlm (medians): %.2f\n' "$(echo "$lme4_median / $mlm_median" | bc -l)"

#!/usr/bin/env python3
"""Writes bench/run.sh's results (one JSON object per case) as a Markdown table, and prints it.

Usage: python3 bench/table.py RESULTS.jsonl OUT.md
"""
import json, platform, subprocess, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
cores = sh("nproc"); mem = sh("free -g | awk '/Mem:/ {print $2}'")
blas = next((r["lme4"]["BLAS"] for r in rows if r.get("lme4")), "")
kernels = sh("echo ${OPENBLAS_CORETYPE:-detected}")
lme4v = sh("Rscript -e 'cat(format(packageVersion(\"lme4\")))'")
rv = sh("Rscript -e 'cat(R.version$major, R.version$minor, sep=\".\")'")
commit = rows[0].get("commit", "?")
lines = [
    "# mlm against lme4", "",
    f"Run by `bash bench/run.sh` on {datetime.date.today().isoformat()}: {cpu}, {cores} cores, {mem} GiB; "
    f"mlm at commit {commit}, Swift release build; R {rv}, lme4 {lme4v}, BLAS {blas}, "
    f"OpenBLAS kernels {kernels} for both.", "",
    "mlm wall: the whole `mlm fit` command (reading the file, cross-products, optimisation, output), "
    "median of the repeats. lme4 lmer: `lmer` alone on data already in R (median); lme4 wall: the whole "
    "Rscript (loading R and lme4, reading the file, every repeat). Ratio: lme4 lmer / mlm wall. "
    "Δ criterion: (mlm − lme4) / lme4, of the REML criterion (deviance for ML); negative: mlm's is lower. "
    "Peak RSS from GNU time.", "",
    "Optimiser: Newton (average information) or BOBYQA, with its iterations / deviance evaluations / "
    "gradient evaluations (each gradient with the AI matrix: one selected inverse and a few solves).", "",
    "| case | rows | optimiser | mlm wall (s) | mlm peak RSS (MB) | mlm iter / evals / grads | lme4 lmer (s) | lme4 wall (s) | lme4 peak RSS (MB) | lme4 evals | ratio | Δ criterion (relative) | max abs Δθ |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for r in rows:
    if "outcome" in r:  # refused, or stopped at the time limit: no figures to tabulate
        lines.append(f'| {r["case"]} | {r["file"].rsplit("-", 1)[-1].removesuffix(".h5")} rows | {r["optimizer"]} | '
                     f'{r["outcome"]} | | | | | | | | | |')
        continue
    l = r["lme4"]
    case = f'{r["case"]} ({r["criterion"]})'
    if l:
        ratio = f'{l["median"] / r["mlm_wall"]:.1f}×'
        dc = f'{(r["mlm_criterion"] - l["criterion"]) / abs(l["criterion"]):.1e}'
        dt = f'{max(abs(a - b) for a, b in zip(r["mlm_theta"], l["theta"])):.1e}'
        lm = (f'{l["median"]:.2f}', f'{r["lme4_wall"]:.1f}', f'{r["lme4_rss_kb"] / 1024:.0f}', str(l["evaluations"]))
    else:
        ratio = dc = dt = "—"
        lm = ("—", "—", "—", "—")
    algorithm = r.get("optimizer", "NLOPT_LN_BOBYQA")
    optimizer = "Newton → BOBYQA" if "then" in algorithm else "Newton" if algorithm.startswith("Newton") else "BOBYQA"
    counts = f'{r.get("mlm_iterations", 0)} / {r["mlm_evaluations"]} / {r.get("mlm_gradients", 0)}'
    lines.append(f'| {case} | {r["rows"]:,} | {optimizer} | {r["mlm_wall"]:.2f} | {r["mlm_rss_kb"] / 1024:.0f} | {counts} | '
                 f'{lm[0]} | {lm[1]} | {lm[2]} | {lm[3]} | {ratio} | {dc} | {dt} |')
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)

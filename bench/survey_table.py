"""Tabulates bench/survey.sh's replicates (JSON lines) as bench/RESULTS-survey.md."""
import json, math, statistics, sys

lines = [json.loads(l) for l in open(sys.argv[1])]
commit, rows = sys.argv[2], int(sys.argv[3])
fits, reference = sys.argv[4], json.load(open(sys.argv[5]))
truth = {"(Intercept)": 1.0, "x": 0.5, "tau2": 0.25, "sigma2": 1.0}


def estimates(fit, robust):
    e = {"(Intercept)": fit["beta"]["(Intercept)"], "x": fit["beta"]["x"]}
    vc = fit["varcorr"]
    e["tau2"], e["sigma2"] = vc[0]["vcov"], vc[1]["vcov"]
    se = {}
    if robust:
        se = {"(Intercept)": fit["se"]["(Intercept)"], "x": fit["se"]["x"], "tau2": vc[0]["se"], "sigma2": vc[1]["se"]}
    return e, se


print(f"# Sampling-weighted fits on simulated two-stage samples\n")
print(f"`bash bench/survey.sh` at {commit}, release build, {rows:,} pupils a sample (seeds 1..R); "
      "weighted: `--survey-weights \"w_pupil, w_school\" --strata stratum` (pseudo-likelihood; the level-1 weights scaled by size or effective, "
      "linearised SEs with the schools as PSUs); plain: `--ml`. Population: β = (1, 0.5), τ² = 0.25, σ² = 1.\n")
for design in ["survey/size", "survey/effective", "survey-informative/size", "survey-informative/effective"]:
    reps = [l for l in lines if l["design"] == design]
    if not reps:
        continue
    n = len(reps)
    name, scaling = design.split("/")
    print(f"## `{name}`, `--weight-scaling {scaling}`: {n} replicates\n")
    print("| parameter | weighted bias | MC SE | bias / MC SE | plain bias | plain bias / MC SE | mean robust SE | SD of estimates | 95% coverage |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in truth:
        w = [estimates(r["weighted"], True) for r in reps]
        pl = [estimates(r["plain"], False)[0][p] for r in reps]
        vals = [e[p] for e, _ in w]
        ses = [s[p] for _, s in w]
        bias = statistics.mean(vals) - truth[p]
        sd = statistics.stdev(vals) if n > 1 else float("nan")
        mc = sd / math.sqrt(n)
        pbias = statistics.mean(pl) - truth[p]
        psd = statistics.stdev(pl) if n > 1 else float("nan")
        cover = sum(1 for v, s in zip(vals, ses) if abs(v - truth[p]) <= 1.959964 * s) / n
        print(f"| {p} | {bias:+.5f} | {mc:.5f} | {bias / mc:+.2f} | {pbias:+.5f} | {pbias / (psd / math.sqrt(n)):+.1f} | "
              f"{statistics.mean(ses):.5f} | {sd:.5f} | {100 * cover:.1f}% |")
    walls = sorted(r["wall"] for r in reps)
    rss = sorted(r["rss_kb"] for r in reps)
    print(f"\nWeighted fit at {rows:,} pupils: median {walls[n // 2]:.2f} s wall, median peak RSS {rss[n // 2] / 1024:.0f} MB.\n")
print("Reading: `bias / MC SE` within ±2 means no bias the replicates can see; coverage should be 95% ± 3%. "
      "With unequal level-1 weights in small clusters, size scaling biases the variance components (the weighted "
      "sum of squares of a cluster has n − Σw*²/Σw* degrees of freedom, not n − 1) and effective scaling does not. "
      "In `survey-informative` pupils are drawn by their own residual: a cluster's weighted mean is then a ratio "
      "estimator with a bias of order 1/n, which no scaling removes (Pfeffermann et al. 1998).\n")
big = [l for l in lines if l["design"] == "survey-1e7"]
if big:
    b = big[0]
    print(f"## One weighted fit at 10^7 pupils\n\n{b['wall']:.1f} s wall, {b['rss_kb'] / 1024:.0f} MB peak RSS "
          f"({b['weighted']['nobs']:,} pupils, {b['weighted']['survey']['clusters']['school']:,} schools, "
          f"{b['weighted']['survey']['nstrata']:,} strata).")

print("\n## R's apiclus2 and apistrat: an independent implementation and svyglm\n")
print("No published weighted multilevel analysis of a public data set can be had on this machine (PISA, "
      "WeMix's and Stata's examples are neither Debian nor PyPI packages), so the cross-check is the issue's "
      "fallback: R's `survey::apiclus2` (40 of 757 districts, then up to 5 schools in each; level-1 weight "
      "fpc2/n, level-2 757/40), `api00 ~ ell + meals + (1 | dnum)`, against the pseudo-likelihood maximised in R "
      "itself (`bench/make_survey_references.R`: each district's integral by adaptive Gauss-Hermite quadrature "
      "with 30 nodes, nlminb then BFGS). The school weights are equal within a district, so size and effective "
      "scaling coincide here.\n")
print("| scaling | log pseudo-likelihood (mlm) | difference | largest relative difference in β, τ², σ² |")
print("|---|---:|---:|---:|")
for scaling in ["size", "effective", "none"]:
    m = json.load(open(f"{fits}/apiclus2-{scaling}.json"))
    r = reference["pml_apiclus2"][scaling]
    rel = [abs(m["beta"][k] - v) / abs(v) for k, v in r["beta"].items()]
    rel += [abs(m["varcorr"][0]["vcov"] - r["tau2"]) / r["tau2"], abs(m["varcorr"][1]["vcov"] - r["sigma2"]) / r["sigma2"]]
    print(f"| {scaling} | {m['logPseudoLik']:.6f} | {m['logPseudoLik'] - r['logPseudoLik']:.1e} | {max(rel):.1e} |")
print("\nWithout random effects (`api00 ~ ell + meals`, `--survey-weights pw --psu dnum`, and `--strata stype` on "
      "apistrat), against `svyglm` with `svydesign(ids = ~dnum, weights = ~pw[, strata = ~stype, nest = TRUE])`:\n")
print("| data | largest relative difference in β | in the SEs |")
print("|---|---:|---:|")
for name in ["apiclus2", "apistrat"]:
    m = json.load(open(f"{fits}/svyglm-{name}.json"))
    r = reference[f"svyglm_{name}"]
    db = max(abs(m["beta"][k] - v) / abs(v) for k, v in r["beta"].items())
    ds = max(abs(m["se"][k] - v) / abs(v) for k, v in r["se"].items())
    print(f"| {name} | {db:.1e} | {ds:.1e} |")

#!/usr/bin/env python3
"""Writes bench/iterative.sh's results as Markdown, and prints it.

Usage: python3 bench/iterative_table.py RESULTS.jsonl COMMIT
"""
import json, statistics, math, subprocess, sys, datetime

rows = [json.loads(l) for l in open(sys.argv[1])]
commit = sys.argv[2]
def sh(c): return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
cpu = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
cores, mem = sh("nproc"), sh("free -g | awk '/Mem:/ {print $2}'")
by = {r["name"]: r for r in rows}

def size(r): return r["name"].split("-")[1]
def levels(fit): return ", ".join(f"{g} {n}" for g, n in fit["ngroups"].items()).replace("mm(s1, s2, weights = cbind(m1, m2))", "school")

def main_run(r):
    """The fits of the size series (not the ranks', preconditioners', bootstrap's or ratings' runs)."""
    return not r["ranks"] and r["name"].split("-")[0] in ("iterative", "direct")

def true_theta(t):
    """θ of the simulation, in mlm's order of terms (read from theta_names)."""
    s = t["sigma"]
    a0, ax, c = t["sd_A_(Intercept)"] / s, t["sd_A_x"] / s, t["cor_A"]
    return {"A.(Intercept)": a0, "A.x.(Intercept)": c * ax, "A.x": ax * math.sqrt(1 - c * c),
            "B.(Intercept)": t["sd_B_(Intercept)"] / s,
            "mm(s1, s2, weights = cbind(m1, m2)).(Intercept)": t["sd_school_(Intercept)"] / s}

out = ["# The iterative solver on crossed + multiple-membership data", "",
       f"Run by `bash bench/iterative.sh` on {datetime.date.today().isoformat()}: {cpu}, {cores} cores, {mem} GiB; "
       f"mlm at commit {commit}, Swift release build.", "",
       "Design: `mlm simulate --design crossed-mm --seed 1` (`y ~ x + w + (1 + x | A) + (1 | B) + "
       "(1 | mm(s1, s2, weights = cbind(m1, m2)))`, schools crossed with A and B at random, about 20 rows per level), "
       "REML. Wall: the whole `mlm fit` command; peak RSS from GNU time. Probes: those of the Newton steps / "
       "of the reported criterion. MC SE: Monte-Carlo standard error.", "",
       "| rows | levels | solver | wall (s) | peak RSS (MB) | iter / evals / grads | probes | criterion | MC SE | θ MC SE / SE (most) |",
       "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    if not main_run(r): continue
    f = r["fit"]; o = f["optimizer"]; s = f["solver"]
    if s["method"] == "iterative":
        probes = f'{s["probes"]} / {s["criterion_probes"]}'
        se = f'{s["criterion_mc_se"]:.3f}'
        ratio = max((m / t if t > 0 else 0) for m, t in zip(s["theta_mc_se"], s["theta_se"]))
        ratio = f"{ratio:.2f}"
    else:
        probes, se, ratio = "", "", ""
    out.append(f'| {size(r)} | {levels(f)} | {s["method"]} | {r["seconds"]:.1f} | {r["kb"] / 1024:.0f} | '
               f'{o["iterations"]} / {o["evaluations"]} / {o["gradients"]} | {probes} | {f["REMLcrit"]:.3f} | {se} | {ratio} |')

out += ["", "## Agreement with the direct solver", "",
        "Δ criterion: iterative − direct, against 3 MC SE; θ: largest relative difference; β: largest difference in SEs.", "",
        "| rows | Δ criterion | 3 MC SE | max rel Δθ | max Δβ / SE |", "|---:|---:|---:|---:|---:|"]
for n in ["10000", "100000"]:
    i, d = by.get(f"iterative-{n}"), by.get(f"direct-{n}")
    if not (i and d): continue
    fi, fd = i["fit"], d["fit"]
    dtheta = max(abs(a - b) / abs(b) for a, b in zip(fi["theta"], fd["theta"]))
    dbeta = max(abs(fi["beta"][k] - fd["beta"][k]) / fd["se"][k] for k in fd["beta"])
    out.append(f'| {n} | {fi["REMLcrit"] - fd["REMLcrit"]:.3f} | {3 * fi["solver"]["criterion_mc_se"]:.3f} | {dtheta:.1e} | {dbeta:.3f} |')

out += ["", "## CG iterations per Newton iteration", "",
        "Each evaluation: the most iterations of the p + 1 solves for β̂ and û, and the mean and most over the probes "
        "(block-Jacobi preconditioner, relative residuals 1e-9 and 1e-7).", "",
        "| rows | q | per evaluation: solves, probes mean / most (probes) |", "|---:|---:|---|"]
for r in rows:
    f = r["fit"]
    if not main_run(r) or f["solver"]["method"] != "iterative": continue
    q = sum(n for n in f["ngroups"].values()) + f["ngroups"].get("A", 0)  # A has two effects per level
    log = "; ".join(f'{e["solve"]}, {e["probe_mean"]:.1f} / {e["probe_max"]} ({e["probes"]})' for e in f["solver"]["cg_iterations"])
    out.append(f"| {size(r)} | {q} | {log} |")

mm = "mm(s1, s2, weights = cbind(m1, m2)).(Intercept)"
names = ["A.(Intercept)", "A.x.(Intercept)", "A.x", "B.(Intercept)", mm]
out += ["", "## The simulation's parameters recovered", "",
        "|θ̂ − θ| / SE(θ̂) with SE from the AI matrix (√(2 H⁻¹)), and |β̂ − β| / SE(β̂), on the iterative fits.", "",
        "| rows | " + " | ".join("θ " + n.replace(mm, "school.(Intercept)") for n in names) + " | β (most) |",
        "|---:|" + "---:|" * (len(names) + 1)]
for r in rows:
    f = r["fit"]
    if not main_run(r) or f["solver"]["method"] != "iterative": continue
    truth = true_theta(r["truth"])
    at = {n: (t, se) for n, t, se in zip(f["theta_names"], f["theta"], f["solver"]["theta_se"])}
    z = [abs(at[n][0] - truth[n]) / at[n][1] for n in names]
    zb = max(abs(f["beta"][k] - r["truth"][f"beta_{k}"]) / f["se"][k] for k in f["beta"])
    out.append(f"| {size(r)} | " + " | ".join(f"{v:.2f}" for v in z) + f" | {zb:.2f} |")

def ranks_runs(probes, ranks): return [r for r in rows if r["name"].startswith(f"ranks-{probes}-{ranks}-")]
def median(v): return statistics.median(v)
one = two = None
if ranks_runs(16, 1) and ranks_runs(16, 2):
    out += ["", "## Probes over MPI ranks (10^6 rows, one thread per rank)", "",
            "Medians of three interleaved runs. Probe work: the seconds in the probes' solves and quadratures (`--verbose`); "
            "the rest of an evaluation (the solves for β̂, û and the AI matrix, the low eigenpairs, the gradient's traces) "
            "is repeated or split less evenly.", "",
            "| probes | ranks | wall (s) | speed-up | probe work (s) | speed-up | low eigenpairs (s) | solves (s) | same fit |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for probes in (16, 64):
        base = None
        for ranks in (1, 2):
            runs = ranks_runs(probes, ranks)
            if not runs: continue
            wall, work = median([r["seconds"] for r in runs]), median([r["split"]["probes"] for r in runs])
            eig, sol = median([r["split"]["eigenpairs"] for r in runs]), median([r["split"]["solves"] for r in runs])
            if base is None: base = (wall, work, runs[0]["fit"])
            same = "" if ranks == 1 else ("yes, bit for bit" if all(r["fit"] == base[2] for r in runs) else "NO")
            out.append(f"| {probes} | {ranks} | {wall:.1f} | {base[0] / wall:.2f}× | {work:.2f} | {base[1] / work:.2f}× | "
                       f"{eig:.2f} | {sol:.2f} | {same} |")
    one = {"seconds": median([r["seconds"] for r in ranks_runs(16, 1)])}
    two = {"seconds": median([r["seconds"] for r in ranks_runs(16, 2)])}
def precond_runs(pc, n): return [r for r in rows if r["name"].startswith(f"precond-{pc}-{n}-")]
if precond_runs("gauss-seidel", 100000):
    out += ["", "## Preconditioner of the solves", "",
            "The solves for β̂, û and the AI matrix with block-Jacobi (one block per level of each term, the default) and "
            "with symmetric block Gauss–Seidel over the same blocks (`--preconditioner gauss-seidel`: M = (D + L)D⁻¹(D + U), "
            "one forward and one backward sweep over Z'Z per application, sequential over the levels); the probes keep "
            "block-Jacobi. Medians of three interleaved runs, `--verbose`'s seconds in the solves.", "",
            "| rows | preconditioner | wall (s) | solves (s) | CG iterations of the solves per evaluation | criterion |",
            "|---:|---|---:|---:|---|---:|"]
    for n in (100000, 1000000):
        for pc in ("block-jacobi", "gauss-seidel"):
            runs = precond_runs(pc, n)
            if not runs: continue
            f = runs[0]["fit"]
            its = ", ".join(str(e["solve"]) for e in f["solver"]["cg_iterations"])
            out.append(f'| {n} | {pc} | {median([r["seconds"] for r in runs]):.2f} | '
                       f'{median([r["split"]["solves"] for r in runs]):.2f} | {its} | {f["REMLcrit"]:.3f} |')
boots = [(1, one, by.get("bootstrap-1000000-1rank")), (2, two, by.get("bootstrap-1000000-2ranks"))]
if all(fit and boot for _, fit, boot in boots):
    same = boots[0][2]["fit"]["bootstrap"] == boots[1][2]["fit"]["bootstrap"]
    out += ["", "## Bootstrap on the iterative path (10^6 rows, one thread per rank)", "",
            "Each replicate reads the rows once more for W'ε* and ε*'ε*, then refits from θ̂ by Newton steps on the fit's probes. "
            "Rate: replicates over the wall time the bootstrap adds to the fit alone (the rows above).", "",
            "| ranks | replicates | wall with bootstrap (s) | fit alone (s) | replicates / s | per rank | same replicates |",
            "|---:|---:|---:|---:|---:|---:|---|"]
    for ranks, fit, boot in boots:
        n = boot["fit"]["bootstrap"]["replicates"]
        rate = n / (boot["seconds"] - fit["seconds"])
        out.append(f'| {ranks} | {n} | {boot["seconds"]:.1f} | {fit["seconds"]:.1f} | {rate:.3f} | {rate / ranks:.3f} | '
                   + ("" if ranks == 1 else "yes, bit for bit" if same else "NO") + " |")
ratings = by.get("ratings-30000000")
if ratings:
    f, s, t = ratings["fit"], ratings["fit"]["solver"], ratings["truth"]
    o = f["optimizer"]
    sd = {v["grp"]: v["sdcor"] for v in f["varcorr"] if v["var2"] is None}
    out += ["", "## MovieLens-shaped: `ratings`, 3·10^7 rows", "",
            "`mlm simulate --design ratings --rows 30000000 --seed 1`: `y ~ x + (1 | user) + (1 | item)`, "
            f"{levels(f)}, fitted with `--solver iterative` on one machine.", "",
            "| wall (s) | peak RSS (MB) | iter / evals / grads | probes | criterion | MC SE | CG at the end (solves, probes) | "
            "SD user (true) | SD item (true) | σ (true) | β_x (true) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f'| {ratings["seconds"]:.0f} | {ratings["kb"] / 1024:.0f} | {o["iterations"]} / {o["evaluations"]} / {o["gradients"]} | '
            f'{s["probes"]} / {s["criterion_probes"]} | {f["REMLcrit"]:.2f} | {s["criterion_mc_se"]:.3f} | '
            f'{s["cg_iterations"][-1]["solve"]}, {s["cg_iterations"][-1]["probe_mean"]:.0f} | '
            f'{sd["user"]:.4f} ({t["sd_user_(Intercept)"]}) | {sd["item"]:.4f} ({t["sd_item_(Intercept)"]}) | '
            f'{f["sigma"]:.4f} ({t["sigma"]}) | {f["beta"]["x"]:.4f} ({t["beta_x"]}) |']
print("\n".join(out))

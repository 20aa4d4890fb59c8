# Reference confidence intervals from lme4 for mlm's confint tests (profile and parametric bootstrap).
# Usage: Rscript bench/make_confint_fixtures.R Tests/MultilevelTests/Fixtures
#
# Reads sleepstudy.csv from that directory (columns Reaction, Days, Subject; Subject made a factor),
# fits m <- lmer(Reaction ~ Days + (Days | Subject)) (REML) and writes sleepstudy_confint.json there:
#   profile     confint(m, method = "profile", level = 0.95); "intervals_profile_object" repeats the
#               limits from confint(profile(m), level = 0.95) (identical by construction).
#               NB lme4 profiles the ML deviance even for a REML fit (devfun2 calls refitML), so the
#               profile is centred on the ML optimum ("profile_center"), not on "estimate" (REML).
#   profile_ml  the same for update(m, REML = FALSE).
#   boot        set.seed(20261123); confint(m, method = "boot", nsim = 1000, boot.type = "perc"), with
#               "boot_sd" (per parameter, SD of the 1000 replicates, same order as "intervals") and, in
#               each interval, "lower_se"/"upper_se": Monte-Carlo SEs of the percentile limits from 200
#               resamples of the replicates (limits recomputed as boot.ci's "perc" does).
#               The replicates come from bootMer(m, FUN, nsim = 1000, seed = 20261123) with FUN the
#               one confint uses; that is the same random stream, checked against confint's limits.
# Each interval: {parameter: sd|cor|sigma|beta, group, var1, var2, name, estimate, lower, upper}.
# The .sigNN rows follow θ's order (per term, the lower triangle column by column): a diagonal entry
# is the SD of cnms[i], an off-diagonal (i, j) entry the correlation of cnms[j] (var1) with cnms[i] (var2).
suppressMessages({ library(lme4); library(jsonlite); library(boot) })
args <- commandArgs(TRUE)
dir <- if (length(args) >= 1) args[1] else "Tests/MultilevelTests/Fixtures"

d <- read.csv(file.path(dir, "sleepstudy.csv"), colClasses = c(Subject = "character"))
d$Subject <- factor(d$Subject, levels = sort(unique(d$Subject), method = "radix"))
form <- Reaction ~ Days + (Days | Subject)
m <- lmer(form, data = d)
m_ml <- update(m, REML = FALSE)

# Rows .sig01, .sig02, ..., .sigma, then the fixed effects, described for the JSON.
param_table <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  rows <- list()
  for (k in seq_along(m@cnms)) {
    grp <- names(m@cnms)[k]; cn <- m@cnms[[k]]; nc <- length(cn)
    for (j in seq_len(nc)) for (i in j:nc) {
      if (i == j) { v1 <- cn[i]; v2 <- NA_character_ } else { v1 <- cn[j]; v2 <- cn[i] }
      hit <- which(vc$grp == grp & vc$var1 == v1 & (if (is.na(v2)) is.na(vc$var2) else vc$var2 %in% v2))
      # repeated group names (e.g. (1|g) + (0+x|g)): take the first row not already used
      used <- vapply(rows, function(r) r$vcrow, 0L)
      hit <- setdiff(hit, used)[1]
      rows[[length(rows) + 1]] <- list(parameter = if (i == j) "sd" else "cor", group = grp, var1 = v1,
                                       var2 = v2, name = NA_character_, estimate = vc$sdcor[hit], vcrow = hit)
    }
  }
  stopifnot(length(rows) == length(getME(m, "theta")))
  rows[[length(rows) + 1]] <- list(parameter = "sigma", group = NA_character_, var1 = NA_character_,
                                   var2 = NA_character_, name = NA_character_, estimate = sigma(m), vcrow = NA)
  for (b in names(fixef(m)))
    rows[[length(rows) + 1]] <- list(parameter = "beta", group = NA_character_, var1 = NA_character_,
                                     var2 = NA_character_, name = b, estimate = unname(fixef(m)[b]), vcrow = NA)
  rn <- c(sprintf(".sig%02d", seq_along(getME(m, "theta"))), ".sigma", names(fixef(m)))
  for (i in seq_along(rows)) { rows[[i]]$vcrow <- NULL; rows[[i]]$row <- rn[i] }
  rows
}

intervals <- function(m, ci, extra = NULL) {
  tab <- param_table(m)
  stopifnot(identical(rownames(ci), vapply(tab, `[[`, "", "row")))
  lapply(seq_along(tab), function(i) {
    r <- tab[[i]]; r$row <- NULL
    r$lower <- unname(ci[i, 1]); r$upper <- unname(ci[i, 2])
    if (!is.null(extra)) r <- c(r, lapply(extra, function(e) unname(e[i])))
    r
  })
}

profile_block <- function(m) {
  t0 <- Sys.time()
  ci <- suppressMessages(confint(m, method = "profile", level = 0.95))
  secs <- as.numeric(Sys.time() - t0, units = "secs")
  pr <- profile(m)
  ci2 <- confint(pr, level = 0.95)
  dd <- lme4:::devfun2(m)                     # what profile() is centred on (ML optimum)
  center <- unname(attr(dd, "optimum"))
  list(level = 0.95, seconds = secs,
       intervals = intervals(m, ci, list(profile_center = center)),
       intervals_profile_object = intervals(m, ci2),
       max_abs_diff_profile_object = max(abs(ci - ci2)))
}

prof <- profile_block(m)
prof_ml <- profile_block(m_ml)

# Bootstrap: confint's own call, timed.
nsim <- 1000; seed <- 20261123
set.seed(seed)
t0 <- Sys.time()
ci_boot <- suppressMessages(suppressWarnings(confint(m, method = "boot", nsim = nsim, boot.type = "perc")))
boot_secs <- as.numeric(Sys.time() - t0, units = "secs")

# The replicates, with confint's FUN (SD/cor in θ order, sigma, fixef) and the same random stream.
vn <- c(sprintf(".sig%02d", seq_along(getME(m, "theta"))), ".sigma")
bootFun <- function(x) {
  ss <- lme4:::Cv_to_Sv(x@theta, n = lengths(x@cnms), s = sigma(x))
  c(setNames(as.numeric(ss), vn), fixef(x))
}
bb <- suppressWarnings(bootMer(m, bootFun, nsim = nsim, seed = seed))
ci_bb <- confint(bb, level = 0.95, type = "perc")
stopifnot(isTRUE(all.equal(unname(ci_bb), unname(ci_boot), tolerance = 1e-12)))
tt <- bb$t
ok <- stats::complete.cases(tt)
boot_sd <- apply(tt[ok, , drop = FALSE], 2, sd)
# Monte-Carlo SE of each percentile limit: resample the replicates 200 times, recompute the limit
# the way boot.ci(type = "perc") does (boot:::norm.inter on the sorted replicates), take the SD.
set.seed(seed + 1)
alpha <- c(0.025, 0.975)
lim <- function(x) boot:::norm.inter(x, alpha)[, 2]
res <- replicate(200, { i <- sample(sum(ok), replace = TRUE); apply(tt[ok, , drop = FALSE][i, , drop = FALSE], 2, lim) })
lower_se <- apply(res[1, , ], 1, sd); upper_se <- apply(res[2, , ], 1, sd)
boot_block <- list(level = 0.95, nsim = nsim, seed = seed, type = "perc", seconds = boot_secs,
                   failed = sum(!ok),
                   intervals = intervals(m, ci_boot, list(lower_se = lower_se, upper_se = upper_se)),
                   boot_sd = unname(boot_sd))

out <- list(formula = paste(deparse(form), collapse = ""), reml = TRUE,
            profile = prof, profile_ml = prof_ml, boot = boot_block,
            lme4_version = as.character(packageVersion("lme4")), R_version = R.version.string)
path <- file.path(dir, "sleepstudy_confint.json")
write_json(out, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null", null = "null")

show <- function(title, iv) {
  cat(title, "\n")
  df <- do.call(rbind, lapply(iv, function(r) data.frame(
    par = r$parameter, what = paste(na.omit(c(r$group, r$var1, r$var2, r$name)), collapse = " "),
    estimate = r$estimate, lower = r$lower, upper = r$upper)))
  print(df, digits = 7, row.names = FALSE)
}
show("profile (REML fit; lme4 profiles the ML deviance):", prof$intervals)
show("profile_ml:", prof_ml$intervals)
show("boot (perc, nsim 1000):", boot_block$intervals)
cat("boot_sd:", format(boot_block$boot_sd, digits = 5), "\n")
cat("lower_se:", format(lower_se, digits = 4), "\nupper_se:", format(upper_se, digits = 4), "\n")
cat(sprintf("profile confint %.2f s (REML), %.2f s (ML); boot confint %.1f s (%d failed); wrote %s\n",
            prof$seconds, prof_ml$seconds, boot_secs, sum(!ok), path))

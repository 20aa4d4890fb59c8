# Reference fits from lme4's glmer for the GLMM conformance tests.
#
# Usage: Rscript bench/make_glmm_references.R Tests/MultilevelTests/Fixtures
# Needs: r-cran-lme4 (made with 1.1-31), r-cran-jsonlite. Takes about 20 seconds (VerbAgg's tight refit, ~3,200 evaluations, is over half of it).
#
# Writes into the folder:
#   cbpp.csv          lme4::cbpp (herd, incidence, size, period)
#   cbpp_binary.csv   cbpp with one row per animal: herd, period, y (0/1), sick (TRUE/FALSE)
#   verbagg.csv       lme4::VerbAgg: id, item, Anger, Gender, btype, situ, r2 (7,584 rows)
#   grouseticks.csv   lme4::grouseticks: INDEX, TICKS, BROOD, HEIGHT, YEAR, LOCATION
#   mm_binary.csv     simulated multiple-membership binary data (1,500 pupils, 60 schools, 15 areas)
#   glmm_reference.json  an array of cases, one per fit (fields described at `ref` below)
#
# Every CSV is written with write.csv and read back as a CSV reader that follows write.csv's
# quoting sees it (`read_fixture`): a column with quoted values is text and becomes a factor with
# its levels in C-locale (byte) order; unquoted columns are numbers (or logical, for TRUE/FALSE).
# So level orders are those of the CSV, not of the original R factor (cbpp's herd is
# "1", "10", "11", ..., "15", "2", ...): ranef vectors and coefficient names follow them.
#
# Ordinary cases are fitted with glmer's defaults (glmerControl(): bobyqa on the nAGQ = 0
# stage, then Nelder_Mead on (theta, beta)). The multiple-membership case uses lme4's modular API
# in the same steps as glmer (`glmer_modular`, checked against glmer on cbpp when the script runs).
#
# Every case also has `tight`: the same model refitted with glmerControl(tolPwrss = 1e-13) and bobyqa
# (minqa's, lme4's "bobyqa") on both stages with rhoend = 1e-10 (`tight_control`). glmer's default
# tolPwrss = 1e-7 stops PIRLS early, and lme4's deviance function is then off the converged Laplace
# value (log|L|^2 is taken with the weights of the penultimate PIRLS iterate) by up to ~1e-5
# relative, mostly above it (cbpp at the default optimum: 184.0531328 against 184.0525724). So the
# default fit stops short (cbpp: deviance 184.053133 against the tight 184.052564, theta 0.64207
# against 0.64226) and its finite-difference-Hessian SEs are off by up to ~1.4% (cbpp_poisson_offset;
# cbpp's period4 1.3%). nAGQ > 1 is hardly affected. The tight values are the converged Laplace (or
# AGQ) fit; the top-level fields stay what default glmer gives. `tight` holds
# theta, beta, se, se_rx, hessian_used, hessian (optinfo$derivs$Hessian over (theta, beta), rows;
# null if none), deviance_laplace, deviance_resid, logLik, AIC, BIC, df_resid, objective, ranef,
# condsd, optimizer, opt_ctrl, tol_pwrss, warnings/messages, and devfun_points / devfun0_points at
# exactly the top-level points' theta and beta, from devfuns built with tolPwrss = 1e-13.
#
# Vector fields (theta, theta_names, fitted_first10, ranef, ...) are always JSON arrays, even of length 1.
suppressMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(TRUE)
outdir <- if (length(args) >= 1) args[1] else "Tests/MultilevelTests/Fixtures"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
started <- Sys.time()

## Data files -------------------------------------------------------------------------------

write_fixture <- function(d, file) write.csv(d, file.path(outdir, file), row.names = FALSE)

# Reads a fixture back as the engine's CSV reader types it: a column is text if any value is
# quoted (write.csv quotes every factor and character value), and text becomes a factor with
# levels sort(unique(.), method = "radix"). A bare TRUE/FALSE column stays logical here (the
# engine reads it as text with levels FALSE < TRUE; as a binomial response both mean TRUE = 1).
read_fixture <- function(file) {
  path <- file.path(outdir, file)
  raw <- read.csv(path, colClasses = "character", quote = "", na.strings = character(), check.names = FALSE)
  quoted <- vapply(raw, function(x) any(startsWith(x, "\"") & !(x %in% c("\"NA\"", "\"\""))), NA)
  d <- read.csv(path, stringsAsFactors = FALSE, colClasses = unname(ifelse(quoted, "character", NA)))
  for (v in names(d)[quoted]) d[[v]] <- factor(d[[v]], levels = sort(unique(na.omit(d[[v]])), method = "radix"))
  d
}

cb <- cbpp[, c("herd", "incidence", "size", "period")]
write_fixture(cb, "cbpp.csv")

# One row per animal: the first `incidence` animals of each herd-period are sick (y = 1).
rows <- rep(seq_len(nrow(cb)), cb$size)
pos <- sequence(cb$size)
cbbin <- data.frame(herd = cb$herd[rows], period = cb$period[rows], y = as.integer(pos <= cb$incidence[rows]))
cbbin$sick <- cbbin$y == 1
stopifnot(nrow(cbbin) == sum(cb$size), sum(cbbin$y) == sum(cb$incidence))
write_fixture(cbbin, "cbpp_binary.csv")

write_fixture(VerbAgg[, c("id", "item", "Anger", "Gender", "btype", "situ", "r2")], "verbagg.csv")
write_fixture(grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")], "grouseticks.csv")

# Multiple membership: every pupil has school1; about 30% also have a (different) school2,
# weighted 0.6 / 0.4; one pupil in one school has w1 = 1, w2 = 0, school2 NA. Areas crossed at random.
# logit(p) = -0.3 + 0.8 x + w1 u[school1] + w2 u[school2] + v[area], u ~ N(0, 0.7^2), v ~ N(0, 0.4^2).
set.seed(20260311)
n <- 1500; J <- 60; K <- 15
s1 <- sample(J, n, TRUE)
has2 <- runif(n) < 0.3
s2 <- ifelse(has2, (s1 + sample(J - 1, n, TRUE) - 1) %% J + 1, NA)
w1 <- ifelse(has2, 0.6, 1); w2 <- ifelse(has2, 0.4, 0)
area <- sample(K, n, TRUE)
x <- round(rnorm(n), 4)
u <- rnorm(J, sd = 0.7); v <- rnorm(K, sd = 0.4)
eta <- -0.3 + 0.8 * x + w1 * u[s1] + ifelse(has2, w2 * u[s2], 0) + v[area]
y <- rbinom(n, 1, plogis(eta))
write_fixture(data.frame(y, x, school1 = sprintf("s%02d", s1), school2 = ifelse(has2, sprintf("s%02d", s2), NA),
                         w1, w2, area = sprintf("a%02d", area)), "mm_binary.csv")

## Fitting helpers --------------------------------------------------------------------------

# Runs expr, collecting (and muffling) its warnings and messages; they are printed and recorded.
captured <- function(expr, label) {
  warns <- character(); msgs <- character()
  value <- withCallingHandlers(expr,
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  for (w in warns) cat(sprintf("  [%s] warning: %s\n", label, w))
  for (m in msgs) cat(sprintf("  [%s] message: %s\n", label, m))
  list(value = value, warnings = warns, messages = msgs)
}

arr <- function(x) I(unname(as.vector(x)))   # always a JSON array
nul <- function(x) if (length(x) == 0) NA else x   # NA is written as null

# glmer (lme4 1.1-31) step by step, for a glFormula result whose reTrms may have been edited:
# nAGQ = 0 stage by bobyqa over theta, then the nAGQ stage by Nelder_Mead over (theta, beta)
# from the stage-1 theta and fixed effects (what glmer's start = NULL amounts to: getStart takes
# pp$theta and pp$delb), derivatives and convergence checks as glmer makes them.
glmer_modular <- function(glmod, nAGQ = 1L, devFunOnly = FALSE, control = glmerControl()) {
  glmod$formula <- NULL
  devfun <- do.call(mkGlmerDevfun, c(glmod, list(verbose = 0L, control = control, nAGQ = 0L)))
  if (nAGQ == 0 && devFunOnly) return(devfun)
  opt <- optimizeGlmer(devfun, optimizer = control$optimizer[[1]], restart_edge = FALSE, boundary.tol = 0,
                       control = control$optCtrl, start = NULL, nAGQ = 0, verbose = 0L, calc.derivs = FALSE)
  devfun <- updateGlmerDevfun(devfun, glmod$reTrms, nAGQ = nAGQ)
  if (devFunOnly) return(devfun)
  rho <- environment(devfun)
  start <- list(theta = opt$par, fixef = rho$pp$delb)
  opt <- optimizeGlmer(devfun, optimizer = control$optimizer[[2]], restart_edge = control$restart_edge,
                       boundary.tol = control$boundary.tol, control = control$optCtrl, start = start,
                       nAGQ = nAGQ, verbose = 0L, stage = 2, calc.derivs = control$calc.derivs,
                       use.last.params = control$use.last.params)
  cc <- if (!control$calc.derivs) NULL else
    lme4:::checkConv(attr(opt, "derivs"), opt$par, ctrl = control$checkConv, lbound = rho$lower)
  mkMerMod(rho, opt, glmod$reTrms, fr = glmod$fr, lme4conv = cc)
}

# glFormula for the multiple-membership model: the placeholder term (1 | mm) (mm = school1, levels
# the sorted union of the membership columns) gets the weighted membership rows of Z', and Z' is
# rebuilt as the rbind of Ztlist in term order.
mm_glmod <- function(form, D, family, mmcols, wcols) {
  levs <- sort(unique(na.omit(unlist(lapply(D[mmcols], as.character)))), method = "radix")
  D$mm <- factor(as.character(D[[mmcols[1]]]), levels = levs)
  glmod <- glFormula(form, data = D, family = family)
  stopifnot(nrow(glmod$fr) == nrow(D))
  i <- j <- x <- c()
  for (k in seq_along(mmcols)) {
    g <- as.character(D[[mmcols[k]]]); w <- D[[wcols[k]]]; ok <- !is.na(g) & w != 0
    i <- c(i, match(g[ok], levs)); j <- c(j, which(ok)); x <- c(x, w[ok])
  }
  Zmm <- sparseMatrix(i = i, j = j, x = x, dims = c(length(levs), nrow(D)), dimnames = list(levs, NULL))
  k <- which(names(glmod$reTrms$cnms) == "mm"); stopifnot(length(k) == 1)
  Gp <- glmod$reTrms$Gp; stopifnot(Gp[k + 1] - Gp[k] == length(levs))
  glmod$reTrms$Ztlist[[k]] <- Zmm
  Zt <- as(do.call(rbind, unname(glmod$reTrms$Ztlist)), "CsparseMatrix")
  stopifnot(identical(dim(Zt), dim(glmod$reTrms$Zt)))
  dimnames(Zt) <- dimnames(glmod$reTrms$Zt)
  glmod$reTrms$Zt <- Zt
  glmod
}

# A deviance function evaluated at several points. Each call starts PIRLS from the previous
# call's u, so every point is evaluated twice and the second value kept; a fresh devfun, points in
# reverse order and one call each, shows how much the values depend on that state (maxdiff).
eval_points <- function(make_devfun, pars) {
  f <- make_devfun()
  vals <- vapply(pars, function(p) { f(p); as.numeric(f(p)) }, 0)
  g <- make_devfun()
  again <- rev(vapply(rev(pars), function(p) as.numeric(g(p)), 0))
  list(values = vals, maxdiff = max(abs(vals - again)))
}

devfun_points <- function(make_devfun, make_devfun0, theta, beta) {
  b2 <- beta; b2[1] <- b2[1] + 0.1
  pts <- list(list(theta, beta), list(theta * 1.3, beta), list(theta * 0.7, b2))
  a <- eval_points(make_devfun, lapply(pts, function(p) c(p[[1]], p[[2]])))
  pts0 <- list(theta, theta * 1.3)
  b <- eval_points(make_devfun0, pts0)
  list(devfun_points = lapply(seq_along(pts), function(i)
         list(theta = arr(pts[[i]][[1]]), beta = arr(pts[[i]][[2]]), value = a$values[i])),
       devfun0_points = lapply(seq_along(pts0), function(i) list(theta = arr(pts0[[i]]), value = b$values[i])),
       devfun_state_maxdiff = a$maxdiff, devfun0_state_maxdiff = b$maxdiff)
}

# The reference record of one fit.
#   se: lme4's default vcov (the finite-difference Hessian's when it was computed and usable);
#   se_rx: from RX (vcov(use.hessian = FALSE)); hessian_used: a Hessian over (theta, beta) exists.
#   deviance_laplace = -2 logLik (summary's "deviance"; the AGQ approximation when nAGQ > 1);
#   deviance_resid = deviance(m), the sum of squared deviance residuals; objective = devcomp dev.
#   ranef / condsd: each factor's conditional modes and conditional SDs (first column), in level
#   order (ranef_levels); fitted_first10 on the response scale (a proportion for binomial).
ref <- function(m, case, fitlog) {
  th <- getME(m, "theta")
  h <- m@optinfo$derivs$Hessian
  vc <- captured(sqrt(diag(as.matrix(vcov(m)))), paste(case$name, "vcov"))
  vr <- captured(sqrt(diag(as.matrix(vcov(m, use.hessian = FALSE)))), paste(case$name, "vcov RX"))
  re <- ranef(m, condVar = TRUE)
  vcd <- as.data.frame(VarCorr(m))
  eta <- tryCatch(predict(m, type = "link"), error = function(e) m@resp$eta)
  c(case, list(
    nobs = nobs(m), ngroups = as.list(ngrps(m)),
    theta = arr(th), theta_names = arr(names(th)),
    beta = as.list(fixef(m)), se = as.list(vc$value), se_rx = as.list(vr$value),
    hessian_used = !is.null(h) && nrow(h) > length(th),
    logLik = as.numeric(logLik(m)), AIC = AIC(m), BIC = BIC(m), df = attr(logLik(m), "df"),
    deviance_laplace = -2 * as.numeric(logLik(m)), deviance_resid = deviance(m),
    df_resid = df.residual(m), objective = unname(m@devcomp$cmp[["dev"]]),
    singular = isSingular(m),
    varcorr = lapply(seq_len(nrow(vcd)), function(r)
      list(grp = vcd$grp[r], var1 = vcd$var1[r], var2 = vcd$var2[r], vcov = vcd$vcov[r], sdcor = vcd$sdcor[r])),
    ranef = lapply(re, function(r) arr(r[[1]])),
    ranef_levels = lapply(re, function(r) arr(rownames(r))),
    condsd = lapply(re, function(r) arr(sqrt(attr(r, "postVar")[1, 1, ]))),
    fitted_first10 = arr(fitted(m)[1:10]), eta_first10 = arr(eta[1:10]),
    optimizer_messages = nul(m@optinfo$conv$lme4$messages),
    optimizer_warnings = nul(unlist(m@optinfo$warnings)),
    fit_warnings = nul(fitlog$warnings), fit_messages = nul(fitlog$messages),
    vcov_warnings = nul(c(vc$warnings, vr$warnings))))
}

# The tight refit: converged PIRLS (tolPwrss reaches the devfun through mkGlmerDevfun's rho$tolPwrss,
# which updateGlmerDevfun keeps) and bobyqa on both stages run down to rhoend = 1e-10.
tight_control <- glmerControl(tolPwrss = 1e-13, optimizer = c("bobyqa", "bobyqa"),
                              optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
tight_fields <- c("theta", "beta", "se", "se_rx", "hessian_used", "deviance_laplace", "deviance_resid",
                  "logLik", "AIC", "BIC", "df_resid", "objective", "ranef", "condsd")

# The `tight` record: fit is captured(tight fit), dp the devfun points of the tight devfuns.
tight_ref <- function(name, fit, dp) {
  m <- fit$value
  r <- ref(m, list(name = paste(name, "tight")), fit)
  h <- m@optinfo$derivs$Hessian
  c(r[tight_fields],
    list(hessian = if (is.null(h)) NA else lapply(seq_len(nrow(h)), function(i) arr(h[i, ])),
         optimizer = arr(tight_control$optimizer), opt_ctrl = tight_control$optCtrl,
         tol_pwrss = tight_control$tolPwrss,
         feval = nul(m@optinfo$feval)),
    r[c("optimizer_messages", "optimizer_warnings", "fit_warnings", "fit_messages", "vcov_warnings")],
    dp)
}

# A case fitted by glmer itself; devfuns from glmer(devFunOnly = TRUE).
glmer_case <- function(name, file, formula, family, nAGQ = 1L, extra = list()) {
  cat(sprintf("%s: %s (%s/%s, nAGQ %d)\n", name, formula, family$family, family$link, nAGQ))
  t0 <- Sys.time()
  D <- read_fixture(file)
  f <- as.formula(formula)
  fit <- captured(glmer(f, data = D, family = family, nAGQ = nAGQ), name)
  m <- fit$value
  case <- c(list(name = name, file = file, formula = formula, family = family$family, link = family$link,
                 nAGQ = nAGQ), extra)
  r <- ref(m, case, fit)
  dp <- devfun_points(function() glmer(f, data = D, family = family, nAGQ = nAGQ, devFunOnly = TRUE),
                      function() glmer(f, data = D, family = family, nAGQ = 0L, devFunOnly = TRUE),
                      unname(getME(m, "theta")), unname(fixef(m)))
  tfit <- captured(glmer(f, data = D, family = family, nAGQ = nAGQ, control = tight_control), paste(name, "tight"))
  tdp <- devfun_points(function() glmer(f, data = D, family = family, nAGQ = nAGQ, control = tight_control, devFunOnly = TRUE),
                       function() glmer(f, data = D, family = family, nAGQ = 0L, control = tight_control, devFunOnly = TRUE),
                       unname(getME(m, "theta")), unname(fixef(m)))
  r <- c(r, dp, list(tight = tight_ref(name, tfit, tdp), seconds = round(as.numeric(difftime(Sys.time(), t0, units = "secs")), 1)))
  report(r)
  r
}

report <- function(r) {
  cat(sprintf("  deviance %.6f  theta %s  beta %s  (%.1f s)\n", r$deviance_laplace,
              paste(signif(r$theta, 6), collapse = " "), paste(signif(unlist(r$beta), 6), collapse = " "), r$seconds))
  t <- r$tight
  cat(sprintf("  tight    %.6f  theta %s  beta %s  (deviance %+.3g, max rel se diff %.3g)\n", t$deviance_laplace,
              paste(signif(t$theta, 6), collapse = " "), paste(signif(unlist(t$beta), 6), collapse = " "),
              t$deviance_laplace - r$deviance_laplace, max(abs(unlist(t$se) / unlist(r$se) - 1))))
}

## Check: the modular pipeline is glmer --------------------------------------------------------

local({
  D <- read_fixture("cbpp.csv")
  f <- cbind(incidence, size - incidence) ~ period + (1 | herd)
  a <- suppressMessages(glmer(f, data = D, family = binomial))
  b <- glmer_modular(glFormula(f, data = D, family = binomial))
  stopifnot(identical(getME(a, "theta"), getME(b, "theta")), identical(fixef(a), fixef(b)),
            identical(logLik(a)[1], logLik(b)[1]), identical(as.matrix(vcov(a)), as.matrix(vcov(b))))
  a <- suppressMessages(glmer(f, data = D, family = binomial, control = tight_control))
  b <- glmer_modular(glFormula(f, data = D, family = binomial), control = tight_control)
  stopifnot(identical(getME(a, "theta"), getME(b, "theta")), identical(fixef(a), fixef(b)),
            identical(logLik(a)[1], logLik(b)[1]), identical(as.matrix(vcov(a)), as.matrix(vcov(b))))
  # tolPwrss reaches the devfuns (kept by updateGlmerDevfun) in both pipelines
  for (k in 0:1) stopifnot(
    environment(glmer(f, data = D, family = binomial, nAGQ = k, control = tight_control, devFunOnly = TRUE))$tolPwrss == 1e-13,
    environment(glmer_modular(glFormula(f, data = D, family = binomial), nAGQ = k, devFunOnly = TRUE,
                              control = tight_control))$tolPwrss == 1e-13)
  cat("glmer_modular reproduces glmer on cbpp exactly (default and tight control)\n")
})

## Cases ------------------------------------------------------------------------------------

cbf <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
cases <- list(
  glmer_case("cbpp", "cbpp.csv", cbf, binomial()),
  local({
    # lme4's nAGQ > 1 deviance leaves out the saturated model's -2 log-likelihood (Laplace keeps it):
    # objective + saturated_m2loglik is the comparable -2 log L (183.97 here against Laplace's 184.05).
    D <- read_fixture("cbpp.csv")
    sat <- -2 * sum(dbinom(D$incidence, D$size, D$incidence / D$size, log = TRUE))
    glmer_case("cbpp_agq9", "cbpp.csv", cbf, binomial(), nAGQ = 9L, extra = list(saturated_m2loglik = sat,
      note = "lme4's AGQ deviance (objective, logLik, AIC, BIC, devfun_points) omits the saturated -2 log-likelihood saturated_m2loglik = -2 sum log dbinom(incidence, size, incidence/size); the Laplace cases include it; devfun0_points are the nAGQ = 0 (Laplace-scale) devfun"))
  }),
  glmer_case("cbpp_probit", "cbpp.csv", cbf, binomial(link = "probit")),
  glmer_case("cbpp_cloglog", "cbpp.csv", cbf, binomial(link = "cloglog")),
  glmer_case("cbpp_poisson_offset", "cbpp.csv", "incidence ~ period + offset(log(size)) + (1 | herd)", poisson()),
  glmer_case("verbagg", "verbagg.csv", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", binomial()),
  local({
    D <- read_fixture("grouseticks.csv")
    glmer_case("grouseticks", "grouseticks.csv", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)",
               poisson(), extra = list(height_mean = mean(D$HEIGHT), height_sd = sd(D$HEIGHT)))
  }),
  local({
    name <- "mm_binary"; file <- "mm_binary.csv"
    formula <- "y ~ x + (1 | mm(school1, school2, weights = cbind(w1, w2))) + (1 | area)"
    rform <- y ~ x + (1 | mm) + (1 | area)
    cat(sprintf("%s: %s (binomial/logit, nAGQ 1, modular API)\n", name, formula))
    t0 <- Sys.time()
    D <- read_fixture(file)
    G <- function() mm_glmod(rform, D, binomial(), c("school1", "school2"), c("w1", "w2"))
    fit <- captured(glmer_modular(G(), nAGQ = 1L), name)
    m <- fit$value
    case <- list(name = name, file = file, formula = formula, family = "binomial", link = "logit", nAGQ = 1L,
                 r_formula = paste(deparse(rform), collapse = ""),
                 memberships = list(factors = arr(c("school1", "school2")), weights = arr(c("w1", "w2"))),
                 simulation = list(seed = 20260311, pupils = n, schools = J, areas = K, intercept = -0.3, slope = 0.8,
                                   school_sd = 0.7, area_sd = 0.4, second_school_rate = 0.3))
    r <- ref(m, case, fit)
    dp <- devfun_points(function() glmer_modular(G(), nAGQ = 1L, devFunOnly = TRUE),
                        function() glmer_modular(G(), nAGQ = 0L, devFunOnly = TRUE),
                        unname(getME(m, "theta")), unname(fixef(m)))
    tfit <- captured(glmer_modular(G(), nAGQ = 1L, control = tight_control), paste(name, "tight"))
    tdp <- devfun_points(function() glmer_modular(G(), nAGQ = 1L, devFunOnly = TRUE, control = tight_control),
                         function() glmer_modular(G(), nAGQ = 0L, devFunOnly = TRUE, control = tight_control),
                         unname(getME(m, "theta")), unname(fixef(m)))
    r <- c(r, dp, list(tight = tight_ref(name, tfit, tdp), seconds = round(as.numeric(difftime(Sys.time(), t0, units = "secs")), 1)))
    report(r)
    r
  }),
  glmer_case("binary01", "cbpp_binary.csv", "y ~ period + (1 | herd)", binomial(),
             extra = list(note = "one row per animal of cbpp: theta and beta equal case cbpp's up to optimiser noise; logLik lacks the binomial coefficients' log choose(size, incidence)")),
  glmer_case("binary_logical", "cbpp_binary.csv", "sick ~ period + (1 | herd)", binomial(),
             extra = list(note = "sick is unquoted TRUE/FALSE in the CSV; R reads it as logical (TRUE = 1); as text with levels FALSE < TRUE (first level = failure) the fit is the same"))
)

write_json(cases, file.path(outdir, "glmm_reference.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null")
cat(sprintf("wrote %d cases in %.1f s\n", length(cases), as.numeric(difftime(Sys.time(), started, units = "secs"))))

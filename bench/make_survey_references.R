# References for sampling-weighted fits (issue 13), from R's survey package data:
#  - apiclus2 (two-stage: 40 districts, then schools within them) and apistrat (schools
#    stratified by type) as CSV fixtures;
#  - svyglm's linearised SEs of weighted least squares with clustering (and strata), the
#    reference for mlm's sandwich on a model without random effects;
#  - an independent implementation of the two-level pseudo-likelihood (Pfeffermann et al. 1998,
#    Rabe-Hesketh & Skrondal 2006): each cluster's integral by adaptive Gauss-Hermite quadrature
#    (the mode found numerically by optimize, 30 nodes), maximised by nlminb over
#    (beta, log tau, log sigma); for the three weight scalings;
#  - replicate weights (JK1 on apiclus2, Fay's BRR on apistrat) with svyglm's replicate SEs, and the
#    pseudo-likelihood's JK1 SEs from the R implementation refitted on each replicate.
# Usage: Rscript bench/make_survey_references.R [OUT_DIR]   (default Tests/MultilevelTests/Fixtures)
# Needs: r-cran-survey, r-cran-lme4, r-cran-jsonlite.
suppressMessages({ library(survey); library(jsonlite); library(lme4) })
args <- commandArgs(TRUE)
out <- if (length(args) >= 1) args[1] else "Tests/MultilevelTests/Fixtures"
data(api)

# apiclus2: districts sampled (40 of 757), then up to 5 schools in each.
d <- apiclus2
nj <- ave(rep(1, nrow(d)), d$dnum, FUN = sum)
d$w_district <- as.numeric(d$fpc1) / length(unique(d$dnum))
d$w_school <- as.numeric(d$fpc2) / nj
stopifnot(max(abs(d$w_district * d$w_school - d$pw)) < 1e-8)
clus2 <- data.frame(dnum = d$dnum, snum = d$snum, api00 = d$api00, ell = d$ell, meals = d$meals,
                    w_school = d$w_school, w_district = d$w_district, pw = d$pw, fpc1 = as.numeric(d$fpc1))
s <- apistrat
strat <- data.frame(dnum = s$dnum, snum = s$snum, stype = as.character(s$stype), api00 = s$api00,
                    ell = s$ell, meals = s$meals, pw = s$pw)
# Replicate weights as survey makes them: delete-one-district jackknife on apiclus2 (jk1..jk40),
# Fay's BRR (rho = 0.5, the PSUs of each stratum merged into two halves) on apistrat (fay1..).
rep_clus2 <- as.svrepdesign(svydesign(ids = ~dnum, weights = ~pw, data = clus2), type = "JK1", mse = TRUE)
rep_strat <- as.svrepdesign(svydesign(ids = ~dnum, strata = ~stype, weights = ~pw, data = strat, nest = TRUE),
                            type = "Fay", fay.rho = 0.5, mse = TRUE, large = "merge")
jk <- weights(rep_clus2, "analysis"); colnames(jk) <- paste0("jk", seq_len(ncol(jk)))
fay <- weights(rep_strat, "analysis"); colnames(fay) <- paste0("fay", seq_len(ncol(fay)))
write.csv(cbind(clus2, jk), file.path(out, "apiclus2.csv"), row.names = FALSE)
write.csv(cbind(strat, fay), file.path(out, "apistrat.csv"), row.names = FALSE)

glm_ref <- function(fit) list(beta = as.list(coef(fit)), se = as.list(sqrt(diag(vcov(fit)))))
# Weighted least squares, PSUs with replacement: svyglm's linearisation; and its replicate variances.
ref_clus2 <- glm_ref(svyglm(api00 ~ ell + meals, design = svydesign(ids = ~dnum, weights = ~pw, data = clus2)))
ref_strat <- glm_ref(svyglm(api00 ~ ell + meals,
                            design = svydesign(ids = ~dnum, strata = ~stype, weights = ~pw, data = strat, nest = TRUE)))
ref_clus2_jk1 <- glm_ref(svyglm(api00 ~ ell + meals, design = rep_clus2))
ref_clus2_fpc <- glm_ref(svyglm(api00 ~ ell + meals, design = svydesign(ids = ~dnum, weights = ~pw, fpc = ~fpc1, data = clus2)))
ref_strat_fay <- glm_ref(svyglm(api00 ~ ell + meals, design = rep_strat))

# Gauss-Hermite nodes and weights (Golub-Welsch), for integrals against exp(-t^2).
gh <- function(n) {
  b <- sqrt(seq_len(n - 1) / 2)
  J <- matrix(0, n, n)
  J[cbind(1:(n - 1), 2:n)] <- b
  J[cbind(2:n, 1:(n - 1))] <- b
  e <- eigen(J, symmetric = TRUE)
  list(t = e$values, w = sqrt(pi) * e$vectors[1, ]^2)
}
nodes <- gh(30)

X <- cbind(1, clus2$ell, clus2$meals); y <- clus2$api00
cl <- split(seq_len(nrow(clus2)), clus2$dnum)
w2 <- sapply(cl, function(i) clus2$w_district[i[1]])

pseudo_loglik <- function(par, scaling) {
  beta <- par[1:3]; tau <- exp(par[4]); sigma <- exp(par[5])
  total <- 0
  for (k in seq_along(cl)) {
    i <- cl[[k]]; w <- clus2$w_school[i]
    c <- switch(scaling, size = length(i) / sum(w), effective = sum(w) / sum(w^2), none = 1)
    ws <- c * w; r <- y[i] - X[i, , drop = FALSE] %*% beta
    # log of the integrand in b: sum_i ws_i log N(r_i; b, sigma^2) + log N(b; 0, tau^2)
    h <- function(b) sapply(b, function(bb) sum(ws * dnorm(r, bb, sigma, log = TRUE)) + dnorm(bb, 0, tau, log = TRUE))
    mode <- optimize(h, c(-10 * tau - 10 * sigma, 10 * tau + 10 * sigma), maximum = TRUE, tol = 1e-12)$maximum
    e <- 1e-3 * (tau + sigma)
    curv <- -(h(mode + e) - 2 * h(mode) + h(mode - e)) / e^2
    sd <- 1 / sqrt(curv)
    b <- mode + sqrt(2) * sd * nodes$t
    lv <- h(b) + nodes$t^2
    m <- max(lv)
    total <- total + w2[k] * (m + log(sum(nodes$w * exp(lv - m))) + log(sqrt(2) * sd))
  }
  total
}

start_fit <- lmer(api00 ~ ell + meals + (1 | dnum), data = clus2, REML = FALSE)
start <- c(fixef(start_fit), log(sqrt(VarCorr(start_fit)$dnum[1])), log(sigma(start_fit)))
maximise <- function(scaling, start) {
  f <- function(par) -pseudo_loglik(par, scaling)
  o <- nlminb(start, f, control = list(rel.tol = 1e-15, x.tol = 1e-12, eval.max = 2000, iter.max = 1000))
  optim(o$par, f, method = "BFGS", control = list(reltol = 1e-16, maxit = 1000, ndeps = rep(1e-5, 5),
                                                  parscale = c(10, 0.1, 0.1, 0.01, 0.01)))
}
pml <- lapply(c(size = "size", effective = "effective", none = "none"), function(scaling) {
  o <- maximise(scaling, start)
  cat(sprintf("%-9s logPL %.10f beta %s tau2 %.8g sigma2 %.8g\n", scaling, -o$value,
              paste(sprintf("%.8g", o$par[1:3]), collapse = " "), exp(2 * o$par[4]), exp(2 * o$par[5])))
  list(beta = as.list(setNames(o$par[1:3], c("(Intercept)", "ell", "meals"))), tau2 = exp(2 * o$par[4]),
       sigma2 = exp(2 * o$par[5]), logPseudoLik = -o$value)
})
# The pseudo-likelihood's JK1 standard errors: each replicate's district weights (the jackknife
# deletes one district and reweights the others by 40/39) refitted, (R - 1)/R times the sum of
# squared deviations from the full-sample estimates; size scaling.
full <- pml$size
est <- function(o) c(o$par[1:3], exp(2 * o$par[4]), exp(2 * o$par[5]))
full_par <- c(unlist(full$beta), 0.5 * log(full$tau2), 0.5 * log(full$sigma2))
w2_full <- w2
reps <- sapply(seq_len(ncol(jk)), function(r) {
  factor <- sapply(cl, function(i) jk[i[1], r] / clus2$pw[i[1]])
  w2 <<- w2_full * factor
  e <- est(maximise("size", full_par))
  w2 <<- w2_full
  e
})
dev <- reps - est(list(par = full_par))
jk1_se <- sqrt((ncol(jk) - 1) / ncol(jk) * rowSums(dev^2))
pml_jk1 <- list(se = as.list(setNames(jk1_se[1:3], c("(Intercept)", "ell", "meals"))), tau2_se = jk1_se[4], sigma2_se = jk1_se[5])
cat(sprintf("JK1 SEs: %s\n", paste(sprintf("%.8g", jk1_se), collapse = " ")))

writeLines(toJSON(list(svyglm_apiclus2 = ref_clus2, svyglm_apistrat = ref_strat, pml_apiclus2 = pml,
                       svyglm_apiclus2_jk1 = ref_clus2_jk1, svyglm_apiclus2_fpc = ref_clus2_fpc, svyglm_apistrat_fay = ref_strat_fay, pml_apiclus2_jk1 = pml_jk1,
                       note = "bench/make_survey_references.R: svyglm linearised SEs; PML by adaptive Gauss-Hermite (30 nodes) and nlminb/BFGS"),
                  digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(out, "survey_reference.json"))

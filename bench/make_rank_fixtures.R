# lme4's rank decision on nearly collinear predictors (issue 10, defect 7), for RankDeficiencyTests.
# x2 = Days + 1e-4 * noise: lme4's qr(X, tol = 1e-7) keeps both columns (remaining norm of x2
# ~ 5e-6 of its norm; the old rule dropped it below 1e-5); x3 = Days + 1e-9 * noise is below the tolerance and dropped.
# Usage: Rscript bench/make_rank_fixtures.R Tests/MultilevelTests/Fixtures
suppressMessages({library(lme4); library(jsonlite)})
outdir <- commandArgs(TRUE)[1]
d <- read.csv(file.path(outdir, "sleepstudy.csv"))
i <- seq_len(nrow(d))
noise <- ((i * 7919) %% 1000) / 1000 - 0.5
d$x2 <- d$Days + 1e-4 * noise
d$x3 <- d$Days + 1e-9 * noise
write.csv(d, file.path(outdir, "nearcollinear.csv"), row.names = FALSE)
d <- read.csv(file.path(outdir, "nearcollinear.csv"))   # the fit sees what the file holds
fit <- function(f) {
  m <- lmer(f, d)
  list(formula = paste(deparse(f), collapse = ""), rank = qr(getME(m, "X"), tol = 1e-7)$rank,
       kept = colnames(getME(m, "X")), dropped = names(attr(getME(m, "X"), "col.dropped")),
       beta = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))), sigma = sigma(m),
       theta = unname(getME(m, "theta")), REMLcrit = REMLcrit(m))
}
res <- list(fit(Reaction ~ Days + x2 + (1 | Subject)), fit(Reaction ~ Days + x3 + (1 | Subject)))
write_json(res, file.path(outdir, "nearcollinear.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)

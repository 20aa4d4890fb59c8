# Times lmerTest's Satterthwaite tests on the file mlm reads: the lmer fit, then summary() and
# anova(type = 3) with ddf = "Satterthwaite" (its Hessian and Jacobian are computed in the fit,
# lmerTest::lmer; the time of lme4::lmer alone is taken too).
# Usage: Rscript bench/lmertest_ddf.R FILE.(csv|h5) "FORMULA" [REPEATS]
# Prints one line of JSON: lme4's and lmerTest's median fit times, the tests' time, each β's df, θ̂.
suppressMessages({ library(lme4); library(lmerTest); library(jsonlite) })
args <- commandArgs(TRUE)
file <- args[1]; text <- args[2]
repeats <- if (length(args) >= 3) as.integer(args[3]) else 1
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(here, "read_data.R"))
d <- read_data(file)
f <- as.formula(text)
time_of <- function(expr) { t0 <- proc.time()[["elapsed"]]; force(expr); proc.time()[["elapsed"]] - t0 }
plain <- numeric(repeats); tested <- numeric(repeats); tests <- numeric(repeats)
for (r in seq_len(repeats)) {
  plain[r] <- time_of(lme4::lmer(f, data = d, REML = TRUE))
  t0 <- proc.time()[["elapsed"]]
  m <- lmerTest::lmer(f, data = d, REML = TRUE)
  tested[r] <- proc.time()[["elapsed"]] - t0
  t1 <- proc.time()[["elapsed"]]
  co <- summary(m, ddf = "Satterthwaite")$coefficients
  an <- anova(m, type = 3, ddf = "Satterthwaite")
  tests[r] <- proc.time()[["elapsed"]] - t1
}
cat(toJSON(list(lmer = median(plain), lmertest_fit = median(tested), lmertest_tests = median(tests),
                df = unname(co[, "df"]), names = rownames(co), theta = unname(getME(m, "theta"))),
           digits = NA, auto_unbox = TRUE), "\n")

# Fits a model with lme4 on the file mlm reads, times lmer, and writes the result as JSON.
# Usage: Rscript bench/lme4_fit.R FILE.(csv|h5) "FORMULA" REML|ML [REPEATS] [OUT.json] [FAMILY]
# FAMILY (binomial or poisson) fits with glmer (Laplace, its default settings) instead of lmer.
#
# CSV: a column quoted in the first data row is a string column, made a factor with levels in
# C-locale order (as mlm reads R's write.csv files). HDF5: the 1-D datasets of the group "data"
# (mlm simulate's layout), read with hdf5r; grouping columns become factors in numeric order.
# A term (1 | mm(g1, g2, ..., weights = cbind(w1, w2, ...))) is fitted with lme4's modular API:
# a placeholder factor's rows of Z' are replaced by the weighted memberships.
# Prints one line; the JSON holds the criterion, θ, the lmer times and the BLAS.
suppressMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(TRUE)
file <- args[1]; text <- args[2]; reml <- args[3] != "ML"
repeats <- if (length(args) >= 4) as.integer(args[4]) else 1
out <- if (length(args) >= 5) args[5] else NA
family <- if (length(args) >= 6) get(args[6]) else NULL

# The folder of this script, to source its neighbours whatever the working directory.
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(here, "read_data.R"))

d <- read_data(file)
# mm(g1, ..., weights = cbind(w1, ...)) → placeholder factor `mm`, remembered columns.
mm <- regmatches(text, regexpr("mm\\([^|]*weights *= *cbind\\([^)]*\\)\\)", text))
if (length(mm)) {
  inner <- sub("^mm\\((.*)\\)$", "\\1", mm)
  mmcols <- trimws(strsplit(sub(",? *weights.*$", "", inner), ",")[[1]])
  wcols <- trimws(strsplit(sub("^.*cbind\\((.*)\\)$", "\\1", inner), ",")[[1]])
  text <- sub(mm, "mm", text, fixed = TRUE)
}
form <- as.formula(text)
groups <- unique(unlist(lapply(findbars(form), function(b) all.vars(b[[3]]))))
for (v in setdiff(groups, "mm")) if (!is.factor(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))

fit <- function() {
  if (!is.null(family)) { stopifnot(!length(mm)); return(glmer(form, d, family = family)) }
  if (!length(mm)) return(lmer(form, d, REML = reml))
  levs <- sort(unique(na.omit(unlist(d[mmcols]))))
  d$mm <- factor(d[[mmcols[1]]], levels = levs)
  lf <- lFormula(form, d, REML = reml)
  n <- nrow(d); i <- j <- x <- c()
  for (k in seq_along(mmcols)) {
    g <- d[[mmcols[k]]]; w <- d[[wcols[k]]]; ok <- !is.na(g) & w != 0
    i <- c(i, match(g[ok], levs)); j <- c(j, which(ok)); x <- c(x, w[ok])
  }
  Zmm <- sparseMatrix(i = i, j = j, x = x, dims = c(length(levs), n))
  k <- which(names(lf$reTrms$cnms) == "mm")
  lf$reTrms$Ztlist[[k]] <- Zmm
  lf$reTrms$Zt <- do.call(rbind, lf$reTrms$Ztlist)   # Zt is the terms' blocks stacked in order
  devfun <- do.call(mkLmerDevfun, lf)
  mkMerMod(environment(devfun), optimizeLmer(devfun), lf$reTrms, fr = lf$fr)
}

times <- numeric(repeats)
for (r in seq_len(repeats)) times[r] <- system.time(m <- fit())[["elapsed"]]
criterion <- if (!is.null(family)) -2 * as.numeric(logLik(m)) else if (reml) REMLcrit(m) else deviance(m)
res <- list(criterion = criterion, theta = unname(getME(m, "theta")), seconds = times,
            median = median(times), evaluations = m@optinfo$feval, BLAS = sessionInfo()$BLAS)
if (!is.na(out)) write_json(res, out, auto_unbox = TRUE, digits = NA)
cat(sprintf("lme4 %s: lmer seconds %s (median %.3f), %d evaluations, criterion %.6f; BLAS %s\n",
            if (reml) "REML" else "ML", paste(sprintf("%.3f", times), collapse = " "), median(times),
            m@optinfo$feval, criterion, res$BLAS))

# Times lme4's parametric bootstrap (bootMer) on the file mlm reads, for comparison with mlm's bootstrap.
# Usage: Rscript bench/lme4_bootstrap.R FILE.(csv|h5) "FORMULA" NSIM      (REML; ML=1 in the environment for ML)
#
# Data are read as bench/lme4_fit.R reads them (CSV: a column quoted in the first data row is a
# factor with levels in C-locale order; HDF5: the 1-D datasets of the group "data", via hdf5r;
# grouping columns become factors). Multiple-membership terms are not supported here.
# Fits with lmer, then times bootMer(m, θ/β/σ, nsim = NSIM, seed = 1) (the fit itself is not timed).
# Prints one JSON line: {"nsim": N, "seconds": s, "replicates_per_second": r}.
suppressMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(TRUE)
file <- args[1]; text <- args[2]; nsim <- as.integer(args[3])
reml <- Sys.getenv("ML") != "1"

# The folder of this script, to source its neighbours whatever the working directory.
here <- dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
source(file.path(here, "read_data.R"))

d <- read_data(file)
form <- as.formula(text)
groups <- unique(unlist(lapply(findbars(form), function(b) all.vars(b[[3]]))))
for (v in groups) if (!is.factor(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))

m <- lmer(form, d, REML = reml)
FUN <- function(x) c(getME(x, "theta"), fixef(x), sigma(x))
seconds <- system.time(bb <- bootMer(m, FUN, nsim = nsim, seed = 1))[["elapsed"]]
failed <- attr(bb, "bootFail")
if (!is.null(failed) && failed > 0) message(failed, " of ", nsim, " bootstrap refits failed")
cat(toJSON(list(nsim = nsim, seconds = seconds, replicates_per_second = nsim / seconds),
           auto_unbox = TRUE, digits = NA), "\n", sep = "")

# Times lme4's lmer on a CSV file, reading it as mlm does (quoted columns → factors, levels in C-locale order).
# Usage: Rscript bench/lme4_fit.R FILE.csv "FORMULA" [ML|REML] [REPEATS]
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
file <- args[1]; form <- as.formula(args[2]); reml <- !(length(args) >= 3 && args[3] == "ML")
repeats <- if (length(args) >= 4) as.integer(args[4]) else 5
# A column quoted in the first data row is a string column (as mlm reads R's write.csv files).
header <- strsplit(readLines(file, n = 2), ",", fixed = TRUE)
quoted <- grepl('^"', header[[2]])
d <- read.csv(file, colClasses = ifelse(quoted, "character", NA))
for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(na.omit(d[[v]])), method = "radix"))
times <- numeric(repeats)
for (r in seq_len(repeats)) times[r] <- system.time(m <- lmer(form, d, REML = reml))[["elapsed"]]
cat(sprintf("lme4 %s fit seconds: %s (median %.3f); criterion %.6f; BLAS %s\n", if (reml) "REML" else "ML",
            paste(sprintf("%.3f", times), collapse = " "), median(times), if (reml) REMLcrit(m) else deviance(m),
            sessionInfo()$BLAS))

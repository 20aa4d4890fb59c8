# Reference results from lme4 for mlm's reporting features: likelihood-ratio anova tables,
# conditional variances of the random effects, and predictions on new data.
# Usage: Rscript bench/make_report_fixtures.R Tests/MultilevelTests/Fixtures
#
# Reads exam.csv, sleepstudy.csv and penicillin.csv from that directory (a column quoted in the first
# data row is a factor, levels in C-locale order, as mlm reads them) and writes, into the same directory:
#   exam_anova.json    REML fits m0: normexam ~ 1 + (1 | school), m1: normexam ~ standLRT + (1 | school),
#                      m2: normexam ~ standLRT + (standLRT | school); "models" = rows of anova(m0, m1, m2)
#                      (lme4 refits with ML), "anova_two" = rows of anova(m1, m0) (arguments reversed;
#                      lme4 sorts the rows by npar), "boundary_note" = 50:50 chi-square(1)/(2) mixture
#                      p-value for m2 vs m1 (the test of a variance + covariance on the boundary).
#   condvar.json       ranef(m, condVar = TRUE) for sleepstudy (Reaction ~ Days + (Days | Subject)) and
#                      penicillin (diameter ~ 1 + (1 | plate) + (1 | sample)): as.data.frame rows
#                      {grpvar, term, grp, condval, condsd} and, per grouping factor, the per-level
#                      conditional covariance matrices (row-major flattened) in factor-level order.
#   exam_newdata.csv   rows 1..40 and 1001..1040 of exam.csv with school replaced by "new1".."new10"
#                      in every 8th row (levels not in the data); written by write.csv(row.names = FALSE).
#   exam_predict.json  predict() on exam_newdata.csv for m2 and for the cross-level model
#                      normexam ~ standLRT * schavg + sex + schgend + (standLRT | school) (both REML):
#                      "conditional" (allow.new.levels = TRUE: new schools get the population prediction)
#                      and "population" (re.form = NA).
# JSON: jsonlite, digits = NA (full precision), auto_unbox = TRUE, NA written as null.
suppressMessages({ library(lme4); library(jsonlite) })
args <- commandArgs(TRUE)
dir <- if (length(args) >= 1) args[1] else "Tests/MultilevelTests/Fixtures"

read_data <- function(file) {
  header <- strsplit(readLines(file, n = 2), ",", fixed = TRUE)
  quoted <- grepl('^"', header[[2]])
  d <- read.csv(file, colClasses = ifelse(quoted, "character", NA))
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(na.omit(d[[v]])), method = "radix"))
  d
}
ftext <- function(f) paste(deparse(f, width.cutoff = 500L), collapse = "")
save_json <- function(x, name) {
  path <- file.path(dir, name)
  write_json(x, path, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null", null = "null")
  cat("wrote", path, "\n")
}
num <- function(x) if (is.na(x)) NA else unname(x)

## 1. exam_anova.json ---------------------------------------------------------------------------
exam <- read_data(file.path(dir, "exam.csv"))
forms <- list(m0 = normexam ~ 1 + (1 | school),
              m1 = normexam ~ standLRT + (1 | school),
              m2 = normexam ~ standLRT + (standLRT | school))
m0 <- lmer(forms$m0, data = exam)
m1 <- lmer(forms$m1, data = exam)
m2 <- lmer(forms$m2, data = exam)

anova_rows <- function(a) {
  lapply(rownames(a), function(rn) list(
    model = rn, formula = ftext(forms[[rn]]),
    npar = as.integer(a[rn, "npar"]), AIC = num(a[rn, "AIC"]), BIC = num(a[rn, "BIC"]),
    logLik = num(a[rn, "logLik"]), deviance = num(a[rn, "deviance"]),
    Chisq = num(a[rn, "Chisq"]), Df = if (is.na(a[rn, "Df"])) NA else as.integer(a[rn, "Df"]),
    p = num(a[rn, "Pr(>Chisq)"])))
}
a <- suppressMessages(anova(m0, m1, m2))
a2 <- suppressMessages(anova(m1, m0))
stopifnot(identical(rownames(a), c("m0", "m1", "m2")), identical(rownames(a2), c("m0", "m1")))
chisq21 <- a["m2", "Chisq"]
anova_out <- list(
  formulas = unname(vapply(forms, ftext, "")),
  models = anova_rows(a),
  refit_ml = TRUE,
  anova_two = list(call = "anova(m1, m0)", models = anova_rows(a2), refit_ml = TRUE),
  boundary_note = list(
    comparison = "m2 vs m1", Chisq = unname(chisq21),
    p_mixture_df1_df2 = 0.5 * pchisq(chisq21, 1, lower.tail = FALSE) + 0.5 * pchisq(chisq21, 2, lower.tail = FALSE),
    note = paste("m2 adds a slope variance and a covariance (Df 2); under H0 the variance is on the boundary,",
                 "so the LRT null is approximately a 50:50 mixture of chi-square(1) and chi-square(2).",
                 "m0 vs normexam ~ 1 (an lm without random effect) is not included.")),
  lme4_version = as.character(packageVersion("lme4")), R_version = R.version.string)
save_json(anova_out, "exam_anova.json")

## 2. condvar.json ------------------------------------------------------------------------------
condvar_block <- function(form, d) {
  m <- lmer(form, data = d)
  r <- ranef(m, condVar = TRUE)
  df <- as.data.frame(r)
  for (v in c("grpvar", "term", "grp")) df[[v]] <- as.character(df[[v]])
  pv <- list()
  for (g in names(r)) {
    lev <- rownames(r[[g]])
    stopifnot(identical(lev, levels(d[[g]])))
    arr <- attr(r[[g]], "postVar")                    # q x q x nlevels
    mats <- lapply(seq_len(dim(arr)[3]), function(k) I(as.vector(t(arr[, , k, drop = TRUE]))))
    # condsd is the square root of the diagonal of postVar, in as.data.frame's (term, level) order
    q <- dim(arr)[1]
    for (j in seq_len(q)) {
      rows <- df$grpvar == g & df$term == colnames(r[[g]])[j]
      stopifnot(identical(df$grp[rows], lev))
      stopifnot(isTRUE(all.equal(df$condsd[rows], sqrt(arr[j, j, ]), tolerance = 1e-14)))
    }
    pv[[g]] <- list(terms = I(colnames(r[[g]])), levels = I(lev), matrices = mats)
  }
  list(formula = ftext(form), ranef = df, postVar = pv)
}
sleep <- read_data(file.path(dir, "sleepstudy.csv"))
pen <- read_data(file.path(dir, "penicillin.csv"))
cv_sleep <- condvar_block(Reaction ~ Days + (Days | Subject), sleep)
cv_pen <- condvar_block(diameter ~ 1 + (1 | plate) + (1 | sample), pen)
save_json(list(
  note = paste("ranef: rows of as.data.frame(ranef(m, condVar = TRUE)); condsd = sqrt of the diagonal of postVar.",
               "postVar[group]: per-level conditional covariance matrices of the random effects",
               "(q x q, row-major flattened: [v11, v12, v21, v22] for q = 2), in factor-level order ('levels'),",
               "rows/columns in the order of 'terms'. REML fits."),
  sleepstudy = cv_sleep, penicillin = cv_pen,
  lme4_version = as.character(packageVersion("lme4"))), "condvar.json")

## 3. exam_newdata.csv and exam_predict.json ----------------------------------------------------
cols <- c("school", "normexam", "standLRT", "sex", "schgend", "schavg", "student")
nd <- exam[c(1:40, 1001:1040), cols]
for (v in names(nd)) if (is.factor(nd[[v]])) nd[[v]] <- as.character(nd[[v]])
newrows <- seq(8, nrow(nd), by = 8)
nd$school[newrows] <- paste0("new", seq_along(newrows))
stopifnot(nrow(nd) == 80, length(newrows) == 10, !any(nd$school[newrows] %in% levels(exam$school)))
nd_path <- file.path(dir, "exam_newdata.csv")
write.csv(nd, nd_path, row.names = FALSE)
cat("wrote", nd_path, "\n")

# Predict on the data as written (read back), with the fit's factor levels (+ the new schools).
nd2 <- read.csv(nd_path, colClasses = c(school = "character", sex = "character", schgend = "character",
                                        student = "character"))
nd2$school <- factor(nd2$school, levels = c(levels(exam$school), paste0("new", seq_along(newrows))))
for (v in c("sex", "schgend", "student")) nd2[[v]] <- factor(nd2[[v]], levels = levels(exam[[v]]))
stopifnot(!anyNA(nd2))

form_xl <- normexam ~ standLRT * schavg + sex + schgend + (standLRT | school)
mxl <- lmer(form_xl, data = exam)
pred_block <- function(m, form) {
  cond <- unname(predict(m, newdata = nd2, allow.new.levels = TRUE))
  pop <- unname(predict(m, newdata = nd2, re.form = NA))
  stopifnot(isTRUE(all.equal(cond[newrows], pop[newrows], tolerance = 1e-14)))
  list(formula = ftext(form), conditional = cond, population = pop)
}
pm2 <- pred_block(m2, forms$m2)
pxl <- pred_block(mxl, form_xl)
save_json(list(newdata = "exam_newdata.csv", rows = nrow(nd2), new_level_rows = newrows,
               note = paste("REML fits on exam.csv; conditional = predict(m, newdata, allow.new.levels = TRUE)",
                            "(rows with new schools get the population prediction); population =",
                            "predict(m, newdata, re.form = NA). new_level_rows are 1-based."),
               models = list(pm2, pxl)), "exam_predict.json")

## Summary --------------------------------------------------------------------------------------
cat("\nanova(m0, m1, m2):\n"); print(a, digits = 7)
cat("\nanova(m1, m0):\n"); print(a2, digits = 7)
cat(sprintf("\nm2 vs m1: Chisq %.6f, p (chisq 2) %.6g, p (50:50 mixture chisq 1/2) %.6g\n",
            chisq21, a["m2", "Pr(>Chisq)"], anova_out$boundary_note$p_mixture_df1_df2))
cat("\nsleepstudy condvar (first 3):\n"); print(head(cv_sleep$ranef, 3), digits = 7)
cat("sleepstudy postVar, first level:", cv_sleep$postVar$Subject$matrices[[1]], "\n")
cat("\npenicillin condvar (first 3):\n"); print(head(cv_pen$ranef, 3), digits = 7)
for (p in list(pm2, pxl)) {
  cat("\n", p$formula, "\n", sep = "")
  cat("  conditional[1:5]:", format(p$conditional[1:5], digits = 10), "\n")
  cat("  population[1:5]: ", format(p$population[1:5], digits = 10), "\n")
  cat("  row 8 (new1): conditional", format(p$conditional[8], digits = 10),
      "population", format(p$population[8], digits = 10), "\n")
}

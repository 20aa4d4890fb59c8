# Reference results for issue 15 (level-1 variance that is not constant; denominator degrees of
# freedom), from nlme, lmerTest and pbkrtest.
#
# Usage: Rscript bench/make_variance_references.R Tests/MultilevelTests/Fixtures
# Needs: r-cran-nlme, r-cran-lme4, r-cran-lmertest, r-cran-pbkrtest, r-cran-jsonlite (made with
# nlme 3.1-162, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2). Reads the fixtures exam.csv,
# sleepstudy.csv, penicillin.csv and insteval.csv from the folder (as mlm reads them: quoted
# columns are factors with levels in byte order, `read_data`), and writes into it:
#   orthodont.csv            nlme::Orthodont: distance, age, Subject, Sex (108 rows)
#   variance_reference.json  {"nlme": [...], "profile": {...}, "satterthwaite": [...], "kenward_roger": [...]}
#
# nlme: lme() with weights = varIdent(form = ~ 1 | g) by REML and ML on Orthodont (by Sex) and
# Exam (by sex), and varPower / varExp of standLRT on Exam (REML). Each case: logLik, the
# residual SD (sigma, that of the reference group or of the variance function at 1), the variance
# function's parameters as nlme reports them (varIdent: each group's SD ratio to the first group,
# the first's 1; varPower/varExp: the power / rate), beta and its SEs, the random effects' SDs,
# the number of observations, nlme's AIC/BIC, and (data of at most 200 rows) the fitted values of
# every row (level 1: with the conditional modes; level 0: population).
#
# satterthwaite: lmer() fits (REML; sleepstudy also ML) as the fixtures' reference fits, with lmerTest's summary()
# (estimate, SE, df, t, p for every beta) and anova(type = 3) (each fixed-effect term: NumDF,
# DenDF, F, p), ddf = "Satterthwaite". kenward_roger: the same, ddf = "Kenward-Roger" (pbkrtest),
# on sleepstudy and Exam.
suppressMessages({ library(nlme); library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite) })
args <- commandArgs(TRUE)
outdir <- if (length(args) >= 1) args[1] else "Tests/MultilevelTests/Fixtures"
source(file.path(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)[1])), "read_data.R"))
fixture <- function(name) read_data(file.path(outdir, name))
arr <- function(x) I(unname(as.numeric(x)))   # a JSON array even of length 1
names_of <- function(x) I(as.character(x))

# Orthodont as a plain table (Subject and Sex as text).
orth <- as.data.frame(nlme::Orthodont)
orth <- data.frame(distance = orth$distance, age = orth$age, Subject = as.character(orth$Subject), Sex = as.character(orth$Sex))
write.csv(orth, file.path(outdir, "orthodont.csv"), row.names = FALSE)
orth <- fixture("orthodont.csv")
exam <- fixture("exam.csv")

nlme_case <- function(name, data, file, fixed, random, weights, weights_text, group, method) {
  fit <- lme(fixed, random = random, weights = weights, data = data, method = method,
             control = lmeControl(msMaxIter = 500, maxIter = 500, tolerance = 1e-10, msTol = 1e-12, niterEM = 100))
  vs <- fit$modelStruct$varStruct
  par <- coef(vs, unconstrained = FALSE, allCoef = TRUE)
  re <- as.numeric(VarCorr(fit)[, "StdDev"])
  re_names <- rownames(VarCorr(fit))
  list(name = name, file = file, fixed = deparse(fixed), random = deparse(random), weights = weights_text,
       group = group, method = method, nobs = nobs(fit),
       logLik = as.numeric(logLik(fit)), AIC = AIC(fit), BIC = BIC(fit), sigma = fit$sigma,
       variance_parameters = arr(par), variance_parameter_names = names_of(names(par)),
       beta = arr(fixef(fit)), beta_names = names_of(names(fixef(fit))),
       se = arr(sqrt(diag(vcov(fit)))),
       random_sd = arr(re[re_names != "Residual"]), random_sd_names = names_of(re_names[re_names != "Residual"]),
       fitted = if (nobs(fit) <= 200) arr(fitted(fit, level = 1)) else NULL,
       fitted_population = if (nobs(fit) <= 200) arr(fitted(fit, level = 0)) else NULL)
}

nlme_cases <- list(
  nlme_case("orthodont_varident_reml", orth, "orthodont.csv", distance ~ age, ~ 1 | Subject,
            varIdent(form = ~ 1 | Sex), "~ 1 | Sex", "Sex", "REML"),
  nlme_case("orthodont_varident_ml", orth, "orthodont.csv", distance ~ age, ~ 1 | Subject,
            varIdent(form = ~ 1 | Sex), "~ 1 | Sex", "Sex", "ML"),
  nlme_case("exam_varident_reml", exam, "exam.csv", normexam ~ standLRT, ~ 1 | school,
            varIdent(form = ~ 1 | sex), "~ 1 | sex", "sex", "REML"),
  nlme_case("exam_varident_ml", exam, "exam.csv", normexam ~ standLRT, ~ 1 | school,
            varIdent(form = ~ 1 | sex), "~ 1 | sex", "sex", "ML"),
  nlme_case("exam_varexp_reml", exam, "exam.csv", normexam ~ standLRT, ~ 1 | school,
            varExp(form = ~ standLRT), "varExp(~ standLRT)", NULL, "REML"),
  nlme_case("exam_varpower_reml", exam, "exam.csv", normexam ~ standLRT, ~ 1 | school,
            varPower(form = ~ standLRT), "varPower(~ standLRT)", NULL, "REML"))

# profile: the 95% profile-likelihood limits (ML deviance + qnorm(0.975)^2, as lme4's profile)
# of the varIdent ratio and of β_age on Orthodont, by root-finding on nlme fits with the ratio held
# (varIdent(fixed =)) or with age's term moved into the response.
profile_case <- function() {
  ctl <- lmeControl(msMaxIter = 500, maxIter = 500, tolerance = 1e-10, msTol = 1e-12, niterEM = 100)
  ml <- lme(distance ~ age, random = ~1 | Subject, weights = varIdent(form = ~1 | Sex), data = orth, method = "ML", control = ctl)
  d0 <- -2 * as.numeric(logLik(ml)); crit <- qnorm(0.975)^2
  ratio_dev <- function(v) -2 * as.numeric(logLik(lme(distance ~ age, random = ~1 | Subject, data = orth, method = "ML", control = ctl,
                                                       weights = varIdent(form = ~1 | Sex, fixed = c(Male = v)))))
  beta_dev <- function(b) { d <- orth; d$yb <- d$distance - b * d$age
    -2 * as.numeric(logLik(lme(yb ~ 1, random = ~1 | Subject, weights = varIdent(form = ~1 | Sex), data = d, method = "ML", control = ctl))) }
  limits <- function(f, est, lower, upper) c(uniroot(function(v) f(v) - d0 - crit, c(lower, est), tol = 1e-12)$root,
                                             uniroot(function(v) f(v) - d0 - crit, c(est, upper), tol = 1e-12)$root)
  r <- coef(ml$modelStruct$varStruct, unconstrained = FALSE)[["Male"]]
  b <- fixef(ml)[["age"]]
  list(file = "orthodont.csv", fixed = "distance ~ age", random = "~1 | Subject", weights = "~ 1 | Sex", level = 0.95,
       ratio_Male = arr(limits(ratio_dev, r, r / 3, r * 3)), age = arr(limits(beta_dev, b, b - 0.3, b + 0.3)))
}

ddf_case <- function(name, file, formula, ddf, reml = TRUE) {
  data <- fixture(file)
  fit <- lmerTest::lmer(as.formula(formula), data = data, REML = reml,
                        control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  co <- summary(fit, ddf = ddf)$coefficients
  an <- anova(fit, type = 3, ddf = ddf)
  list(name = name, file = file, formula = formula, ddf = ddf, REML = reml,
       deviance = if (reml) as.numeric(REMLcrit(fit)) else deviance(fit), theta = arr(getME(fit, "theta")),
       beta_names = names_of(rownames(co)), estimate = arr(co[, "Estimate"]), se = arr(co[, "Std. Error"]),
       df = arr(co[, "df"]), t = arr(co[, "t value"]), p = arr(co[, "Pr(>|t|)"]),
       anova_terms = names_of(rownames(an)), anova_numdf = arr(an[, "NumDF"]), anova_dendf = arr(an[, "DenDF"]),
       anova_F = arr(an[, "F value"]), anova_p = arr(an[, "Pr(>F)"]))
}

satt <- list(
  ddf_case("sleepstudy", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "Satterthwaite"),
  ddf_case("sleepstudy_ml", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "Satterthwaite", reml = FALSE),
  ddf_case("penicillin", "penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Satterthwaite"),
  ddf_case("exam", "exam.csv", "normexam ~ standLRT * schavg + sex + schgend + (standLRT | school)", "Satterthwaite"),
  ddf_case("insteval", "insteval.csv", "y ~ 1 + service * dept + (1 | s) + (1 | d)", "Satterthwaite"))
kr <- list(
  ddf_case("sleepstudy", "sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", "Kenward-Roger"),
  ddf_case("exam", "exam.csv", "normexam ~ standLRT * schavg + sex + schgend + (standLRT | school)", "Kenward-Roger"))

writeLines(toJSON(list(nlme = nlme_cases, profile = profile_case(), satterthwaite = satt, kenward_roger = kr), digits = NA, auto_unbox = TRUE,
                  pretty = TRUE, null = "null"),
           file.path(outdir, "variance_reference.json"))
cat("wrote", file.path(outdir, "variance_reference.json"), "\n")

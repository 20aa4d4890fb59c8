/// The machine-readable form of a fit, with lme4's names (`getME(m, "theta")`, `fixef`,
/// `as.data.frame(VarCorr(m))`), so that results can be compared with lme4's field by field.
extension FitResult {
    public func json() -> JSONValue {
        let numbers: ([Double]) -> JSONValue = { .array($0.map(JSONValue.finite)) }
        let named: ([Double]) -> JSONValue = { values in .object(zip(fixedNames, values).map { ($0, JSONValue.finite($1)) }) }
        var fields: [(String, JSONValue)] = [
            ("formula", .string(formula)),
            ("data", .string(dataName)),
            ("weights", weights.map(JSONValue.string) ?? .null),
            ("REML", .bool(reml)),
            ("nobs", .number(Double(nobs))),
            ("rows_dropped", .number(Double(droppedRows))),
            ("ngroups", .object(groupCounts.map { ($0.group, .number(Double($0.count))) })),
            ("theta", numbers(theta)),
            ("theta_names", .array(thetaNames.map(JSONValue.string))),
            ("beta", named(beta)),
            ("se", named(standardErrors)),
            ("sigma", .finite(sigma)),
            ("logLik", .finite(logLik)),
            ("deviance", reml ? .null : .finite(objective)),
            ("REMLcrit", reml ? .finite(objective) : .null),
            ("AIC", .finite(aic)),
            ("BIC", .finite(bic)),
            ("df", .number(Double(df))),
            ("varcorr", varcorrJSON(varcorr)),
        ]
        if let icc = intraclassCorrelations {
            fields.append(("icc", .object(icc.map { ($0.group, .finite($0.icc)) })))
        }
        if let v = residualVariance {
            var entries: [(String, JSONValue)] = [
                ("function", .string(v.model.nlmeName)), ("formula", .string(v.model.formulaText)),
                ("parameters", .object(zip(v.names, v.values).map { ($0, .finite($1)) })),
            ]
            if case .groups = v.model {
                entries.append(("sigma", .object(zip(v.names, v.values).map { ($0, .finite(sigma * $1)) })))
                entries.append(("n", .object(zip(v.names, v.counts).map { ($0, .number(Double($1))) })))
            }
            if let test = v.constantTest {
                entries.append(("constant_test", .object([("Chisq", .finite(test.chiSquare)), ("Df", .number(Double(test.df))),
                                                          ("p", .finite(test.p))])))
            }
            fields.append(("residual_variance", .object(entries)))
        }
        if let tests = fixedEffectTests {
            fields.append(("ddf", .object([
                ("method", .string(tests.method.rawValue)), ("se", named(tests.standardErrors)), ("df", named(tests.df)),
                ("t", named(tests.t)), ("p", named(tests.p)),
                ("anova", .array(tests.terms.map { test in
                    .object([("term", .string(test.term)), ("numdf", .number(Double(test.numeratorDF))),
                             ("dendf", .finite(test.denominatorDF)), ("F", .finite(test.f)), ("p", .finite(test.p)),
                             ("mean_sq", .finite(test.meanSquare))])
                })),
                ("untested_terms", .array(tests.untestedTerms.map(JSONValue.string))),
            ])))
        }
        fields.append(("optimizer", .object([
            ("algorithm", .string(optimizer.algorithm)),
            ("iterations", .number(Double(optimizer.iterations))),
            ("evaluations", .number(Double(optimizer.evaluations))),
            ("gradients", .number(Double(optimizer.gradients))),
            ("fallback", optimizer.fallback.map(JSONValue.string) ?? .null),
            ("converged", .bool(optimizer.converged)),
            ("max_scaled_gradient", .finite(optimizer.maxGradient)),
        ])))
        if let mc = monteCarlo {
            fields.append(("solver", .object([
                ("method", .string("iterative")),
                ("preconditioner", .string((iterative?.solvePreconditioner ?? .blockJacobi).rawValue)),
                ("probes", .number(Double(mc.probes))),
                ("criterion_probes", .number(Double(mc.criterionProbes))),
                ("criterion_mc_se", .finite(mc.criterionSE)),
                ("theta_mc_se", numbers(mc.thetaSE)),
                ("theta_se", numbers(mc.thetaStatisticalSE)),
                ("cg_iterations", .array(mc.iterationLog.map { entry in
                    .object([("solve", .number(Double(entry.solve))), ("probe_mean", .finite(entry.probeMean)),
                             ("probe_max", .number(Double(entry.probeMax))), ("probes", .number(Double(entry.probes)))])
                })),
            ])))
        } else {
            fields.append(("solver", .object([("method", .string("direct")), ("factorization", .string(factorization.description))])))
        }
        fields.append(("messages", .array(notes.map(JSONValue.string))))
        // What `mlm predict` needs: the coding of each factor and the conditional modes by level.
        fields.append(("factor_levels", .object(factorLevels.map { ($0.variable, .array($0.levels.map(JSONValue.string))) })))
        fields.append(("ranef", .array(terms.enumerated().map { k, t in
            .object([("group", .string(t.group)), ("effects", .array(t.effects.map(JSONValue.string))),
                     ("levels", .array(t.levels.map(JSONValue.string))),
                     ("modes", .array(t.levels.indices.map { l in
                         numbers(Array(conditionalModes[k][(l * t.dimension)..<((l + 1) * t.dimension)]))
                     }))])
        })))
        return .object(fields)
    }

    /// The conditional modes and their conditional SDs as CSV: one line per (group, level,
    /// effect), like `as.data.frame(ranef(m, condVar = TRUE))` (grpvar, term, grp, condval, condsd).
    /// `variances`: the fit's `conditionalVariances()`, if already computed.
    public func conditionalModesCSV(variances given: [[[Double]]]? = nil) throws -> String {
        let variances = try given ?? conditionalVariances()
        return Multilevel.conditionalModesCSV(terms: terms, modes: conditionalModes) { k, l, j in
            variances[k][l][j + j * terms[k].dimension].squareRoot()
        }
    }
}

/// A CSV field, quoted, with `""` for a quote inside.
func csvQuoted(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// lme4's `as.data.frame(VarCorr(m))` as JSON: {grp, var1, var2, vcov, sdcor} per row.
func varcorrJSON(_ entries: [VarCorrEntry]) -> JSONValue {
    .array(entries.map { e in
        .object([("grp", .string(e.group)), ("var1", e.var1.map(JSONValue.string) ?? .null),
                 ("var2", e.var2.map(JSONValue.string) ?? .null), ("vcov", .finite(e.vcov)), ("sdcor", .finite(e.sdcor))])
    })
}

/// Conditional modes and SDs as CSV, lme4's `as.data.frame(ranef(m, condVar = TRUE))`: one line
/// per (group, level, effect); `sd(k, l, j)` is the SD of term k's level l's effect j.
func conditionalModesCSV(terms: [RandomEffectsTerm], modes: [[Double]], sd: (Int, Int, Int) -> Double) -> String {
    var out = "grpvar,term,grp,condval,condsd\n"
    for (k, t) in terms.enumerated() {
        for (l, level) in t.levels.enumerated() {
            for (j, effect) in t.effects.enumerated() {
                out += "\(csvQuoted(t.group)),\(csvQuoted(effect)),\(csvQuoted(level)),\(modes[k][l * t.dimension + j]),\(sd(k, l, j))\n"
            }
        }
    }
    return out
}

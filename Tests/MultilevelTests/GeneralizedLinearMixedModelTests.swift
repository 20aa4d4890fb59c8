import Foundation
import XCTest
@testable import Multilevel

/// GLMMs (`--family`) against lme4's `glmer` (`bench/make_glmm_references.R`): the deviance
/// function at lme4's points, the fitted estimates, standard errors, conditional modes and SDs,
/// quadrature (nAGQ = 9), the links, a Poisson offset, a multiple-membership binary model, and
/// the response's forms (cbind, 0/1, two-level factor).
final class GeneralizedLinearMixedModelTests: ScratchDirectoryTestCase {
    struct Case {
        let name: String, file: String, formula: String, family: ResponseFamily, link: LinkFunction, nodes: Int
        let json: [String: Any]
        func numbers(_ key: String) -> [Double] { (json[key] as! [Any]).map { ($0 as! NSNumber).doubleValue } }
        func named(_ key: String) -> [String: Double] { (json[key] as! [String: Any]).mapValues { ($0 as! NSNumber).doubleValue } }
        func number(_ key: String) -> Double { (json[key] as! NSNumber).doubleValue }
        var options: GeneralizedFitOptions { GeneralizedFitOptions(family: family, link: link, nodes: nodes, threads: 2) }
    }

    static let cases: [String: Case] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("glmm_reference.json")))
        let all = try! JSONSerialization.jsonObject(with: data) as! [[String: Any]]
        var cases: [String: Case] = [:]
        for c in all {
            let name = c["name"] as! String
            cases[name] = Case(name: name, file: c["file"] as! String, formula: c["formula"] as! String,
                               family: ResponseFamily(rawValue: c["family"] as! String)!,
                               link: LinkFunction(rawValue: c["link"] as! String)!,
                               nodes: (c["nAGQ"] as! NSNumber).intValue, json: c)
        }
        return cases
    }()

    func data(_ c: Case) throws -> TableSource { try openTable(path: Fixtures.path(c.file), table: nil) }

    /// lme4's results with PIRLS converged (glmerControl(tolPwrss = 1e-13), tight BOBYQA): glmer's
    /// default tolerance (1e-7) leaves its deviance function up to 1e-5 relative above the
    /// Laplace value and its Hessian SEs up to 1.4% off (`bench/make_glmm_references.R`).
    func tight(_ c: Case) -> [String: Any] { c.json["tight"] as! [String: Any] }

    /// The deviance function equals lme4's (converged PIRLS) at lme4's optimum and two other
    /// points, in (θ, β) (Laplace or quadrature) and in θ alone (nAGQ = 0), for every case: to
    /// 5e-9 relative, as lme4 takes log|L|² with the weights of its penultimate PIRLS iterate
    /// (its last step, under tolPwrss = 1e-13, is still about 1e-5; this PIRLS stops after a
    /// step below 1e-9).
    func testDevianceFunctionIsLme4s() throws {
        for c in Self.cases.values.sorted(by: { $0.name < $1.name }) {
            let prepared = try GeneralizedLinearMixedModel.prepare(c.formula, data: try data(c), options: c.options)
            for point in tight(c)["devfun_points"] as! [[String: Any]] {
                let theta = (point["theta"] as! [NSNumber]).map(\.doubleValue), beta = (point["beta"] as! [NSNumber]).map(\.doubleValue)
                let expected = (point["value"] as! NSNumber).doubleValue
                let value = try prepared.deviance(theta + beta).value
                XCTAssertEqual(value, expected, accuracy: 5e-9 * abs(expected), "\(c.name) at θ \(theta), β \(beta)")
            }
            for point in tight(c)["devfun0_points"] as! [[String: Any]] {
                let theta = (point["theta"] as! [NSNumber]).map(\.doubleValue)
                let expected = (point["value"] as! NSNumber).doubleValue
                XCTAssertEqual(try prepared.jointDeviance(theta).deviance, expected, accuracy: 5e-9 * abs(expected), "\(c.name) nAGQ = 0 at θ \(theta)")
            }
        }
    }

    /// Every fit against lme4's: the deviance no more than 1e-6 relative above glmer's default
    /// fit and within 1e-7 of the converged one; θ within 2e-3; β within 1e-3 SE; SEs (from the
    /// Hessian, and from R_X) within 1e-3 relative; conditional modes within 1e-3 of their
    /// conditional SD, and those SDs within 1e-3 relative; the fit statistics lme4's.
    func testFitsAreLme4s() throws {
        for c in Self.cases.values.sorted(by: { $0.name < $1.name }) {
            let fit = try GeneralizedLinearMixedModel.fit(c.formula, data: try data(c), options: c.options)
            let t = tight(c)
            let name = c.name
            let criterion = c.nodes == 1 ? "deviance_laplace" : "objective"
            let converged = (t[criterion] as! NSNumber).doubleValue, glmer = c.number(criterion)
            XCTAssertLessThanOrEqual(fit.deviance, glmer + 1e-6 * abs(glmer), name)
            XCTAssertEqual(fit.deviance, converged, accuracy: 1e-7 * abs(converged), name)
            let theta = (t["theta"] as! [NSNumber]).map(\.doubleValue)
            for (a, b) in zip(fit.theta, theta) { XCTAssertEqual(a, b, accuracy: 2e-3 * max(1, abs(b)), "\(name) θ") }
            let beta = (t["beta"] as! [String: NSNumber]).mapValues(\.doubleValue)
            let se = (t["se"] as! [String: NSNumber]).mapValues(\.doubleValue)
            let seRX = (t["se_rx"] as! [String: NSNumber]).mapValues(\.doubleValue)
            XCTAssertEqual(Set(fit.fixedNames), Set(beta.keys), name)
            XCTAssertEqual(fit.covarianceSource, (t["hessian_used"] as! Bool) ? "Hessian" : "R_X", name)
            let p = fit.fixedNames.count
            for (j, n) in fit.fixedNames.enumerated() {
                XCTAssertEqual(fit.beta[j], beta[n]!, accuracy: 1e-3 * se[n]!, "\(name) β \(n)")
                XCTAssertEqual(fit.standardErrors[j], se[n]!, accuracy: 1e-3 * se[n]!, "\(name) SE \(n)")
                XCTAssertEqual(fit.rxCovariance[j + j * p].squareRoot(), seRX[n]!, accuracy: 1e-3 * seRX[n]!, "\(name) SE (R_X) \(n)")
            }
            let df = Double(fit.df)
            XCTAssertEqual(fit.aic, fit.deviance + 2 * df, accuracy: 1e-9)
            XCTAssertEqual(fit.residualDF, (t["df_resid"] as! NSNumber).intValue, name)
            if c.nodes == 1 {
                XCTAssertEqual(fit.logLik, (t["logLik"] as! NSNumber).doubleValue, accuracy: 1e-7 * abs(fit.logLik), name)
                XCTAssertEqual(fit.bic, (t["BIC"] as! NSNumber).doubleValue, accuracy: 1e-7 * abs(fit.bic), name)
                XCTAssertEqual(fit.devianceResiduals, (t["deviance_resid"] as! NSNumber).doubleValue, accuracy: 1e-5 * fit.devianceResiduals, name)
            }
            // Conditional modes and SDs, term by term in lme4's order (levels in byte order).
            let modes = t["ranef"] as! [String: [NSNumber]], sds = t["condsd"] as! [String: [NSNumber]]
            for (k, term) in fit.terms.enumerated() {
                let key = modes.keys.count == 1 ? modes.keys.first! : (modes[term.group] != nil ? term.group : "mm")
                let expectedModes = modes[key]!.map(\.doubleValue), expectedSDs = sds[key]!.map(\.doubleValue)
                XCTAssertEqual(fit.conditionalModes[k].count, expectedModes.count, name)
                for l in expectedModes.indices {
                    XCTAssertEqual(fit.conditionalModes[k][l], expectedModes[l], accuracy: 1e-3 * expectedSDs[l], "\(name) mode \(term.group) \(l)")
                    XCTAssertEqual(fit.conditionalSDs[k][l], expectedSDs[l], accuracy: 2e-4 * expectedSDs[l], "\(name) cond. SD \(term.group) \(l)")
                }
            }
        }
    }

    /// The response's forms give one fit: cbind(successes, failures) on cbpp, one 0/1 row per
    /// animal, and the same as a logical column (FALSE < TRUE: first is failure), up to the
    /// binomial coefficients' constant in the log-likelihood.
    func testResponseFormsGiveOneFit() throws {
        let grouped = try GeneralizedLinearMixedModel.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                                          data: try openTable(path: Fixtures.path("cbpp.csv"), table: nil),
                                                          options: GeneralizedFitOptions(family: .binomial))
        let binary = try openTable(path: Fixtures.path("cbpp_binary.csv"), table: nil)
        for formula in ["y ~ period + (1 | herd)", "sick ~ period + (1 | herd)"] {
            let fit = try GeneralizedLinearMixedModel.fit(formula, data: binary, options: GeneralizedFitOptions(family: .binomial))
            XCTAssertEqual(fit.theta[0], grouped.theta[0], accuracy: 1e-4, formula)
            for j in fit.beta.indices { XCTAssertEqual(fit.beta[j], grouped.beta[j], accuracy: 1e-3 * grouped.standardErrors[j], formula) }
        }
    }

    /// Bad input: one line naming the cause.
    func testBadInputIsRefusedInOneLine() throws {
        let cbpp = try openTable(path: Fixtures.path("cbpp.csv"), table: nil)
        func fit(_ formula: String, _ data: TableSource, _ options: GeneralizedFitOptions) -> String {
            message { try GeneralizedLinearMixedModel.fit(formula, data: data, options: options) }
        }
        let binomial = GeneralizedFitOptions(family: .binomial), poisson = GeneralizedFitOptions(family: .poisson)
        XCTAssertTrue(fit("incidence ~ period + (1 | herd)", cbpp, binomial).contains("a binomial response is 0 or 1"))
        XCTAssertTrue(fit("incidence ~ period + (1 | herd)", cbpp, binomial).contains("line "))
        XCTAssertTrue(fit("cbind(incidence, size) ~ period + (1 | herd)", cbpp, poisson).contains("--family poisson needs a count"))
        XCTAssertTrue(fit("cbind(incidence, incidence - size) ~ period + (1 | herd)", cbpp, binomial).contains("successes and failures are whole numbers ≥ 0"))
        XCTAssertTrue(fit("period ~ 1 + (1 | herd)", cbpp, binomial).contains("has 4 values ('1', '2', '3', '4')"))
        XCTAssertTrue(fit("I(incidence / size) ~ period + (1 | herd)", cbpp, poisson).contains("a Poisson response is a count"))
        XCTAssertTrue(fit("I(-incidence) ~ period + (1 | herd)", cbpp, poisson).contains("a Poisson response is a count"))
        var agq = binomial
        agq.nodes = 5
        XCTAssertTrue(fit("cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | period)", cbpp, agq).contains("single scalar random-effects term"))
        agq.nodes = 30
        XCTAssertTrue(fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, agq).contains("from 1 (Laplace) to 25"))
        XCTAssertTrue(message { try ResponseDistribution(family: .poisson, link: .logit) }.contains("does not suit --family poisson"))
        // A Gaussian fit refuses what only a GLMM takes.
        XCTAssertTrue(message { try LinearMixedModel.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", data: cbpp) }
            .contains("give --family binomial"))
        XCTAssertTrue(message { try LinearMixedModel.fit("incidence ~ period + offset(log(size)) + (1 | herd)", data: cbpp) }
            .contains("offset(log(size)) is supported for --family"))
        // Complete separation: x alone decides y.
        var lines = ["y,x,g"]
        for i in 0..<200 {
            let x = sin(Double(i) * 1.3)
            lines.append("\(x > 0 ? 1 : 0),\(x),g\(i % 10)")
        }
        let separated = try openTable(path: try write(lines.joined(separator: "\n") + "\n", to: "separated.csv"), table: nil)
        let m = fit("y ~ x + (1 | g)", separated, binomial)
        XCTAssertTrue(m.hasPrefix("complete separation:") && m.contains("'x' diverges"), m)
    }

    /// scale() is R's: centred at the mean and divided by the SD of the column over the rows
    /// where it is present (grouseticks' HEIGHT: lme4's mean and SD).
    func testScaleIsRs() throws {
        let c = Self.cases["grouseticks"]!
        let formula = try Formula.parse(c.formula).resolvingScale(in: try data(c), chunkRows: 100)
        guard case .transform(let name, .binary("/", .binary("-", .column("HEIGHT"), .number(let mean)), .number(let sd))) =
                formula.fixed.terms[1].variables[0] else { return XCTFail("scale(HEIGHT) not resolved: \(formula.fixed.terms)") }
        XCTAssertEqual(name, "scale(HEIGHT)")
        XCTAssertEqual(mean, c.number("height_mean"), accuracy: 1e-12 * mean)
        XCTAssertEqual(sd, c.number("height_sd"), accuracy: 1e-12 * sd)
    }

    /// The command line prints glmer's summary and writes the JSON.
    func testCommandLine() throws {
        let json = temporary("cbpp.json")
        let run = try mlm(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                           "--family", "binomial", "--json", json])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.hasPrefix("Generalized linear mixed model fit by maximum likelihood (Laplace Approximation) ['glmerMod']\n Family: binomial  ( logit )\n"), run.stdout)
        XCTAssertTrue(run.stdout.contains(" herd   (Intercept)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("Pr(>|z|)"), run.stdout)
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as! [String: Any]
        XCTAssertEqual(object["family"] as? String, "binomial")
        XCTAssertEqual((object["deviance"] as! NSNumber).doubleValue, 184.0525637, accuracy: 1e-6)
        // --ranef: lme4's as.data.frame(ranef(m, condVar = TRUE)).
        let ranef = try mlm(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                             "--family", "binomial", "--ranef", "-"])
        XCTAssertEqual(ranef.status, 0, ranef.stderr)
        let lines = ranef.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 16)
        XCTAssertEqual(lines.first, "grpvar,term,grp,condval,condsd")
        let first = lines[1].split(separator: ",")
        let t = tight(Self.cases["cbpp"]!)
        XCTAssertEqual(first[2], "\"1\"")
        XCTAssertEqual(Double(first[3])!, ((t["ranef"] as! [String: [NSNumber]])["herd"]![0]).doubleValue, accuracy: 1e-4)
        XCTAssertEqual(Double(first[4])!, ((t["condsd"] as! [String: [NSNumber]])["herd"]![0]).doubleValue, accuracy: 1e-4)
        for (arguments, expected) in [(["--family", "gamma"], "--family must be binomial or poisson"),
                                      (["--link", "probit"], "--link and --nagq need --family"),
                                      (["--family", "binomial", "--profile"], "--profile is not available with --family"),
                                      (["--family", "binomial", "--weights", "size"], "--weights is not available with --family")] {
            let bad = try mlm(["fit", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)"] + arguments)
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertTrue(bad.stderr.contains(expected), bad.stderr)
        }
    }

    /// `compare --family` is lme4's anova() of glmer fits: on cbpp, period against none
    /// (anova(m0, m1) with converged PIRLS: logLik −104.8313135939 and −92.0262818715, χ² 25.6101 on 3 df).
    func testComparisonIsLme4sAnova() throws {
        let comparison = try ModelComparison.compare(["cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                                                      "cbind(incidence, size - incidence) ~ period + (1 | herd)"],
                                                     data: try openTable(path: Fixtures.path("cbpp.csv"), table: nil),
                                                     options: GeneralizedFitOptions(family: .binomial))
        XCTAssertEqual(comparison.rows.map(\.npar), [2, 5])
        XCTAssertEqual(comparison.rows[0].logLik, -104.8313135939, accuracy: 1e-5)
        XCTAssertEqual(comparison.rows[1].logLik, -92.0262818715, accuracy: 1e-5)
        XCTAssertEqual(comparison.rows[1].chisq!, 25.61006, accuracy: 1e-4)
        XCTAssertEqual(comparison.rows[1].df, 3)
        XCTAssertEqual(comparison.rows[1].p!, 1.1509e-05, accuracy: 1e-8)
        let run = try mlm(["compare", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                           "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "--family", "binomial"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("m2    5 194.1 204.2  -92.0    184.1 25.61  3  1.151e-05 ***"), run.stdout)
        for (arguments, expected) in [(["--link", "probit"], "--link and --nagq need --family"),
                                      (["--family", "binomial", "--report", temporary("report")], "--report is not available with --family"),
                                      (["--family", "binomial", "--weights", "size"], "--weights is not available with --family")] {
            let bad = try mlm(["compare", Fixtures.path("cbpp.csv"), "--formula", "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                               "--formula", "cbind(incidence, size - incidence) ~ period + (1 | herd)"] + arguments)
            XCTAssertNotEqual(bad.status, 0)
            XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
            XCTAssertTrue(bad.stderr.contains(expected), bad.stderr)
        }
    }

    /// `mlm predict` of a saved GLMM is lme4's `predict(m)` (link) and `fitted(m)` (response),
    /// offset included, on the fitted rows (glmer's default fit: within 2e-3).
    func testPredictionsAreLme4s() throws {
        for name in ["cbpp", "cbpp_poisson_offset", "verbagg"] {
            let c = Self.cases[name]!
            let json = temporary("\(name).json")
            let fit = try mlm(["fit", Fixtures.path(c.file), "--formula", c.formula, "--family", c.family.rawValue, "--json", json])
            XCTAssertEqual(fit.status, 0, fit.stderr)
            for (type, key) in [("link", "eta_first10"), ("response", "fitted_first10")] {
                let run = try mlm(["predict", Fixtures.path(c.file), "--model", json, "--type", type])
                XCTAssertEqual(run.status, 0, run.stderr)
                let values = run.stdout.split(separator: "\n").dropFirst().prefix(10).map { Double($0)! }
                for (a, b) in zip(values, c.numbers(key)) { XCTAssertEqual(a, b, accuracy: 2e-3 * max(1, abs(b)), "\(name) \(type)") }
                XCTAssertEqual(values.count, 10, name)
            }
        }
    }

    /// The binomial and Poisson samplers: mean and variance over 200,000 draws within 5 of their
    /// Monte-Carlo SEs, on both sides of each method's switch (40 trials, mean 10).
    func testBinomialAndPoissonDraws() {
        var random = Xoshiro256(seed: 17)
        let draws = 200_000
        func check(_ name: String, mean: Double, variance: Double, _ draw: () -> Int) {
            var sum = 0.0, squares = 0.0
            for _ in 0..<draws { let x = Double(draw()); sum += x; squares += x * x }
            let m = sum / Double(draws), v = squares / Double(draws) - m * m
            XCTAssertEqual(m, mean, accuracy: 5 * (variance / Double(draws)).squareRoot(), "\(name) mean")
            XCTAssertEqual(v, variance, accuracy: 5 * variance * (2 / Double(draws)).squareRoot() * 1.5, "\(name) variance")
        }
        for (n, p) in [(1, 0.3), (12, 0.07), (39, 0.5), (40, 0.2), (500, 0.9), (10_000, 0.001)] {
            check("binomial(\(n), \(p))", mean: Double(n) * p, variance: Double(n) * p * (1 - p)) { random.nextBinomial(trials: n, probability: p) }
        }
        for lambda in [0.05, 3.0, 9.9, 10.0, 57.5, 2_000.0] {
            check("Poisson(\(lambda))", mean: lambda, variance: lambda) { random.nextPoisson(mean: lambda) }
        }
    }

    /// `--bootstrap` of a GLMM: the replicates' β spread as the fit's SEs say (cbpp, 200
    /// replicates: their SD within 20% of the SE, their mean within 0.3 SE of β̂), and the same
    /// replicates, bit for bit, on 1 and 2 threads.
    func testBootstrapReplicatesSpreadAsTheStandardErrors() throws {
        let data = try openTable(path: Fixtures.path("cbpp.csv"), table: nil)
        let formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
        var results: [[BootstrapReplicate]] = []
        for threads in [1, 2] {
            var options = GeneralizedFitOptions(family: .binomial)
            options.threads = threads
            let (fit, boot) = try GeneralizedLinearMixedModel.fitWithBootstrap(formula, data: data, options: options,
                bootstrap: BootstrapOptions(replicates: threads == 1 ? 200 : 20, seed: 5, threads: threads))
            results.append(boot.replicates)
            guard threads == 1 else { continue }
            XCTAssertEqual(boot.failed, 0)
            for j in fit.beta.indices {
                let values = boot.replicates.map { $0.beta[j] }
                let mean = values.reduce(0, +) / Double(values.count)
                let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
                XCTAssertEqual(sd, fit.standardErrors[j], accuracy: 0.2 * fit.standardErrors[j], fit.fixedNames[j])
                XCTAssertEqual(mean, fit.beta[j], accuracy: 0.3 * fit.standardErrors[j], fit.fixedNames[j])
            }
            XCTAssertEqual(boot.intervals.map(\.parameter.label), ["sd((Intercept)|herd)"] + fit.fixedNames)
        }
        XCTAssertEqual(Array(results[0].prefix(20)), results[1])
    }

    /// A segment whose rows are all incomplete (a block of missing responses) is no trouble: the
    /// fit equals the one of the file without those rows.
    func testSegmentOfMissingRows() throws {
        let lines = try String(contentsOfFile: Fixtures.path("cbpp_binary.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        var missing = lines
        for i in 1...25 {
            var fields = missing[i].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            fields[2] = "NA"
            missing[i] = fields.joined(separator: ",")
        }
        var options = GeneralizedFitOptions(family: .binomial)
        options.segmentRows = 20
        let withMissing = try GeneralizedLinearMixedModel.fit("y ~ period + (1 | herd)", data: try openTable(
            path: try write(missing.joined(separator: "\n") + "\n", to: "missing.csv"), table: nil), options: options)
        let without = try GeneralizedLinearMixedModel.fit("y ~ period + (1 | herd)", data: try openTable(
            path: try write(([lines[0]] + lines[26...]).joined(separator: "\n") + "\n", to: "without.csv"), table: nil), options: options)
        XCTAssertEqual(withMissing.nobs, without.nobs)
        XCTAssertEqual(withMissing.droppedRows, 25)
        XCTAssertEqual(withMissing.deviance, without.deviance, accuracy: 1e-8 * without.deviance)
        for j in without.beta.indices { XCTAssertEqual(withMissing.beta[j], without.beta[j], accuracy: 1e-6) }
    }

    /// Rows that would take more than half of --max-memory are read again from the file at every
    /// pass, and give the fit of the rows in memory bit for bit: quadrature, a Poisson offset, a
    /// scaled covariate with nested terms, multiple membership, an aliased column dropped, and a
    /// bootstrap's replicates; several segments of 50 rows each.
    func testStreamedRowsGiveTheSameFit() throws {
        for name in ["cbpp_agq9", "cbpp_poisson_offset", "grouseticks", "mm_binary"] {
            let c = Self.cases[name]!
            var options = c.options
            options.segmentRows = 50
            let inMemory = try GeneralizedLinearMixedModel.fitPrepared(c.formula, data: try data(c), options: options)
            options.maxMemory = 2 * inMemory.prepared.rows.predictedBytes.inMemory - 1
            let streamed = try GeneralizedLinearMixedModel.fitPrepared(c.formula, data: try data(c), options: options)
            XCTAssertFalse(inMemory.prepared.rows.streamed, name)
            XCTAssertTrue(streamed.prepared.rows.streamed, name)
            XCTAssertEqual(streamed.prepared.rows.bytes, 0, name)
            for (a, b) in [(inMemory.fit, streamed.fit)] {
                XCTAssertEqual(a.deviance.bitPattern, b.deviance.bitPattern, name)
                XCTAssertEqual(a.theta, b.theta, name)
                XCTAssertEqual(a.beta, b.beta, name)
                XCTAssertEqual(a.covariance, b.covariance, name)
                XCTAssertEqual(a.conditionalModes, b.conditionalModes, name)
                XCTAssertEqual(a.conditionalSDs, b.conditionalSDs, name)
            }
        }
        // An aliased column (x2 = 2 x1) and a bootstrap.
        let lines = try String(contentsOfFile: Fixtures.path("cbpp_binary.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        let header = lines[0] + ",x1,x2"
        let rows = lines.dropFirst().enumerated().map { i, line in line + ",\(i % 7),\(2 * (i % 7))" }
        let data = try openTable(path: try write(([header] + rows).joined(separator: "\n") + "\n", to: "aliased.csv"), table: nil)
        var options = GeneralizedFitOptions(family: .binomial)
        options.segmentRows = 50
        let formula = "y ~ period + x1 + x2 + (1 | herd)"
        let bootstrap = BootstrapOptions(replicates: 3, seed: 4, threads: 2)
        let inMemory = try GeneralizedLinearMixedModel.fitWithBootstrap(formula, data: data, options: options, bootstrap: bootstrap)
        options.maxMemory = 100_000
        let log = LogLines()
        options.log = { log.append($0) }
        let streamed = try GeneralizedLinearMixedModel.fitWithBootstrap(formula, data: data, options: options, bootstrap: bootstrap)
        XCTAssertTrue(log.lines.contains { $0.hasPrefix("model rows: read again from the file at every pass") }, "\(log.lines)")
        XCTAssertEqual(inMemory.fit.fixedNames, ["(Intercept)", "period2", "period3", "period4", "x1"])
        XCTAssertEqual(streamed.fit.fixedNames, inMemory.fit.fixedNames)
        XCTAssertEqual(streamed.fit.beta, inMemory.fit.beta)
        XCTAssertEqual(streamed.bootstrap.replicates, inMemory.bootstrap.replicates)
        XCTAssertEqual(streamed.bootstrap.failed, 0)
    }

    /// The streamed path refuses at once, in one line, when even its segments in flight do not fit.
    func testStreamedRowsThatDoNotFitAreRefused() throws {
        var options = GeneralizedFitOptions(family: .binomial, maxMemory: 1000)
        options.segmentRows = 50
        let data = try openTable(path: Fixtures.path("cbpp_binary.csv"), table: nil)
        XCTAssertThrowsError(try GeneralizedLinearMixedModel.fit("y ~ period + (1 | herd)", data: data, options: options)) { error in
            let message = (error as? InputError)?.message ?? "\(error)"
            XCTAssertTrue(message.hasPrefix("reading the model rows again at every pass needs about"), message)
            XCTAssertTrue(message.contains("--max-memory"), message)
            XCTAssertFalse(message.contains("\n"), message)
        }
    }

    /// A failure to read the streamed rows again ends the fit with its line, even inside a
    /// bootstrap (it is not a replicate's failure to converge).
    func testStreamedReadFailureEndsTheFit() throws {
        /// The file, until its `failAt`-th read of a column.
        final class Vanishing: TableSource {
            let inner: TableSource
            var reads = 0, failAt = Int.max
            init(_ inner: TableSource) { self.inner = inner }
            var name: String { inner.name }
            var columnNames: [String] { inner.columnNames }
            var rowCount: Int { inner.rowCount }
            func columnType(_ column: String) throws -> ColumnType { try inner.columnType(column) }
            func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double] {
                try count()
                return try inner.readNumeric(column, rows: rows)
            }
            func readStrings(_ column: String, rows: Range<Int>) throws -> [String?] {
                try count()
                return try inner.readStrings(column, rows: rows)
            }
            private let lock = NSLock()
            private func count() throws {
                lock.lock()
                defer { lock.unlock() }
                reads += 1
                if reads >= failAt { throw InputError("\(name): the file is gone") }
            }
        }
        var options = GeneralizedFitOptions(family: .binomial, maxMemory: 100_000)
        options.segmentRows = 50
        let formula = "y ~ period + (1 | herd)", bootstrap = BootstrapOptions(replicates: 2, seed: 4, threads: 2)
        let counting = Vanishing(try openTable(path: Fixtures.path("cbpp_binary.csv"), table: nil))
        let fitOnly = try GeneralizedLinearMixedModel.fit(formula, data: counting, options: options)
        XCTAssertEqual(fitOnly.nobs, 842)
        let vanishing = Vanishing(try openTable(path: Fixtures.path("cbpp_binary.csv"), table: nil))
        vanishing.failAt = counting.reads + 10
        XCTAssertThrowsError(try GeneralizedLinearMixedModel.fitWithBootstrap(formula, data: vanishing, options: options, bootstrap: bootstrap)) {
            XCTAssertTrue($0 is RowsUnreadable, "\($0)")
            XCTAssertTrue("\($0)".hasSuffix("the file is gone"), "\($0)")
        }
    }
}

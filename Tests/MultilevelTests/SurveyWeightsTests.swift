import Foundation
import XCTest
@testable import Multilevel

/// Sampling weights (`--survey-weights`): the two-level pseudo-likelihood against a direct
/// numerical integration of the cluster integrals and against an independent implementation in
/// R (adaptive Gauss–Hermite, `bench/make_survey_references.R`); unit weights give the ML fit;
/// the size and effective scalings make a cluster's level-1 weights scale-free; the linearised
/// SEs of a model without random effects are svyglm's; the weights are checked.
final class SurveyWeightsTests: ScratchDirectoryTestCase {
    /// A small two-level data set with random intercepts and slopes and unequal weights at both
    /// levels (deterministic): columns y, x, g, w1 (level 1), w2 (level 2, constant in a cluster).
    func syntheticData(clusters: Int = 14, transformW1: (Int, Int, Double) -> Double = { _, _, w in w },
                       unitWeights: Bool = false) throws -> String {
        var state: UInt64 = 12345
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
        var lines = ["y,x,g,w1,w2,h"]
        for j in 0..<clusters {
            let n = 3 + Int(uniform() * 7)
            let b0 = 0.8 * normal(), b1 = 0.4 * normal()
            let w2 = unitWeights ? 1 : 1 + 4 * uniform()
            for i in 0..<n {
                let x = 2 * uniform() - 1
                let y = 1 + 0.5 * x + b0 + b1 * x + normal()
                let w1 = transformW1(j, i, unitWeights ? 1 : 0.5 + 2.5 * uniform())
                lines.append("\(y),\(x),g\(j),\(w1),\(w2),h\(i % 3)")
            }
        }
        return try write(lines.joined(separator: "\n") + "\n", to: "survey-\(UUID().uuidString).csv")
    }

    func fit(_ path: String, _ formula: String, weights: [String] = ["w1", "w2"], scaling: WeightScaling = .size,
             psu: String? = nil, strata: String? = nil, options: FitOptions = FitOptions()) throws -> SurveyFitResult {
        try LinearMixedModel.fitSurvey(formula, data: openTable(path: path, table: nil),
                                       design: SurveyDesign(weights: weights, scaling: scaling, psu: psu, strata: strata), options: options)
    }

    /// Σⱼ wⱼ log ∫ exp(Σᵢ cⱼwᵢ log φ(yᵢ; xᵢ'β + zᵢ'b, σ²)) N(b; 0, Σ_b) db, each integral by the
    /// trapezoidal rule on a grid of ±10 standard deviations of the integrand (centred on its mode,
    /// stretched by its curvature), for z = (1) or (1, x).
    func integratedPseudoLikelihood(_ path: String, fit: SurveyFitResult, slopes: Bool, scaling: WeightScaling) throws -> Double {
        let text = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst()
        var rows: [String: [(y: Double, x: Double, w1: Double, w2: Double)]] = [:]
        var order: [String] = []
        for line in text {
            let f = line.split(separator: ",").map(String.init)
            if rows[f[2]] == nil { order.append(f[2]) }
            rows[f[2], default: []].append((Double(f[0])!, Double(f[1])!, Double(f[3])!, Double(f[4])!))
        }
        let d = slopes ? 2 : 1
        let v = fit.varcorr
        let sigmaB: [Double] = slopes ? [v[0].vcov, v[2].vcov, v[2].vcov, v[1].vcov] : [v[0].vcov]
        let s2 = fit.sigma * fit.sigma, beta = fit.beta
        // Σ_b⁻¹ and log|Σ_b|.
        let det = slopes ? sigmaB[0] * sigmaB[3] - sigmaB[1] * sigmaB[2] : sigmaB[0]
        let inv: [Double] = slopes ? [sigmaB[3] / det, -sigmaB[1] / det, -sigmaB[2] / det, sigmaB[0] / det] : [1 / sigmaB[0]]
        var total = 0.0
        for g in order {
            let r = rows[g]!
            let sw = r.reduce(0.0) { $0 + $1.w1 }, sw2 = r.reduce(0.0) { $0 + $1.w1 * $1.w1 }
            let c = scaling.factor(count: Double(r.count), sum: sw, sumOfSquares: sw2)
            func z(_ x: Double) -> [Double] { slopes ? [1, x] : [1] }
            func logIntegrand(_ b: [Double]) -> Double {
                var s = 0.0
                for row in r {
                    let zb = zip(z(row.x), b).reduce(0.0) { $0 + $1.0 * $1.1 }
                    let e = row.y - beta[0] - beta[1] * row.x - zb
                    s += c * row.w1 * (-0.5 * log(2 * .pi * s2) - e * e / (2 * s2))
                }
                var q = 0.0
                for i in 0..<d { for k in 0..<d { q += b[i] * inv[i + k * d] * b[k] } }
                return s - 0.5 * Double(d) * log(2 * .pi) - 0.5 * log(det) - 0.5 * q
            }
            // The (quadratic) log-integrand's curvature P = Σ cwzz'/σ² + Σ_b⁻¹ and mode P⁻¹ Σ cwz r/σ².
            var p = inv, rhs = [Double](repeating: 0, count: d)
            for row in r {
                let zz = z(row.x)
                for i in 0..<d {
                    rhs[i] += c * row.w1 * zz[i] * (row.y - beta[0] - beta[1] * row.x) / s2
                    for k in 0..<d { p[i + k * d] += c * row.w1 * zz[i] * zz[k] / s2 }
                }
            }
            let l = Dense.lowerCholesky(p, d)!                  // P = L L'
            let mode = Dense.solveCholesky(l, d, rhs)
            // b = mode + L⁻ᵀ s: the integrand is a standard normal shape in s.
            let h = 0.25, range = -40...40
            var values: [Double] = []
            if slopes {
                for a in range { for b in range {
                    let s = [Double(a) * h, Double(b) * h]
                    // L⁻ᵀ s: back-substitution with L' (upper).
                    let u1 = s[1] / l[3], u0 = (s[0] - l[1] * u1) / l[0]
                    values.append(logIntegrand([mode[0] + u0, mode[1] + u1]))
                } }
            } else {
                for a in range { values.append(logIntegrand([mode[0] + Double(a) * h / l[0]])) }
            }
            let m = values.max()!
            let sum = values.reduce(0.0) { $0 + exp($1 - m) }
            let logJacobian = -(0..<d).reduce(0.0) { $0 + log(l[$1 + $1 * d]) }
            total += r[0].w2 * (m + log(sum * pow(h, Double(d))) + logJacobian)
        }
        return total
    }

    func testPseudoLikelihoodEqualsTheNumericalIntegralOfTheClusterLikelihoods() throws {
        let path = try syntheticData()
        for (formula, slopes) in [("y ~ x + (1 | g)", false), ("y ~ x + (1 + x | g)", true)] {
            for scaling in WeightScaling.allCases {
                let f = try fit(path, formula, scaling: scaling)
                let integral = try integratedPseudoLikelihood(path, fit: f, slopes: slopes, scaling: scaling)
                XCTAssertEqual(f.logPseudoLikelihood, integral, accuracy: 1e-8 * abs(integral), "\(formula) \(scaling)")
            }
        }
    }

    /// The analytic per-cluster scores (the sandwich's meat) are the derivatives of ℓⱼ.
    func testClusterScoresAreTheDerivativesOfTheClusterLogLikelihoods() throws {
        let path = try syntheticData()
        let source = try openTable(path: path, table: nil)
        let frame = try ModelFrame.scan(try Formula.parse("y ~ x + (1 + x | g)").reading(["w1", "w2"]), source: source)
        let terms = frame.randomEffectsTerms
        let sums = try ClusterCrossProducts.accumulate(frame, columns: .init(weights: ["w1", "w2"], psu: nil, strata: nil, clusterTerm: 0,
                                                                             termColumns: [2], randomEffects: true),
                                                       terms: terms, clusterName: "g", clusterLabels: terms[0].levels, threads: 2)
        let pml = PseudoLikelihood(sums, scaling: .effective)
        let psi = [0.9, 0.4, 0.7, -0.2, 0.5, 1.3]   // β (2), θ (3), σ²
        func split(_ x: [Double]) -> ([Double], [Double], Double) { (Array(x[0..<2]), Array(x[2..<5]), x[5]) }
        let (b, t, s2) = split(psi)
        let analytic = pml.clusterScores(beta: b, theta: t, sigma2: s2).scores
        for i in psi.indices {
            let h = 1e-6 * max(abs(psi[i]), 1)
            var up = psi, down = psi
            up[i] += h
            down[i] -= h
            let (bu, tu, su) = split(up), (bd, td, sd) = split(down)
            let lu = pml.clusterScores(beta: bu, theta: tu, sigma2: su).logLikelihood
            let ld = pml.clusterScores(beta: bd, theta: td, sigma2: sd).logLikelihood
            for j in 0..<sums.clusters {
                let numeric = (lu[j] - ld[j]) / (2 * h)
                XCTAssertEqual(analytic[j * psi.count + i], numeric, accuracy: 1e-6 * max(1, abs(numeric)), "cluster \(j), ψ[\(i)]")
            }
        }
    }

    func testUnitWeightsGiveTheMaximumLikelihoodFit() throws {
        let path = try syntheticData(unitWeights: true)
        for formula in ["y ~ x + (1 | g)", "y ~ x + (1 + x | g)"] {
            let weighted = try fit(path, formula)
            let ml = try LinearMixedModel.fit(formula, data: openTable(path: path, table: nil), options: FitOptions(reml: false))
            XCTAssertEqual(weighted.logPseudoLikelihood, ml.logLik, accuracy: 1e-9 * abs(ml.logLik), formula)
            for (a, b) in zip(weighted.beta, ml.beta) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), formula) }
            for (a, b) in zip(weighted.theta, ml.theta) { XCTAssertEqual(a, b, accuracy: 2e-4, formula) }
            XCTAssertEqual(weighted.sigma, ml.sigma, accuracy: 1e-5 * ml.sigma, formula)
        }
    }

    /// Multiplying one cluster's level-1 weights by 7 changes nothing under size and effective
    /// scaling, and changes the fit without scaling.
    func testScaledLevelOneWeightsAreInvariantToAClustersConstant() throws {
        let plain = try syntheticData()
        let scaled = try syntheticData(transformW1: { j, _, w in j == 3 ? 7 * w : w })
        for scaling in WeightScaling.allCases {
            let a = try fit(plain, "y ~ x + (1 + x | g)", scaling: scaling), b = try fit(scaled, "y ~ x + (1 + x | g)", scaling: scaling)
            let change = zip(a.beta + a.theta, b.beta + b.theta).map { abs($0 - $1) / max(1, abs($0)) }.max()!
            if scaling == .none {
                XCTAssertGreaterThan(change, 1e-3)
            } else {
                XCTAssertLessThan(change, 1e-6, "\(scaling)")
                XCTAssertEqual(a.logPseudoLikelihood, b.logPseudoLikelihood, accuracy: 1e-9 * abs(a.logPseudoLikelihood))
                for (x, y) in zip(a.standardErrors, b.standardErrors) { XCTAssertEqual(x, y, accuracy: 1e-5 * x) }
            }
        }
    }

    /// apiclus2 (R's survey package): the R implementation's maximum of the pseudo-likelihood by
    /// adaptive Gauss–Hermite quadrature and nlminb/BFGS, for size and no scaling.
    func testMatchesAnIndependentImplementationOnApiclus2() throws {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("survey_reference.json")))) as! [String: Any]
        let pml = reference["pml_apiclus2"] as! [String: [String: Any]]
        for scaling in [WeightScaling.size, .effective, .none] {
            let r = pml[scaling.rawValue]!
            let f = try fit(Fixtures.path("apiclus2.csv"), "api00 ~ ell + meals + (1 | dnum)", weights: ["w_school", "w_district"], scaling: scaling)
            let beta = r["beta"] as! [String: Double]
            for (name, value) in zip(f.fixedNames, f.beta) { XCTAssertEqual(value, beta[name]!, accuracy: 1e-6 * abs(beta[name]!), "\(scaling) \(name)") }
            XCTAssertEqual(f.varcorr[0].vcov, r["tau2"] as! Double, accuracy: 1e-6 * (r["tau2"] as! Double), "\(scaling)")
            XCTAssertEqual(f.varcorr[1].vcov, r["sigma2"] as! Double, accuracy: 1e-6 * (r["sigma2"] as! Double), "\(scaling)")
            XCTAssertEqual(f.logPseudoLikelihood, r["logPseudoLik"] as! Double, accuracy: 1e-10 * abs(f.logPseudoLikelihood), "\(scaling)")
        }
    }

    /// Without random effects the fit is weighted least squares and the sandwich is svyglm's
    /// linearisation: PSUs (districts) with replacement, and within strata (apistrat, nest = TRUE).
    func testWithoutRandomEffectsTheStandardErrorsAreSvyglms() throws {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("survey_reference.json")))) as! [String: Any]
        for (file, key, strata) in [("apiclus2.csv", "svyglm_apiclus2", nil), ("apistrat.csv", "svyglm_apistrat", "stype")] {
            let r = reference[key] as! [String: [String: Double]]
            let f = try fit(Fixtures.path(file), "api00 ~ ell + meals", weights: ["pw"], psu: "dnum", strata: strata)
            for (k, name) in f.fixedNames.enumerated() {
                XCTAssertEqual(f.beta[k], r["beta"]![name]!, accuracy: 1e-9 * abs(r["beta"]![name]!), "\(key) \(name)")
                XCTAssertEqual(f.standardErrors[k], r["se"]![name]!, accuracy: 1e-6 * r["se"]![name]!, "\(key) \(name)")
            }
        }
    }

    /// Replicate weights made by R's survey (`as.svrepdesign`): JK1 on apiclus2 and Fay's BRR on
    /// apistrat give svyglm's SEs without random effects; with them, JK1 gives the SEs of the R
    /// implementation of the pseudo-likelihood refitted on each replicate. And svyglm's SEs with a
    /// finite-population correction.
    func testReplicateWeightsGiveSurveysStandardErrors() throws {
        let reference = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("survey_reference.json")))) as! [String: Any]
        func design(_ weights: [String], _ replicates: String, _ method: ReplicateMethod, psu: String? = nil, strata: String? = nil) throws -> SurveyDesign {
            var d = SurveyDesign(weights: weights, psu: psu, strata: strata)
            d.replicateWeights = try SurveyDesign.replicateColumns(replicates)
            d.replicateMethod = method
            return d
        }
        for (file, key, d) in [("apiclus2.csv", "svyglm_apiclus2_jk1", try design(["pw"], "jk1..jk40", .jk1, psu: "dnum")),
                               ("apistrat.csv", "svyglm_apistrat_fay", try design(["pw"], "fay1..fay4", .fay, psu: "dnum", strata: "stype"))] {
            let r = reference[key] as! [String: [String: Double]]
            let f = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: Fixtures.path(file), table: nil), design: d)
            for (k, name) in f.fixedNames.enumerated() {
                XCTAssertEqual(f.standardErrors[k], r["se"]![name]!, accuracy: 1e-8 * r["se"]![name]!, "\(key) \(name)")
            }
        }
        // A finite-population correction: 40 of 757 districts (svydesign(fpc = ~fpc1)).
        var corrected = SurveyDesign(weights: ["pw"], psu: "dnum")
        corrected.fpc = "fpc1"
        let fpc = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: Fixtures.path("apiclus2.csv"), table: nil),
                                                 design: corrected)
        let fpcReference = reference["svyglm_apiclus2_fpc"] as! [String: [String: Double]]
        for (k, name) in fpc.fixedNames.enumerated() {
            XCTAssertEqual(fpc.standardErrors[k], fpcReference["se"]![name]!, accuracy: 1e-8 * fpcReference["se"]![name]!, "fpc \(name)")
        }
        // A correction that is neither a fraction nor at least the PSUs sampled, or that varies within a stratum.
        let lines = try String(contentsOfFile: Fixtures.path("apiclus2.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        let column = lines[0].split(separator: ",").firstIndex(of: "\"fpc1\"")!
        func withFPC(_ value: (Int) -> String, _ name: String) throws -> String {
            var out = [lines[0]]
            for (i, line) in lines.dropFirst().enumerated() {
                var f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                f[column] = value(i)
                out.append(f.joined(separator: ","))
            }
            return try write(out.joined(separator: "\n") + "\n", to: name)
        }
        for (path, expected) in [(try withFPC({ _ in "20" }, "fpc-small.csv"), "fewer PSUs than the 40 sampled"),
                                 (try withFPC({ $0 == 0 ? "800" : "757" }, "fpc-varies.csv"), "column 'fpc1' varies within")] {
            XCTAssertTrue(message {
                try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: path, table: nil), design: corrected)
            }.contains(expected), expected)
        }
        let r = reference["pml_apiclus2_jk1"] as! [String: Any]
        let f = try LinearMixedModel.fitSurvey("api00 ~ ell + meals + (1 | dnum)", data: openTable(path: Fixtures.path("apiclus2.csv"), table: nil),
                                               design: try design(["w_school", "w_district"], "jk1..jk40", .jk1))
        let se = r["se"] as! [String: Double]
        for (k, name) in f.fixedNames.enumerated() { XCTAssertEqual(f.standardErrors[k], se[name]!, accuracy: 1e-5 * se[name]!, name) }
        XCTAssertEqual(f.varcorrStandardErrors[0], r["tau2_se"] as! Double, accuracy: 1e-5 * (r["tau2_se"] as! Double))
        XCTAssertEqual(f.varcorrStandardErrors[1], r["sigma2_se"] as! Double, accuracy: 1e-5 * (r["sigma2_se"] as! Double))
        // Fay's replicates of apistrat perturb (stratum, district) PSUs: without the strata a district spans two.
        XCTAssertTrue(message {
            try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: Fixtures.path("apistrat.csv"), table: nil),
                                           design: try design(["pw"], "fay1..fay4", .fay, psu: "dnum"))
        }.contains("replicates must reweight whole clusters"))
        XCTAssertEqual(try SurveyDesign.replicateColumns("W_FSTR1..W_FSTR3"), ["W_FSTR1", "W_FSTR2", "W_FSTR3"])
        XCTAssertTrue(message { try SurveyDesign.replicateColumns("A1..B3") }.contains("must read PREFIX<first>..PREFIX<last>"))
    }

    /// The same fit from the CSV and from its HDF5 conversion (`mlm convert`): PSUs, strata and
    /// replicates read through either source.
    func testCSVAndHDF5GiveTheSameSurveyFit() throws {
        let h5 = temporary("apistrat.h5")
        XCTAssertEqual(try mlm(["convert", Fixtures.path("apistrat.csv"), h5]).status, 0)
        var design = SurveyDesign(weights: ["pw"], psu: "dnum", strata: "stype")
        let fromCSV = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: Fixtures.path("apistrat.csv"), table: nil), design: design)
        let fromHDF5 = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: h5, table: nil), design: design)
        XCTAssertEqual(fromCSV.beta, fromHDF5.beta)
        XCTAssertEqual(fromCSV.standardErrors, fromHDF5.standardErrors)
        XCTAssertEqual(fromCSV.psus, fromHDF5.psus)
        design.replicateWeights = try SurveyDesign.replicateColumns("fay1..fay4")
        design.replicateMethod = .fay
        let a = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: Fixtures.path("apistrat.csv"), table: nil), design: design)
        let b = try LinearMixedModel.fitSurvey("api00 ~ ell + meals", data: openTable(path: h5, table: nil), design: design)
        XCTAssertEqual(a.standardErrors, b.standardErrors)
    }

    /// The clusters' sums are the same bit for bit for any number of threads and any chunk size
    /// (segments of 7 rows: clusters span several, whose sums are added in segment order).
    func testTheFitDoesNotDependOnThreadsOrChunks() throws {
        let path = try syntheticData(clusters: 40)
        var one = FitOptions(reml: false); one.threads = 1; one.segmentRows = 7; one.chunkRows = 3
        var two = FitOptions(reml: false); two.threads = 2; two.segmentRows = 7
        let a = try fit(path, "y ~ x + (1 + x | g)", options: one), b = try fit(path, "y ~ x + (1 + x | g)", options: two)
        XCTAssertEqual(a.beta, b.beta)
        XCTAssertEqual(a.theta, b.theta)
        XCTAssertEqual(a.standardErrors, b.standardErrors)
        XCTAssertEqual(a.logPseudoLikelihood, b.logPseudoLikelihood)
    }

    func testBadWeightsAndDesignsAreOneLineErrors() throws {
        let good = try syntheticData()
        let rows = try String(contentsOfFile: good, encoding: .utf8).split(separator: "\n").map(String.init)
        func replacing(row: Int, column: Int, with value: String) throws -> String {
            var lines = rows
            var f = lines[row].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            f[column] = value
            lines[row] = f.joined(separator: ",")
            return try write(lines.joined(separator: "\n") + "\n", to: "bad-\(row)-\(column)-\(value).csv")
        }
        let formula = "y ~ x + (1 | g)"
        XCTAssertTrue(message { try self.fit(try replacing(row: 2, column: 3, with: "-1"), formula) }
            .contains("line 3: the sampling weight in column 'w1' is -1; sampling weights must be finite and not negative"))
        XCTAssertTrue(message { try self.fit(try replacing(row: 2, column: 3, with: "NA"), formula) }
            .contains("line 3: the sampling weight in column 'w1' is missing"))
        XCTAssertTrue(message { try self.fit(try replacing(row: 2, column: 4, with: "9.5"), formula) }
            .contains("the level-2 weight in column 'w2' varies within g 'g0'"))
        // A cluster whose level-1 weights are all 0.
        var zeroed = rows
        for i in zeroed.indices.dropFirst() where zeroed[i].contains(",g1,") {
            var f = zeroed[i].split(separator: ",").map(String.init); f[3] = "0"; zeroed[i] = f.joined(separator: ",")
        }
        let zeroPath = try write(zeroed.joined(separator: "\n") + "\n", to: "zero.csv")
        XCTAssertTrue(message { try self.fit(zeroPath, formula) }.contains("add up to 0 in g 'g1'"))
        XCTAssertTrue(message { try self.fit(good, "y ~ x + (1 | g) + (1 | h)", weights: ["w1", "w2", "w2"]) }
            .contains("the groupings are crossed, and crossed designs have no accepted sampling-weighted likelihood"))
        XCTAssertTrue(message { try self.fit(good, "y ~ x + (1 | mm(g, w2))") }.contains("multiple-membership design"))
        XCTAssertTrue(message { try self.fit(good, formula, weights: ["w1"]) }.contains("needs 2 columns for this 2-level model"))
        XCTAssertTrue(message { try self.fit(good, "y ~ x", weights: ["w1"]) }.contains("needs --psu"))
        XCTAssertTrue(message { try self.fit(good, formula, strata: "x") }.contains("column 'x' varies within g"))
        XCTAssertTrue(message { try self.fit(good, "y ~ x", weights: ["w1"], psu: "g", strata: "w2") }
            .contains("a single primary sampling unit"))
        // Strata of one PSU each: certainty leaves no variance; centered takes each PSU's deviation from the mean of all.
        let lonely = SurveyDesign(weights: ["w1"], psu: "g", strata: "w2", singlePSU: .certainty)
        let certain = try LinearMixedModel.fitSurvey("y ~ x", data: openTable(path: good, table: nil), design: lonely)
        XCTAssertEqual(certain.standardErrors, [0, 0])
        var centeredDesign = lonely
        centeredDesign.singlePSU = .centered
        centeredDesign.strata = nil
        let oneStratum = try LinearMixedModel.fitSurvey("y ~ x", data: openTable(path: good, table: nil), design: centeredDesign)
        centeredDesign.strata = "w2"
        let centered = try LinearMixedModel.fitSurvey("y ~ x", data: openTable(path: good, table: nil), design: centeredDesign)
        // Centred at the grand mean without the n/(n − 1) factor: one stratum's SEs times √((n − 1)/n).
        let n = Double(oneStratum.psus)
        for (a, b) in zip(centered.standardErrors, oneStratum.standardErrors) { XCTAssertEqual(a, b * ((n - 1) / n).squareRoot(), accuracy: 1e-10 * b) }
    }

    /// Three levels: pupils in schools in districts, weights at each level (deterministic):
    /// columns y, x, d, s, w1, w2 (constant in a school), w3 (constant in a district).
    func threeLevelData(unitWeights: Bool = false, transformW2: (Int, Double) -> Double = { _, w in w }) throws -> String {
        var state: UInt64 = 777
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
        var lines = ["y,x,d,s,w1,w2,w3"]
        for k in 0..<7 {
            let v = 0.6 * normal(), w3 = unitWeights ? 1 : 2 + 4 * uniform()
            for j in 0..<(2 + Int(uniform() * 4)) {
                let u = 0.7 * normal(), w2 = unitWeights ? 1 : transformW2(k, 1 + 3 * uniform())
                for _ in 0..<(3 + Int(uniform() * 5)) {
                    let x = 2 * uniform() - 1
                    let w1 = unitWeights ? 1 : 0.5 + 2.5 * uniform()
                    lines.append("\(1 + 0.5 * x + v + u + normal()),\(x),d\(k),s\(j),\(w1),\(w2),\(w3)")
                }
            }
        }
        return try write(lines.joined(separator: "\n") + "\n", to: "three-\(UUID().uuidString).csv")
    }

    /// Σₖ wₖ log ∫ N(v; 0, τᵥ²) Πⱼ [∫ N(u; 0, τᵤ²) Πᵢ φ(yᵢ; xᵢ'β + u + v, σ²)^{cⱼwᵢ} du]^{c₂ₖwⱼ} dv, each
    /// integral by the trapezoidal rule around its integrand's mode (the outer one's found from
    /// three values of its logarithm, a parabola in v).
    func nestedIntegral(_ path: String, fit: SurveyFitResult, scaling: WeightScaling) throws -> Double {
        let text = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").dropFirst()
        typealias Row = (y: Double, x: Double, w1: Double, w2: Double, w3: Double)
        var districts: [String: [String: [Row]]] = [:]
        for line in text {
            let f = line.split(separator: ",").map(String.init)
            districts[f[2], default: [:]][f[3], default: []].append((Double(f[0])!, Double(f[1])!, Double(f[4])!, Double(f[5])!, Double(f[6])!))
        }
        let tauU = fit.varcorr[0].vcov, tauV = fit.varcorr[1].vcov, s2 = fit.sigma * fit.sigma, beta = fit.beta
        func trapezoid(centre: Double, sd: Double, _ f: (Double) -> Double) -> Double {
            let values = (-40...40).map { f(centre + Double($0) * 0.25 * sd) }
            let m = values.max()!
            return m + log(values.reduce(0.0) { $0 + exp($1 - m) } * 0.25 * sd)
        }
        func logNormal(_ x: Double, _ variance: Double) -> Double { -0.5 * log(2 * .pi * variance) - x * x / (2 * variance) }
        var total = 0.0
        for (_, schools) in districts {
            let w2 = schools.values.map { $0[0].w2 }
            let c2 = scaling.factor(count: Double(w2.count), sum: w2.reduce(0, +), sumOfSquares: w2.reduce(0) { $0 + $1 * $1 })
            func logSchool(_ rows: [Row], _ v: Double) -> Double {
                let sw = rows.reduce(0.0) { $0 + $1.w1 }, sw2 = rows.reduce(0.0) { $0 + $1.w1 * $1.w1 }
                let c = scaling.factor(count: Double(rows.count), sum: sw, sumOfSquares: sw2)
                let precision = c * sw / s2 + 1 / tauU
                let mode = rows.reduce(0.0) { $0 + c * $1.w1 * ($1.y - beta[0] - beta[1] * $1.x - v) } / s2 / precision
                return trapezoid(centre: mode, sd: 1 / precision.squareRoot()) { u in
                    rows.reduce(logNormal(u, tauU)) { $0 + c * $1.w1 * logNormal($1.y - beta[0] - beta[1] * $1.x - v - u, s2) }
                }
            }
            func g(_ v: Double) -> Double { schools.values.reduce(logNormal(v, tauV)) { $0 + c2 * $1[0].w2 * logSchool($1, v) } }
            let (gm, g0, gp) = (g(-1), g(0), g(1))
            let curvature = -(gp - 2 * g0 + gm) / 2, slope = (gp - gm) / 2
            total += schools.values.first![0].w3 * trapezoid(centre: slope / (2 * curvature), sd: 1 / (2 * curvature).squareRoot(), g)
        }
        return total
    }

    func testThreeLevelPseudoLikelihoodEqualsTheNestedIntegral() throws {
        let path = try threeLevelData()
        for scaling in WeightScaling.allCases {
            let f = try fit(path, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"], scaling: scaling)
            XCTAssertEqual(f.groups.map(\.name), ["s:d", "d"])
            XCTAssertEqual(f.psus, 7, "the districts are the PSUs")
            let integral = try nestedIntegral(path, fit: f, scaling: scaling)
            XCTAssertEqual(f.logPseudoLikelihood, integral, accuracy: 1e-8 * abs(integral), "\(scaling)")
            XCTAssertTrue(f.standardErrors.allSatisfy { $0.isFinite && $0 > 0 })
            XCTAssertTrue(f.varcorrStandardErrors.allSatisfy { $0.isFinite && $0 > 0 })
        }
        // With all weights 1: the ML fit.
        let unit = try threeLevelData(unitWeights: true)
        let weighted = try fit(unit, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"])
        let ml = try LinearMixedModel.fit("y ~ x + (1 | d/s)", data: openTable(path: unit, table: nil), options: FitOptions(reml: false))
        XCTAssertEqual(weighted.logPseudoLikelihood, ml.logLik, accuracy: 1e-9 * abs(ml.logLik))
        for (a, b) in zip(weighted.beta, ml.beta) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
        for (a, b) in zip(weighted.theta, ml.theta) { XCTAssertEqual(a, b, accuracy: 2e-4) }
        // The level-2 weights of one district times 5: nothing changes under size and effective scaling.
        let scaled = try threeLevelData(transformW2: { k, w in k == 2 ? 5 * w : w })
        for scaling in [WeightScaling.size, .effective] {
            let a = try fit(path, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"], scaling: scaling)
            let b = try fit(scaled, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"], scaling: scaling)
            XCTAssertEqual(a.logPseudoLikelihood, b.logPseudoLikelihood, accuracy: 1e-9 * abs(a.logPseudoLikelihood), "\(scaling)")
        }
        // A district weight that varies across its schools.
        var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        var f = lines[1].split(separator: ",").map(String.init)
        let school = f[3]
        for i in 1..<lines.count where lines[i].contains(",d0,\(school),") {
            f = lines[i].split(separator: ",").map(String.init); f[6] = "99"; lines[i] = f.joined(separator: ",")
        }
        let bad = try write(lines.joined(separator: "\n") + "\n", to: "bad-w3.csv")
        XCTAssertTrue(message { try self.fit(bad, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"]) }
            .contains("the level-3 weight in column 'w3' varies within d 'd0'"))
    }

    /// Three levels with delete-one-district jackknife replicates: the same SEs as refitting the
    /// data with each district's weight set to 0 and the others' scaled by K/(K − 1).
    func testThreeLevelReplicatesAreRefitsWithReweightedDistricts() throws {
        let path = try threeLevelData()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let districts = Array(Set(lines.dropFirst().map { $0.split(separator: ",")[2] })).sorted()
        let k = Double(districts.count)
        // Replicate columns: the full-sample weight w1·w2·w3 times 0 or K/(K − 1).
        var withReplicates = [lines[0] + "," + districts.indices.map { "jk\($0 + 1)" }.joined(separator: ",")]
        for line in lines.dropFirst() {
            let f = line.split(separator: ",").map(String.init)
            let full = Double(f[4])! * Double(f[5])! * Double(f[6])!
            withReplicates.append(line + "," + districts.map { "\(f[2] == $0 ? 0 : full * k / (k - 1))" }.joined(separator: ","))
        }
        let replicated = try write(withReplicates.joined(separator: "\n") + "\n", to: "three-jk.csv")
        var design = SurveyDesign(weights: ["w1", "w2", "w3"])
        design.replicateWeights = districts.indices.map { "jk\($0 + 1)" }
        design.replicateMethod = .jk1
        let f = try LinearMixedModel.fitSurvey("y ~ x + (1 | d/s)", data: openTable(path: replicated, table: nil), design: design)
        // The same by refits of reweighted data.
        let full = try fit(path, "y ~ x + (1 | d/s)", weights: ["w1", "w2", "w3"])
        var sums = [Double](repeating: 0, count: 2 + 3)
        for dropped in districts {
            var text = [lines[0]]
            for line in lines.dropFirst() {
                var g = line.split(separator: ",").map(String.init)
                g[6] = "\(g[2] == dropped ? 0 : Double(g[6])! * k / (k - 1))"
                text.append(g.joined(separator: ","))
            }
            let refit = try fit(try write(text.joined(separator: "\n") + "\n", to: "drop-\(dropped).csv"), "y ~ x + (1 | d/s)",
                                weights: ["w1", "w2", "w3"])
            let deviations = zip(refit.beta, full.beta).map { $0 - $1 } + zip(refit.varcorr, full.varcorr).map { $0.vcov - $1.vcov }
            for i in deviations.indices { sums[i] += deviations[i] * deviations[i] }
        }
        let expected = sums.map { ((k - 1) / k * $0).squareRoot() }
        for i in 0..<2 { XCTAssertEqual(f.standardErrors[i], expected[i], accuracy: 1e-4 * expected[i], "β[\(i)]") }
        for i in 0..<3 { XCTAssertEqual(f.varcorrStandardErrors[i], expected[2 + i], accuracy: 1e-3 * expected[2 + i], "variance \(i)") }
    }

    func testCommandLineSummaryAndRefusals() throws {
        let path = try syntheticData()
        let run = try mlm(["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--weight-scaling", "effective",
                           "--json", temporary("fit.json")])
        XCTAssertEqual(run.status, 0, run.stderr)
        for text in ["maximum pseudo-likelihood", "Weights: level 1 w1, level 2 w2; level-1 weights scaled by effective",
                     "linearised (sandwich), 14 clusters (g) as PSUs", "Robust SE", "Pr(>|z|)", "REML has no accepted"] {
            XCTAssertTrue(run.stdout.contains(text), text + "\n" + run.stdout)
        }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: temporary("fit.json")))) as! [String: Any]
        XCTAssertEqual((json["survey"] as! [String: Any])["scaling"] as? String, "effective")
        XCTAssertEqual(json["criterion"] as? String, "ML (pseudo-likelihood)")
        // Wald intervals at --level.
        let ninety = try mlm(["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--level", "0.9", "--json", "-"])
        XCTAssertTrue(ninety.stderr.contains("5 %") && ninety.stderr.contains("95 %"), ninety.stderr)
        let j90 = try JSONSerialization.jsonObject(with: Data(ninety.stdout.utf8)) as! [String: Any]
        let se = (j90["se"] as! [String: Double])["x"]!, b = (j90["beta"] as! [String: Double])["x"]!
        let ci = (j90["ci"] as! [String: [Double]])["x"]!
        XCTAssertEqual(ci[1] - b, 1.6448536269514722 * se, accuracy: 1e-9 * se)
        for (arguments, expected) in [
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--bootstrap", "10"], "--bootstrap is not available with --survey-weights"),
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--weights", "w1"], "cannot be combined"),
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--weight-scaling", "A"], "--weight-scaling must be one of"),
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--psu", "g"], "--psu and --strata need --survey-weights"),
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1,,w2"], "--survey-weights must list"),
            (["fit", path, "--formula", "y ~ x + (1 | g)", "--survey-weights", "w1, w2", "--replicate-weights", "w1, w2"],
             "--replicate-weights needs --replicate-method"),
            (["compare", path, "--formula", "y ~ x + (1 | g)", "--formula", "y ~ 1 + (1 | g)", "--survey-weights", "w1, w2"],
             "likelihood-ratio tests are not valid under sampling weights"),
        ] {
            let r = try mlm(arguments)
            XCTAssertNotEqual(r.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(expected), r.stderr)
        }
    }
}

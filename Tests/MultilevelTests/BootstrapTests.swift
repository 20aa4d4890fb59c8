import Foundation
import XCTest
@testable import Multilevel

/// The parametric bootstrap in cross-product space: its square root of [Z X]'[Z X], its
/// exactness in distribution, its independence of threads, and lme4's intervals.
final class BootstrapTests: XCTestCase {
    let sleepstudy = "Reaction ~ Days + (Days | Subject)"

    func fit(_ file: String, _ formula: String) throws -> FitResult {
        try LinearMixedModel.fit(formula, data: openTable(path: Fixtures.path(file), table: nil))
    }

    /// L D L' rebuilds G = [Z X]'[Z X], and the zero pivots count its dependent columns: on
    /// sleepstudy the 18 intercept and 18 slope columns sum to X's two columns (rank 36 of 38);
    /// on pastes the 30 sample columns span the 10 batch columns and the intercept (rank 30 of 41).
    func testSemidefiniteRootRebuildsTheGramMatrixAndFindsItsRank() throws {
        for (file, formula, rank) in [("sleepstudy.csv", sleepstudy, 36),
                                      ("pastes.csv", "strength ~ 1 + (1 | batch/cask)", 30)] {
            let cp = try fit(file, formula).crossProducts
            let q = cp.randomEffectsCount, p = cp.fixedCount, n = q + p
            var g = [Double](repeating: 0, count: n * n)
            let zz = cp.denseZtZ()
            for j in 0..<q { for i in 0..<q { g[i + j * n] = zz[i + j * q] } }
            for j in 0..<p {
                for i in 0..<q { g[i + (q + j) * n] = cp.zxy[i + j * q]; g[(q + j) + i * n] = cp.zxy[i + j * q] }
                for i in 0..<p { g[(q + i) + (q + j) * n] = cp.xx(i, j) }
            }
            let root = SemidefiniteCholesky(cp)
            XCTAssertEqual(root.rank, rank, file)
            // Column j of L (unit diagonal), then G' = Σ_j d_j l_j l_j'.
            var rebuilt = [Double](repeating: 0, count: n * n)
            for j in 0..<n where root.pivots[j] > 0 {
                var l = [Double](repeating: 0, count: n)
                l[j] = 1
                for k in root.columnStarts[j]..<root.columnStarts[j + 1] { l[Int(root.rowIndices[k])] = root.values[k] }
                for a in 0..<n where l[a] != 0 { for b in 0..<n where l[b] != 0 { rebuilt[a + b * n] += root.pivots[j] * l[a] * l[b] } }
            }
            let scale = g.map(abs).max()!
            let worst = zip(g, rebuilt).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-10 * scale, "\(file): largest difference \(worst)")
        }
    }

    /// Exact in distribution: 2,000 replicates simulated in cross-product space against 2,000
    /// made the long way — a full response y* = Xβ̂ + ZΛ̂u* + ε* row by row, its cross-products
    /// summed from the rows — both refit the same way. Two-sample Kolmogorov–Smirnov tests on
    /// σ*, both β* and the intercept SD must not reject at the 1% level (fixed seeds).
    func testCrossProductReplicatesHaveTheLawOfFullResponseReplicates() throws {
        let data = try openTable(path: Fixtures.path("sleepstudy.csv"), table: nil)
        let fitted = try LinearMixedModel.fit(sleepstudy, data: data)
        let simulator = BootstrapSimulator(fitted, threads: 1)
        let n = data.rowCount, term = fitted.terms[0], q = term.columns
        let days = try data.readNumeric("Days", rows: 0..<n)
        let subject = try data.readStrings("Subject", rows: 0..<n).map { term.levels.firstIndex(of: $0!)! }
        let templates = RelativeCovarianceFactor(terms: fitted.terms).templates(fitted.theta)
        let count = 2_000
        var fast: [[Double]] = [], slow: [[Double]] = []
        for i in 0..<count {
            let r = simulator.replicate(i, seed: 11, thread: 0)
            fast.append([r.sigma, r.beta[0], r.beta[1], r.sigma * r.theta[0]])

            var random = Xoshiro256(seed: 97, stream: i)
            var b = (0..<q).map { _ in random.nextNormal() }
            RelativeCovarianceFactor(terms: fitted.terms).apply(templates, to: &b)
            var zy = [Double](repeating: 0, count: q), xy = [0.0, 0.0], yy = 0.0
            for row in 0..<n {
                let s = subject[row]
                let y = fitted.beta[0] + fitted.beta[1] * days[row]
                    + fitted.sigma * (b[2 * s] + b[2 * s + 1] * days[row]) + fitted.sigma * random.nextNormal()
                zy[2 * s] += y; zy[2 * s + 1] += days[row] * y
                xy[0] += y; xy[1] += days[row] * y
                yy += y * y
            }
            let s = simulator.refit(fitted.crossProducts.replacingResponse(zy + xy, yy), index: i, thread: 0)
            slow.append([s.sigma, s.beta[0], s.beta[1], s.sigma * s.theta[0]])
        }
        for (k, name) in ["sigma*", "(Intercept)*", "Days*", "sd(Intercept)*"].enumerated() {
            let p = Self.kolmogorovSmirnovP(fast.map { $0[k] }, slow.map { $0[k] })
            XCTAssertGreaterThan(p, 0.01, "\(name): KS p = \(p)")
        }
    }

    /// The two-sample Kolmogorov–Smirnov p-value (asymptotic, with Stephens' correction).
    static func kolmogorovSmirnovP(_ a: [Double], _ b: [Double]) -> Double {
        let x = a.sorted(), y = b.sorted()
        var i = 0, j = 0, d = 0.0
        while i < x.count && j < y.count {
            let v = min(x[i], y[j])
            while i < x.count && x[i] <= v { i += 1 }
            while j < y.count && y[j] <= v { j += 1 }
            d = max(d, abs(Double(i) / Double(x.count) - Double(j) / Double(y.count)))
        }
        let ne = Double(x.count * y.count) / Double(x.count + y.count)
        let lambda = (ne.squareRoot() + 0.12 + 0.11 / ne.squareRoot()) * d
        var p = 0.0
        for k in 1...100 { p += 2 * (k % 2 == 1 ? 1 : -1) * exp(-2 * Double(k * k) * lambda * lambda) }
        return min(max(p, 0), 1)
    }

    /// A replicate's numbers depend only on (seed, index): 1 and 3 threads give the same table.
    func testReplicatesAreTheSameForAnyNumberOfThreads() throws {
        let fitted = try fit("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)")
        let one = try ParametricBootstrap.run(fitted, options: BootstrapOptions(replicates: 40, seed: 5, threads: 1))!
        let three = try ParametricBootstrap.run(fitted, options: BootstrapOptions(replicates: 40, seed: 5, threads: 3))!
        XCTAssertEqual(one.replicates, three.replicates)
        XCTAssertEqual(one.intervals, three.intervals)
        let other = try ParametricBootstrap.run(fitted, options: BootstrapOptions(replicates: 40, seed: 6, threads: 1))!
        XCTAssertNotEqual(one.replicates.map(\.sigma), other.replicates.map(\.sigma), "the seed is used")
    }

    /// The replicate table reads back bit for bit from CSV (17 significant digits) and from
    /// HDF5 (group `bootstrap`, one dataset per column), in index order.
    func testReplicateTablesReadBackExactly() throws {
        let fitted = try fit("sleepstudy.csv", sleepstudy)
        let result = try ParametricBootstrap.run(fitted, options: BootstrapOptions(replicates: 25, seed: 8))!
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-boot-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let expected = result.replicates.map { [Double($0.index)] + $0.theta + $0.beta + [$0.sigma, $0.deviance] }
        XCTAssertEqual(result.tableColumns, ["index", "Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days",
                                             "(Intercept)", "Days", "sigma", "deviance"])
        for name in ["replicates.csv", "replicates.h5"] {
            let path = directory.appendingPathComponent(name).path
            try result.writeTable(to: path)
            let table = try openTable(path: path, table: name.hasSuffix(".h5") ? "bootstrap" : nil)
            XCTAssertEqual(table.rowCount, 25)
            for (c, column) in result.tableColumns.enumerated() {
                XCTAssertEqual(try table.readNumeric(column, rows: 0..<25), expected.map { $0[c] }, "\(name): \(column)")
            }
        }
        XCTAssertThrowsError(try result.writeTable(to: directory.appendingPathComponent("replicates.txt").path))
    }

    /// Percentile intervals from 1,000 replicates agree with lme4's `confint(m, method = "boot",
    /// nsim = 1000)` within Monte-Carlo error. The two runs use different random streams, so
    /// each limit is an independent estimate of the same quantile, with the Monte-Carlo standard
    /// error `se` that `bench/make_confint_fixtures.R` measured for lme4's (by resampling its
    /// replicates); their difference has standard error √2·se, and 4√2·se leaves a chance of
    /// about 6e-5 per limit of failing when both are right.
    func testPercentileIntervalsAgreeWithLme4WithinMonteCarloError() throws {
        let fitted = try fit("sleepstudy.csv", sleepstudy)
        let result = try ParametricBootstrap.run(fitted, options: BootstrapOptions(replicates: 1_000, seed: 20261123))!
        let reference = try ConfintFixture.load().boot
        XCTAssertEqual(result.failed, 0)
        XCTAssertEqual(result.intervals.count, reference.count)
        for (mine, lme4) in zip(result.intervals, reference) {
            XCTAssertEqual(mine.parameter.label, lme4.label)
            XCTAssertEqual(mine.parameter.estimate, lme4.estimate, accuracy: 1e-4 * max(1, abs(lme4.estimate)))
            XCTAssertEqual(mine.lower, lme4.lower, accuracy: 4 * 2.0.squareRoot() * lme4.lowerSE!, "\(lme4.label) lower")
            XCTAssertEqual(mine.upper, lme4.upper, accuracy: 4 * 2.0.squareRoot() * lme4.upperSE!, "\(lme4.label) upper")
        }
    }

    /// boot's `norm.inter`: R = 999 and α = 0.025 hit the 25th order statistic exactly; R = 1000
    /// interpolates between the 25th and 26th on the normal quantile scale; R = 10 uses the extremes.
    func testOrderStatisticsFollowBootNormInter() {
        let t999 = (1...999).map(Double.init)
        XCTAssertEqual(BootstrapInterval.orderStatistic(t999, 0.025), 25)
        let t1000 = (1...1000).map(Double.init)
        let q = NormalDistribution.quantile
        let expected = 25 + (q(0.025) - q(25.0 / 1001)) / (q(26.0 / 1001) - q(25.0 / 1001))
        XCTAssertEqual(BootstrapInterval.orderStatistic(t1000, 0.025), expected, accuracy: 1e-12)
        XCTAssertEqual(BootstrapInterval.orderStatistic((1...10).map(Double.init), 0.025), 1)
        XCTAssertEqual(q(0.975), 1.959963984540054, accuracy: 1e-15)
        XCTAssertEqual(q(1e-10), -6.361340902404056, accuracy: 1e-12)
    }
}

/// lme4's `confint` of sleepstudy (`bench/make_confint_fixtures.R`).
struct ConfintFixture {
    struct Interval {
        let label: String
        let estimate, lower, upper: Double
        let lowerSE, upperSE: Double?
    }
    let profile: [Interval]
    let boot: [Interval]

    static func load() throws -> ConfintFixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("sleepstudy_confint.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        func intervals(_ key: String) -> [Interval] {
            ((json[key] as! [String: Any])["intervals"] as! [[String: Any]]).map { i in
                let p = ModelParameter(kind: ModelParameter.Kind(rawValue: i["parameter"] as! String)!,
                                       group: i["group"] as? String, var1: i["var1"] as? String, var2: i["var2"] as? String,
                                       name: i["name"] as? String, estimate: i["estimate"] as! Double)
                return Interval(label: p.label, estimate: p.estimate, lower: i["lower"] as! Double, upper: i["upper"] as! Double,
                                lowerSE: i["lower_se"] as? Double, upperSE: i["upper_se"] as? Double)
            }
        }
        return ConfintFixture(profile: intervals("profile"), boot: intervals("boot"))
    }
}

import XCTest
@testable import Multilevel

/// The analytic gradient of the profiled deviance against finite differences of the deviance
/// itself, on every fixture design, REML and ML, on both factorisations and at a boundary.
final class GradientTests: XCTestCase {
    func crossProducts(_ dataset: String, _ formula: String) throws -> CrossProducts {
        let data = try openTable(path: Fixtures.path(dataset), table: nil)
        return try ModelFrame.scan(Formula.parse(formula), source: data).crossProducts()
    }

    /// Central differences, Richardson-extrapolated (error O(h⁴)), with h a small fraction of |θ_i|.
    func finiteDifference(_ pls: PenalizedLeastSquares, _ theta: [Double]) -> [Double] {
        theta.indices.map { i in
            let h = 1e-3 * max(abs(theta[i]), 0.1)
            func at(_ s: Double) -> Double { var t = theta; t[i] += s; return pls.objective(t) }
            return (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
        }
    }

    func check(_ cp: CrossProducts, _ theta: [Double], ordering: FillReducingOrdering, blocked: Bool? = nil,
               label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for reml in [true, false] {
            let pls = try PenalizedLeastSquares(cp, reml: reml, ordering: ordering)
            if let blocked { XCTAssertEqual(pls.isBlocked, blocked, label, file: file, line: line) }
            let e = try XCTUnwrap(pls.evaluate(theta))
            let analytic = pls.gradient(theta, e)
            let numeric = finiteDifference(pls, theta)
            let scale = max(numeric.map(abs).max() ?? 1, 1)
            for i in theta.indices {
                XCTAssertEqual(analytic[i], numeric[i], accuracy: 1e-6 * scale,
                               "\(label) \(reml ? "REML" : "ML") θ[\(i)]: analytic \(analytic) numeric \(numeric)",
                               file: file, line: line)
            }
        }
    }

    func testRandomSlopesWithCorrelation() throws {
        let cp = try crossProducts("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")
        try check(cp, [0.9, 0.03, 0.2], ordering: .natural, label: "sleepstudy")
        try check(cp, [0.9, -0.4, 0.0], ordering: .amd, label: "sleepstudy at a boundary")
    }

    func testUncorrelatedTerms() throws {
        let cp = try crossProducts("sleepstudy.csv", "Reaction ~ Days + (Days || Subject)")
        try check(cp, [0.8, 0.25], ordering: .natural, label: "sleepstudy ||")
    }

    func testNested() throws {
        let cp = try crossProducts("pastes.csv", "strength ~ 1 + (1 | batch/cask)")
        try check(cp, [2.1, 0.6], ordering: .natural, label: "pastes")
        try check(cp, [0, 0.6], ordering: .metis, label: "pastes at a boundary")
    }

    func testCrossedOnBothFactorizations() throws {
        let cp = try crossProducts("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)")
        try check(cp, [1.7, 3.1], ordering: .natural, blocked: true, label: "penicillin blocked")
        try check(cp, [1.7, 3.1], ordering: .amd, blocked: false, label: "penicillin CHOLMOD")
        let instEval = try crossProducts("insteval.h5", "y ~ 1 + service + (1 | s) + (1 | d)")
        try check(instEval, [0.31, 0.52], ordering: .natural, blocked: true, label: "insteval blocked")
    }

    /// A random-slope first term crossed with another factor: 2 × 2 blocks in the blocked form.
    func testRandomSlopeCrossedBlocked() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-gradient-\(UUID().uuidString).h5").path
        defer { unlink(path) }
        try Simulation(design: .crossed, rows: 3_000, seed: 5).write(to: path)
        let cp = try ModelFrame.scan(Formula.parse(CrossedFormula.text), source: openTable(path: path, table: nil)).crossProducts()
        try check(cp, [0.8, 0.25, 0.3, 0.45], ordering: .natural, blocked: true, label: "crossed blocked")
        try check(cp, [0.8, 0.25, 0.3, 0.45], ordering: .amd, blocked: false, label: "crossed CHOLMOD")
    }

    func testMultipleMembership() throws {
        let cp = try crossProducts("multimember.csv",
                                   "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)")
        try check(cp, [0.6, 0.4], ordering: .natural, label: "multimember")
    }

    func testFixedEffectsWithSeveralColumns() throws {
        let cp = try crossProducts("exam.csv", "normexam ~ standLRT * schavg + sex + (standLRT | school)")
        try check(cp, [0.35, 0.05, 0.12], ordering: .natural, label: "exam")
    }

    /// At the optimum the AI matrix approximates the Hessian of the profiled deviance (central
    /// differences of the analytic gradient) to 1e-2, relative to the Hessian's largest entry.
    func testAverageInformationApproximatesTheHessianAtTheOptimum() throws {
        for (dataset, formula) in [("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)"),
                                   ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)")] {
            let cp = try crossProducts(dataset, formula)
            for reml in [true, false] {
                let fit = try LinearMixedModel.fit(cp, options: FitOptions(reml: reml))
                let pls = try PenalizedLeastSquares(cp, reml: reml, ordering: .natural)
                let theta = fit.theta
                let ai = pls.averageInformation(theta, try XCTUnwrap(pls.evaluate(theta)))
                let hessian = try differenceHessian(at: theta) { pls.gradient($0, try XCTUnwrap(pls.evaluate($0))) }
                let scale = hessian.map(abs).max()!
                for (x, y) in zip(ai, hessian) {
                    XCTAssertEqual(x, y, accuracy: 1e-2 * scale, "\(dataset) \(reml ? "REML" : "ML"): AI \(ai) Hessian \(hessian)")
                }
            }
        }
    }

    /// The gradient's parts kept with an evaluation (Satterthwaite's differences start from the
    /// fit's) are those of that θ: the same as computed afresh, and never another θ's once the
    /// factor has moved, nor another response's once the cross-products are replaced.
    func testKeptGradientPartsBelongToTheirTheta() throws {
        let cp = try crossProducts("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")
        let pls = try PenalizedLeastSquares(cp, reml: true, ordering: .natural)
        func fresh(_ theta: [Double]) throws -> PenalizedLeastSquares.GradientParts {
            let other = try PenalizedLeastSquares(cp, reml: true, ordering: .natural)
            let e = try XCTUnwrap(other.evaluate(theta))
            return other.gradientParts(e, other.modes(theta, e))
        }
        let a = [0.9, 0.03, 0.2], b = [0.8, 0.05, 0.25]
        _ = pls.gradient(a, try XCTUnwrap(pls.evaluate(a)))
        let kept = pls.gradientParts(a, try XCTUnwrap(pls.evaluate(a)))
        XCTAssertEqual(kept.logDeterminant, try fresh(a).logDeterminant)
        XCTAssertEqual(kept.residual, try fresh(a).residual)
        let atB = pls.gradientParts(b, try XCTUnwrap(pls.evaluate(b)))
        XCTAssertEqual(atB.logDeterminant, try fresh(b).logDeterminant)
        XCTAssertNotEqual(atB.logDeterminant, kept.logDeterminant)
        pls.replaceCrossProducts(with: try crossProducts("sleepstudy.csv", "log(Reaction) ~ Days + (Days | Subject)"))
        let again = pls.gradientParts(b, try XCTUnwrap(pls.evaluate(b)))
        XCTAssertNotEqual(again.residual, atB.residual)
    }

    /// CHOLMOD's selected inverse by Takahashi's recurrences and by LAPACK on the dense factor
    /// (the choice is by predicted cost) agree, on a nested, a crossed and a multiple-membership
    /// design; the gradient tests above run whichever the cost picks.
    func testSelectedInverseMethodsAgree() throws {
        let cases: [(String, String, [Double])] = [
            ("pastes.csv", "strength ~ 1 + (1 | batch/cask)", [2.1, 0.6]),
            ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", [1.7, 3.1]),
            ("multimember.csv", "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)", [0.6, 0.4]),
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", [0.9, 0.03, 0.2]),
        ]
        for (dataset, formula, theta) in cases {
            let pls = try PenalizedLeastSquares(try crossProducts(dataset, formula), reml: true, ordering: .amd)
            let sparse = try XCTUnwrap(pls.cholesky as? SparseCholesky)
            _ = try XCTUnwrap(pls.evaluate(theta))
            sparse.inverseMethod = .recurrences
            let recurrences = sparse.inverseOnPattern()
            sparse.inverseMethod = .dense
            let dense = sparse.inverseOnPattern()
            let scale = dense.map(abs).max()!
            XCTAssertLessThan(zip(recurrences, dense).map { abs($0 - $1) }.max()!, 1e-12 * scale, dataset)
        }
    }

    /// The blocked factor's selected inverse by scattered reads of C (in one batch of levels, and
    /// in batches of at most 50 entries) and by dgemm on gathered panels (chosen with the Schur
    /// complement's formation) agree, and give the gradient.
    func testBlockedInverseScatteredAndGatheredAgree() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mlm-gather-\(UUID().uuidString).h5").path
        defer { unlink(path) }
        try Simulation(design: .crossed, rows: 3_000, seed: 7).write(to: path)
        let crossed = try ModelFrame.scan(Formula.parse(CrossedFormula.text), source: openTable(path: path, table: nil)).crossProducts()
        let cases = [(crossed, [0.8, 0.25, 0.3, 0.45]),
                     (try crossProducts("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"), [1.7, 3.1])]
        for (cp, theta) in cases {
            var inverses: [[Double]] = []
            for schur in [BlockedCholesky.Formation.scatter, .gather] {
                let pls = try PenalizedLeastSquares(cp, reml: true, ordering: .natural, schur: schur)
                XCTAssertTrue(pls.isBlocked)
                let e = try XCTUnwrap(pls.evaluate(theta))
                inverses.append(pls.cholesky.inverseOnPattern())
                let analytic = pls.gradient(theta, e), numeric = finiteDifference(pls, theta)
                let scale = max(numeric.map(abs).max()!, 1)
                for i in theta.indices { XCTAssertEqual(analytic[i], numeric[i], accuracy: 1e-6 * scale, "\(schur) θ[\(i)]") }
            }
            let pls = try PenalizedLeastSquares(cp, reml: true, ordering: .natural, schur: .scatter)
            let blocked = try XCTUnwrap(pls.cholesky as? BlockedCholesky)
            blocked.inverseBatch = 50
            XCTAssertNotNil(pls.evaluate(theta))
            inverses.append(blocked.inverseOnPattern())
            let scale = inverses[0].map(abs).max()!
            for other in inverses.dropFirst() {
                XCTAssertLessThan(zip(inverses[0], other).map { abs($0 - $1) }.max()!, 1e-12 * scale)
            }
        }
    }

    /// A Newton step from a matrix no shift makes positive definite ends (NaN, not a hang), and an
    /// indefinite one is shifted until it is.
    func testNewtonStepEndsOnAnyMatrix() {
        let broken = NewtonOptimizer.newtonStep([.nan, 0, 0, 1], [1, 1], free: [0, 1])
        XCTAssertEqual(broken.count, 2)
        XCTAssertTrue(broken.allSatisfy(\.isNaN))
        let indefinite = NewtonOptimizer.newtonStep([1, 0, 0, -1], [1, 1], free: [0, 1])
        XCTAssertTrue(indefinite.allSatisfy(\.isFinite))
        XCTAssertLessThan(indefinite[0], 0)
    }
}

import Foundation
import XCTest
@testable import Multilevel

/// Conditional variances of the random effects against lme4's `ranef(m, condVar = TRUE)`.
final class ConditionalVarianceTests: XCTestCase {
    /// sleepstudy (2 × 2 blocks, CHOLMOD: one term) and Penicillin (two crossed scalar terms,
    /// the blocked factorisation): every postVar entry within 1e-4 relative of lme4's.
    func testConditionalVariancesMatchLme4() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("condvar.json")))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for (name, file) in [("sleepstudy", "sleepstudy.csv"), ("penicillin", "penicillin.csv")] {
            let reference = json[name] as! [String: Any]
            let fit = try LinearMixedModel.fit(reference["formula"] as! String, data: openTable(path: Fixtures.path(file), table: nil))
            let variances = try fit.conditionalVariances()
            let postVar = reference["postVar"] as! [String: Any]
            for (k, term) in fit.terms.enumerated() {
                let entry = postVar[term.group] as! [String: Any]
                XCTAssertEqual(entry["levels"] as! [String], term.levels, "\(name) \(term.group)")
                let matrices = entry["matrices"] as? [[Double]] ?? entry["values"] as? [[Double]] ?? []
                XCTAssertEqual(matrices.count, term.levels.count, "\(name) \(term.group)")
                let p = term.dimension
                for (l, m) in matrices.enumerated() {
                    for a in 0..<p { for b in 0..<p {
                        let theirs = m[a * p + b], mine = variances[k][l][a + b * p]
                        XCTAssertEqual(mine, theirs, accuracy: 1e-4 * max(abs(theirs), 1e-12 * abs(m[0])), "\(name) \(term.group) level \(l) (\(a),\(b))")
                    } }
                }
            }
            // The CSV's condsd column is the square root of the diagonal.
            let csv = try fit.conditionalModesCSV().split(separator: "\n")
            XCTAssertEqual(csv.first, "grpvar,term,grp,condval,condsd")
            let rows = reference["ranef"] as! [[String: Any]]
            XCTAssertEqual(csv.count - 1, rows.count)
        }
    }

    /// The diagonal blocks of the inverse of Λ'Z'ZΛ + I equal the dense inverse's: by Takahashi's
    /// recurrences on CHOLMOD's factor (AMD ordering, so through a permutation; sleepstudy's
    /// 2 × 2 blocks also in the natural order) and in closed form from the blocked factor
    /// (Pastes' natural order), on Pastes' samples nested in batches and on sleepstudy.
    func testSparseInverseBlocksEqualTheDenseInverse() throws {
        for (file, formula) in [("pastes.csv", "strength ~ 1 + (1 | batch/cask)"), ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)")] {
            let fit = try LinearMixedModel.fit(formula, data: openTable(path: Fixtures.path(file), table: nil))
            let cp = fit.crossProducts, q = cp.randomEffectsCount
            let factor = RelativeCovarianceFactor(terms: cp.terms)
            let templates = factor.templates(fit.theta)
            var lambda = [Double](repeating: 0, count: q * q)
            for c in 0..<q {
                var e = [Double](repeating: 0, count: q)
                e[c] = 1
                factor.apply(templates, to: &e)
                for r in 0..<q { lambda[r + c * q] = e[r] }
            }
            let g = cp.denseZtZ()
            var gl = [Double](repeating: 0, count: q * q), a = gl
            for c in 0..<q { for r in 0..<q { var v = 0.0; for k in 0..<q { v += g[r + k * q] * lambda[k + c * q] }; gl[r + c * q] = v } }
            for c in 0..<q { for r in 0..<q { var v = r == c ? 1.0 : 0; for k in 0..<q { v += lambda[k + r * q] * gl[k + c * q] }; a[r + c * q] = v } }
            let inverse = DenseCholesky.inverseOfCrossProduct(DenseCholesky.upper(a, order: q)!, leading: q, order: q)
            for ordering in [FillReducingOrdering.natural, .amd] {
                let pls = try PenalizedLeastSquares(cp, reml: true, ordering: ordering)
                if ordering == .amd { XCTAssertFalse(pls.isBlocked, file) }
                XCTAssertNotNil(pls.evaluate(fit.theta))
                let blocks = pls.inverseDiagonalBlocks()
                XCTAssertEqual(blocks.count, cp.blockStart.count)
                for (b, start) in cp.blockStart.enumerated() {
                    let p = cp.terms[cp.blockTerm[b]].dimension
                    for t in 0..<p { for u in 0..<p {
                        let expected = inverse[(start + u) + (start + t) * q]
                        XCTAssertEqual(blocks[b][u + t * p], expected, accuracy: 1e-10 * max(1, abs(expected)), "\(file) \(ordering) block \(b)")
                    } }
                }
            }
        }
    }
}

import Foundation
import XCTest
@testable import Multilevel

/// Newton's start: θ by the method of moments (`StartingValues`), and the BLAS kernels chosen
/// for the CPU (`BLASKernels`).
final class StartingValuesTests: XCTestCase {
    func crossProducts(_ file: String, _ formula: String) throws -> CrossProducts {
        try ModelFrame.scan(Formula.parse(formula), source: openTable(path: Fixtures.path(file), table: nil)).crossProducts()
    }

    /// The moment start is nearer the optimum than lme4's T_k = I (lower deviance) and Newton
    /// from it takes no more iterations (fewer on the crossed designs); on crossed and
    /// random-slope designs (exam's schools of 2 to 198 pupils among them) it is within half of
    /// θ̂ in every diagonal entry not near 0 (nested designs overstate the outer term, whose
    /// level sums hold the inner terms' effects).
    func testMomentStartIsNearTheOptimum() throws {
        let cases: [(String, String, Bool, crossed: Bool)] = [
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", true, false),
            ("exam.csv", "normexam ~ standLRT + (standLRT | school)", true, false),
            ("penicillin.csv", "diameter ~ 1 + (1|plate) + (1|sample)", true, true),
            ("pastes.csv", "strength ~ 1 + (1|batch/cask)", true, false),
            ("insteval.h5", "y ~ 1 + service*dept + (1|s) + (1|d)", false, true),
        ]
        for (file, formula, reml, crossed) in cases {
            let cp = try crossProducts(file, formula)
            let pls = try PenalizedLeastSquares(cp, reml: reml, ordering: .auto)
            let factor = pls.factor
            let start = StartingValues.moments(cp, factor: factor)
            XCTAssertNotEqual(start, factor.initialTheta, file)
            var fromMoments = OptimizerSummary(), fromIdentity = OptimizerSummary()
            let optimum = try NewtonOptimizer.minimize(pls, start: start, summary: &fromMoments)
            _ = try NewtonOptimizer.minimize(pls, start: factor.initialTheta, summary: &fromIdentity)
            XCTAssertLessThan(pls.objective(start), pls.objective(factor.initialTheta), file)
            XCTAssertLessThanOrEqual(fromMoments.iterations, fromIdentity.iterations, file)
            if crossed { XCTAssertLessThan(fromMoments.iterations, fromIdentity.iterations, file) }
            for i in optimum.theta.indices where factor.isDiagonal(i) && optimum.theta[i] > 0.05 && !file.hasPrefix("pastes") {
                XCTAssertEqual(start[i] / optimum.theta[i], 1, accuracy: 0.5, "\(file) θ[\(i)]: \(start[i]) against \(optimum.theta[i])")
            }
        }
    }

    /// OpenBLAS's fallback kernels are replaced by the best set the CPU's flags allow; kernels
    /// it recognised, and names this table does not know, are kept.
    func testBLASKernelsForTheCPU() {
        let avx2: Set<String> = ["sse3", "avx", "avx2", "fma"]
        let avx512 = avx2.union(["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"])
        XCTAssertEqual(BLASKernels.preferred(detected: "Prescott", flags: avx512.union(["avx512_bf16"])), "Cooperlake")
        XCTAssertEqual(BLASKernels.preferred(detected: "Prescott", flags: avx512), "SkylakeX")
        XCTAssertEqual(BLASKernels.preferred(detected: "Sandybridge", flags: avx2), "Haswell")
        XCTAssertEqual(BLASKernels.preferred(detected: "SkylakeX", flags: avx512.union(["avx512_bf16"])), "Cooperlake")
        XCTAssertNil(BLASKernels.preferred(detected: "Haswell", flags: avx2))
        XCTAssertNil(BLASKernels.preferred(detected: "Zen", flags: avx2))
        XCTAssertNil(BLASKernels.preferred(detected: "Prescott", flags: ["sse3"]))
        XCTAssertNil(BLASKernels.preferred(detected: "NeoverseN2", flags: avx512))
        XCTAssertFalse(BLASKernels.current.isEmpty)
    }
}

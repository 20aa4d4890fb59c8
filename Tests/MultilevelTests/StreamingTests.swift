import XCTest
@testable import Multilevel

/// Reading in chunks: the cross-products, and so the fit, do not depend on the chunk size.
final class StreamingTests: XCTestCase {
    func crossProducts(_ dataset: String, _ formula: String, chunkRows: Int) throws -> CrossProducts {
        let data = try openTable(path: Fixtures.path(dataset), table: nil)
        return try ModelFrame.scan(Formula.parse(formula), source: data, chunkRows: chunkRows).crossProducts()
    }

    func testFitIsInvariantToChunkSize() throws {
        let formula = "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)"
        let reference = try crossProducts("multimember.h5", formula, chunkRows: 65_536)
        for chunk in [1, 7] {
            let cp = try crossProducts("multimember.h5", formula, chunkRows: chunk)
            XCTAssertEqual(cp.rows, reference.rows)
            XCTAssertEqual(cp.denseZtZ(), reference.denseZtZ(), "Z'Z, chunk \(chunk)")
            XCTAssertEqual(cp.denseZtXy, reference.denseZtXy, "[Z'X Z'y], chunk \(chunk)")
            XCTAssertEqual(cp.denseXyTXy, reference.denseXyTXy, "[X y]'[X y], chunk \(chunk)")
        }
        let data = try openTable(path: Fixtures.path("multimember.h5"), table: nil)
        let fits = try [1, 7, 65_536].map {
            try LinearMixedModel.fit(formula, data: data, options: FitOptions(chunkRows: $0))
        }
        for fit in fits.dropFirst() {
            XCTAssertEqual(fit.objective, fits[0].objective)
            XCTAssertEqual(fit.theta, fits[0].theta)
            XCTAssertEqual(fit.beta, fits[0].beta)
        }
    }
}

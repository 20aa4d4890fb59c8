import XCTest
@testable import Multilevel

/// Reading split among ranks gives bit for bit the one-process cross-products: each rank's
/// groups of segments are added to rank 0's total in file order (simulated here in one
/// process; `MPITests` runs the real thing under mpirun).
final class DistributedReadingTests: XCTestCase {
    let multimember = "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)"

    func testRanksSplittingTheRowsGiveTheOneProcessSums() throws {
        try checkRanks(Formula.parse(multimember))
    }

    /// With precision weights (w1 as the weights here): Σ log w travels with the sums, and with
    /// the cross-products' bytes.
    func testRanksSplittingWeightedRowsGiveTheOneProcessSums() throws {
        let single = try checkRanks(Formula.parse(multimember).weighted(by: "w1"))
        let data = try openTable(path: Fixtures.path("multimember.csv"), table: nil)
        var expected = 0.0
        for w in try data.readNumeric("w1", rows: 0..<data.rowCount) { expected += log(w) }
        XCTAssertEqual(single.logWeights, expected, accuracy: 1e-9 * abs(expected))
        XCTAssertNotEqual(single.logWeights, 0)
        XCTAssertEqual(CrossProducts(decoding: single.encoded()).logWeights, single.logWeights)
    }

    @discardableResult
    func checkRanks(_ formula: Formula) throws -> CrossProducts {
        let data = try openTable(path: Fixtures.path("multimember.h5"), table: nil)
        let frame = try ModelFrame.scan(formula, source: data, chunkRows: 37, threads: 2,
                                        communicator: SingleProcess(), segmentRows: 50)
        let single = try frame.crossProducts(threads: 2)
        let groupRows = CrossProductAccumulator.groupRows(segmentRows: 50)
        for ranks in [2, 3, 4, 7] {
            var root: CrossProductAccumulator?
            for r in 0..<ranks {
                let slab = FakeRank(rank: r, size: ranks).slab(of: data.rowCount, unit: groupRows)
                let part = try frame.accumulate(slab, threads: 2, keepsGroups: r != 0)
                if let root {
                    for g in part.groups { root.addReceivedGroup(PartialSums(decoding: g.encoded())) }
                } else {
                    root = part
                }
            }
            let combined = root!.finish()
            XCTAssertEqual(combined.zzValues, single.zzValues, "\(ranks) ranks")
            XCTAssertEqual(combined.denseZtXy, single.denseZtXy, "\(ranks) ranks")
            XCTAssertEqual(combined.denseXyTXy, single.denseXyTXy, "\(ranks) ranks")
            XCTAssertEqual(combined.rows, single.rows)
            XCTAssertEqual(combined.logWeights, single.logWeights, "\(ranks) ranks")
        }
        return single
    }
}

/// A rank's place without MPI: only `slab(of:unit:)` is used.
private final class FakeRank: Communicator, @unchecked Sendable {
    let rank: Int, size: Int
    init(rank: Int, size: Int) { self.rank = rank; self.size = size }
    func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] { bytes }
    func allGather(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    func send(_ bytes: [UInt8], to rank: Int, tag: Int) {}
    func receive(from rank: Int?, tag: Int) -> (source: Int, bytes: [UInt8]) { (0, []) }
    func hasMessage(tag: Int) -> Bool { false }
}

import XCTest
@testable import Multilevel

/// Reading in chunks on several threads: the cross-products equal [Z X y]'[Z X y] computed
/// directly from dense matrices, and neither they nor the fit depend on the chunk size or the
/// number of threads.
final class StreamingTests: XCTestCase {
    let multimember = "y ~ x + (1 | mm(school1, school2, school3, weights = cbind(w1, w2, w3))) + (1 | nbhd)"

    func frame(_ dataset: String, _ formula: String, chunkRows: Int) throws -> ModelFrame {
        let data = try openTable(path: Fixtures.path(dataset), table: nil)
        return try ModelFrame.scan(Formula.parse(formula), source: data, chunkRows: chunkRows)
    }

    /// Z, X and y as dense row-major matrices, built here from the columns, row by row.
    struct DenseModel {
        var z: [[Double]] = []
        var x: [[Double]] = []
        var y: [Double] = []

        /// [Z X y]'[Z X y] restricted to the blocks `CrossProducts` reports, column-major.
        func crossProduct(_ left: KeyPath<DenseModel, [[Double]]>?, _ right: KeyPath<DenseModel, [[Double]]>?) -> [Double] {
            func row(_ m: KeyPath<DenseModel, [[Double]]>?, _ i: Int) -> [Double] {
                m.map { self[keyPath: $0][i] } ?? [y[i]]
            }
            let a = row(left, 0).count, b = row(right, 0).count
            var out = [Double](repeating: 0, count: a * b)
            for i in y.indices {
                let u = row(left, i), v = row(right, i)
                for s in 0..<b where v[s] != 0 { for t in 0..<a { out[t + s * a] += u[t] * v[s] } }
            }
            return out
        }
    }

    func assertClose(_ actual: [Double], _ expected: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        let scale = expected.map(abs).max() ?? 1
        let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-12 * scale, "\(what): largest difference \(worst)", file: file, line: line)
    }

    /// Multiple membership with weights, crossed with a neighbourhood factor: Z has, per row,
    /// the weights in the school columns and a 1 in the neighbourhood column.
    func testCrossProductsEqualDirectDenseComputation() throws {
        let data = try openTable(path: Fixtures.path("multimember.csv"), table: nil)
        let frame = try ModelFrame.scan(Formula.parse(multimember), source: data, chunkRows: 500)
        let cp = try frame.crossProducts(threads: 2, segmentRows: 300)
        XCTAssertEqual(cp.terms.map(\.group).last, "nbhd")
        let column = { (term: RandomEffectsTerm) -> [String: Int] in
            Dictionary(uniqueKeysWithValues: term.levels.enumerated().map { ($1, term.offset + $0) })
        }
        let school = column(cp.terms[0]), nbhd = column(cp.terms[1])
        let n = data.rowCount, q = cp.randomEffectsCount
        func numbers(_ c: String) throws -> [Double] { try data.readNumeric(c, rows: 0..<n) }
        func strings(_ c: String) throws -> [String?] { try data.readStrings(c, rows: 0..<n) }
        let y = try numbers("y"), x = try numbers("x"), area = try strings("nbhd")
        let schools = try ["school1", "school2", "school3"].map(strings)
        let weights = try ["w1", "w2", "w3"].map(numbers)
        var model = DenseModel()
        for i in 0..<n {
            var z = [Double](repeating: 0, count: q)
            for m in 0..<3 {
                if let s = schools[m][i] { z[school[s]!] += weights[m][i] }
            }
            z[nbhd[area[i]!]!] = 1
            model.z.append(z)
            model.x.append([1, x[i]])
            model.y.append(y[i])
        }
        XCTAssertEqual(cp.rows, n)
        assertClose(cp.denseZtZ(), model.crossProduct(\.z, \.z), "Z'Z")
        let zx = model.crossProduct(\.z, \.x), zy = model.crossProduct(\.z, nil)
        assertClose(cp.denseZtXy, zx + zy, "[Z'X Z'y]")
        let xx = model.crossProduct(\.x, \.x), xy = model.crossProduct(\.x, nil), yy = model.crossProduct(nil, nil)
        let expected = [xx[0], xx[1], xy[0], xx[2], xx[3], xy[1], xy[0], xy[1], yy[0]]
        assertClose(cp.denseXyTXy, expected, "[X y]'[X y]")
    }

    /// A random slope: Z has, per row, 1 and Days in the two columns of the row's subject.
    func testRandomSlopeCrossProductsEqualDirectDenseComputation() throws {
        let data = try openTable(path: Fixtures.path("sleepstudy.h5"), table: nil)
        let frame = try ModelFrame.scan(Formula.parse("Reaction ~ Days + (Days | Subject)"), source: data, chunkRows: 7)
        let cp = try frame.crossProducts(threads: 3, segmentRows: 20)
        let term = cp.terms[0]
        let n = data.rowCount
        let days = try data.readNumeric("Days", rows: 0..<n), reaction = try data.readNumeric("Reaction", rows: 0..<n)
        let subject = try data.columnType("Subject") == .string
            ? try data.readStrings("Subject", rows: 0..<n).map { $0! }
            : try data.readNumeric("Subject", rows: 0..<n).map(rLevelName)
        var model = DenseModel()
        for i in 0..<n {
            var z = [Double](repeating: 0, count: cp.randomEffectsCount)
            let level = term.levels.firstIndex(of: subject[i])!
            z[2 * level] = 1
            z[2 * level + 1] = days[i]
            model.z.append(z)
            model.x.append([1, days[i]])
            model.y.append(reaction[i])
        }
        assertClose(cp.denseZtZ(), model.crossProduct(\.z, \.z), "Z'Z")
        assertClose(cp.denseZtXy, model.crossProduct(\.z, \.x) + model.crossProduct(\.z, nil), "[Z'X Z'y]")
    }

    /// Bitwise the same cross-products for chunk sizes 1, 7 and 65,536 and 1, 2 or 3 threads,
    /// with segments small enough (67 of them) that runs merge into the total several times; and the same fit.
    func testResultsAreIdenticalForChunkSizesAndThreadCounts() throws {
        var reference: CrossProducts?
        for chunk in [1, 7, 65_536] {
            let frame = try frame("multimember.h5", multimember, chunkRows: chunk)
            for threads in [1, 2, 3] {
                let cp = try frame.crossProducts(threads: threads, segmentRows: 60)
                guard let r = reference else { reference = cp; continue }
                let what = "chunk \(chunk), \(threads) threads"
                XCTAssertEqual(cp.rows, r.rows, what)
                XCTAssertEqual(cp.zzColumnStarts, r.zzColumnStarts, what)
                XCTAssertEqual(cp.zzRowIndices, r.zzRowIndices, what)
                XCTAssertEqual(cp.zzValues, r.zzValues, "Z'Z, \(what)")
                XCTAssertEqual(cp.denseZtXy, r.denseZtXy, "[Z'X Z'y], \(what)")
                XCTAssertEqual(cp.denseXyTXy, r.denseXyTXy, "[X y]'[X y], \(what)")
            }
        }
        let data = try openTable(path: Fixtures.path("multimember.h5"), table: nil)
        let fits = try [(1, 1), (7, 2), (65_536, 3)].map { chunk, threads in
            try LinearMixedModel.fit(multimember, data: data, options: FitOptions(chunkRows: chunk, threads: threads))
        }
        for fit in fits.dropFirst() {
            XCTAssertEqual(fit.objective, fits[0].objective)
            XCTAssertEqual(fit.theta, fits[0].theta)
            XCTAssertEqual(fit.beta, fits[0].beta)
        }
    }

    /// A read error in one segment of the cross-products pass stops the pass with that error, on any number of threads.
    func testReadErrorStopsEveryThread() throws {
        for threads in [1, 2, 3] {
            let source = FailingSource(rows: 1_000, failingRow: 600)
            let frame = try ModelFrame.scan(Formula.parse("y ~ x + (1 | g)"), source: source, chunkRows: 100)
            XCTAssertThrowsError(try frame.crossProducts(threads: threads, segmentRows: 128)) { error in
                XCTAssertEqual((error as? InputError)?.message, "row 600 cannot be read the second time")
            }
        }
    }
}

/// Numeric columns y, x, g (10 levels); reading a range with `failingRow` succeeds once, then throws.
private final class FailingSource: TableSource, @unchecked Sendable {
    let name = "failing"
    let columnNames = ["y", "x", "g"]
    let rowCount: Int
    private let failingRow: Int
    private var reads = 0
    private let lock = NSLock()

    init(rows: Int, failingRow: Int) {
        rowCount = rows
        self.failingRow = failingRow
    }

    func columnType(_ column: String) throws -> ColumnType { .numeric }

    func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double] {
        if rows.contains(failingRow) && column == "y" {
            lock.lock()
            reads += 1
            let n = reads
            lock.unlock()
            if n > 1 { throw InputError("row \(failingRow) cannot be read the second time") }
        }
        return rows.map { i in
            switch column {
            case "g": return Double(i % 10)
            case "x": return Double(i % 7)
            default: return Double((i * 37) % 11)
            }
        }
    }

    func readStrings(_ column: String, rows: Range<Int>) throws -> [String?] {
        throw InputError("\(column) is numeric")
    }
}

/// The levels pass on several threads finds the same levels, counts and terms as on one.
final class LevelsPassTests: XCTestCase {
    func testLevelsAreTheSameForAnyThreadCount() throws {
        // 73,421 rows: five segments; an interaction grouping and a factor in the fixed part.
        let data = try openTable(path: Fixtures.path("insteval.h5"), table: nil)
        XCTAssertGreaterThan(data.rowCount, 4 * CrossProductAccumulator.segmentRows)
        let formula = try Formula.parse("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)")
        let one = try ModelFrame.scan(formula, source: data, chunkRows: 5_000, threads: 1)
        for threads in [2, 3] {
            let frame = try ModelFrame.scan(formula, source: data, chunkRows: 5_000, threads: threads)
            XCTAssertEqual(frame.randomEffectsTerms, one.randomEffectsTerms, "\(threads) threads")
            XCTAssertEqual(frame.completeRows, one.completeRows)
            XCTAssertEqual(frame.droppedRows, one.droppedRows)
        }
    }
}

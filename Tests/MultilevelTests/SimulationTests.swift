import CHDF5
import Foundation
import XCTest
@testable import Multilevel

/// `Simulation`: the files it writes, their attributes, their dependence on the seed alone,
/// that fitting them recovers the true values, and its generator.
final class SimulationTests: ScratchDirectoryTestCase {

    // MARK: Designs

    func testCrossedFileRecoversTrueParameters() throws {
        let (simulation, data) = try simulate(.crossed, rows: 20_000)
        XCTAssertEqual(data.columnNames, ["y", "x", "w", "A", "B"])
        XCTAssertEqual(simulation.levels.map { $0.factor }, ["A", "B"])
        XCTAssertEqual(simulation.levels.map { $0.count }, [1_000, 1_000])
        let codes = try data.readNumeric("A", rows: 0..<data.rowCount)
        XCTAssertEqual(codes.min(), 1)
        XCTAssertEqual(codes.max(), 1_000)
        try assertRecovers(simulation, data, groups: ["A": "A", "B": "B"], sdTolerance: 0.15, corTolerance: 0.2)
    }

    func testMultimemberFileRecoversTrueParameters() throws {
        let (simulation, data) = try simulate(.multimember, rows: 10_000)
        XCTAssertEqual(data.columnNames, ["y", "x", "school1", "school2", "school3", "w1", "w2", "w3", "area"])
        XCTAssertEqual(simulation.levels.map { $0.count }, [500, 500])
        let rows = 0..<data.rowCount
        let schools = try ["school1", "school2", "school3"].map { try data.readNumeric($0, rows: rows) }
        let weights = try ["w1", "w2", "w3"].map { try data.readNumeric($0, rows: rows) }
        XCTAssertFalse(schools[0].contains { $0.isNaN })
        // 500 schools and 500 areas: 50 regions of 10 schools and 10 areas (codes from 1).
        let area = try data.readNumeric("area", rows: rows)
        var attended = [0, 0, 0]
        for i in rows {
            let region = Int(area[i] - 1) / 10
            for k in 0..<3 where !schools[k][i].isNaN {
                XCTAssertEqual(Int(schools[k][i] - 1) / 10, region, "row \(i): school \(k + 1) is in the area's region")
            }
            let present = (0..<3).filter { !schools[$0][i].isNaN }
            attended[present.count - 1] += 1
            XCTAssertEqual(present, Array(0..<present.count), "row \(i): schools fill from school1")
            XCTAssertEqual(Set(present.map { schools[$0][i] }).count, present.count, "row \(i): distinct schools")
            XCTAssertEqual(weights[0][i] + weights[1][i] + weights[2][i], 1, accuracy: 1e-12)
            for k in 0..<3 { XCTAssertEqual(weights[k][i] > 0, present.contains(k), "row \(i), membership \(k + 1)") }
        }
        XCTAssertEqual(Double(attended[0]) / Double(rows.count), 0.6, accuracy: 0.02)
        XCTAssertEqual(Double(attended[2]) / Double(rows.count), 0.1, accuracy: 0.02)
        let mm = "mm(school1, school2, school3, weights = cbind(w1, w2, w3))"
        try assertRecovers(simulation, data, groups: ["school": mm, "area": "area"], sdTolerance: 0.15, corTolerance: 0)
    }

    func testNested3FileRecoversTrueParameters() throws {
        let (simulation, data) = try simulate(.nested3, rows: 20_000)
        XCTAssertEqual(data.columnNames, ["y", "x", "school", "class"])
        XCTAssertEqual(simulation.levels.map { $0.factor }, ["school", "class"])
        XCTAssertEqual(simulation.levels.map { $0.count }, [1_000, 8])
        XCTAssertEqual(Set(try data.readNumeric("class", rows: 0..<data.rowCount)), Set((1...8).map(Double.init)))
        try assertRecovers(simulation, data, groups: ["school": "school", "class:school": "class:school"],
                           sdTolerance: 0.15, corTolerance: 0)
    }

    /// MovieLens-shaped: users uniform, items skewed (item ⌊n u²⌋: a quarter of the rows fall on
    /// the first 1/16 of the items).
    func testRatingsFileRecoversTrueParameters() throws {
        let (simulation, data) = try simulate(.ratings, rows: 20_000)
        XCTAssertEqual(data.columnNames, ["y", "x", "user", "item"])
        XCTAssertEqual(simulation.levels.map { $0.factor }, ["user", "item"])
        XCTAssertEqual(simulation.levels.map { $0.count }, [1_000, 1_000])
        let items = try data.readNumeric("item", rows: 0..<data.rowCount)
        let popular = Double(items.filter { $0 <= 1_000 / 16 }.count) / Double(items.count)
        XCTAssertEqual(popular, 0.25, accuracy: 0.02)
        try assertRecovers(simulation, data, groups: ["user": "user", "item": "item"], sdTolerance: 0.15, corTolerance: 0)
    }

    /// A two-stage informative sample: the weights are inverse probabilities (at least 1), a
    /// school's weight is the same on all its pupils, a stratum holds 50 consecutive population
    /// schools; about a quarter of the schools and 20 pupils of each are sampled. The
    /// Horvitz–Thompson mean of y (weights w_school · w_pupil) estimates the population mean, 1,
    /// where the plain mean is biased upward by the selection (`survey`: by γτ² + αβ_x = 0.5,
    /// through the schools' effects and the pupils' x; `survey-informative`: by γτ² + δσ² = 0.75);
    /// the unweighted fit's intercept is biased by γτ² (+ δσ²), and its slope is not.
    func testSurveySampleIsInformativeAndItsWeightsUndoIt() throws {
        for (design, bias) in [(SimulationDesign.survey, 0.25), (.surveyInformative, 0.75)] {
            try checkSurveySample(design, interceptBias: bias)
        }
    }

    func checkSurveySample(_ design: SimulationDesign, interceptBias: Double) throws {
        let (simulation, data) = try simulate(design, rows: 20_000)
        XCTAssertEqual(data.columnNames, ["y", "x", "w_pupil", "w_school", "school", "stratum"])
        XCTAssertTrue(simulation.levels.isEmpty)
        let rows = 0..<data.rowCount
        let y = try data.readNumeric("y", rows: rows), pupil = try data.readNumeric("w_pupil", rows: rows)
        let schoolWeight = try data.readNumeric("w_school", rows: rows), school = try data.readNumeric("school", rows: rows)
        let stratum = try data.readNumeric("stratum", rows: rows)
        var weightOf: [Double: Double] = [:]
        for i in rows {
            XCTAssertGreaterThanOrEqual(pupil[i], 1, "row \(i)")
            XCTAssertGreaterThanOrEqual(schoolWeight[i], 1, "row \(i)")
            XCTAssertEqual(weightOf[school[i], default: schoolWeight[i]], schoolWeight[i], "row \(i)")
            weightOf[school[i]] = schoolWeight[i]
            XCTAssertEqual(stratum[i], Double((Int(school[i]) - 1) / 50 + 1), "row \(i)")
        }
        XCTAssertEqual(Double(rows.count) / Double(weightOf.count), 20, accuracy: 4, "pupils per sampled school")
        XCTAssertEqual(Double(weightOf.count) / school.max()!, 0.25, accuracy: 0.05, "schools sampled")
        let w = zip(pupil, schoolWeight).map { $0 * $1 }
        let weighted = zip(w, y).reduce(0.0) { $0 + $1.0 * $1.1 } / w.reduce(0, +)
        let plain = y.reduce(0, +) / Double(y.count)
        XCTAssertEqual(weighted, 1, accuracy: 0.15, "\(design)")
        XCTAssertEqual(plain - 1, design == .survey ? 0.5 : 0.75, accuracy: 0.15, "\(design)")
        let fit = try LinearMixedModel.fit(simulation.formula, data: data)
        XCTAssertEqual(fit.beta[0] - 1, interceptBias, accuracy: 4 * fit.standardErrors[0] + 0.05, "\(design)")
        XCTAssertEqual(fit.beta[1], 0.5, accuracy: 4 * fit.standardErrors[1], "\(design)")
    }

    func testLevelsScaleDownForFewRows() throws {
        XCTAssertEqual(try Simulation(design: .crossed, rows: 10_000_000).levels.map { $0.count }, [10_000, 2_000])
        XCTAssertEqual(try Simulation(design: .crossed, rows: 2_000).levels.map { $0.count }, [100, 100])
        XCTAssertEqual(try Simulation(design: .multimember, rows: 10).levels.map { $0.count }, [3, 2])
        XCTAssertEqual(try Simulation(design: .nested3, rows: 1).levels.map { $0.count }, [2, 8])
        let path = temporary("one.h5")
        try Simulation(design: .multimember, rows: 1).write(to: path)
        XCTAssertEqual(try openTable(path: path, table: nil).rowCount, 1)
    }

    // MARK: Determinism

    func testDataDependOnTheSeedNotTheChunkSize() throws {
        for design in SimulationDesign.allCases {
            let simulation = try Simulation(design: design, rows: 3_001, seed: 11)
            let reference = try columns(simulation, chunkRows: 65_536)
            for chunkRows in [1_000, 7] {
                XCTAssertTrue(same(try columns(simulation, chunkRows: chunkRows), reference), "\(design), chunk \(chunkRows)")
            }
            let other = try columns(Simulation(design: design, rows: 3_001, seed: 12), chunkRows: 1_000)
            XCTAssertNotEqual(other["y"], reference["y"], "\(design): seeds 11 and 12")
        }
    }

    // MARK: Bad input

    func testBadInputThrowsOneLine() throws {
        XCTAssertTrue(message { try Simulation(design: .crossed, rows: 0) }.contains("--rows"))
        XCTAssertTrue(message { try Simulation(design: .crossed, rows: -5) }.contains("--rows"))
        XCTAssertTrue(message { try Simulation(design: .crossed, rows: 10, seed: 1 << 60) }.contains("--seed"))
        XCTAssertEqual(message { try SimulationDesign(named: "latin") },
                       "unknown design 'latin': use one of crossed, crossed-binary, multimember, nested3, crossed-mm, ratings, survey, survey-informative")
        let simulation = try Simulation(design: .nested3, rows: 100)
        XCTAssertTrue(message { try simulation.write(to: self.temporary("x.h5"), chunkRows: 0) }.contains("--chunk-rows"))
        let missing = temporary("no/such/dir/x.h5")
        XCTAssertEqual(message { try simulation.write(to: missing) }, "cannot write '\(missing)': No such file or directory")
        XCTAssertTrue(message { try simulation.write(to: self.directory.path) }.contains("Is a directory"))
    }

    func testCommandLineWritesFileAndReportsBadDesign() throws {
        let path = temporary("cli.h5")
        let ok = try mlm(["simulate", "--rows", "500", "--design", "nested3", "--seed", "3", "--out", path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(ok.stdout, "wrote 500 rows of the nested3 design (school 25, class 8) to \(path), group data; "
            + "fit with: y ~ x + (1 | school/class)\n")
        XCTAssertEqual(try columns(Simulation(design: .nested3, rows: 500, seed: 3), chunkRows: 100)["y"],
                       try openTable(path: path, table: nil).readNumeric("y", rows: 0..<500))
        let bad = try mlm(["simulate", "--rows", "500", "--design", "latin", "--out", path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr, "mlm: error: unknown design 'latin': use one of crossed, crossed-binary, multimember, nested3, crossed-mm, ratings, survey, survey-informative\n")
    }

    // MARK: Generator

    func testGeneratorMatchesReferenceImplementation() {
        // The first outputs of Vigna's xoshiro256starstar.c seeded by four splitmix64.c outputs.
        for (seed, expected): (UInt64, [UInt64]) in [
            (1, [12_966_619_160_104_079_557, 9_600_361_134_598_540_522, 10_590_380_919_521_690_900]),
            (42, [1_546_998_764_402_558_742, 6_990_951_692_964_543_102, 12_544_586_762_248_559_009]),
        ] {
            var random = Xoshiro256(seed: seed)
            XCTAssertEqual((0..<3).map { _ in random.next() }, expected, "seed \(seed)")
        }
    }

    func testGeneratorDistributions() {
        var random = Xoshiro256(seed: 5)
        let n = 200_000
        var counts = [Int](repeating: 0, count: 7)
        var sum = 0.0, sumOfSquares = 0.0, uniformSum = 0.0
        for _ in 0..<n {
            counts[random.nextInt(below: 7)] += 1
            let u = random.nextDouble()
            XCTAssertTrue(u >= 0 && u < 1)
            uniformSum += u
            let z = random.nextNormal()
            sum += z
            sumOfSquares += z * z
        }
        for count in counts { XCTAssertEqual(Double(count) / Double(n), 1 / 7, accuracy: 0.005) }
        XCTAssertEqual(uniformSum / Double(n), 0.5, accuracy: 0.005)
        XCTAssertEqual(sum / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(sumOfSquares / Double(n), 1, accuracy: 0.01)
    }

    // MARK: Helpers

    /// Writes `design` with `rows` rows (seed 1) to the scratch directory, checks its attributes, and opens it.
    private func simulate(_ design: SimulationDesign, rows: Int,
                          file: StaticString = #filePath, line: UInt = #line) throws -> (Simulation, TableSource) {
        let simulation = try Simulation(design: design, rows: rows)
        let path = temporary("\(design).h5")
        try simulation.write(to: path, chunkRows: 4_096)
        let data = try openTable(path: path, table: nil)
        XCTAssertEqual(data.rowCount, rows, file: file, line: line)
        let attributes = readAttributes(path)
        XCTAssertEqual(attributes.strings, ["design": design.rawValue, "formula": design.formula], file: file, line: line)
        var numbers = ["rows": Double(rows), "seed": 1]
        for (factor, count) in simulation.levels { numbers["levels_\(factor)"] = Double(count) }
        for (name, value) in design.parameters { numbers[name] = value }
        XCTAssertEqual(attributes.numbers, numbers, file: file, line: line)
        return (simulation, data)
    }

    /// Fits the simulation's formula and checks every true value: fixed effects within 4 standard
    /// errors, σ within 5%, standard deviations within `sdTolerance` (relative), correlations within
    /// `corTolerance`. `groups` maps the factor names of the parameters to lme4's group names.
    private func assertRecovers(_ simulation: Simulation, _ data: TableSource, groups: [String: String],
                                sdTolerance: Double, corTolerance: Double,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let fit = try LinearMixedModel.fit(simulation.formula, data: data)
        XCTAssertEqual(fit.nobs, simulation.rows, file: file, line: line)
        for (name, truth) in simulation.design.parameters {
            let parts = name.split(separator: "_", maxSplits: 2).map(String.init)
            switch parts[0] {
            case "beta":
                let j = try XCTUnwrap(fit.fixedNames.firstIndex(of: parts[1]), name, file: file, line: line)
                XCTAssertEqual(fit.beta[j], truth, accuracy: 4 * fit.standardErrors[j], name, file: file, line: line)
            case "sigma":
                XCTAssertEqual(fit.sigma, truth, accuracy: 0.05 * truth, name, file: file, line: line)
            case "sd":
                let entry = try XCTUnwrap(fit.varcorr.first {
                    $0.group == groups[parts[1]] && $0.var1 == parts[2] && $0.var2 == nil
                }, name, file: file, line: line)
                XCTAssertEqual(entry.sdcor, truth, accuracy: sdTolerance * truth, name, file: file, line: line)
            case "cor":
                let entry = try XCTUnwrap(fit.varcorr.first { $0.group == groups[parts[1]] && $0.var2 != nil },
                                          name, file: file, line: line)
                XCTAssertEqual(entry.sdcor, truth, accuracy: corTolerance, name, file: file, line: line)
            default:
                XCTFail("unexpected parameter \(name)", file: file, line: line)
            }
        }
    }

    /// Every column of the simulation written with `chunkRows`, as doubles by name.
    private func columns(_ simulation: Simulation, chunkRows: Int) throws -> [String: [Double]] {
        let path = temporary("chunks-\(chunkRows).h5")
        try simulation.write(to: path, chunkRows: chunkRows)
        let data = try openTable(path: path, table: nil)
        return try Dictionary(uniqueKeysWithValues: data.columnNames.map {
            ($0, try data.readNumeric($0, rows: 0..<data.rowCount))
        })
    }

    /// Equal column by column, NaN matching NaN.
    private func same(_ a: [String: [Double]], _ b: [String: [Double]]) -> Bool {
        a.keys == b.keys && a.allSatisfy { name, values in
            zip(values, b[name]!).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) } && values.count == b[name]!.count
        }
    }

    /// The scalar attributes of the simulation group: strings and doubles, by name.
    private func readAttributes(_ path: String) -> (strings: [String: String], numbers: [String: Double]) {
        withHDF5 {
            let file = H5Fopen(path, mlm_h5f_acc_rdonly(), mlm_h5p_default())
            XCTAssertGreaterThanOrEqual(file, 0)
            defer { H5Fclose(file) }
            let group = H5Gopen2(file, Simulation.group, mlm_h5p_default())
            XCTAssertGreaterThanOrEqual(group, 0)
            defer { H5Gclose(group) }
            var names: [String] = []
            withUnsafeMutablePointer(to: &names) { names in
                _ = H5Aiterate2(group, H5_INDEX_NAME, H5_ITER_INC, nil, { _, name, _, names in
                    names!.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name!))
                    return 0
                }, names)
            }
            var strings: [String: String] = [:], numbers: [String: Double] = [:]
            for name in names {
                let attribute = H5Aopen(group, name, mlm_h5p_default())
                defer { H5Aclose(attribute) }
                let type = H5Aget_type(attribute)
                defer { H5Tclose(type) }
                if H5Tget_class(type) == H5T_STRING {
                    let memoryType = HDF5Source.variableStringType(cset: H5T_CSET_UTF8)
                    defer { H5Tclose(memoryType) }
                    var pointer: UnsafeMutablePointer<CChar>?
                    XCTAssertGreaterThanOrEqual(H5Aread(attribute, memoryType, &pointer), 0, name)
                    strings[name] = pointer.map { String(cString: $0) }
                    H5free_memory(pointer)
                } else {
                    var value = Double.nan
                    XCTAssertGreaterThanOrEqual(H5Aread(attribute, mlm_h5t_native_double(), &value), 0, name)
                    numbers[name] = value
                }
            }
            return (strings, numbers)
        }
    }


}

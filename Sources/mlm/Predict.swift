import ArgumentParser
import Foundation
import Multilevel

/// `mlm predict`: predictions of a saved fit for new data.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predict the response for new data from a fit saved by `mlm fit --json`, as lme4's predict().",
        discussion: """
        By default conditional on the groups: the fitted conditional modes of the levels the fit saw, \
        0 for new levels (lme4's allow.new.levels = TRUE). --population leaves the random effects out \
        (re.form = NA). One prediction per row, in row order; NA where a predictor is missing.
        """)

    @Argument(help: "The new data: a .csv or .h5 file with the formula's columns (the response may be absent).")
    var file: String

    @Option(help: "The fit, as written by `mlm fit --json`.")
    var model: String

    @Option(help: "For .h5 files: the group or compound dataset holding the table.")
    var table: String?

    @Flag(help: "Population-level predictions: fixed effects only.")
    var population = false

    @Option(help: "Write the predictions as CSV to this file (default: standard output).")
    var out: String?

    @Option(help: "Rows read per chunk.")
    var chunkRows = 65_536

    func run() throws {
        try reportingErrors {
            guard chunkRows > 0 else { throw InputError("--chunk-rows must be a positive number of rows") }
            let saved = try SavedModel(path: model)
            let data = try openTable(path: file, table: table)
            guard Job.isRoot else { return }
            try requireWritable(out, option: "--out")
            // The output starts with the first chunk, so bad input leaves no partial file.
            var sink: FileHandle?
            try Prediction.predict(saved, data: data, population: population, chunkRows: chunkRows) { values, _ in
                if sink == nil {
                    if let out {
                        guard FileManager.default.createFile(atPath: out, contents: nil), let h = FileHandle(forWritingAtPath: out) else {
                            throw InputError("cannot write '\(out)'")
                        }
                        sink = h
                    } else {
                        sink = FileHandle.standardOutput
                    }
                    sink!.write(Data("prediction\n".utf8))
                }
                sink!.write(Data(values.map { $0.map { String(format: "%.17g", $0) } ?? "NA" }.joined(separator: "\n").utf8 + [10]))
            }
            if sink == nil {   // no rows: the header alone
                if let out { try write("prediction\n", to: out) } else { print("prediction") }
            }
            if out != nil { try sink?.close() }
        }
    }
}

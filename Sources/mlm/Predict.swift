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

    @Option(help: "For a GLMM (fit with --family): link (the linear predictor, lme4's default) or response (the mean: a probability or a rate).")
    var type = "link"

    @Option(help: "Write the predictions as CSV to this file (default, or '-': standard output).")
    var out: String?

    @Option(help: "Rows read per chunk.")
    var chunkRows = 65_536

    func run() throws {
        try reportingErrors {
            // Rank 0 does it all; the other ranks of an mpirun wait for the outcome.
            try Job.stage {
                guard Job.isRoot else { return }
                guard chunkRows > 0 else { throw InputError("--chunk-rows must be a positive number of rows") }
                try requireWritable(out, option: "--out")
                let saved = try SavedModel(path: model)
                let data = try openTable(path: file, table: table)
                try predict(saved, data: data)
            }
        }
    }

    /// The predictions to `--out` (written beside it and renamed onto it at the end, so bad
    /// input part-way leaves no partial file) or to standard output.
    private func predict(_ saved: SavedModel, data: TableSource) throws {
        let file = try out.flatMap { isStandardOutput($0) ? nil : try OutputFile.Output(path: $0) }
        // Standard output starts with the first chunk, so bad input prints nothing.
        var started = false
        func emit(_ text: String) throws {
            let bytes = Data(((started ? "" : "prediction\n") + text).utf8)
            started = true
            if let file { try file.write(bytes) } else { FileHandle.standardOutput.write(bytes) }
        }
        guard type == "link" || type == "response" else { throw InputError("--type must be link or response") }
        try Prediction.predict(saved, data: data, population: population, response: type == "response", chunkRows: chunkRows) { values, _ in
            try emit(values.map { $0.map { String(format: "%.17g", $0) } ?? "NA" }.joined(separator: "\n") + "\n")
        }
        if !started { try emit("") }   // no rows: the header alone
        try file?.commit()
    }
}

import ArgumentParser
import Foundation
import Multilevel

struct MLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlm",
        abstract: "Fit linear mixed (multilevel) models by REML or ML, lme4-compatible, on large data.",
        subcommands: [Fit.self, Compare.self, Predict.self, Ranef.self, Simulate.self]
    )
}

/// The data file and how to read and factor it: shared by every subcommand that fits.
struct ReadingOptions: ParsableArguments {
    @Argument(help: "The data: a .csv file, or an .h5 file (a group of 1-D column datasets, or a compound dataset).")
    var file: String

    @Option(help: "For .h5 files: the group or compound dataset holding the table (default: the file's only one).")
    var table: String?

    @Option(help: "Rows read per chunk (the fit does not depend on it).")
    var chunkRows = 65_536

    @Option(help: "Threads that read the data and accumulate the cross-products, and that refit bootstrap replicates and profile points (default: one per core; the results do not depend on it).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Ordering for the sparse Cholesky factor: natural (terms by decreasing number of levels; fastest on crossed designs), amd, metis, or best (CHOLMOD's least-fill choice).")
    var ordering: String = "natural"

    @Option(help: "Optimiser of θ: newton (Newton steps with the average-information matrix and the analytic gradient; a handful of factorisations) or bobyqa (derivative-free, as lme4).")
    var optimizer: String = "newton"

    @Option(help: ArgumentHelp("Rows per segment of the fixed summation order (for tests).", visibility: .hidden))
    var segmentRows = CrossProductAccumulator.segmentRows

    /// The data source and the fit options, after checking the numbers given.
    func resolve(reml: Bool, trace: (@Sendable (Int, [Double], Double) -> Void)? = nil) throws -> (TableSource, FitOptions) {
        guard chunkRows > 0 else { throw InputError("--chunk-rows must be a positive number of rows") }
        guard threads > 0 else { throw InputError("--threads must be a positive number") }
        guard segmentRows > 0 else { throw InputError("--segment-rows must be a positive number of rows") }
        guard let order = FillReducingOrdering(rawValue: ordering) else {
            throw InputError("--ordering must be one of \(FillReducingOrdering.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let choice = OptimizerChoice(rawValue: optimizer) else {
            throw InputError("--optimizer must be one of \(OptimizerChoice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var options = FitOptions(reml: reml, chunkRows: chunkRows, ordering: order, threads: threads,
                                 trace: trace, communicator: Job.communicator)
        options.segmentRows = segmentRows
        options.optimizer = choice
        return (try openTable(path: file, table: table), options)
    }
}

/// One model: the data, its formula and the criterion.
struct ModelOptions: ParsableArguments {
    @OptionGroup var reading: ReadingOptions

    @Option(help: "The model, in lme4 syntax, e.g. \"y ~ x + (1 + x | school)\".")
    var formula: String

    @Flag(help: "Fit by maximum likelihood instead of REML.")
    var ml = false

    var threads: Int { reading.threads }

    func fit(trace: (@Sendable (Int, [Double], Double) -> Void)? = nil) throws -> FitResult {
        try fitWithData(trace: trace).fit
    }

    /// The fit and the data source it read (for a second pass, e.g. the report's residuals).
    func fitWithData(trace: (@Sendable (Int, [Double], Double) -> Void)? = nil) throws -> (fit: FitResult, data: TableSource) {
        let (data, options) = try reading.resolve(reml: !ml, trace: trace)
        return (try LinearMixedModel.fit(formula, data: data, options: options), data)
    }
}

/// Runs `body`; bad input becomes one line on standard error and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as InputError {
        // Every rank meets the same error (they agree on failures); one prints it.
        if Job.isRoot { FileHandle.standardError.write(Data("mlm: error: \(error.message)\n".fileBytes)) }
        throw ExitCode.failure
    }
}

/// Writes text to a file as the bytes it stands for (labels as they were in the data file), or
/// fails with one line naming the file.
func write(_ text: String, to path: String) throws {
    do {
        try Data(text.fileBytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw InputError("cannot write '\(path)': \((error as NSError).localizedDescription)")
    }
}

/// Fails at once, in one line, if `path` could not be written later (its folder is missing or
/// not writable), so that a long fit or bootstrap does not end by losing its output.
func requireWritable(_ path: String?, option: String) throws {
    guard let path else { return }
    let folder = (path as NSString).deletingLastPathComponent
    let directory = folder.isEmpty ? "." : folder
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
          FileManager.default.isWritableFile(atPath: directory) else {
        throw InputError("\(option) '\(path)': the folder '\(directory)' does not exist or is not writable")
    }
}

/// Prints text on standard output as the bytes it stands for (labels as they were in the data file).
func printOutput(_ text: String) {
    FileHandle.standardOutput.write(Data(text.fileBytes))
}

import ArgumentParser
import Foundation
import Multilevel

/// `mlm fit`: fit a model, print lme4's summary, optionally write JSON and conditional modes.
struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit a linear mixed model and print a summary like lme4's summary().")

    @OptionGroup var model: ModelOptions

    @Option(help: "Write the results as JSON (lme4's names) to this file.")
    var json: String?

    @Option(help: "Write the conditional modes (BLUPs) of the random effects as CSV to this file.")
    var ranef: String?

    @Flag(help: "Report each deviance evaluation (number, seconds since the start, deviance, θ) and the time of each stage on stderr.")
    var verbose = false

    func run() throws {
        try reportingErrors {
            let result = try model.fit(trace: verbose ? traceLine(since: ContinuousClock.now) : nil)
            if verbose {
                for (stage, d) in result.timings { FileHandle.standardError.write(Data("\(stage): \(d)\n".utf8)) }
                FileHandle.standardError.write(Data("deviance evaluations: \(result.optimizer.evaluations)\n".utf8))
            }
            print(result.summary(), terminator: "")
            if let json { try write(result.json().serialized() + "\n", to: json) }
            if let ranef { try write(result.conditionalModesCSV(), to: ranef) }
        }
    }
}

/// lme4's `verbose` output: one line per deviance evaluation on stderr.
private func traceLine(since start: ContinuousClock.Instant) -> @Sendable (Int, [Double], Double) -> Void {
    { evaluation, theta, deviance in
        let elapsed: Duration = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        var line = String(format: "%5d %9.3fs  deviance %.10g  theta", evaluation, seconds, deviance)
        for t in theta { line += String(format: " %.6g", t) }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

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

    @Flag(help: "Report the time of each stage and the optimiser's evaluations on stderr.")
    var verbose = false

    func run() throws {
        try reportingErrors {
            let result = try model.fit()
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

import ArgumentParser
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

    func run() throws {
        try reportingErrors {
            let result = try model.fit()
            print(result.summary(), terminator: "")
            if let json { try write(result.json().serialized() + "\n", to: json) }
            if let ranef { try write(result.conditionalModesCSV(), to: ranef) }
        }
    }
}

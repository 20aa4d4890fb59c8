import ArgumentParser
import Multilevel

/// `mlm ranef`: fit a model and write its conditional modes.
struct Ranef: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit a model and write the conditional modes (BLUPs) of its random effects as CSV.")

    @OptionGroup var model: ModelOptions

    @Option(help: "The CSV file to write ('-': standard output; columns grpvar, term, grp, condval, condsd, as lme4's as.data.frame(ranef(m, condVar = TRUE))).")
    var out: String

    func run() throws {
        try reportingErrors {
            try Job.stage { if Job.isRoot { try requireWritable(out, option: "--out") } }
            let fit = try model.fit()
            try Job.stage { if Job.isRoot { try write(fit.conditionalModesCSV(), to: out) } }
        }
    }
}

import ArgumentParser
import Foundation
import Multilevel

/// `mlm compare`: fit several models to the same data and compare them as lme4's `anova()`.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare nested models by likelihood-ratio tests, AIC and BIC, as lme4's anova().",
        discussion: """
        Each --formula is fitted by maximum likelihood (lme4's anova refits REML fits so), the \
        models are ordered by their number of parameters, and each is tested against the one before.
        """)

    @OptionGroup var reading: ReadingOptions

    @Option(help: "A model to compare, in lme4 syntax; give two or more.")
    var formula: [String]

    @Option(help: "A column of precision weights for every model (lme4's weights =), as mlm fit's --weights.")
    var weights: String?

    @Option(help: "Each model's level-1 variance, in --formula order, as mlm fit's --residual-variance; none for a constant one (give one per --formula, or none at all).")
    var residualVariance: [String] = []

    @Option(help: "Compare GLMMs (lme4's anova of glmer fits): binomial or poisson, as mlm fit's --family.")
    var family: String?

    @Option(help: "The link of --family, as mlm fit's --link.")
    var link: String?

    @Option(name: .customLong("nagq"), help: "Quadrature nodes of --family fits, as mlm fit's --nagq.")
    var nagq = 1

    @Option(help: ArgumentHelp("Refused: likelihood-ratio tests are not valid under sampling weights.", visibility: .hidden))
    var surveyWeights: String?

    @Option(help: "Write the table as JSON to this file ('-': standard output, the table then on stderr).")
    var json: String?

    @Option(help: "Write a self-contained HTML report (the table, each model's summary and plots) into this folder.")
    var report: String?

    func validate() throws {
        if formula.count < 2 { throw ValidationError("give at least two --formula options to compare") }
        if surveyWeights != nil {
            throw ValidationError("--survey-weights: likelihood-ratio tests are not valid under sampling weights (a pseudo-likelihood); "
                + "test the terms by the Wald tests of mlm fit --survey-weights")
        }
    }

    func run() throws {
        try reportingErrors {
            try Job.stage {
                guard Job.isRoot else { return }
                try requireWritable(json, option: "--json")
                try requireWritableFolder(report, option: "--report")
            }
            let (data, options) = try Job.stage {
                var (data, options) = try reading.resolve(reml: false)
                options.weights = weights
                return (data, options)
            }
            let comparison: ModelComparison
            let generalized = try Job.stage { () throws -> GeneralizedFitOptions? in
                let generalized = try glmmOptions(family: family, link: link, nagq: nagq, weights: weights, fit: options)
                if generalized != nil && !residualVariance.isEmpty {
                    throw InputError("--residual-variance is for linear mixed models (a GLMM's variance is its family's)")
                }
                if generalized != nil && report != nil {
                    throw InputError("--report is not available with --family yet: the table and --json are")
                }
                return generalized
            }
            if let generalized {
                comparison = try Job.stage { try ModelComparison.compare(formula, data: data, options: generalized) }
            } else {
                comparison = try Job.stage {
                    let variances = residualVariance.isEmpty ? nil
                        : try residualVariance.map { $0 == "none" ? nil : try ResidualVarianceModel.parse($0) }
                    return try ModelComparison.compare(formula, data: data, options: options, residualVariances: variances)
                }
            }
            try Job.stage {
                guard Job.isRoot else { return }
                printSummary(comparison.summary(), outputs: [json])
                if let json { try write(comparison.json().serialized() + "\n", to: json) }
                if let report { try HTMLReport.write(comparison: comparison, to: report) }
            }
        }
    }
}

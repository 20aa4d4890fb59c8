import ArgumentParser
import Foundation
import Multilevel

struct MLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlm",
        abstract: "Fit linear mixed (multilevel) models by REML or ML, lme4-compatible, on large data.",
        subcommands: [Fit.self, Compare.self, Predict.self, Ranef.self, Simulate.self, Convert.self]
    )
}

/// A usage error in one line, pointing to the help of the subcommand given (if any).
func usageMessage(for error: Error) -> String {
    let names = MLM.configuration.subcommands.map { $0._commandName }
    let given = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") }
    let help = given.map { names.contains($0) } == true ? "mlm \(given!) --help" : "mlm --help"
    var message = MLM.message(for: error)
    if !message.hasSuffix(".") { message += "." }
    return message + " See '\(help)'."
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

    @Option(help: "Factorisation of the random effects' system: auto (the cheapest by symbolic analysis: CHOLMOD's natural, amd and metis orderings and the blocked dense-Schur-complement path), natural (terms by decreasing number of levels; the blocked path where it applies), amd, metis, or best (CHOLMOD's least-fill choice).")
    var ordering: String = "auto"

    @Option(help: "The most memory the factorisation may take, e.g. 8G or 512M (default: the memory available); a fit predicted to need more stops before allocating it.")
    var maxMemory: String?

    @Option(help: "Optimiser of θ: newton (Newton steps with the average-information matrix and the analytic gradient; a handful of factorisations) or bobyqa (derivative-free, as lme4).")
    var optimizer: String = "newton"

    @Option(help: "How the random effects' system is solved: auto (iterative when no Cholesky factor fits in memory or it is predicted faster), direct (a Cholesky factor) or iterative (conjugate gradients, with log-determinant and traces estimated on random probes).")
    var solver: String = "auto"

    @Option(help: "Iterative solver: probes of the first Newton steps; doubled while θ̂'s Monte-Carlo error exceeds a tenth of its standard error.")
    var probes = IterativeSettings().probes

    @Option(help: "Iterative solver: the most probes used.")
    var maxProbes = IterativeSettings().maxProbes

    @Option(help: "Iterative solver: seed of the probes (the fit depends on it only through the Monte-Carlo error).")
    var probeSeed: UInt64 = IterativeSettings().seed

    @Option(help: "Iterative solver: preconditioner of the solves for β̂, û and the AI matrix: block-jacobi or gauss-seidel (the probes always use block-jacobi).")
    var preconditioner = IterativeSettings().solvePreconditioner.rawValue

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
        guard let solverChoice = SolverChoice(rawValue: solver) else {
            throw InputError("--solver must be one of \(SolverChoice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard probes >= 2, maxProbes >= probes else {
            throw InputError("--probes must be at least 2 and --max-probes at least --probes")
        }
        var options = FitOptions(reml: reml, chunkRows: chunkRows, ordering: order, threads: threads,
                                 trace: trace, communicator: Job.communicator)
        options.solver = solverChoice
        options.iterative.probes = probes
        options.iterative.maxProbes = maxProbes
        options.iterative.seed = probeSeed
        guard let solvePreconditioner = SolvePreconditionerChoice(rawValue: preconditioner) else {
            throw InputError("--preconditioner must be one of \(SolvePreconditionerChoice.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        options.iterative.solvePreconditioner = solvePreconditioner
        options.segmentRows = segmentRows
        options.optimizer = choice
        options.maxMemory = try maxMemory.map(MemoryLimit.parse)
        if trace != nil, Job.isRoot {
            let log: @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            log("BLAS: OpenBLAS kernels \(BLASKernels.current)"
                + (getenv("OPENBLAS_CORETYPE").map { " (OPENBLAS_CORETYPE=\(String(cString: $0)))" } ?? " (detected)"))
            options.log = log
        }
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

    @Option(help: "A generalized linear mixed model (lme4's glmer) for a binary, proportion or count response: binomial (0/1, two values of a factor, or cbind(successes, failures)) or poisson (counts; offset(log(t)) for exposure), fit by maximum likelihood (Laplace approximation, or --nagq).")
    var family: String?

    @Option(help: "The link of --family: logit (the default), probit or cloglog for the binomial; log for the Poisson.")
    var link: String?

    @Option(name: .customLong("nagq"), help: "Adaptive Gauss-Hermite quadrature nodes per level of a single scalar random-effects term (lme4's nAGQ); 1 is the Laplace approximation.")
    var nagq = 1

    @Option(help: "A column of precision weights w (lme4's weights =): row i's residual variance is σ²/w_i. Rows with a missing weight are dropped; a weight must be positive.")
    var weights: String?

    @Option(help: "A level-1 variance that is not constant, as nlme's variance functions: \"~ 1 | g\" (a residual SD per level of g, varIdent), \"~ x\" or \"varExp(~ x)\" (SD σ·exp(t·x)), or \"varPower(~ x)\" (SD σ·|x|^t).")
    var residualVariance: String?

    @Option(help: "What --weights are: precision (lme4's prior weights). Sampling weights are given by --survey-weights.")
    var weightsKind = "precision"

    @Option(help: "Sampling weights of each level, innermost first, e.g. \"w_pupil, w_school\" (conditional weights, as Stata's mixed takes them): fit by maximum pseudo-likelihood with linearised (or replicate) standard errors. Nested designs of two levels (two weights) or three (three weights, e.g. (1 | district/school)), or one weight for a model without random effects (with --psu).")
    var surveyWeights: String?

    @Option(help: "How the level-1 sampling weights are scaled within each cluster (and, with three levels, the level-2 weights within each district): size (to the cluster's sample size), effective (to its effective sample size: unbiased variance components when weights vary within small clusters) or none.")
    var weightScaling = "size"

    @Option(help: "Column of primary sampling units for the linearised variance (default: the model's top-level clusters); the clusters must be nested in them.")
    var psu: String?

    @Option(help: "Column of strata for the linearised variance (PSUs with replacement within strata; default: one stratum).")
    var strata: String?

    @Option(help: "A stratum with a single PSU: fail (the default), certainty (it adds no variance) or centered (its deviation from the mean of all PSUs), as Stata's singleunit().")
    var singlePsu = "fail"

    @Option(help: "Replicate weights instead of the linearised variance, one column a replicate (full-sample scale), e.g. W_FSTR1..W_FSTR80 or a list; each replicate reweights whole top-level clusters and is refitted from the same cross-products.")
    var replicateWeights: String?

    @Option(help: "How the replicates give the variance: jk1 (delete-one jackknife), jk2 (paired jackknife: TIMSS, PIRLS), brr, or fay (Fay's BRR: PISA, with --fay-k 0.5).")
    var replicateMethod: String?

    @Option(help: "Fay's coefficient k of --replicate-method fay.")
    var fayK = 0.5

    @Option(help: "Column of finite-population corrections for the linearised variance, constant within a stratum: its sampling fraction of PSUs (at most 1) or its number of PSUs in the population, as Stata's fpc().")
    var fpc: String?

    /// The survey design asked for, nil without --survey-weights; the options that need one refused without it.
    func surveyDesign() throws -> SurveyDesign? {
        guard let text = surveyWeights else {
            if psu != nil || strata != nil { throw InputError("--psu and --strata need --survey-weights") }
            if replicateWeights != nil || replicateMethod != nil || fpc != nil {
                throw InputError("--replicate-weights, --replicate-method and --fpc need --survey-weights")
            }
            if weightScaling != "size" || singlePsu != "fail" { throw InputError("--weight-scaling and --single-psu need --survey-weights") }
            return nil
        }
        guard let scaling = WeightScaling(rawValue: weightScaling) else {
            throw InputError("--weight-scaling must be one of \(WeightScaling.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if weights != nil {
            throw InputError("precision weights (--weights) and sampling weights (--survey-weights) cannot be combined")
        }
        if residualVariance != nil { throw InputError("--residual-variance is not available with --survey-weights") }
        guard let single = SinglePSU(rawValue: singlePsu) else {
            throw InputError("--single-psu must be one of \(SinglePSU.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var design = SurveyDesign(weights: try SurveyDesign.weightColumns(text), scaling: scaling, psu: psu, strata: strata, singlePSU: single)
        design.fpc = fpc
        if let replicates = replicateWeights {
            guard let name = replicateMethod else {
                throw InputError("--replicate-weights needs --replicate-method: jk1, jk2, brr or fay (the variance formula depends on how the replicates were made)")
            }
            guard let method = ReplicateMethod(rawValue: name) else {
                throw InputError("--replicate-method must be one of \(ReplicateMethod.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            design.replicateWeights = try SurveyDesign.replicateColumns(replicates)
            design.replicateMethod = method
            design.fayK = fayK
        } else if replicateMethod != nil {
            throw InputError("--replicate-method needs --replicate-weights")
        }
        return design
    }

    /// A sampling-weighted fit (`--survey-weights`), by maximum pseudo-likelihood.
    func fitSurvey(_ design: SurveyDesign, trace: (@Sendable (Int, [Double], Double) -> Void)? = nil) throws -> SurveyFitResult {
        let (data, options) = try Job.stage { try reading.resolve(reml: false, trace: trace) }
        return try Job.stage { try LinearMixedModel.fitSurvey(formula, data: data, design: design, options: options) }
    }

    var threads: Int { reading.threads }

    /// The GLMM's options, nil for a Gaussian model (no --family).
    func generalizedOptions(trace: (@Sendable (Int, [Double], Double) -> Void)?) throws -> (TableSource, GeneralizedFitOptions)? {
        guard family != nil else {
            _ = try glmmOptions(family: nil, link: link, nagq: nagq, weights: weights, fit: FitOptions())
            return nil
        }
        if surveyWeights != nil { throw InputError("--survey-weights is not available with --family (pseudo-likelihood GLMMs are not implemented)") }
        if residualVariance != nil { throw InputError("--residual-variance is for linear mixed models (a GLMM's variance is its family's)") }
        let (data, fit) = try reading.resolve(reml: false, trace: trace)
        var options = try glmmOptions(family: family, link: link, nagq: nagq, weights: weights, fit: fit)!
        options.trace = trace
        return (data, options)
    }

    func fit(trace: (@Sendable (Int, [Double], Double) -> Void)? = nil) throws -> FitResult {
        try fitWithData(trace: trace).fit
    }

    /// The fit and the data source it read (for a second pass, e.g. the report's residuals).
    /// Two stages: opening the data (a rank that cannot must not leave the others reading),
    /// then the fit, whose collectives agree on every failure inside.
    func fitWithData(trace: (@Sendable (Int, [Double], Double) -> Void)? = nil, ddf: DenominatorDF = .none) throws -> (fit: FitResult, data: TableSource) {
        let (data, options) = try Job.stage {
            guard weightsKind == "precision" else {
                throw InputError("--weights-kind must be precision (lme4's prior weights); give sampling weights with --survey-weights")
            }
            if surveyWeights != nil {
                throw InputError("--survey-weights is for mlm fit (a pseudo-likelihood fit has no conditional modes, bootstrap or profile here)")
            }
            var (data, options) = try reading.resolve(reml: !ml, trace: trace)
            options.weights = weights
            options.ddf = ddf
            options.residualVariance = try residualVariance.map(ResidualVarianceModel.parse)
            return (data, options)
        }
        return (try Job.stage { try LinearMixedModel.fit(formula, data: data, options: options) }, data)
    }
}

/// Runs `body`; an error becomes one line `mlm: error: …` on stderr and exit status 1.
///
/// An error agreed on by every rank (`Job.stage`) is printed by rank 0 and every rank exits.
/// Any other error was met by this rank alone while the others may be waiting for it: the
/// rank prints it and ends the whole job (MPI_Abort) rather than leave them spinning.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let failure as Job.AgreedFailure {
        if Job.isRoot { printError(failure.message) }
        throw ExitCode(ExitStatus.inputError)
    } catch let error as ExitCode {
        throw error
    } catch {
        printError((error as? InputError)?.message ?? String(describing: error))
        Job.abortOtherRanks(status: ExitStatus.inputError)
        throw ExitCode(ExitStatus.inputError)
    }
}

/// `-` as a text output (`--json -`, `--ranef -`, `--profile-table -`, `--out -`): standard
/// output, whatever it is (a pipe, a terminal, a file). The summary then goes to standard error,
/// so standard output holds that output alone. `/dev/stdout` (and `/dev/fd/1`,
/// `/proc/self/fd/1`) mean the same; other descriptors' names are refused (`OutputFile`).
func isStandardOutput(_ path: String?) -> Bool {
    guard let path else { return false }
    return ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"].contains(path)
}

/// Writes text to a file (through a symbolic link; never onto a device, FIFO or folder), or
/// fails with one line naming the file (`OutputFile`); `-` is standard output.
func write(_ text: String, to path: String) throws {
    if isStandardOutput(path) {
        FileHandle.standardOutput.write(Data(text.fileBytes))
        return
    }
    try OutputFile.write(text, to: path)
}

/// Fails at once, in one line naming the path, if `path` could not be written later (its
/// folder is missing or takes no files, or it is a folder, a device or a FIFO), so that a
/// long fit or bootstrap does not end by losing its output. `-` (standard output) passes.
func requireWritable(_ path: String?, option: String) throws {
    guard let path, !isStandardOutput(path) else { return }
    try OutputFile.check(path, option: option)
}

/// Fails (a usage error) if more than one of the outputs is standard output.
func requireOneStandardOutput(_ outputs: [(String?, String)]) throws {
    let dashes = outputs.filter { isStandardOutput($0.0) }.map(\.1)
    if dashes.count > 1 {
        throw ValidationError("only one output can be standard output ('-'), not \(dashes.joined(separator: " and "))")
    }
}

/// Prints the summary: on stdout, or on stderr when an output takes stdout.
func printSummary(_ text: String, outputs: [String?]) {
    if outputs.contains(where: isStandardOutput) {
        FileHandle.standardError.write(Data(text.fileBytes))
    } else {
        FileHandle.standardOutput.write(Data(text.fileBytes))  // labels as the bytes they were in the data file
    }
}

/// As `requireWritable`, for an output folder (`--report DIR`).
func requireWritableFolder(_ path: String?, option: String) throws {
    guard let path else { return }
    try OutputFile.checkFolder(path, option: option)
}

/// The GLMM options of `--family`, `--link` and `--nagq` (`mlm fit`, `mlm compare`) on top of the
/// reading options' `fit`; nil without `--family`. Throws one line for a bad family or link,
/// for `--link` or `--nagq` without `--family`, and for `--weights` with it.
func glmmOptions(family name: String?, link: String?, nagq: Int, weights: String?, fit: FitOptions) throws -> GeneralizedFitOptions? {
    guard let name else {
        if link != nil || nagq != 1 { throw InputError("--link and --nagq need --family binomial or poisson") }
        return nil
    }
    guard let family = ResponseFamily(rawValue: name) else {
        throw InputError("--family must be binomial or poisson (a Gaussian model needs no --family)")
    }
    var chosenLink: LinkFunction?
    if let link {
        guard let l = LinkFunction(rawValue: link) else {
            throw InputError("--link must be one of \(LinkFunction.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        chosenLink = l
    }
    if weights != nil {
        throw InputError("--weights is not available with --family: give a binomial's trials as cbind(successes, failures)")
    }
    var options = GeneralizedFitOptions(family: family, link: chosenLink, nodes: nagq, threads: fit.threads, chunkRows: fit.chunkRows,
                                        communicator: fit.communicator, maxMemory: fit.maxMemory, log: fit.log)
    options.segmentRows = fit.segmentRows
    return options
}

import Foundation

/// One row of lme4's `as.data.frame(VarCorr(m))`: a variance (var2 nil), a covariance, or the residual.
public struct VarCorrEntry: Sendable, Equatable {
    /// The group name, made unique as lme4 does (`Subject`, `Subject.1`), or `Residual`.
    public let group: String
    public let var1: String?
    public let var2: String?
    /// The variance or covariance.
    public let vcov: Double
    /// The standard deviation (variances) or correlation (covariances).
    public let sdcor: Double
}

/// A fitted linear mixed model: estimates, variance components, fit statistics, conditional modes.
public struct FitResult: Sendable {
    /// The formula as written, the data's name, and the rows dropped for missing values.
    public internal(set) var formula = ""
    /// The column of precision weights (lme4's `weights =`), nil for none.
    public internal(set) var weights: String?
    public internal(set) var dataName = ""
    public internal(set) var droppedRows = 0
    /// Wall time of each stage of the fit (reading levels, cross-products, optimisation).
    public internal(set) var timings: [(stage: String, duration: Duration)] = []
    /// The levels of each categorical variable, by variable name (the coding `predict` reuses).
    public internal(set) var factorLevels: [(variable: String, levels: [String])] = []
    /// The ordering asked for.
    var ordering: FillReducingOrdering = .auto
    /// The factorisation the fit chose (`ordering` resolved): refits reuse it without a new analysis.
    var factorization: Factorization = .cholmod(.natural)
    /// The optimiser the fit used: bootstrap refits and β-profile points use it too.
    var optimizerChoice: OptimizerChoice = .newton
    /// The iterative path's settings and Monte-Carlo errors, when it fitted the model (nil: a factor did).
    var iterative: IterativeSettings?
    public internal(set) var monteCarlo: MonteCarloError?
    /// The t-tests of each β̂ and F-tests of each term with denominator degrees of freedom
    /// (`--ddf`), and the method's tests of any contrast, which made them.
    public internal(set) var fixedEffectTests: FixedEffectTests?
    var contrastTests: (any ContrastTests)?
    /// The rows the fit was read from, kept on the iterative path: its bootstrap reads them again.
    var rows: ModelRows?

    /// REML (true) or maximum likelihood.
    public let reml: Bool
    /// n: the number of observations used.
    public let nobs: Int
    /// The random-effects terms, in lme4's order.
    public let terms: [RandomEffectsTerm]
    /// θ and lme4's names for it.
    public let theta: [Double]
    public let thetaNames: [String]
    /// Fixed effects: names, estimates, standard errors, and the covariance matrix (p × p, column-major).
    public let fixedNames: [String]
    public let beta: [Double]
    public let standardErrors: [Double]
    public let fixedCovariance: [Double]
    /// The residual standard deviation σ.
    public let sigma: Double
    /// The REML criterion (REML fits) or the deviance −2 log L (ML fits) at the optimum.
    public let objective: Double
    /// lme4's `as.data.frame(VarCorr(m))`, residual last.
    public let varcorr: [VarCorrEntry]
    /// Conditional modes b̂ per term: `levels × p_k` values, row-major (level by level).
    public let conditionalModes: [[Double]]
    /// How the optimiser went.
    public internal(set) var optimizer: OptimizerSummary
    /// Messages for the reader: dropped columns, convergence, singular fit.
    public let notes: [String]

    /// The level-1 variance function (`--residual-variance`), nil for a constant residual variance.
    public internal(set) var residualVariance: ResidualVarianceFit?
    /// A varIdent fit's cross-products of each group, which its bootstrap replicates simulate.
    var residualVarianceParts: [CrossProducts]?

    /// The number of parameters: p + length(θ) + 1, and the residual variance's.
    public var df: Int { fixedNames.count + theta.count + 1 + (residualVariance?.estimatedCount ?? 0) }
    /// The log-likelihood (REML fits: the restricted log-likelihood, as lme4 reports).
    public var logLik: Double { -objective / 2 }
    public var aic: Double { objective + 2 * Double(df) }
    public var bic: Double { objective + Double(df) * log(Double(nobs)) }
    /// Residual degrees of freedom n − df, as lme4's summary shows for ML fits.
    public var residualDF: Int { nobs - df }

    /// The number of levels of each grouping factor, by lme4's group name (each factor once).
    public var groupCounts: [(group: String, count: Int)] { Self.groupCounts(terms) }

    static func groupCounts(_ terms: [RandomEffectsTerm]) -> [(group: String, count: Int)] {
        var seen: Set<String> = []
        return terms.compactMap { seen.insert($0.group).inserted ? ($0.group, $0.levels.count) : nil }
    }

    /// The unique group names lme4 uses in `VarCorr`: a repeated group gets `.1`, `.2`, …
    public var uniqueGroupNames: [String] { Self.uniqueGroupNames(terms) }

    static func uniqueGroupNames(_ terms: [RandomEffectsTerm]) -> [String] {
        var count: [String: Int] = [:]
        return terms.map { t in
            let k = count[t.group, default: 0]
            count[t.group] = k + 1
            return k == 0 ? t.group : "\(t.group).\(k)"
        }
    }

    /// Intra-class correlations (variance partition coefficients) for a model whose random terms
    /// are all random intercepts: each term's variance over the total. Nil otherwise.
    public var intraclassCorrelations: [(group: String, icc: Double)]? {
        guard residualVariance == nil, terms.allSatisfy({ $0.effects == ["(Intercept)"] }) else { return nil }
        let variances = varcorr.filter { $0.var2 == nil }.map(\.vcov)   // terms…, residual
        let total = variances.reduce(0, +)
        return zip(uniqueGroupNames, variances).map { ($0, $1 / total) }
    }

    init(crossProducts cp: CrossProducts, pls: PenalizedLeastSquares, theta: [Double],
         evaluation e: PenalizedLeastSquares.Evaluation, optimizer: OptimizerSummary, notes: [String]) {
        let beta = pls.fixedEffects(e)
        self.init(crossProducts: cp, reml: pls.reml, factor: pls.factor, theta: theta, beta: beta, sigma: pls.residualSD(e),
                  r: e.r, modes: pls.conditionalModes(theta, e, beta: beta), objective: e.deviance, optimizer: optimizer, notes: notes)
    }

    /// From the pieces of an evaluation at θ̂: β̂, σ̂, R (whose leading p × p block is R_X), b = Λû.
    init(crossProducts cp: CrossProducts, reml: Bool, factor: RelativeCovarianceFactor, theta: [Double], beta: [Double],
         sigma: Double, r: [Double], modes b: [Double], objective: Double, optimizer: OptimizerSummary, notes: [String]) {
        let p = cp.fixedCount, p1 = p + 1
        self.reml = reml
        nobs = cp.rows
        terms = cp.terms
        self.theta = theta
        thetaNames = factor.thetaNames
        fixedNames = cp.fixedNames
        self.objective = objective
        self.optimizer = optimizer
        self.notes = notes
        self.beta = beta
        self.sigma = sigma
        let sigma2 = sigma * sigma
        let unscaled = DenseCholesky.inverseOfCrossProduct(r, leading: p1, order: p)
        let covariance = unscaled.map { $0 * sigma2 }
        fixedCovariance = covariance
        standardErrors = (0..<p).map { covariance[$0 + $0 * p].squareRoot() }
        conditionalModes = cp.terms.map { Array(b[$0.offset..<($0.offset + $0.columns)]) }
        varcorr = Self.varCorr(terms: cp.terms, factor: factor, theta: theta, sigma: sigma)
        crossProducts = cp
    }

    /// The cross-products the model was fitted to (aliased columns dropped): bootstrap
    /// replicates and profile traces refit from these, never from the rows.
    let crossProducts: CrossProducts

    /// lme4's `as.data.frame(VarCorr(m))` for θ and σ: Σ_k = σ² T_k T_k', each term's
    /// variances then covariances, the residual last.
    static func varCorr(terms: [RandomEffectsTerm], factor: RelativeCovarianceFactor, theta: [Double],
                        sigma: Double) -> [VarCorrEntry] {
        let sigma2 = sigma * sigma
        var entries: [VarCorrEntry] = []
        for (k, (t, name)) in zip(terms, uniqueGroupNames(terms)).enumerated() {
            let dim = t.dimension
            let tk = factor.template(k, theta: theta)
            var sigmaK = [Double](repeating: 0, count: dim * dim)
            for i in 0..<dim { for j in 0..<dim {
                var s = 0.0
                for m in 0...min(i, j) { s += tk[i + m * dim] * tk[j + m * dim] }
                sigmaK[i + j * dim] = sigma2 * s
            } }
            for i in 0..<dim {
                let v = sigmaK[i + i * dim]
                entries.append(VarCorrEntry(group: name, var1: t.effects[i], var2: nil, vcov: v, sdcor: v.squareRoot()))
            }
            for i in 0..<dim { for j in (i + 1)..<max(i + 1, dim) {
                let c = sigmaK[i + j * dim]
                let denominator = (sigmaK[i + i * dim] * sigmaK[j + j * dim]).squareRoot()
                entries.append(VarCorrEntry(group: name, var1: t.effects[i], var2: t.effects[j], vcov: c,
                                            sdcor: denominator > 0 ? c / denominator : .nan))
            } }
        }
        entries.append(VarCorrEntry(group: "Residual", var1: nil, var2: nil, vcov: sigma2, sdcor: sigma))
        return entries
    }
}

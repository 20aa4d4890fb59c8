import Foundation

/// A fitted GLMM: estimates with z tests, variance components, fit statistics and conditional
/// modes, with lme4's names (`summary(glmer(...))`).
public struct GeneralizedFitResult: Sendable {
    public let formula: String
    public let dataName: String
    public let distribution: ResponseDistribution
    /// 1: Laplace; more: adaptive Gauss–Hermite nodes.
    public let nodes: Int
    public let nobs: Int
    public let droppedRows: Int
    public let terms: [RandomEffectsTerm]
    public let theta: [Double]
    public let thetaNames: [String]
    public let fixedNames: [String]
    public let beta: [Double]
    /// β's covariance (p × p, column-major), from the Hessian or R_X (`covarianceSource`).
    public let covariance: [Double]
    public let covarianceSource: String
    public let rxCovariance: [Double]
    /// The finite-difference Hessian of the deviance in (θ, β), when computed.
    public let hessian: [Double]?
    /// The minimised deviance: −2 log L (Laplace), lme4's quadrature deviance (nAGQ > 1).
    public let deviance: Double
    /// Σ log p(y | û, β̂), ‖û‖² and log|L|² at the mode.
    public let conditionalLogLikelihood: Double
    public let squaredModeLength: Double
    public let logDetL2: Double
    /// Σ of squared deviance residuals at the mode (lme4's `deviance()` of a glmer fit).
    public let devianceResiduals: Double
    public let varcorr: [VarCorrEntry]
    /// Conditional modes b = Λû and their conditional SDs, per term, level by level.
    public let conditionalModes: [[Double]]
    public let conditionalSDs: [[Double]]
    public let stages: (first: OptimizerSummary, second: OptimizerSummary)
    public let pirlsIterations: Int
    public let notes: [String]
    public let timings: [(stage: String, duration: Duration)]
    /// The levels of each categorical variable, by variable name (the coding `predict` reuses).
    public internal(set) var factorLevels: [(variable: String, levels: [String])] = []

    public var standardErrors: [Double] { (0..<beta.count).map { covariance[$0 + $0 * beta.count].squareRoot() } }
    public var zValues: [Double] { zip(beta, standardErrors).map { $0 / $1 } }
    /// Two-sided normal p-values.
    public var pValues: [Double] { zValues.map { erfc(abs($0) / 2.0.squareRoot()) } }
    /// Parameters: θ and β (no dispersion).
    public var df: Int { theta.count + beta.count }
    public var logLik: Double { -deviance / 2 }
    public var aic: Double { deviance + 2 * Double(df) }
    public var bic: Double { deviance + Double(df) * log(Double(nobs)) }
    public var residualDF: Int { nobs - df }

    init(formula: String, dataName: String, distribution: ResponseDistribution, nodes: Int, nobs: Int, droppedRows: Int,
         terms: [RandomEffectsTerm], factor: RelativeCovarianceFactor, theta: [Double], fixedNames: [String], beta: [Double],
         covariance: [Double], covarianceSource: String, rxCovariance: [Double], hessian: [Double]?, deviance: Double,
         laplaceParts: (logDensity: Double, squaredLength: Double, logDetL2: Double), devianceResiduals: Double,
         conditionalModes b: [Double], inverseBlocks: [[Double]], stages: (OptimizerSummary, OptimizerSummary),
         pirlsIterations: Int, notes: [String], timings: [(String, Duration)]) {
        self.formula = formula
        self.dataName = dataName
        self.distribution = distribution
        self.nodes = nodes
        self.nobs = nobs
        self.droppedRows = droppedRows
        self.terms = terms
        self.theta = theta
        thetaNames = factor.thetaNames
        self.fixedNames = fixedNames
        self.beta = beta
        self.covariance = covariance
        self.covarianceSource = covarianceSource
        self.rxCovariance = rxCovariance
        self.hessian = hessian
        self.deviance = deviance
        conditionalLogLikelihood = laplaceParts.logDensity
        squaredModeLength = laplaceParts.squaredLength
        logDetL2 = laplaceParts.logDetL2
        self.devianceResiduals = devianceResiduals
        varcorr = Array(FitResult.varCorr(terms: terms, factor: factor, theta: theta, sigma: 1).dropLast())
        conditionalModes = terms.map { Array(b[$0.offset..<($0.offset + $0.columns)]) }
        // Var(b | y) = T_k (A⁻¹)_block T_k' per level (σ = 1).
        var block = 0
        conditionalSDs = terms.enumerated().map { k, t in
            let d = t.dimension, tk = factor.template(k, theta: theta)
            var sds: [Double] = []
            for _ in t.levels.indices {
                let a = inverseBlocks[block]
                block += 1
                for i in 0..<d {
                    var v = 0.0
                    for r in 0..<d { for s in 0..<d { v += tk[i + r * d] * a[r + s * d] * tk[i + s * d] } }
                    sds.append(v.squareRoot())
                }
            }
            return sds
        }
        self.stages = stages
        self.pirlsIterations = pirlsIterations
        self.notes = notes
        self.timings = timings
    }

    /// The number of levels of each grouping factor (each factor once).
    public var groupCounts: [(group: String, count: Int)] { FitResult.groupCounts(terms) }
}

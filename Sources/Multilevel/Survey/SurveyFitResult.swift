import Foundation

/// A model fitted to survey data by maximum pseudo-likelihood, with linearised or replicate-weight standard errors.
public struct SurveyFitResult: Sendable {
    public let formula: String
    public let dataName: String
    public let design: SurveyDesign
    /// Rows used; the grouping factors (finest first) and their numbers of levels; PSUs and strata.
    public let nobs: Int
    public let groups: [(name: String, count: Int)]
    public let psus: Int
    public let strata: Int
    /// Nʷ, the scaled weights' total Σⱼ wⱼcⱼΣᵢwᵢ|ⱼ.
    public let weightedCount: Double
    public let terms: [RandomEffectsTerm]
    public let theta: [Double]
    public let thetaNames: [String]
    public let fixedNames: [String]
    public let beta: [Double]
    /// The linearised covariance of β̂ (p × p, column-major) and its standard errors.
    public let fixedCovariance: [Double]
    public let standardErrors: [Double]
    public let sigma: Double
    /// The variance components σ²(T_kT_k') (variances and covariances, as lme4's VarCorr), then
    /// σ²; with their linearised standard errors (NaN for a variance at its bound of 0).
    public let varcorr: [VarCorrEntry]
    public let varcorrStandardErrors: [Double]
    /// The pseudo-log-likelihood at the estimates.
    public let logPseudoLikelihood: Double
    public let optimizer: OptimizerSummary
    public let notes: [String]
    public let droppedRows: Int

    /// Wald z statistics and two-sided normal p-values of the fixed effects.
    public var zValues: [Double] { zip(beta, standardErrors).map { $0 / $1 } }
    public var pValues: [Double] { zValues.map { erfc(abs($0) / 2.0.squareRoot()) } }
    /// The confidence level of the Wald intervals (`mlm fit --level`).
    public var level = 0.95
    /// The Wald intervals β̂ ± z SE at `level`.
    public var waldIntervals: [(lower: Double, upper: Double)] {
        let z = NormalDistribution.quantile(0.5 + level / 2)
        return zip(beta, standardErrors).map { ($0 - z * $1, $0 + z * $1) }
    }
}

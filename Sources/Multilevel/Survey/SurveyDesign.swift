import Foundation

/// How the level-1 sampling weights of a cluster are rescaled before they enter the
/// pseudo-likelihood (Pfeffermann et al. 1998; Stata's `pwscale()`).
///
/// With wᵢ|ⱼ the conditional weights of the nⱼ sampled units of cluster j, the weights used are
/// cⱼ wᵢ|ⱼ with
/// - `size` (method A, the default): cⱼ = nⱼ / Σᵢ wᵢ|ⱼ, so they add up to the cluster's sample size;
/// - `effective` (method B): cⱼ = Σᵢ wᵢ|ⱼ / Σᵢ wᵢ|ⱼ², so they add up to its effective sample size;
/// - `none`: cⱼ = 1.
/// Under `size` and `effective` the fit does not change when a cluster's level-1 weights are
/// all multiplied by one constant.
public enum WeightScaling: String, CaseIterable, Sendable {
    case size, effective, none

    /// cⱼ from the cluster's count nⱼ, Σ w and Σ w².
    func factor(count: Double, sum: Double, sumOfSquares: Double) -> Double {
        switch self {
        case .size: return count / sum
        case .effective: return sum / sumOfSquares
        case .none: return 1
        }
    }
}

/// What a stratum with a single PSU contributes to the linearised variance (Stata's
/// `singleunit()`, R's `survey.lonely.psu`): `fail` (an error, the default), `certainty`
/// (nothing: the PSU was sampled with certainty), `centered` (its deviation from the mean of
/// all PSUs, not of its stratum).
public enum SinglePSU: String, CaseIterable, Sendable {
    case fail, certainty, centered
}

/// A survey's design as the fit uses it: the sampling weights of each level (innermost first,
/// as WeMix's `weights =`), their scaling, and the primary sampling units and strata of the
/// variance estimator.
///
/// The weights are conditional, as Stata's `mixed` takes them: the level-1 weight of a pupil is
/// the inverse of its probability of selection given that its school was sampled; the level-2
/// weight, the inverse of the school's probability of selection. A model without random effects
/// takes one weight (then `psu` names the clusters).
public struct SurveyDesign: Sendable, Equatable {
    /// Columns of weights, level 1 first.
    public var weights: [String]
    public var scaling: WeightScaling
    /// The primary sampling units (default: the top-level clusters of the model).
    public var psu: String?
    /// The strata (default: one stratum).
    public var strata: String?
    public var singlePSU: SinglePSU

    public init(weights: [String], scaling: WeightScaling = .size, psu: String? = nil, strata: String? = nil,
                singlePSU: SinglePSU = .fail) {
        self.weights = weights
        self.scaling = scaling
        self.psu = psu
        self.strata = strata
        self.singlePSU = singlePSU
    }

    /// Parses `--survey-weights "w_pupil, w_school"`: column names separated by commas.
    public static func weightColumns(_ text: String) throws -> [String] {
        let names = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else {
            throw InputError("--survey-weights must list weight columns separated by commas, level 1 first, e.g. \"w_pupil, w_school\"")
        }
        if let repeated = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw InputError("--survey-weights names column '\(repeated)' twice: each level needs its own weights")
        }
        return names
    }

    /// Every column the design reads besides the model's.
    var columns: [String] { weights + [psu, strata].compactMap { $0 } }
}

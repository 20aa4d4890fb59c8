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

/// How replicate estimates θ_r spread around the full-sample estimate θ̂ give its variance,
/// V = c Σ_r (θ_r − θ̂)(θ_r − θ̂)' (deviations from θ̂, the formula PISA, TIMSS and NAEP publish;
/// R's `svrepdesign(mse = TRUE)`): `jk1` (delete-one jackknife, c = (R − 1)/R), `jk2` (paired
/// jackknife, TIMSS and PIRLS: c = 1), `brr` (balanced repeated replication: c = 1/R) and `fay`
/// (Fay's BRR with coefficient k, PISA's with k = 0.5: c = 1/(R(1 − k)²)).
public enum ReplicateMethod: String, CaseIterable, Sendable {
    case jk1, jk2, brr, fay

    func scale(replicates r: Int, fayK: Double) -> Double {
        switch self {
        case .jk1: return Double(r - 1) / Double(r)
        case .jk2: return 1
        case .brr: return 1 / Double(r)
        case .fay: return 1 / (Double(r) * (1 - fayK) * (1 - fayK))
        }
    }

    var title: String {
        switch self {
        case .jk1: return "delete-one jackknife (JK1)"
        case .jk2: return "paired jackknife (JK2)"
        case .brr: return "balanced repeated replication (BRR)"
        case .fay: return "Fay's BRR"
        }
    }
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
    /// Replicate weights (full-sample scale, one column a replicate) and how to combine them; the
    /// variance is then theirs instead of the linearised one.
    public var replicateWeights: [String] = []
    public var replicateMethod: ReplicateMethod = .fay
    public var fayK = 0.5
    /// A column of finite-population corrections, constant within a stratum (Stata's `fpc()`).
    public var fpc: String?

    public init(weights: [String], scaling: WeightScaling = .size, psu: String? = nil, strata: String? = nil,
                singlePSU: SinglePSU = .fail) {
        self.weights = weights
        self.scaling = scaling
        self.psu = psu
        self.strata = strata
        self.singlePSU = singlePSU
    }

    /// Parses `--replicate-weights`: "W_FSTR1..W_FSTR80" (a prefix and a range of numbers) or
    /// column names separated by commas.
    public static func replicateColumns(_ text: String) throws -> [String] {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let range = trimmed.range(of: "..") {
            let first = String(trimmed[..<range.lowerBound]), last = String(trimmed[range.upperBound...])
            func split(_ name: String) -> (prefix: String, number: Int)? {
                let digits = name.reversed().prefix { $0.isASCII && $0.isNumber }
                guard !digits.isEmpty, let n = Int(String(digits.reversed())) else { return nil }
                return (String(name.dropLast(digits.count)), n)
            }
            guard let a = split(first), let b = split(last), a.prefix == b.prefix, a.number <= b.number else {
                throw InputError("--replicate-weights range '\(trimmed)' must read PREFIX<first>..PREFIX<last>, e.g. W_FSTR1..W_FSTR80")
            }
            return (a.number...b.number).map { "\(a.prefix)\($0)" }
        }
        return try weightColumns(trimmed, option: "--replicate-weights")
    }

    /// Every column the design reads besides the model's.
    var columns: [String] { weights + [psu, strata, fpc].compactMap { $0 } + replicateWeights }

    /// Parses `--survey-weights "w_pupil, w_school"`: column names separated by commas.
    public static func weightColumns(_ text: String, option: String = "--survey-weights") throws -> [String] {
        let names = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else {
            throw InputError(option == "--survey-weights"
                ? "--survey-weights must list weight columns separated by commas, level 1 first, e.g. \"w_pupil, w_school\""
                : "\(option) must list columns separated by commas, or a range such as W_FSTR1..W_FSTR80")
        }
        if let repeated = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw InputError("\(option) names column '\(repeated)' twice")
        }
        return names
    }

}

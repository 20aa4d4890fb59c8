import Foundation

/// The conditional distribution of a GLMM's response given the random effects.
public enum ResponseFamily: String, CaseIterable, Sendable {
    case binomial, poisson

    /// lme4's default link.
    public var canonicalLink: LinkFunction { self == .binomial ? .logit : .log }
}

/// The link g with η = g(μ).
public enum LinkFunction: String, CaseIterable, Sendable {
    case logit, probit, cloglog, log
}

/// A family and a link: the inverse link and its derivative, the variance function, the
/// deviance residuals and the log-density, bounded as lme4's `glmFamily.cpp` bounds them (μ
/// kept within machine epsilon of the ends of its range, dμ/dη at least epsilon).
///
/// A binomial row's response is the proportion y = successes / trials with prior weight
/// `trials` (1 for a 0/1 response), as `glm` and `glmer` hold it.
public struct ResponseDistribution: Sendable {
    public let family: ResponseFamily
    public let link: LinkFunction

    /// Throws when the link does not suit the family.
    public init(family: ResponseFamily, link: LinkFunction? = nil) throws {
        let link = link ?? family.canonicalLink
        switch (family, link) {
        case (.binomial, .logit), (.binomial, .probit), (.binomial, .cloglog), (.poisson, .log): break
        default:
            throw InputError("--link \(link.rawValue) does not suit --family \(family.rawValue) (binomial: logit, probit, cloglog; poisson: log)")
        }
        self.family = family
        self.link = link
    }

    private static let epsilon = Double.ulpOfOne

    /// μ = g⁻¹(η).
    @inline(__always) func mean(_ eta: Double) -> Double {
        let e = Self.epsilon
        switch link {
        case .logit: return max(e, min(1 - e, 1 / (1 + Foundation.exp(-eta))))
        case .probit: return min(1 - e, 0.5 * erfc(-eta / 2.0.squareRoot()))
        case .cloglog: return max(e, min(1 - e, -expm1(-Foundation.exp(eta))))
        case .log: return max(e, Foundation.exp(eta))
        }
    }

    /// dμ/dη at η.
    @inline(__always) func meanDerivative(_ eta: Double) -> Double {
        let e = Self.epsilon
        switch link {
        case .logit:
            let a = Foundation.exp(-Swift.abs(eta))
            return max(e, a / ((1 + a) * (1 + a)))
        case .probit: return Foundation.exp(-0.5 * eta * eta) / (2 * Double.pi).squareRoot()
        case .cloglog: return max(e, Foundation.exp(eta - Foundation.exp(eta)))
        case .log: return max(e, Foundation.exp(eta))
        }
    }

    /// V(μ).
    @inline(__always) func variance(_ mu: Double) -> Double {
        family == .binomial ? max(Self.epsilon, mu * (1 - mu)) : mu
    }

    /// The squared deviance residual of a row: 2 wt (y log(y/μ) + (1−y) log((1−y)/(1−μ))) or
    /// 2 wt (y log(y/μ) − (y − μ)).
    @inline(__always) func devianceResidual(_ y: Double, _ mu: Double, weight wt: Double) -> Double {
        @inline(__always) func yLogY(_ y: Double, _ mu: Double) -> Double { y == 0 ? 0 : y * Foundation.log(y / mu) }
        switch family {
        case .binomial: return 2 * wt * (yLogY(y, mu) + yLogY(1 - y, 1 - mu))
        case .poisson: return 2 * wt * (yLogY(y, mu) - (y - mu))
        }
    }

    /// log p(y | μ) of a row: binomial log C(m, k) + k log μ + (m − k) log(1 − μ) with m the
    /// trials and k = m y, both rounded as R's `binomial()$aic` rounds them; Poisson wt (y log μ − μ − log y!).
    @inline(__always) func logDensity(_ y: Double, _ mu: Double, weight wt: Double) -> Double {
        switch family {
        case .binomial:
            let m = wt.rounded(), k = (wt * y).rounded()
            guard m > 0 else { return 0 }
            var value = lgamma(m + 1) - lgamma(k + 1) - lgamma(m - k + 1)
            if k > 0 { value += k * Foundation.log(mu) }
            if m - k > 0 { value += (m - k) * log1p(-mu) }
            return value
        case .poisson:
            return wt * ((y == 0 ? 0 : y * Foundation.log(mu)) - mu - lgamma(y + 1))
        }
    }

    /// glm's starting mean: (wt y + ½)/(wt + 1) for the binomial, y + 0.1 for the Poisson.
    func initialMean(_ y: Double, weight wt: Double) -> Double {
        family == .binomial ? (wt * y + 0.5) / (wt + 1) : y + 0.1
    }

    /// g(μ).
    func linkValue(_ mu: Double) -> Double {
        switch link {
        case .logit: return Foundation.log(mu / (1 - mu))
        case .probit: return NormalDistribution.quantile(mu)
        case .cloglog: return Foundation.log(-log1p(-mu))
        case .log: return Foundation.log(mu)
        }
    }
}

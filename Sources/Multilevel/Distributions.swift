import Foundation

/// The distribution functions the intervals and tests need.
///
/// The standard normal distribution's quantile function (Wichura's AS 241, PPND16: relative
/// error about 1e-16, the algorithm behind R's `qnorm`).
enum NormalDistribution {
    static func quantile(_ p: Double) -> Double {
        if p <= 0 { return -.infinity }
        if p >= 1 { return .infinity }
        let q = p - 0.5
        if abs(q) <= 0.425 {
            let r = 0.180625 - q * q
            return q * (((((((r * 2509.0809287301226727 + 33430.575583588128105) * r + 67265.770927008700853) * r
                + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
                + 133.14166789178437745) * r + 3.387132872796366608)
                / (((((((r * 5226.495278852545925 + 28729.085735721942674) * r + 39307.89580009271061) * r
                + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
                + 42.313330701600911252) * r + 1)
        }
        var r = q < 0 ? p : 1 - p
        r = (-log(r)).squareRoot()
        var value: Double
        if r <= 5 {
            r -= 1.6
            value = (((((((r * 7.7454501427834140764e-4 + 0.0227238449892691845833) * r + 0.24178072517745061177) * r
                + 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r
                + 4.6303378461565452959) * r + 1.42343711074968357734)
                / (((((((r * 1.05075007164441684324e-9 + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r
                + 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r
                + 2.05319162663775882187) * r + 1)
        } else {
            r -= 5
            value = (((((((r * 2.01033439929228813265e-7 + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r
                + 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r
                + 5.4637849111641143699) * r + 6.6579046435011037772)
                / (((((((r * 2.04426310338993978564e-15 + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r
                + 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r
                + 0.59983220655588793769) * r + 1)
        }
        return q < 0 ? -value : value
    }
}

/// The χ² distribution's upper tail, as R's `pchisq(x, df, lower.tail = FALSE)`.
enum ChiSquareDistribution {
    /// P(X > x) for X ~ χ²(df); df = 0 is the point mass at 0.
    static func upperTail(_ x: Double, df: Double) -> Double {
        if df == 0 { return x > 0 ? 0 : 1 }
        if x <= 0 { return 1 }
        return RegularizedGamma.q(df / 2, x / 2)
    }
}

/// The regularised incomplete gamma functions P(a, x) and Q(a, x) = 1 − P(a, x): the series
/// Σ xⁿ/(a(a+1)…(a+n)) where it converges fast (x < a + 1), else the continued fraction for Q
/// evaluated by the modified Lentz method; relative accuracy about 1e-14.
enum RegularizedGamma {
    static func q(_ a: Double, _ x: Double) -> Double {
        if x < a + 1 { return 1 - series(a, x) }
        return continuedFraction(a, x)
    }

    /// The prefactor e^{−x} x^a / Γ(a), in logs to avoid overflow.
    private static func front(_ a: Double, _ x: Double) -> Double { exp(-x + a * log(x) - lgamma(a)) }

    private static func series(_ a: Double, _ x: Double) -> Double {
        var term = 1 / a, sum = term, n = a
        for _ in 0..<10_000 {
            n += 1
            term *= x / n
            sum += term
            if abs(term) < abs(sum) * 1e-16 { break }
        }
        return sum * front(a, x)
    }

    private static func continuedFraction(_ a: Double, _ x: Double) -> Double {
        let tiny = 1e-300
        var b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d
        for i in 1..<10_000 {
            let an = -Double(i) * (Double(i) - a)
            b += 2
            d = an * d + b
            if abs(d) < tiny { d = tiny }
            c = b + an / c
            if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return h * front(a, x)
    }
}

/// Student's t distribution's two-sided tail, as R's `2 * pt(-abs(t), df)`: the regularised
/// incomplete beta I_x(df/2, 1/2) at x = df/(df + t²), by its continued fraction (modified
/// Lentz), with the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where that converges faster.
enum StudentTDistribution {
    static func twoSidedTail(_ t: Double, df: Double) -> Double {
        guard t.isFinite else { return 0 }
        return RegularizedBeta.i(df / (df + t * t), df / 2, 0.5)
    }
}

/// The F distribution's upper tail P(F > f) = I_{d2/(d2 + d1 f)}(d2/2, d1/2) (R's `pf(lower.tail = FALSE)`).
enum FDistribution {
    static func upperTail(_ f: Double, numeratorDF d1: Double, denominatorDF d2: Double) -> Double {
        guard f.isFinite else { return 0 }
        guard f > 0 else { return 1 }
        return RegularizedBeta.i(d2 / (d2 + d1 * f), d2 / 2, d1 / 2)
    }
}

enum RegularizedBeta {
    static func i(_ x: Double, _ a: Double, _ b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x))
        if x < (a + 1) / (a + b + 2) { return front * continuedFraction(x, a, b) / a }
        return 1 - front * continuedFraction(1 - x, b, a) / b
    }

    private static func continuedFraction(_ x: Double, _ a: Double, _ b: Double) -> Double {
        let tiny = 1e-300
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...10_000 {
            let m = Double(m)
            // The even step, then the odd one.
            var aa = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            h *= d * c
            aa = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            d = 1 + aa * d; if abs(d) < tiny { d = tiny }
            c = 1 + aa / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < 1e-16 { break }
        }
        return h
    }
}

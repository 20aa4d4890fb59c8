import Foundation

/// xoshiro256** (Blackman and Vigna, 2018) seeded by SplitMix64: a small, fast, deterministic generator.
///
/// The 256-bit state is four SplitMix64 outputs of the seed, the published way to seed
/// xoshiro, so `Xoshiro256(seed: s).next()` matches the authors' C code seeded that way.
/// On top of the raw 64-bit outputs: uniform doubles (the top 53 bits), unbiased integers
/// below a bound (Lemire's multiply-and-reject) and standard normals (Marsaglia's polar
/// method, which makes two at a time and keeps the second for the next call). Everything
/// is a pure function of the seed and the sequence of calls; no system randomness is used.
struct Xoshiro256 {
    private var s0, s1, s2, s3: UInt64
    /// The second normal of the last polar pair, not yet returned.
    private var spareNormal: Double?

    /// Seeds the state with four outputs of SplitMix64 started at `seed`.
    init(seed: UInt64) {
        var state = seed
        func splitMix64() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix64()
        s1 = splitMix64()
        s2 = splitMix64()
        s3 = splitMix64()
    }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        let result = Self.rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = Self.rotateLeft(s3, 45)
        return result
    }

    /// A uniform double in [0, 1): the top 53 bits of `next()`, scaled.
    mutating func nextDouble() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A uniform integer in `0..<bound` (`bound` > 0), without modulo bias (Lemire, 2019).
    mutating func nextInt(below bound: Int) -> Int {
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }

    /// A standard normal deviate, by Marsaglia's polar method.
    mutating func nextNormal() -> Double {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        while true {
            let u = 2 * nextDouble() - 1, v = 2 * nextDouble() - 1
            let s = u * u + v * v
            if s > 0 && s < 1 {
                let scale = (-2 * log(s) / s).squareRoot()
                spareNormal = v * scale
                return u * scale
            }
        }
    }

    private static func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }
}

extension Xoshiro256 {
    /// The generator of replicate `index` of a run seeded `seed`: its numbers depend on those
    /// two alone, so any rank or thread can draw any replicate.
    init(seed: UInt64, stream index: Int) {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (UInt64(truncatingIfNeeded: index) &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        self.init(seed: z ^ (z >> 31))
    }

    /// A Gamma(shape, 1) deviate (Marsaglia and Tsang, 2000; shape < 1 by the boost U^(1/shape)).
    mutating func nextGamma(shape: Double) -> Double {
        precondition(shape > 0)
        if shape < 1 { return nextGamma(shape: shape + 1) * pow(nextDouble(), 1 / shape) }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            let x = nextNormal()
            var v = 1 + c * x
            if v <= 0 { continue }
            v = v * v * v
            let u = nextDouble()
            if u > 0, log(u) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }

    /// A binomial deviate: successes in `trials` trials of probability p, exactly (Knuth,
    /// TAOCP 3.4.1: Bernoulli trials below 40, else a beta split of the order statistics).
    mutating func nextBinomial(trials n: Int, probability p: Double) -> Int {
        if n <= 0 || p <= 0 { return 0 }
        if p >= 1 { return n }
        if n < 40 {
            var k = 0
            for _ in 0..<n where nextDouble() < p { k += 1 }
            return k
        }
        let a = 1 + n / 2, b = n + 1 - a
        let ga = nextGamma(shape: Double(a)), x = ga / (ga + nextGamma(shape: Double(b)))
        return x >= p ? nextBinomial(trials: a - 1, probability: p / x)
                      : a + nextBinomial(trials: b - 1, probability: (p - x) / (1 - x))
    }

    /// A Poisson deviate of mean λ, exactly (inversion below 10, else Knuth's gamma split).
    mutating func nextPoisson(mean lambda: Double) -> Int {
        if lambda <= 0 { return 0 }
        if lambda < 10 {
            var k = 0, term = exp(-lambda), cumulative = term
            let u = nextDouble()
            while u > cumulative && term > 0 {
                k += 1
                term *= lambda / Double(k)
                cumulative += term
            }
            return k
        }
        let m = Int(0.875 * lambda), x = nextGamma(shape: Double(m))
        return x < lambda ? m + nextPoisson(mean: lambda - x) : nextBinomial(trials: m - 1, probability: lambda / x)
    }

    /// A χ² deviate with `df` degrees of freedom (0 for df = 0).
    mutating func nextChiSquare(df: Int) -> Double {
        df > 0 ? 2 * nextGamma(shape: Double(df) / 2) : 0
    }
}

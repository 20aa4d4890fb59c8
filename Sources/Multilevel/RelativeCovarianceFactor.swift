/// One random-effects term after the data are known: its grouping's levels and its effects.
///
/// The term owns `levels.count × effects.count` consecutive columns of Z, level-major
/// (level 1's effects, then level 2's, …), as lme4 orders them.
public struct RandomEffectsTerm: Sendable, Equatable {
    /// lme4's group name: `Subject`, `cask:batch`, or the `mm(...)` text.
    public let group: String
    /// The names of the effects: `(Intercept)`, `Days`, …
    public let effects: [String]
    /// The levels of the grouping factor, in order.
    public let levels: [String]
    /// The first column of this term in Z.
    public let offset: Int

    public init(group: String, effects: [String], levels: [String], offset: Int) {
        self.group = group
        self.effects = effects
        self.levels = levels
        self.offset = offset
    }

    /// p_k: the number of effects per level.
    public var dimension: Int { effects.count }
    /// The number of columns of Z this term owns.
    public var columns: Int { levels.count * effects.count }
    /// The number of θ entries of this term: the lower triangle of T_k.
    public var thetaCount: Int { dimension * (dimension + 1) / 2 }
}

/// The relative covariance factor Λθ = blockdiag(I_{ℓ_k} ⊗ T_k) and the θ vector that fills it.
///
/// θ holds each T_k's lower triangle column by column, terms in order (lme4's `getME(m, "theta")`).
/// Diagonal entries are bounded below by 0; off-diagonal entries are free.
public struct RelativeCovarianceFactor: Sendable {
    public let terms: [RandomEffectsTerm]
    /// Where each term's θ entries start.
    let thetaOffsets: [Int]

    public init(terms: [RandomEffectsTerm]) {
        self.terms = terms
        var offsets: [Int] = []
        var next = 0
        for t in terms { offsets.append(next); next += t.thetaCount }
        thetaOffsets = offsets
    }

    /// The length of θ.
    public var thetaCount: Int { terms.reduce(0) { $0 + $1.thetaCount } }

    /// The number of random effects q.
    public var randomEffectsCount: Int { terms.reduce(0) { $0 + $1.columns } }

    /// lme4's starting value: identity T_k (1 on the diagonal, 0 off it).
    public var initialTheta: [Double] {
        var theta: [Double] = []
        for t in terms {
            for col in 0..<t.dimension { for row in col..<t.dimension { theta.append(row == col ? 1 : 0) } }
        }
        return theta
    }

    /// Lower bounds: 0 for diagonal entries, -∞ for off-diagonal ones.
    public var lowerBounds: [Double] {
        var lower: [Double] = []
        for t in terms {
            for col in 0..<t.dimension { for row in col..<t.dimension { lower.append(row == col ? 0 : -.infinity) } }
        }
        return lower
    }

    /// lme4's names of the θ entries: `Subject.(Intercept)`, `Subject.Days.(Intercept)`, `Subject.Days`.
    public var thetaNames: [String] {
        var names: [String] = []
        for t in terms {
            for col in 0..<t.dimension {
                for row in col..<t.dimension {
                    names.append(row == col ? "\(t.group).\(t.effects[row])"
                                            : "\(t.group).\(t.effects[row]).\(t.effects[col])")
                }
            }
        }
        return names
    }

    /// T_k for term `k` as a dense column-major p_k × p_k lower-triangular matrix.
    public func template(_ k: Int, theta: [Double]) -> [Double] {
        let p = terms[k].dimension
        var t = [Double](repeating: 0, count: p * p)
        var i = thetaOffsets[k]
        for col in 0..<p { for row in col..<p { t[row + col * p] = theta[i]; i += 1 } }
        return t
    }

    /// All templates for θ, one per term.
    func templates(_ theta: [Double]) -> [[Double]] { terms.indices.map { template($0, theta: theta) } }

    /// Whether θ entry `i` is on a diagonal of its T_k (bounded at 0).
    public func isDiagonal(_ i: Int) -> Bool { lowerBounds[i] == 0 }

    /// Multiplies Λθ' into a dense column-major q × m matrix in place: B ← Λ' B.
    func applyTranspose(_ templates: [[Double]], to b: inout [Double], columns m: Int) {
        let q = randomEffectsCount
        b.withUnsafeMutableBufferPointer { buf in
            for (k, term) in terms.enumerated() {
                let p = term.dimension
                let t = templates[k]
                if p == 1 {
                    let s = t[0]
                    for j in 0..<m {
                        let base = j * q + term.offset
                        for i in 0..<term.levels.count { buf[base + i] *= s }
                    }
                    continue
                }
                for j in 0..<m {
                    for level in 0..<term.levels.count {
                        let base = j * q + term.offset + level * p
                        // (T' v)[r] = Σ_{s ≥ r} T[s, r] v[s]; in place from the top row down.
                        for r in 0..<p {
                            var sum = 0.0
                            for s in r..<p { sum += t[s + r * p] * buf[base + s] }
                            buf[base + r] = sum
                        }
                    }
                }
            }
        }
    }

    /// Multiplies Λθ into a dense q-vector in place: v ← Λ v.
    func apply(_ templates: [[Double]], to v: inout [Double]) {
        for (k, term) in terms.enumerated() {
            let p = term.dimension
            let t = templates[k]
            for level in 0..<term.levels.count {
                let base = term.offset + level * p
                // (T v)[r] = Σ_{s ≤ r} T[r, s] v[s]; in place from the bottom row up.
                for r in stride(from: p - 1, through: 0, by: -1) {
                    var sum = 0.0
                    for s in 0...r { sum += t[r + s * p] * v[base + s] }
                    v[base + r] = sum
                }
            }
        }
    }
}

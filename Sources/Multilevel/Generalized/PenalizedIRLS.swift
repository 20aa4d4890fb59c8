import Foundation

/// Penalised iteratively reweighted least squares (PIRLS) at fixed θ, and the Laplace
/// approximation to a GLMM's deviance it gives (lme4's `pwrssUpdate` and `glmerLaplace`).
///
/// Each iteration solves the Gaussian penalised least-squares problem of the working rows
/// √W [Z X ỹ] (`GeneralizedRows.evaluate`, then `PenalizedLeastSquares` on their
/// cross-products: the pattern of Z'WZ is that of Z'Z, analysed once): the new (u, β) jointly
/// (lme4's nAGQ = 0 stage) or u alone with β given. A step that does not lower the penalised
/// deviance Σ devres + ‖u‖² is halved, up to 20 times. Converged when the penalised deviance
/// changes by less than `tolerance` relative; then, with L the Cholesky factor of
/// Λ'Z'W(u*)ZΛ + I at the mode,
///
///     Laplace deviance = −2 Σ log p(y | u*, β) + ‖u*‖² + log|L|²
///
/// (lme4's `aic + sqrL + ldL2`). Every pass after the first starts from the last mode found
/// (warm start), as lme4's deviance function keeps its state.
final class PenalizedIRLS {
    let rows: GeneralizedRows
    let factor: RelativeCovarianceFactor
    let pls: PenalizedLeastSquares
    /// The state: the spherical effects u and β of the last mode, and the pass there.
    private(set) var u: [Double]
    private(set) var beta: [Double]
    private var current: GeneralizedRows.Pass
    /// True until the first PIRLS: `current` is then at glm's starting means, not at (u, β).
    private var atStart = true
    /// PIRLS stops after a full step that moves no entry of u or β by more than `stepTolerance`
    /// (relative to its size, when above 1): u is then off the mode by about the next step,
    /// which is of the order of the square of this one with a canonical link (logit, log: PIRLS
    /// is Newton's method) and a fraction of it with another (Fisher scoring converges
    /// linearly). The Laplace deviance moves with u at first order (through log|L|²), so its
    /// error is of the order of that next step.
    ///
    /// `exact` (1e-6 canonical, 1e-10 otherwise): the deviance exact to about 1e-12, smooth
    /// enough in (θ, β) for the finite-difference Hessian; used for the reported optimum and
    /// the Hessian. `search` (1e-4 canonical, 1e-8 otherwise): about 1e-8, what BOBYQA needs
    /// to find the optimum (it moves θ̂ and β̂ by far less than 1e-3 SE), one PIRLS iteration
    /// fewer per evaluation. lme4 stops when the penalised deviance changes by less than 1e-7
    /// relative, and its deviance is about 1e-5 relative above the converged value.
    enum Precision { case exact, search }
    var precision = Precision.exact
    private let canonical: Bool
    var stepTolerance: Double {
        switch (precision, canonical) {
        case (.exact, true): return 1e-6
        case (.exact, false): return 1e-10
        case (.search, true): return 1e-4
        case (.search, false): return 1e-8
        }
    }
    /// After `maxIterations`, PIRLS is accepted if the penalised deviance changed by less than
    /// this (lme4's tolerance), else it failed.
    static let acceptedChange = 1e-7
    /// Relative rise of the penalised deviance tolerated as rounding when steps are halved.
    static let tolerance = 1e-12
    static let maxIterations = 100
    static let maxHalvings = 20
    /// PIRLS iterations so far (all evaluations).
    private(set) var iterations = 0

    /// The mode at θ and what the Laplace approximation needs there.
    struct Mode {
        var theta: [Double]
        var u: [Double]
        var beta: [Double]
        /// −2 Σ log p(y | u, β) + ‖u‖² + log|L|².
        var deviance: Double
        var logDetL2: Double
        var squaredLength: Double
        var devianceResiduals: Double
        var logDensity: Double
        /// The penalised least-squares solution with the weights at the mode (R_X for vcov).
        var evaluation: PenalizedLeastSquares.Evaluation
        /// The pass at the mode: the working rows the next PIRLS starts from.
        var pass: GeneralizedRows.Pass
    }

    /// The fixed-effect columns dropped as aliased (lme4's rule, `LinearMixedModel.independentColumns`).
    let droppedColumns: [String]?
    var fixedNames: [String] { current.crossProducts.fixedNames }
    var crossProductsTerms: [RandomEffectsTerm] { current.crossProducts.terms }

    init(rows: GeneralizedRows, memoryLimit: MemoryLimit?, log: ((String) -> Void)?) throws {
        self.rows = rows
        let d = rows.distribution
        canonical = d.link == d.family.canonicalLink
        current = try rows.evaluate(.start)
        let keep = LinearMixedModel.independentColumns(current.crossProducts)
        if keep.count < current.crossProducts.fixedCount {
            let names = current.crossProducts.fixedNames
            droppedColumns = names.indices.filter { !keep.contains($0) }.map { names[$0] }
            rows.keepFixedColumns(keep)
            current = try rows.evaluate(.start)
        } else {
            droppedColumns = nil
        }
        let cp = current.crossProducts
        pls = try PenalizedLeastSquares(cp, reml: false, ordering: .auto, memoryLimit: memoryLimit, needsInverse: false, log: log)
        factor = pls.factor
        u = [Double](repeating: 0, count: cp.randomEffectsCount)
        beta = [Double](repeating: 0, count: cp.fixedCount)
    }

    /// b = Λ(θ)u.
    func randomEffects(_ theta: [Double], _ u: [Double]) -> [Double] {
        var b = u
        factor.apply(factor.templates(theta), to: &b)
        return b
    }

    /// PIRLS at θ: (u, β) jointly when `fixedBeta` is nil, else u with β = `fixedBeta`.
    /// Throws when the steps fail (the message names θ).
    func mode(_ theta: [Double], fixedBeta: [Double]?) throws -> Mode {
        let q = u.count
        func squared(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 } }
        // The first step solves with the working rows of the last pass (the last mode, as
        // lme4 keeps its state; glm's starting means at first), without the penalised deviance
        // to compare with: a step that is not finite is retried from the state at this θ.
        var pdevOld = Double.infinity
        if (atStart && fixedBeta != nil) || stale {
            if atStart { u = [Double](repeating: 0, count: q) }
            if let fixedBeta { beta = fixedBeta }
            current = try rows.evaluate(.effects(beta: beta, b: randomEffects(theta, u)))
            pdevOld = current.devianceResiduals + squared(u)
        }
        if let fixedBeta { beta = fixedBeta }
        atStart = false
        stale = false
        func describe() -> String { "θ = (" + theta.map { String(format: "%.4g", $0) }.joined(separator: ", ") + ")" }
        var converged = false, lastChange = Double.infinity
        for _ in 0..<Self.maxIterations {
            iterations += 1
            pls.replaceCrossProducts(with: current.crossProducts)
            guard let e = pls.evaluate(theta) else {
                throw InputError("PIRLS: the weighted penalised least-squares system is singular at \(describe())")
            }
            var stepBeta = fixedBeta ?? pls.fixedEffects(e)
            var stepU = pls.sphericalModes(e, beta: stepBeta)
            var trial = try rows.evaluate(.effects(beta: stepBeta, b: randomEffects(theta, stepU)))
            var pdev = trial.devianceResiduals + squared(stepU)
            var halvings = 0
            // A rise within rounding of the penalised deviance is no rise (near the mode the
            // full step changes it by less than its rounding).
            func rises(_ pdev: Double) -> Bool { !(pdev <= pdevOld + Self.tolerance * abs(pdevOld)) }
            while rises(pdev), pdevOld.isFinite, halvings < Self.maxHalvings {
                halvings += 1
                for k in 0..<q { stepU[k] = (u[k] + stepU[k]) / 2 }
                for j in stepBeta.indices { stepBeta[j] = (beta[j] + stepBeta[j]) / 2 }
                trial = try rows.evaluate(.effects(beta: stepBeta, b: randomEffects(theta, stepU)))
                pdev = trial.devianceResiduals + squared(stepU)
            }
            if !pdev.isFinite && !pdevOld.isFinite {
                current = try rows.evaluate(.effects(beta: beta, b: randomEffects(theta, u)))
                pdevOld = current.devianceResiduals + squared(u)
                if pdevOld.isFinite { continue }
            }
            guard pdev.isFinite else {
                throw InputError("PIRLS: the penalised deviance is not finite at \(describe()): a fixed effect may be diverging (complete separation?)")
            }
            if pdevOld.isFinite && rises(pdev) {
                throw InputError("PIRLS: \(Self.maxHalvings) step-halvings failed to reduce the penalised deviance at \(describe())")
            }
            // The step, not the change of the penalised deviance (flat at the mode), says how far
            // u is from the mode: log|L|² moves with u at first order.
            var step = 0.0
            for k in 0..<q { step = max(step, abs(stepU[k] - u[k]) / max(1, abs(u[k]))) }
            for j in stepBeta.indices { step = max(step, abs(stepBeta[j] - beta[j]) / max(1, abs(beta[j]))) }
            lastChange = abs(pdevOld - pdev) / max(abs(pdev), 1)
            converged = halvings == 0 && step < stepTolerance
            u = stepU
            beta = stepBeta
            current = trial
            pdevOld = pdev
            if converged { break }
        }
        guard converged || lastChange < Self.acceptedChange else {
            throw InputError("PIRLS did not converge in \(Self.maxIterations) iterations at \(describe())")
        }
        // The factor with the weights at the mode.
        pls.replaceCrossProducts(with: current.crossProducts)
        guard let e = pls.evaluate(theta) else {
            throw InputError("PIRLS: the weighted penalised least-squares system is singular at the mode, \(describe())")
        }
        let sq = squared(u)
        let deviance = -2 * current.logDensity + sq + e.logDetL2
        return Mode(theta: theta, u: u, beta: beta, deviance: deviance, logDetL2: e.logDetL2, squaredLength: sq,
                    devianceResiduals: current.devianceResiduals, logDensity: current.logDensity, evaluation: e, pass: current)
    }

    /// The diagonal blocks of (Λ'Z'WZΛ + I)⁻¹ at `mode` (u's conditional covariance per level),
    /// the factor made again from the mode's working rows (later evaluations replaced it).
    func inverseDiagonalBlocks(at mode: Mode) -> [[Double]] {
        pls.replaceCrossProducts(with: mode.pass.crossProducts)
        _ = pls.evaluate(mode.theta)
        return pls.inverseDiagonalBlocks()
    }

    /// Starts the next PIRLS from `mode`: its state and working rows (a finite-difference
    /// Hessian's points), or its state alone when the responses changed since (a bootstrap
    /// replicate: the mode's working rows hold the old ones, so the first step is taken from a
    /// new pass at the mode).
    func restore(_ mode: Mode, responsesChanged: Bool = false) {
        u = mode.u
        beta = mode.beta
        current = mode.pass
        atStart = false
        stale = responsesChanged
    }
    /// Whether `current` no longer holds the working rows of the state (new responses).
    private var stale = false
}

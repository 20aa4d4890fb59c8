import Foundation

/// How the iterative path estimates what it cannot compute exactly.
public struct IterativeSettings: Sendable, Equatable {
    /// Probes of the first Newton steps; more (up to `maxProbes`) if the Monte-Carlo error of θ̂
    /// they leave is not below a tenth of its standard error.
    public var probes = 16
    public var maxProbes = 512
    /// The probes' seed: probe j's signs depend on (seed, j) alone.
    public var seed: UInt64 = 1
    /// Relative residual ‖b − Ax‖/‖b‖ at which conjugate gradients stop: the solves for β̂, û and
    /// the AI matrix, and the probes (whose Lanczos quadrature converges faster than their solve).
    public var tolerance = 1e-9
    public var probeTolerance = 1e-7
    public var maxIterations = 5_000
    /// The criterion reported is re-estimated with this many times the fit's final probes.
    public var finalProbeFactor = 2
    /// The preconditioner of the solves for β̂, û and the AI matrix (the probes' is block-Jacobi).
    public var solvePreconditioner = SolvePreconditionerChoice.blockJacobi
    /// Tests: the probes are the q columns of the identity, so every trace and log-determinant is
    /// exact (up to the Lanczos quadrature) and the path must reproduce the direct one.
    var exactTraces = false

    public init() {}
}

/// The preconditioner of the iterative path's solves (`GaussSeidelPreconditioner`).
public enum SolvePreconditionerChoice: String, CaseIterable, Sendable {
    case blockJacobi = "block-jacobi"
    case gaussSeidel = "gauss-seidel"
}

/// What the iterative path's Monte-Carlo estimates carry, for the reader.
public struct MonteCarloError: Sendable {
    /// Probes of the final Newton steps, and of the final criterion.
    public var probes: Int
    public var criterionProbes: Int
    /// The criterion's Monte-Carlo standard error, and θ̂'s (from the gradient's).
    public var criterionSE: Double
    public var thetaSE: [Double]
    /// θ̂'s statistical standard errors, √(2(H⁻¹)_ii) from the AI matrix H (0 at a bound): the
    /// yardstick of the Monte-Carlo error, which the probes keep below a tenth of it.
    public var thetaStatisticalSE: [Double]
    /// Conjugate-gradient iterations per evaluation: the solves for β̂ and û (the most of
    /// their p + 1 right-hand sides) and the probes (mean and most), at each Newton iteration.
    public var iterationLog: [(solve: Int, probeMean: Double, probeMax: Int, probes: Int)]
}

/// The profiled deviance at θ without a factor: conjugate gradients for the solves, stochastic
/// Lanczos quadrature for log|A|, and Hutchinson's estimator for the gradient's traces, all from
/// products with Z'Z (`SystemOperator`). For designs whose factor fills in (crossed and multiple
/// membership terms with many levels: no ordering keeps it sparse).
///
/// With A = Λ'Z'ZΛ + I, M its block diagonal (one block per level of each term) and M = LL':
/// - Solves: W = A⁻¹Λ'[Z'X Z'y] by PCG; then S = [X y]'[X y] − [Z'X Z'y]'ΛW = R'R gives R_X,
///   r² and β̂ as on the direct path, and û = W_y − W_X β̂.
/// - log|A| = log|M| + tr log Â, Â = L⁻¹AL⁻ᵀ. For a probe r of random signs, PCG on A x = Lr is
///   Lanczos on Â from r, so r'log(Â)r ≈ ‖r‖² e₁'log(T)e₁. Two control variates with known
///   means come off the same T: r'(Â − I)r = ‖r‖²(T₁₁ − 1), mean tr Â − q = 0 since M is A's
///   block diagonal, and r'(Â − I)²r = ‖r‖²((T₁₁ − 1)² + T₁₂²), mean ‖Â − I‖_F² (exact, from the
///   blocks of A); what is left is of third order in A's coupling between levels. Â's few
///   smallest eigenpairs (`LowEigenspace`: near-null directions of crossed intercepts) are
///   computed exactly and projected out of the probes. Crossed-mm at 10^5 rows, 32 probes: the
///   criterion's Monte-Carlo SE was 1.17 with the first variate, 0.55 with both and the
///   projection; at 10^6 the probes' CG iterations fell from 16 to 10 and θ̂ needed 16 probes
///   where it had needed 64.
/// - ∂log|A|/∂θ_i = tr(A⁻¹Ȧ_i), Ȧ_i = Λ̇_i'Z'ZΛ + Λ'Z'ZΛ̇_i. With x = A⁻¹Lr and s = L⁻ᵀr,
///   E[x'Ȧ_i s] = tr(A⁻¹Ȧ_i) and E[s'Ȧ_i s] = tr(M⁻¹Ȧ_i), which needs only the diagonal
///   blocks: the estimate is tr(M⁻¹Ȧ_i) + (x − s)'Ȧ_i s, on the same (projected) probes, plus
///   the low eigenpairs' exact part Σ_k (1/λ_k − 1) w_k'Ȧ_i w_k, w_k = L⁻ᵀu_k.
/// - REML adds ∂log|S_X|/∂θ_i = −2 tr(S_X⁻¹(K_i − J_i)), K_i = (Z'X)'Λ̇_i F, J_i = (Λ̇_i F)'Z'ZΛF,
///   F = W_X; the residual part −2ν û'Λ̇_i'z_r/r² is as on the direct path.
/// - The AI matrix: as on the direct path, g_i'C⁻¹g_j = g_u,i'A⁻¹g_u,j + h_i'S_X⁻¹h_j with
///   h_i = X'Z a_i − F'g_u,i: one more block of m solves, no probes.
///
/// With the probes fixed, the estimates are smooth functions of θ, so Newton converges as on
/// the direct path; the Monte-Carlo error is that of the point it converges to.
/// Probe j belongs to rank j mod R; each rank's values are gathered and summed in probe order,
/// so the fit is the same for any number of ranks and threads.
final class IterativePenalizedLeastSquares {
    private(set) var crossProducts: CrossProducts
    let factor: RelativeCovarianceFactor
    let reml: Bool
    let system: SystemOperator
    private let diagonalBlocks: [[Double]]
    let settings: IterativeSettings
    let communicator: Communicator
    /// Probes in use: 0..<probes.
    var probes: Int {
        didSet { last = nil }
    }
    /// Wall seconds in the evaluations, gradients and AI matrices so far (`total`), and in three
    /// of their parts: the solves for β̂, û and the AI matrix (split over ranks by column), the
    /// low eigenpairs (Lanczos, on every rank), and the probes (split over ranks).
    private(set) var seconds = (solves: 0.0, eigenpairs: 0.0, probes: 0.0, total: 0.0)
    /// CG iterations of each evaluation, in order.
    private(set) var iterationLog: [(solve: Int, probeMean: Double, probeMax: Int, probes: Int)] = []

    init(_ cp: CrossProducts, reml: Bool, settings: IterativeSettings, threads: Int, communicator: Communicator) {
        crossProducts = cp
        factor = RelativeCovarianceFactor(terms: cp.terms)
        self.reml = reml
        self.settings = settings
        self.communicator = communicator
        system = SystemOperator(cp, threads: threads)
        diagonalBlocks = system.diagonalBlocks()
        exact = Self.usesExactTraces(cp, settings)
        probes = Self.firstProbes(cp, settings)
    }

    /// Another problem on the same Z'Z (other fixed effects or response: a β profile's), sharing
    /// this one's operator and preconditioner blocks, with its probes; used one at a time with it.
    func sharingOperator(with cp: CrossProducts) -> IterativePenalizedLeastSquares {
        IterativePenalizedLeastSquares(cp, reml: reml, sharing: self)
    }

    private init(_ cp: CrossProducts, reml: Bool, sharing other: IterativePenalizedLeastSquares) {
        crossProducts = cp
        factor = other.factor
        self.reml = reml
        settings = other.settings
        communicator = other.communicator
        system = other.system
        diagonalBlocks = other.diagonalBlocks
        exact = other.exact
        probes = other.probes
    }

    /// Takes another response of the same rows (a bootstrap replicate): Z'Z, and so the operator
    /// and the preconditioner's blocks, are unchanged.
    func replaceCrossProducts(with cp: CrossProducts) {
        crossProducts = cp
        last = nil
    }

    /// Whether the probes are the columns of the identity (see `exact`).
    static func usesExactTraces(_ cp: CrossProducts, _ settings: IterativeSettings) -> Bool {
        settings.exactTraces || cp.randomEffectsCount <= settings.maxProbes
    }

    /// The probes of the first Newton steps: q with exact traces, else `settings.probes`.
    static func firstProbes(_ cp: CrossProducts, _ settings: IterativeSettings) -> Int {
        usesExactTraces(cp, settings) ? cp.randomEffectsCount : settings.probes
    }

    /// Whether the probes are the q columns of the identity, so that every trace is exact:
    /// asked for (tests), or because q is no more than the most probes allowed (no dearer than
    /// the random probes may become, and exact).
    let exact: Bool

    /// Bytes the path holds beyond the cross-products: Z'Z by rows, about eight vectors per probe
    /// and per solve, and the Lanczos basis of the low eigenpairs.
    static func bytes(_ cp: CrossProducts, probes: Int) -> Double {
        let q = cp.randomEffectsCount, p1 = cp.fixedCount + 1
        return SystemOperator.bytes(dimension: q, upperNonzeros: cp.zzRowIndices.count)
            + 8 * Double(q) * Double(8 * probes + 8 * p1 + lanczosSteps)
    }

    struct Evaluation {
        var logDetA: Double
        var logDetSE: Double
        var logDetRX2: Double
        var penalizedRSS: Double
        var deviance: Double
        /// R of S = R'R, (p+1) × (p+1) column-major upper.
        var r: [Double]
        /// W = A⁻¹Λ'[Z'X Z'y], q × (p+1) row-interleaved.
        var solutions: [Double]
        /// û, the spherical conditional modes.
        var u: [Double]
        var beta: [Double]
        var preconditioner: BlockJacobiPreconditioner
        /// Â's smallest eigenpairs, computed exactly and projected out of the probes.
        var low: LowEigenspace
        /// tr((Â − I)²) = ‖Â − I‖_F², exact: the mean of the second control variate.
        var squaredCoupling: Double
        /// This rank's probes: their indices, x = A⁻¹Lr and s = L⁻ᵀr (q × k row-interleaved).
        var localProbes: [Int]
        var x: [Double]
        var s: [Double]
        /// Every probe's value (gathered over the ranks), in probe order.
        var probeValues: [Double]
    }

    private var last: (theta: [Double], evaluation: Evaluation?)?
    /// Each probe's contribution to the last gradient (probe-major, m each), weighted: their sum
    /// is the trace part's Monte-Carlo estimate.
    private(set) var lastProbeGradients: [Double] = []

    func evaluate(_ theta: [Double]) -> Evaluation? {
        if let last, last.theta == theta { return last.evaluation }
        let e = solve(theta)
        last = (theta, e)
        return e
    }

    /// The weight of each probe's value: 1/N for random signs, 1 for the columns of the identity.
    private var probeWeight: Double { exact ? 1 : 1 / Double(probes) }

    /// Probe j's vector r: random signs from (seed, j), or e_j.
    private func probeVector(_ j: Int, into v: UnsafeMutablePointer<Double>, stride k: Int, column c: Int) {
        let q = system.dimension
        if exact {
            for i in 0..<q { v[i * k + c] = i == j ? 1 : 0 }
            return
        }
        var random = Xoshiro256(seed: settings.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(j))
        var bits: UInt64 = 0
        for i in 0..<q {
            if i % 64 == 0 { bits = random.next() }
            v[i * k + c] = (bits >> UInt64(i % 64)) & 1 == 1 ? 1 : -1
        }
    }

    private func solve(_ theta: [Double]) -> Evaluation? {
        let start = DispatchTime.now()
        defer { seconds.total += Self.seconds(since: start) }
        let cp = crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1
        system.setTheta(theta)
        guard let m = BlockJacobiPreconditioner(diagonal: diagonalBlocks, terms: cp.terms, templates: system.templates) else { return nil }
        // Λ'[Z'X Z'y], row-interleaved.
        var rhs = [Double](repeating: 0, count: q * p1)
        for j in 0..<p1 { for i in 0..<q { rhs[i * p1 + j] = cp.zxy[i + j * q] } }
        system.applyLambda(&rhs, vectors: p1, transpose: true)
        var mark = DispatchTime.now()
        let fixed = solveSplit(rhs, vectors: p1, preconditioner: m)
        seconds.solves += Self.seconds(since: mark)
        guard fixed.converged else { return nil }
        let w = fixed.x
        var s = cp.xyxy
        for j in 0..<p1 { for i in 0...j {
            var dot = 0.0
            for x in 0..<q { dot += rhs[x * p1 + i] * w[x * p1 + j] }
            s[i + j * p1] -= dot
            s[j + i * p1] = s[i + j * p1]
        } }
        guard let r = DenseCholesky.upper(s, order: p1) else { return nil }
        var logDetRX2 = 0.0
        for j in 0..<p { logDetRX2 += 2 * log(r[j + j * p1]) }
        let pwrss = r[p + p * p1] * r[p + p * p1]
        let beta = DenseCholesky.solveUpper(r, leading: p1, order: p, (0..<p).map { r[$0 + p * p1] })
        var u = [Double](repeating: 0, count: q)
        for x in 0..<q {
            var v = w[x * p1 + p]
            for j in 0..<p { v -= w[x * p1 + j] * beta[j] }
            u[x] = v
        }

        mark = DispatchTime.now()
        let low = exact ? LowEigenspace.empty
            : LowEigenspace.compute(system, preconditioner: m, steps: Self.lanczosSteps, seed: settings.seed ^ 0x5BD1_E995)
        seconds.eigenpairs += Self.seconds(since: mark)
        mark = DispatchTime.now()
        let probed = runProbes(0..<probes, preconditioner: m, low: low)
        seconds.probes += Self.seconds(since: mark)
        guard let values = probed.values else { return nil }
        let squaredCoupling = Self.squaredCoupling(cp, templates: system.templates, preconditioner: m, threads: system.threads)
        let (logDetA, logDetSE) = logDeterminant(m, low, squaredCoupling, values)
        iterationLog.append((fixed.iterations.max() ?? 0, probed.iterations.reduce(0, +) / Double(max(1, probes)),
                             Int(probed.iterations.max() ?? 0), probes))

        let deviance = PenalizedLeastSquares.profiledDeviance(logDetA: logDetA, logDetRX2: logDetRX2, penalizedRSS: pwrss,
                                                              rows: cp.rows, fixed: p, reml: reml, logWeights: cp.logWeights)
        guard deviance.isFinite else { return nil }
        return Evaluation(logDetA: logDetA, logDetSE: logDetSE, logDetRX2: logDetRX2, penalizedRSS: pwrss, deviance: deviance,
                          r: r, solutions: w, u: u, beta: beta, preconditioner: m, low: low, squaredCoupling: squaredCoupling, localProbes: probed.local,
                          x: probed.x, s: probed.s, probeValues: values)
    }

    /// log|Â| = Σ_i log λ_i + tr(P log Â), the second by the probes' mean of
    /// (Pr)'[log Â − (Â − I) + (Â − I)²/2](Pr) = ‖Pr‖²(e₁'log(T)e₁ − (T₁₁ − 1) + ((T₁₁ − 1)² + T₁₂²)/2)
    /// plus the two control variates' means: tr(P(Â − I)) = Σ_i (1 − λ_i), since tr Â = q, and
    /// −tr(P(Â − I)²)/2 = −(‖Â − I‖_F² − Σ_i (λ_i − 1)²)/2. What is left, log λ − (λ − 1) + (λ − 1)²/2,
    /// is of third order in Â − I. Returns log|M| + that, and its Monte-Carlo SE (exact traces:
    /// the probes e_j sum the control variates to their means exactly, and there is no error).
    private func logDeterminant(_ m: BlockJacobiPreconditioner, _ low: LowEigenspace, _ squaredCoupling: Double,
                                _ values: [Double]) -> (Double, Double) {
        let n = Double(values.count), sum = values.reduce(0, +)
        guard !exact else { return (m.logDeterminant - squaredCoupling / 2 + sum, 0) }
        let mean = sum / n
        let variance = values.count > 1 ? values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
        let deflated = low.values.reduce(0.0) { $0 + log($1) + 1 - $1 + ($1 - 1) * ($1 - 1) / 2 }
        return (m.logDeterminant + deflated - squaredCoupling / 2 + mean, (variance / n).squareRoot())
    }

    /// ‖Â − I‖_F² = Σ over the off-diagonal blocks of A (both triangles) of ‖L_a⁻¹ A_ab L_b⁻ᵀ‖_F²,
    /// A_ab = T_k'(Z'Z)_ab T_l: Â's diagonal blocks are I.
    static func squaredCoupling(_ cp: CrossProducts, templates: [[Double]], preconditioner m: BlockJacobiPreconditioner,
                                threads: Int) -> Double {
        let blocks = cp.blockTerm.count
        // Fixed chunks of column blocks, each summed in order and the chunks' sums added in
        // order: the same bits for any number of threads.
        let chunks = min(blocks, 64)
        guard chunks > 0 else { return 0 }
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { out in
            let body = { (chunk: Int) in
                out[chunk] = Self.squaredCoupling(cp, templates: templates, preconditioner: m,
                                                  columnBlocks: (chunk * blocks / chunks)..<((chunk + 1) * blocks / chunks))
            }
            if threads > 1 { DispatchQueue.concurrentPerform(iterations: chunks, execute: body) } else { (0..<chunks).forEach(body) }
        }
        return partial.reduce(0, +)
    }

    /// The part of ‖Â − I‖_F² in `columnBlocks`, without allocating per block (ratings: 3·10^7 of them).
    private static func squaredCoupling(_ cp: CrossProducts, templates: [[Double]], preconditioner m: BlockJacobiPreconditioner,
                                        columnBlocks: Range<Int>) -> Double {
        let cs = cp.zzColumnStarts, zz = cp.zzValues
        let dims = cp.terms.map(\.dimension)
        let most = dims.max() ?? 1
        var x = [Double](repeating: 0, count: most * most), y = x
        var total = 0.0
        for cb in columnBlocks {
            precondition(m.offsets[cb] == cp.blockStart[cb], "the preconditioner's blocks are the cross-products' blocks")
            let l = cp.blockTerm[cb], pl = dims[l]
            var offset = 0
            m.factors[cb].withUnsafeBufferPointer { lb in
                for idx in cp.blockRowStarts[cb]..<cp.blockRowStarts[cb + 1] {
                    let rb = Int(cp.blockRows[idx]), k = cp.blockTerm[rb], pk = dims[k]
                    defer { offset += pk }
                    if rb == cb { continue }
                    let tk = templates[k], tl = templates[l]
                    if pk == 1 && pl == 1 {
                        // Scalar blocks (random intercepts): t_k q t_l / (l_a l_b).
                        let v = tk[0] * zz[cs[cp.blockStart[cb]] + offset] * tl[0] / (m.factors[rb][0] * lb[0])
                        total += 2 * v * v
                        continue
                    }
                    // X = L_a⁻¹ T_k' Q T_l L_b⁻ᵀ, Q the stored pk × pl block.
                    m.factors[rb].withUnsafeBufferPointer { la in
                        for sc in 0..<pl {
                            let base = cs[cp.blockStart[cb] + sc] + offset
                            for t in 0..<pk { x[t + sc * pk] = zz[base + t] }
                        }
                        // T_k' X, then X T_l.
                        for c in 0..<pl { for r in 0..<pk {
                            var sum = 0.0
                            for u in r..<pk { sum += tk[u + r * pk] * x[u + c * pk] }
                            y[r + c * pk] = sum
                        } }
                        for c in 0..<pl { for r in 0..<pk {
                            var sum = 0.0
                            for u in c..<pl { sum += y[r + u * pk] * tl[u + c * pl] }
                            x[r + c * pk] = sum
                        } }
                        // L_a⁻¹ X (forward, by columns), then X L_b⁻ᵀ (forward, by rows).
                        for c in 0..<pl { for r in 0..<pk {
                            var sum = x[r + c * pk]
                            for u in 0..<r { sum -= la[r + u * pk] * x[u + c * pk] }
                            x[r + c * pk] = sum / la[r + r * pk]
                        } }
                        for r in 0..<pk { for c in 0..<pl {
                            var sum = x[r + c * pk]
                            for u in 0..<c { sum -= lb[c + u * pl] * x[r + u * pk] }
                            x[r + c * pk] = sum / lb[c + c * pl]
                        } }
                        var squares = 0.0
                        for t in 0..<(pk * pl) { squares += x[t] * x[t] }
                        total += 2 * squares
                    }
                }
            }
        }
        return total
    }

    /// Lanczos steps for the low eigenpairs (each one product with A).
    static let lanczosSteps = 60
    /// Probes solved together: one SIMD8 lane group of `SystemOperator`'s products, whose
    /// working vectors stay in cache (crossed-mm 10^6, 64 probes on one thread: the probes took
    /// 35.7 s as one block of 64, 14.2 s in blocks of 32, 13.5 s of 16 and 11.1 s of 8, the
    /// same bits each time).
    static let probeBlock = SystemOperator.passWidth

    /// Probes `range` (this rank's share: j mod R = rank): b = Lr, s = L⁻ᵀr, x = A⁻¹b with its
    /// Lanczos tridiagonal; every probe's value ‖r‖²(e₁'log(T)e₁ − T₁₁ + 1) and CG iterations,
    /// gathered in probe order (values nil if a probe's quadrature failed on any rank).
    private func runProbes(_ range: Range<Int>, preconditioner m: BlockJacobiPreconditioner, low: LowEigenspace)
        -> (local: [Int], x: [Double], s: [Double], values: [Double]?, iterations: [Double]) {
        let q = system.dimension
        let local = range.filter { $0 % communicator.size == communicator.rank }
        let k = local.count
        var b = [Double](repeating: 0, count: q * k)
        b.withUnsafeMutableBufferPointer { bp in
            for (c, j) in local.enumerated() { probeVector(j, into: bp.baseAddress!, stride: k, column: c) }
        }
        low.project(&b, vectors: k)
        var norm2 = [Double](repeating: 0, count: k)
        for i in 0..<q { for c in 0..<k { norm2[c] += b[i * k + c] * b[i * k + c] } }
        var sv = b
        b.withUnsafeMutableBufferPointer { m.apply(.lower, to: $0.baseAddress!, vectors: k) }
        sv.withUnsafeMutableBufferPointer { m.apply(.inverseTransposeLower, to: $0.baseAddress!, vectors: k) }
        let probed = k == 0 ? nil : ConjugateGradients.solve(system, preconditioner: m, rhs: b, vectors: k,
                                                              tolerance: settings.probeTolerance,
                                                              maxIterations: settings.maxIterations, lanczos: true,
                                                              block: Self.probeBlock)
        var localValues: [Double] = []
        for c in 0..<k {
            let t = probed!.tridiagonals[c]
            guard probed!.converged[c], let quadratic = LanczosQuadrature.logQuadratic(diagonal: t.diagonal, offDiagonal: t.offDiagonal)
            else { localValues.append(.nan); continue }
            let d = t.diagonal[0] - 1, e = t.offDiagonal.first ?? 0
            localValues.append(norm2[c] * (quadratic - d + (d * d + e * e) / 2))
        }
        let values = gatherByProbe(localValues, range: range)
        let iterations = gatherByProbe((probed?.iterations ?? []).map(Double.init), range: range)
        return (local, probed?.x ?? [], sv, values.allSatisfy(\.isFinite) ? values : nil, iterations)
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// The criterion at the last θ evaluated, re-estimated on `total` probes: the probes beyond
    /// those of the evaluation are run (log-determinant only) and pooled with its own.
    func reestimateCriterion(_ theta: [Double], probes total: Int) -> (deviance: Double, standardError: Double, probes: Int)? {
        guard let e = evaluate(theta) else { return nil }
        guard !exact, total > probes else { return (e.deviance, e.logDetSE, probes) }
        let start = DispatchTime.now()
        let more = runProbes(probes..<total, preconditioner: e.preconditioner, low: e.low)
        seconds.probes += Self.seconds(since: start)
        seconds.total += Self.seconds(since: start)
        guard let extra = more.values else { return nil }
        let (logDetA, se) = logDeterminant(e.preconditioner, e.low, e.squaredCoupling, e.probeValues + extra)
        return (e.deviance - e.logDetA + logDetA, se, total)
    }

    /// A x_j = b_j to `settings.tolerance` for k row-interleaved right-hand sides, gathered on
    /// every rank: columns in groups of four (a SIMD4 lane group of the products), group g on
    /// rank g mod R, or all on every rank when they make one group (splitting four columns over
    /// two ranks saved nothing: two scalar columns cost what four in SIMD4 do, and the gather
    /// came on top). Each column's iteration is its own, so the result is the same bit for bit
    /// on any number of ranks.
    private func solveSplit(_ rhs: [Double], vectors k: Int, preconditioner blockJacobi: BlockJacobiPreconditioner)
        -> (x: [Double], iterations: [Int], converged: Bool) {
        switch settings.solvePreconditioner {
        case .blockJacobi: return solveSplit(rhs, vectors: k, using: blockJacobi)
        case .gaussSeidel: return solveSplit(rhs, vectors: k, using: GaussSeidelPreconditioner(system: system, blocks: blockJacobi))
        }
    }

    private func solveSplit<P: SolvePreconditioner>(_ rhs: [Double], vectors k: Int, using m: P)
        -> (x: [Double], iterations: [Int], converged: Bool) {
        let size = communicator.size, rank = communicator.rank
        let owner = { (j: Int) in (j / 4) % size }
        guard size > 1, k > 4 else {
            let r = ConjugateGradients.solve(system, preconditioner: m, rhs: rhs, vectors: k, tolerance: settings.tolerance,
                                             maxIterations: settings.maxIterations, lanczos: false)
            return (r.x, r.iterations, r.converged.allSatisfy { $0 })
        }
        let q = system.dimension
        let mine = (0..<k).filter { owner($0) == rank }, km = mine.count
        var local = [Double](repeating: 0, count: q * km)
        for i in 0..<q { for (c, j) in mine.enumerated() { local[i * km + c] = rhs[i * k + j] } }
        var writer = ByteWriter()
        if km > 0 {
            let r = ConjugateGradients.solve(system, preconditioner: m, rhs: local, vectors: km, tolerance: settings.tolerance,
                                             maxIterations: settings.maxIterations, lanczos: false)
            writer.doubles(r.x)
            writer.ints(r.iterations)
            writer.ints(r.converged.map { $0 ? 1 : 0 })
        } else {
            writer.doubles([]); writer.ints([]); writer.ints([])
        }
        var x = [Double](repeating: 0, count: q * k), iterations = [Int](repeating: 0, count: k), converged = true
        for (from, bytes) in communicator.allGather(writer.bytes).enumerated() {
            var reader = ByteReader(bytes)
            let xs = reader.doubles(), its = reader.ints(), ok = reader.ints()
            let columns = (0..<k).filter { owner($0) == from }
            for (c, j) in columns.enumerated() {
                for i in 0..<q { x[i * k + j] = xs[i * columns.count + c] }
                iterations[j] = its[c]
                converged = converged && ok[c] == 1
            }
        }
        return (x, iterations, converged)
    }

    /// Every probe's `width` values, in probe order, from each rank's values for its own probes
    /// of `range` (probe j on rank j mod R).
    private func gatherByProbe(_ local: [Double], width: Int = 1, range: Range<Int>? = nil) -> [Double] {
        guard communicator.size > 1 else { return local }
        let range = range ?? 0..<probes
        var writer = ByteWriter()
        writer.doubles(local)
        let all = communicator.allGather(writer.bytes).map { bytes -> [Double] in
            var reader = ByteReader(bytes)
            return reader.doubles()
        }
        var out = [Double](repeating: 0, count: range.count * width)
        for (rank, values) in all.enumerated() {
            for (c, j) in range.filter({ $0 % communicator.size == rank }).enumerated() {
                for v in 0..<width { out[(j - range.lowerBound) * width + v] = values[c * width + v] }
            }
        }
        return out
    }

    /// θ entry i = T_k[row, col]: (term, row, col) for each i, in θ's order.
    private var thetaEntries: [(term: Int, row: Int, col: Int)] {
        var entries: [(Int, Int, Int)] = []
        for (k, term) in crossProducts.terms.enumerated() {
            for col in 0..<term.dimension { for row in col..<term.dimension { entries.append((k, row, col)) } }
        }
        return entries
    }

    /// z_r = Z'(y − ZΛû − Xβ̂) at an evaluation.
    private func residualScores(_ e: Evaluation) -> [Double] {
        var b = e.u
        factor.apply(system.templates, to: &b)
        return crossProducts.residualScores(b, beta: e.beta)
    }

    /// ∂d/∂θ at θ (`evaluate(theta)` last), the traces estimated on the probes.
    func gradient(_ theta: [Double], _ e: Evaluation) -> [Double] {
        gradient(e, modes(theta, e))
    }

    /// What the gradient and the AI matrix share: z_r (`residualScores(e)`), with θ set in `system`.
    func modes(_ theta: [Double], _ e: Evaluation) -> [Double] {
        system.setTheta(theta)
        return residualScores(e)
    }

    /// The same given z_r (`modes(theta, e)`).
    private func gradient(_ e: Evaluation, _ zr: [Double]) -> [Double] {
        let (logDeterminant, residual) = gradientParts(e, zr)
        let nu = crossProducts.residualDegreesOfFreedom(reml: reml)
        return zip(logDeterminant, residual).map { $0 + nu / e.penalizedRSS * $1 }
    }

    /// The gradient's two parts given z_r (`modes(theta, e)`), as on the direct path
    /// (`PenalizedLeastSquares.gradientParts`): ∂log|C|/∂θ (ML: ∂log|A|/∂θ), its traces estimated
    /// on the probes, and ∂r²/∂θ_i = −2 û'Λ̇_i'z_r.
    func gradientParts(_ e: Evaluation, _ zr: [Double]) -> (logDeterminant: [Double], residual: [Double]) {
        let cp = crossProducts, terms = cp.terms
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1
        let templates = system.templates
        let entries = thetaEntries, mCount = entries.count

        // tr(M⁻¹Ȧ_i) = 2 Σ_levels (M_b⁻¹T'Q_b)[col, row].
        var exact = [Double](repeating: 0, count: mCount)
        var block = 0
        for (k, term) in terms.enumerated() {
            let pk = term.dimension, t = templates[k]
            for _ in 0..<term.levels.count {
                let qb = diagonalBlocks[block]
                // Y = M⁻¹T'Q.
                var y = [Double](repeating: 0, count: pk * pk)
                for c in 0..<pk { for r in 0..<pk { y[r + c * pk] = (r..<pk).reduce(0.0) { $0 + t[$1 + r * pk] * qb[$1 + c * pk] } } }
                e.preconditioner.solve(block: block, &y)
                block += 1
                for (i, entry) in entries.enumerated() where entry.term == k { exact[i] += 2 * y[entry.col + entry.row * pk] }
            }
        }

        // The low eigenpairs: + Σ_k (1/λ_k − 1) w_k'Ȧ_i w_k, w_k = L⁻ᵀu_k, w'Ȧ_i w = 2 Σ_l w_(l,col) v_(l,row), v = Z'ZΛw.
        let low = e.low, kLow = low.count
        if kLow > 0 {
            var w = low.vectors
            w.withUnsafeMutableBufferPointer { e.preconditioner.apply(.inverseTransposeLower, to: $0.baseAddress!, vectors: kLow) }
            let v = system.productZtZLambda(w, vectors: kLow)
            for (i, entry) in entries.enumerated() {
                let term = terms[entry.term], pk = term.dimension
                for level in 0..<term.levels.count {
                    let rowAt = (term.offset + level * pk + entry.row) * kLow, colAt = (term.offset + level * pk + entry.col) * kLow
                    for c in 0..<kLow { exact[i] += (1 / low.values[c] - 1) * 2 * w[colAt + c] * v[rowAt + c] }
                }
            }
        }

        // (x − s)'Ȧ_i s = Σ_l d_(l,col) v_(l,row) + s_(l,col) w_(l,row), v = Z'ZΛs, w = Z'ZΛd.
        let k = e.localProbes.count
        var local = [Double](repeating: 0, count: k * mCount)
        if k > 0 {
            let d = zip(e.x, e.s).map { $0 - $1 }
            let v = system.productZtZLambda(e.s, vectors: k), w = system.productZtZLambda(d, vectors: k)
            for (i, entry) in entries.enumerated() {
                let term = terms[entry.term], pk = term.dimension
                for level in 0..<term.levels.count {
                    let rowAt = (term.offset + level * pk + entry.row) * k, colAt = (term.offset + level * pk + entry.col) * k
                    for c in 0..<k {
                        local[c * mCount + i] += d[colAt + c] * v[rowAt + c] + e.s[colAt + c] * w[rowAt + c]
                    }
                }
            }
        }
        let perProbe = gatherByProbe(local, width: mCount).map { $0 * probeWeight }
        lastProbeGradients = perProbe

        // REML: ∂log|S_X| = −2 tr(S_X⁻¹(K_i − J_i)).
        var fixedPart = [Double](repeating: 0, count: mCount)
        if reml && p > 0 {
            let sInverse = DenseCholesky.inverseOfCrossProduct(e.r, leading: p1, order: p)
            let v = system.productZtZLambda(e.solutions, vectors: p1)
            for (i, entry) in entries.enumerated() {
                let term = terms[entry.term], pk = term.dimension
                var kj = [Double](repeating: 0, count: p * p)
                for level in 0..<term.levels.count {
                    let xr = term.offset + level * pk + entry.row, xc = term.offset + level * pk + entry.col
                    for dd in 0..<p { for c in 0..<p {
                        kj[c + dd * p] += cp.zxy[xr + c * q] * e.solutions[xc * p1 + dd] - e.solutions[xc * p1 + c] * v[xr * p1 + dd]
                    } }
                }
                var tr = 0.0
                for dd in 0..<p { for c in 0..<p { tr += sInverse[dd + c * p] * kj[c + dd * p] } }
                fixedPart[i] = -2 * tr
            }
        }

        let residual = entries.map { entry in
            let term = terms[entry.term], pk = term.dimension
            var sum = 0.0
            for level in 0..<term.levels.count {
                sum += zr[term.offset + level * pk + entry.row] * e.u[term.offset + level * pk + entry.col]
            }
            return -2 * sum
        }
        let logDeterminant = entries.indices.map { i in
            var traces = exact[i]
            for j in 0..<probes { traces += perProbe[j * mCount + i] }
            return traces + fixedPart[i]
        }
        return (logDeterminant, residual)
    }

    /// The AI matrix (m × m column-major), from m more solves, given z_r (`modes(theta, e)`).
    private func averageInformation(_ e: Evaluation, _ zr: [Double]) -> [Double] {
        let (k, azr) = informationParts(e, zr)
        let nu = crossProducts.residualDegreesOfFreedom(reml: reml)
        return PenalizedLeastSquares.profiledInformation(k, azr, sigma2: e.penalizedRSS / nu, nu: nu)
    }

    /// The AI matrix in (θ, σ²) at a given σ² (profiles), as on the direct path.
    func averageInformation(_ e: Evaluation, _ zr: [Double], sigma2: Double) -> [Double] {
        let (k, azr) = informationParts(e, zr)
        return PenalizedLeastSquares.information(k, azr, penalizedRSS: e.penalizedRSS, sigma2: sigma2)
    }

    /// K = σ² H_θθ and a_i'z_r (`PenalizedLeastSquares.informationParts`), from m more solves.
    private func informationParts(_ e: Evaluation, _ zr: [Double]) -> (k: [Double], azr: [Double]) {
        let cp = crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, p1 = p + 1
        let aColumns = PenalizedLeastSquares.workingVectors(cp.terms, templates: system.templates, u: e.u, zr: zr)
        let m = aColumns.count / max(q, 1)
        var a = [Double](repeating: 0, count: q * m)
        for j in 0..<m { for i in 0..<q { a[i * m + j] = aColumns[i + j * q] } }
        var zza = [Double](repeating: 0, count: q * m)
        a.withUnsafeBufferPointer { ap in zza.withUnsafeMutableBufferPointer { zp in
            system.productZtZ(ap.baseAddress!, zp.baseAddress!, vectors: m)
        } }
        var gu = zza
        system.applyLambda(&gu, vectors: m, transpose: true)
        let start = DispatchTime.now()
        let y = solveSplit(gu, vectors: m, preconditioner: e.preconditioner).x
        seconds.solves += Self.seconds(since: start)
        seconds.total += Self.seconds(since: start)
        // h_i = X'Z a_i − F'g_u,i.
        var h = [Double](repeating: 0, count: p * m)
        for i in 0..<m { for c in 0..<p {
            var v = 0.0
            for x in 0..<q { v += cp.zxy[x + c * q] * a[x * m + i] - e.solutions[x * p1 + c] * gu[x * m + i] }
            h[c + i * p] = v
        } }
        let sInverse = p > 0 ? DenseCholesky.inverseOfCrossProduct(e.r, leading: p1, order: p) : []
        var kMatrix = [Double](repeating: 0, count: m * m)
        for j in 0..<m { for i in 0...j {
            var sum = 0.0
            for x in 0..<q { sum += a[x * m + i] * zza[x * m + j] - gu[x * m + i] * y[x * m + j] }
            for c in 0..<p { for dd in 0..<p { sum -= h[c + i * p] * sInverse[c + dd * p] * h[dd + j * p] } }
            kMatrix[i + j * m] = sum
            kMatrix[j + i * m] = sum
        } }
        let azr = (0..<m).map { i in (0..<q).reduce(0.0) { $0 + a[$1 * m + i] * zr[$1] } }
        return (kMatrix, azr)
    }

    /// The Monte-Carlo covariance of the last gradient's trace estimate (m × m column-major):
    /// the probes' sample covariance over N (zero with exact traces).
    func gradientCovariance() -> [Double] {
        let m = factor.thetaCount, n = probes
        guard !exact, n > 1, lastProbeGradients.count == n * m else { return [Double](repeating: 0, count: m * m) }
        // The stored values are weighted by 1/N: N times them are the per-probe estimates.
        let values = lastProbeGradients.map { $0 * Double(n) }
        var mean = [Double](repeating: 0, count: m)
        for j in 0..<n { for i in 0..<m { mean[i] += values[j * m + i] / Double(n) } }
        var cov = [Double](repeating: 0, count: m * m)
        for j in 0..<n { for b in 0..<m { for a in 0..<m {
            cov[a + b * m] += (values[j * m + a] - mean[a]) * (values[j * m + b] - mean[b]) / Double((n - 1) * n)
        } } }
        return cov
    }

    /// The diagonal blocks of A⁻¹ (one p_k × p_k block per level of each term, column-major) at
    /// θ, on the probes: E[xs'] = A⁻¹ and E[ss'] = M⁻¹, so block b is M_b⁻¹ + the probes' mean
    /// of (x − s)_b s_b' (symmetrised). One process only (the conditional variances are written
    /// by rank 0 alone).
    func inverseDiagonalBlocks(_ theta: [Double]) -> [[Double]]? {
        precondition(communicator.size == 1, "the conditional variances are estimated on one rank")
        guard let e = evaluate(theta) else { return nil }
        let m = e.preconditioner, k = e.localProbes.count, w = probeWeight
        let lowVectors: [[Double]] = (0..<e.low.count).map { a in
            var u = (0..<system.dimension).map { e.low.vectors[$0 * e.low.count + a] }
            u.withUnsafeMutableBufferPointer { m.apply(.inverseTransposeLower, to: $0.baseAddress!, vectors: 1) }
            return u
        }
        return m.factors.indices.map { b in
            let p = m.sizes[b], offset = m.offsets[b]
            // M_b⁻¹, then the probes' correction.
            var out = [Double](repeating: 0, count: p * p)
            for c in 0..<p { out[c + c * p] = 1 }
            m.solve(block: b, &out)
            var correction = [Double](repeating: 0, count: p * p)
            for c in 0..<p { for r in 0..<p {
                var sum = 0.0
                for j in 0..<k {
                    let xr = e.x[(offset + r) * k + j], sr = e.s[(offset + r) * k + j], sc = e.s[(offset + c) * k + j]
                    sum += (xr - sr) * sc
                }
                correction[r + c * p] = w * sum
            } }
            for c in 0..<p { for r in 0..<p { out[r + c * p] += 0.5 * (correction[r + c * p] + correction[c + r * p]) } }
            // + Σ_k (1/λ_k − 1) w_k w_k' on the block, w_k = L⁻ᵀu_k.
            for a in 0..<lowVectors.count where lowVectors.count > 0 {
                let scale = 1 / e.low.values[a] - 1
                for c in 0..<p { for r in 0..<p {
                    out[r + c * p] += scale * lowVectors[a][offset + r] * lowVectors[a][offset + c]
                } }
            }
            return out
        }
    }

    func residualSD(_ e: Evaluation) -> Double {
        (e.penalizedRSS / crossProducts.residualDegreesOfFreedom(reml: reml)).squareRoot()
    }

    /// b = Λû.
    func conditionalModes(_ theta: [Double], _ e: Evaluation) -> [Double] {
        var b = e.u
        factor.apply(factor.templates(theta), to: &b)
        return b
    }
}

extension IterativePenalizedLeastSquares: NewtonObjective {
    var lowerBounds: [Double] { factor.lowerBounds }
    var upperBounds: [Double] { factor.lowerBounds.map { _ in .infinity } }
    func value(_ e: Evaluation) -> Double { e.deviance }
    func derivatives(_ theta: [Double], _ e: Evaluation) -> NewtonOptimizer.Derivatives {
        let start = DispatchTime.now()
        let zr = modes(theta, e)
        let g = gradient(e, zr)
        seconds.total += Self.seconds(since: start)
        return (g, averageInformation(e, zr))
    }
    /// The criterion moves with θ also through the CG iterations the probes take (a probe that
    /// needs one more iteration shifts its quadrature by about the tolerance): decreases below
    /// this cannot be judged, and the analytic step is trusted instead.
    func resolvableDecrease(_ value: Double) -> Double { 1e-9 * max(1, abs(value)) }
    /// The value's estimate and the gradient's are two estimates on the same probes, whose
    /// difference along a step s is of the order of the gradient's Monte-Carlo error along it,
    /// √(s'Σ_g s): three times that is allowed.
    func isNegligible(step: [Double], information h: [Double]) -> Bool {
        guard !exact else { return false }   // exact traces: converge as the direct path does
        let (_, statistical) = LinearMixedModel.monteCarloErrors(information: h, gradientCovariance: h.map { _ in 0 },
                                                                 free: Array(step.indices))
        return zip(step, statistical).allSatisfy { abs($0) <= 0.01 * $1 }
    }

    func slack(along step: [Double]) -> Double {
        let sigma = gradientCovariance(), m = step.count
        guard sigma.count == m * m else { return 0 }
        var v = 0.0
        for j in 0..<m { for i in 0..<m { v += step[i] * sigma[i + j * m] * step[j] } }
        return 3 * max(0, v).squareRoot()
    }
}

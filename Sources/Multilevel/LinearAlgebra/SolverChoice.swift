import Foundation

/// How the random effects' system is solved: a Cholesky factor (`direct`), conjugate gradients
/// with stochastic traces (`iterative`, `IterativePenalizedLeastSquares`), or `auto`.
public enum SolverChoice: String, CaseIterable, Sendable {
    /// The iterative path when no factor fits in memory, or when its predicted time per
    /// evaluation is below the cheapest factor's; else the direct path.
    case auto
    case direct
    case iterative
}

extension SolverChoice {
    enum Resolved {
        /// The direct path, with the candidates `auto` already costed (nil: cost them in `FactorizationChoice.make`).
        case direct(FactorizationChoice.Ranking?)
        case iterative
    }

    /// Throughputs of the cost model, measured on this project's 2-core machine (release build,
    /// Cooperlake kernels): blocked-path flops per second of a factorisation with the gradient's
    /// inverse (ratings 3·10^7: 2.67e12 flops, about 200 s a Newton iteration with the inverse),
    /// and products with Z'Z per second, in stored entries (both triangles) times vectors
    /// (crossed-mm 10^6: 1.3e7 entries, about 390 vector products, 5.5 s an evaluation).
    static let directFlopsPerSecond = 2e10
    static let productEntriesPerSecond = 9e8
    /// CG iterations a solve is assumed to take (crossed-mm, 10^4 to 10^6 rows: 19–24 for the
    /// solves, 10–15 for the probes, with the block-Jacobi preconditioner).
    static let assumedIterations = 20.0

    /// Seconds of one evaluation with its gradient on the iterative path, predicted: the p + 1
    /// solves, the probes, the gradient's m solves and two products per probe, and the Lanczos
    /// run of the low eigenpairs.
    static func iterativeSeconds(_ cp: CrossProducts, probes: Int) -> Double {
        let entries = Double(2 * cp.zzRowIndices.count - cp.randomEffectsCount)
        let m = cp.terms.reduce(0) { $0 + $1.thetaCount }
        let vectors = Double(probes + cp.fixedCount + 1 + m) * assumedIterations + 2 * Double(probes)
            + Double(IterativePenalizedLeastSquares.lanczosSteps)
        return entries * vectors / productEntriesPerSecond
    }

    static func resolve(_ choice: SolverChoice, _ cp: CrossProducts, options: FitOptions, limit: MemoryLimit) throws -> Resolved {
        let probes = IterativePenalizedLeastSquares.firstProbes(cp, options.iterative)
        let iterativeBytes = IterativePenalizedLeastSquares.bytes(cp, probes: probes)
        switch choice {
        case .direct:
            return .direct(nil)
        case .iterative:
            guard options.optimizer == .newton else {
                throw InputError("--solver iterative takes Newton steps on its estimates: use it with --optimizer newton")
            }
            if iterativeBytes > limit.bytes {
                throw InputError("the iterative solver needs \(FactorizationChoice.formatBytes(iterativeBytes)) for Z'Z and its "
                    + "\(probes) probes, and \(FactorizationChoice.formatBytes(limit.bytes)) is available "
                    + "(\(limit.source)); refusing before allocating it (fewer --probes or a larger --max-memory)")
            }
            options.log?("solver: iterative (asked for), \(FactorizationChoice.formatBytes(iterativeBytes)) predicted")
            return .iterative
        case .auto:
            guard options.ordering == .auto, options.optimizer == .newton else { return .direct(nil) }
            let ranking = try FactorizationChoice.rank(cp, needsInverse: true, budget: limit.bytes, log: options.log)
            let iterative = iterativeSeconds(cp, probes: probes)
            guard let best = ranking.candidates.first(where: { $0.bytes <= limit.bytes }) else {
                if iterativeBytes <= limit.bytes {
                    options.log?("solver: iterative, as no factor fits in \(FactorizationChoice.formatBytes(limit.bytes)); "
                        + String(format: "%.3g s per evaluation predicted, ", iterative) + "\(FactorizationChoice.formatBytes(iterativeBytes))")
                    return .iterative
                }
                return .direct(ranking)   // `make` refuses, naming the fill
            }
            let direct = best.cost / directFlopsPerSecond
            let line = String(format: "solver: predicted %.3g s per evaluation direct (%@), %.3g s iterative (%d probes)",
                              direct, best.factorization.description, iterative, probes)
            if iterative < direct && iterativeBytes <= limit.bytes {
                options.log?(line + ": iterative, \(FactorizationChoice.formatBytes(iterativeBytes))")
                return .iterative
            }
            options.log?(line + ": direct")
            return .direct(ranking)
        }
    }
}

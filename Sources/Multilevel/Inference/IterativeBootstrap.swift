import Foundation

/// The parametric bootstrap of a fit on the iterative path (`IterativePenalizedLeastSquares`).
///
/// The direct path draws W'ε* ~ N(0, σ̂²W'W) from a factor of W'W = [Z X]'[Z X] and ε*'ε* from
/// the part of a on W's range plus a χ²(n − rank W) (`BootstrapSimulator`). On this path no
/// factor of W'W exists (its fill is the reason for the path), nor its rank, and a Krylov
/// square root of a singular W'W would be neither exact nor cheap. So each replicate reads the
/// rows once more and sums, in one pass,
///
///     W'ε* = Σ_i w_i ε_i*   and   ε*'ε* = Σ_i ε_i*²,   ε_i* ~ N(0, σ̂²),
///
/// which is the law itself, not an approximation. Row i's ε_i* is the first normal of a
/// generator seeded by (seed, replicate, i): the file's row, not its place in a chunk. Rows
/// are summed in segments of `segmentRows`, each in row order, and the segments' sums added in
/// segment order, so a replicate is the same bit for bit on any rank and any number of threads.
/// The rest is the direct path's: γ* = [σ̂Λ̂u*; β̂] from the replicate's own generator,
/// W'y* = Gγ* + W'ε*, and a refit from θ̂ by Newton steps on the fit's probes (the same probe
/// vectors, so a replicate's Monte-Carlo error is that of the fit and its deviance is the
/// probes' estimate, without the fit's final re-estimation).
///
/// One replicate at a time per rank: the refit's solves run on every thread.
final class IterativeBootstrapSimulator: ReplicateSimulator, @unchecked Sendable {
    let fit: FitResult
    private let rows: ModelRows
    private let pls: IterativePenalizedLeastSquares
    private let lambda: RelativeCovarianceFactor
    private let lambdaTemplates: [[Double]]
    /// The frame's fixed-effect column of each of the fit's columns (aliased ones were dropped).
    private let fixedColumns: [Int]
    private let threads: Int
    private let failure = FirstError()
    var jobThreads: Int { 1 }

    init(_ fit: FitResult, threads: Int) throws {
        guard let rows = fit.rows, let settings = fit.iterative, let monteCarlo = fit.monteCarlo else {
            throw InputError("--bootstrap on a fit by the iterative solver reads the rows again, and this fit was given "
                + "cross-products alone: refit it from its data")
        }
        self.fit = fit
        self.rows = rows
        self.threads = max(1, threads)
        let names = rows.frame.fixedDesign.columns.map(\.name)
        fixedColumns = fit.crossProducts.fixedNames.map { names.firstIndex(of: $0)! }
        // Each rank refits its own replicates: the solves are the same on one rank as on several.
        pls = IterativePenalizedLeastSquares(fit.crossProducts, reml: fit.reml, settings: settings, threads: self.threads,
                                             communicator: SingleProcess())
        pls.probes = monteCarlo.probes
        lambda = RelativeCovarianceFactor(terms: fit.terms)
        lambdaTemplates = lambda.templates(fit.theta)
    }

    /// Replicate `index`'s cross-products, with its noise summed over the rows.
    func crossProducts(replicate index: Int, seed: UInt64) throws -> CrossProducts {
        let cp = fit.crossProducts
        let (gamma, _) = replicateEffects(fit, lambda: lambda, templates: lambdaTemplates, seed: seed, index: index)
        let sums = try rows.frame.noiseSums(seed: seed, replicate: index, q: cp.randomEffectsCount,
                                            fixedColumns: fixedColumns, threads: threads)
        guard sums.rows == cp.rows else {
            throw InputError("\(rows.frame.source.name) has \(sums.rows) complete rows for the model now and had \(cp.rows) "
                + "when it was fitted: the bootstrap reads the same rows again")
        }
        let sigma = fit.sigma
        return cp.replicate(gamma: gamma, noise: sums.products.map { $0 * sigma }, noiseSquares: sigma * sigma * sums.squares)
    }

    func replicate(_ index: Int, seed: UInt64, thread: Int) -> BootstrapReplicate {
        let cp: CrossProducts
        do {
            cp = try crossProducts(replicate: index, seed: seed)
        } catch {
            failure.keep(error)
            return .failed(index, fit)
        }
        pls.replaceCrossProducts(with: cp)
        var summary = OptimizerSummary()
        var derivatives: NewtonOptimizer.Derivatives?
        guard let theta = try? NewtonOptimizer.minimize(pls, start: fit.theta, trace: nil, summary: &summary,
                                                        derivatives: &derivatives).theta,
              let e = pls.evaluate(theta) else { return .failed(index, fit) }
        return BootstrapReplicate(index: index, theta: theta, beta: e.beta, sigma: pls.residualSD(e), deviance: e.deviance)
    }

    func checkRows() throws {
        if let error = failure.error { throw error }
    }

    /// The seed of replicate `replicate`'s row noise (apart from the stream of its u*).
    static func rowSeed(seed: UInt64, replicate: Int) -> UInt64 {
        var random = Xoshiro256(seed: seed ^ 0x5851_F42D_4C95_7F2D, stream: replicate)
        return random.next()
    }

    /// ε_i*/σ̂ of the file's row `row`: the first normal of the row's own generator.
    static func rowNoise(_ rowSeed: UInt64, row: Int) -> Double {
        var random = Xoshiro256(seed: rowSeed, stream: row)
        return random.nextNormal()
    }
}

/// The rows a fit was read from (its frame), kept by fits on the iterative path for the bootstrap.
final class ModelRows: @unchecked Sendable {
    let frame: ModelFrame
    init(_ frame: ModelFrame) { self.frame = frame }
}

extension ModelFrame {
    /// W'ε and ε'ε over every complete row of the file, for ε ~ N(0, I) of replicate `replicate`
    /// of a bootstrap seeded `seed` (see `IterativeBootstrapSimulator`), W = [Z X] with X's
    /// columns `fixedColumns` of this frame's. Also the number of rows summed.
    func noiseSums(seed: UInt64, replicate: Int, q: Int, fixedColumns: [Int],
                   threads: Int) throws -> (products: [Double], squares: Double, rows: Int) {
        let terms = randomEffectsTerms
        let p = fixedDesign.columns.count, width = q + fixedColumns.count
        let stream = IterativeBootstrapSimulator.rowSeed(seed: seed, replicate: replicate)
        let reader = ChunkReader(source: source, types: types, formula: formula)
        // Per thread: the segment's products, then ε'ε and the rows.
        let sum = OrderedSum(width + 2)
        try forEachSegment(rows: 0..<source.rowCount, segmentRows: segmentRows, chunkRows: chunkRows, threads: threads,
                           state: [Double](repeating: 0, count: width + 2),
                           body: { part, segment, chunks in
                               for range in chunks {
                                   let raw = try reader.read(range)
                                   let chunk = try modelChunk(raw)
                                   var r = 0
                                   for i in raw.complete.indices where raw.complete[i] {
                                       let e = IterativeBootstrapSimulator.rowNoise(stream, row: raw.start + i)
                                       for (k, tr) in chunk.terms.enumerated() {
                                           let pk = terms[k].dimension, offset = terms[k].offset
                                           for m in 0..<tr.memberships {
                                               let level = tr.levels[r * tr.memberships + m]
                                               let w = tr.weights[r * tr.memberships + m]
                                               if level < 0 || w == 0 { continue }
                                               let base = offset + Int(level) * pk
                                               for t in 0..<pk { part[base + t] += w * tr.z[r * pk + t] * e }
                                           }
                                       }
                                       for (j, c) in fixedColumns.enumerated() { part[q + j] += chunk.x[r * p + c] * e }
                                       part[width] += e * e
                                       part[width + 1] += 1
                                       r += 1
                                   }
                               }
                               sum.add(&part, index: segment)
                           },
                           failed: { sum.skip(index: $0) })
        let total = sum.total
        return (Array(total[..<width]), total[width], Int(total[width + 1]))
    }
}

/// Vectors added to a total in the order of their index, whatever the order they arrive in:
/// the sum is the same bit for bit for any number of threads. `add` zeroes the part it takes.
private final class OrderedSum: @unchecked Sendable {
    private let turnstile = SegmentTurnstile()
    private(set) var total: [Double]

    init(_ count: Int) { total = [Double](repeating: 0, count: count) }

    func add(_ part: inout [Double], index: Int) {
        turnstile.pass(index) {
            for j in total.indices where part[j] != 0 {
                total[j] += part[j]
                part[j] = 0
            }
        }
    }

    /// Lets the parts after `index` in when part `index` failed (the total is then discarded).
    func skip(index: Int) { turnstile.skip(index) }
}

/// The first error kept from several threads.
private final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
    func keep(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
}

import Foundation

/// How A = Λ'Z'ZΛ + I is factored: the blocked dense-Schur-complement path, or CHOLMOD with an ordering.
enum Factorization: Equatable, Sendable, CustomStringConvertible {
    case blocked
    case cholmod(FillReducingOrdering)

    var description: String {
        switch self {
        case .blocked: return "blocked"
        case .cholmod(let o): return "cholmod-\(o.rawValue)"
        }
    }
}

/// The memory a fit may use for its factorisation, and where the figure comes from.
public struct MemoryLimit: Sendable, Equatable {
    public let bytes: Double
    /// "--max-memory" or "MemAvailable" (or "physical memory" where /proc/meminfo is absent).
    public let source: String

    public init(bytes: Double, source: String) {
        self.bytes = bytes
        self.source = source
    }

    /// The memory available now: /proc/meminfo's MemAvailable, else the free physical pages.
    public static func available() -> MemoryLimit {
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let fields = line.split(separator: " ")
                if fields.count >= 2, let kb = Double(fields[1]) { return MemoryLimit(bytes: kb * 1024, source: "MemAvailable") }
            }
        }
        let pages = Double(sysconf(Int32(_SC_AVPHYS_PAGES))), size = Double(sysconf(Int32(_SC_PAGESIZE)))
        return MemoryLimit(bytes: pages > 0 && size > 0 ? pages * size : .infinity, source: "free physical memory")
    }

    /// The limit a fit uses: `--max-memory` if given and smaller than what is available, else
    /// what is available; the least over the ranks of a job, so every rank makes the same choice.
    static func forFit(maxMemory: Double?, communicator: Communicator) -> MemoryLimit {
        var limit = available()
        if let m = maxMemory, m <= limit.bytes { limit = MemoryLimit(bytes: m, source: "--max-memory") }
        guard communicator.size > 1 else { return limit }
        var bytes = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: limit.bytes.bitPattern.littleEndian) { for k in 0..<8 { bytes[k] = $0[k] } }
        let all = communicator.allGather(bytes).map { b in
            Double(bitPattern: UInt64(littleEndian: b.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        }
        let least = all.min() ?? limit.bytes
        return least < limit.bytes ? MemoryLimit(bytes: least, source: "\(limit.source) on another rank") : limit
    }

    /// Bytes from a size such as `8G`, `512M`, `64k` or `1000000` (K, M, G, T: powers of 1024).
    public static func parse(_ text: String) throws -> Double {
        var number = Substring(text.trimmingCharacters(in: .whitespaces)), scale = 1.0
        if number.count > 1, number.last == "i" || number.last == "I" { number = number.dropLast() }   // 8Gi is 8G too
        if let last = number.last?.uppercased(), let power = ["K": 1.0, "M": 2, "G": 3, "T": 4][last] {
            number = number.dropLast()
            scale = pow(1024, power)
        }
        guard let value = Double(number), value.isFinite, value > 0 else {
            throw InputError("--max-memory must be a size such as 8G, 512M or 1000000 (bytes), not '\(text)'")
        }
        return value * scale
    }
}

/// One way to factor A, costed by the symbolic analysis before any numeric work.
struct FactorizationCandidate {
    let factorization: Factorization
    /// Predicted flops of one factorisation (CHOLMOD's count, Σ of squared column counts).
    let flops: Double
    /// The flops weighted by the throughput of the path (`FactorizationChoice.cholmodFlopWeight`):
    /// what the choice compares, in blocked-path flops.
    let cost: Double
    /// Nonzeros of L (for the blocked path: the level blocks, W and the dense triangle of S).
    let nonzeros: Double
    /// Predicted peak bytes: the factor, its copy of A, and (when the optimiser takes gradients)
    /// the selected inverse.
    let bytes: Double
}

/// The factorisation of A chosen by predicted cost (`--ordering auto`), and the refusal of one that
/// cannot fit in memory.
///
/// `auto` costs each candidate before the first evaluation: CHOLMOD's natural, AMD and METIS
/// orderings from one symbolic analysis (`SparseCholesky.survey`: orderings and column counts,
/// nothing the size of L), and the blocked path, where it applies, in closed form
/// (`BlockedCholesky.cost`). It takes the least predicted time per factorisation that fits in
/// memory; ties go to less memory, then to the order blocked, natural, amd, metis. The inputs
/// are the cross-products' pattern alone and the memory limit agreed over the ranks, so every
/// rank chooses the same. Whatever the ordering, the chosen factor's memory is checked before it
/// is allocated: a fit that cannot fit stops with one line naming the size and the terms whose
/// coupling fills the factor in.
enum FactorizationChoice {
    /// What one of CHOLMOD's flops costs in the blocked path's flops, measured (release build,
    /// 2 cores). Factorisations alone (BOBYQA, 42 evaluations on InstEval): METIS's 8.8e7 flops
    /// take 34 ms against 30 ms for the blocked path's 4.8e8, so about 6. With the gradient's
    /// selected inverse (Newton; Takahashi's recurrences, scalar, against dpotri): METIS 2.1 s
    /// against 0.6 s on InstEval, and at equal flops (2.6e9) on crossed 10^5, AMD 50 s, METIS 47 s
    /// against 2.7 s, so about 20.
    static func cholmodFlopWeight(needsInverse: Bool) -> Double { needsInverse ? 20 : 6 }

    /// The factorisation for `ordering`, its name, and the candidates costed (empty unless `auto`).
    static func make(_ cp: CrossProducts, ordering: FillReducingOrdering, schur: BlockedCholesky.Formation,
                     limit: MemoryLimit?, needsInverse: Bool, ranked given: Ranking? = nil,
                     log: ((String) -> Void)?) throws -> (SymmetricFactorization, Factorization) {
        let n = cp.randomEffectsCount, nnz = cp.zzRowIndices.count
        let weight = cholmodFlopWeight(needsInverse: needsInverse)
        let matrix = SparseCholesky.matrixBytes(dimension: n, nonzeros: nnz)
        func cholmodBytes(_ s: SparseCholesky) -> Double {
            s.factorBytes + matrix + (needsInverse ? SparseCholesky.selectedInverseBytes(nonzeros: s.factorNonzeros) : 0)
        }
        func sparse(_ o: FillReducingOrdering) throws -> SparseCholesky {
            try SparseCholesky(dimension: n, columnStarts: cp.zzColumnStarts, rowIndices: cp.zzRowIndices, ordering: o)
        }
        let blockedCost = BlockedCholesky.cost(cp)
        let budget = limit?.bytes ?? .infinity
        guard ordering == .auto else {
            // An ordering given: the blocked path where `natural` takes it, else CHOLMOD's; only checked for memory.
            if ordering == .natural, let c = blockedCost, let blocked = BlockedCholesky(cp, formation: schur) {
                let candidate = blockedCandidate(c, cp, needsInverse: needsInverse)
                if candidate.bytes > budget { throw refusal(candidate, cp, limit: limit!, blocked: c, sparse: nil) }
                return (blocked, .blocked)
            }
            let s = try sparse(ordering)
            let bytes = cholmodBytes(s)
            if bytes > budget {
                let candidate = FactorizationCandidate(factorization: .cholmod(ordering), flops: s.flops, cost: s.flops * weight,
                                                       nonzeros: s.factorNonzeros, bytes: bytes)
                throw refusal(candidate, cp, limit: limit!, blocked: nil, sparse: s)
            }
            return (s, .cholmod(ordering))
        }

        let clock = ContinuousClock(), start = clock.now
        let ranking = try given ?? rank(cp, needsInverse: needsInverse, budget: budget, log: log)
        let ranked = ranking.candidates, surveyTime = ranking.analysis
        let earlier = given?.analysis ?? .zero   // the ranking's own time, when it was made before this call
        for c in ranked where c.bytes <= budget {
            let chosen: SymmetricFactorization, bytes: Double
            switch c.factorization {
            case .blocked:
                chosen = BlockedCholesky(cp, formation: schur, checked: false)!
                bytes = c.bytes
            case .cholmod(let o):
                let s = try sparse(o)
                bytes = cholmodBytes(s)   // exact: supernodal layout, amalgamation and workspace
                guard bytes <= budget else { continue }
                chosen = s
            }
            log?("factorisation: \(c.factorization) (least predicted cost that fits), \(formatBytes(bytes)) predicted"
                + (limit.map { " of \(formatBytes($0.bytes)) (\($0.source))" } ?? "")
                + "; analysis \(formatSeconds(surveyTime)), total \(formatSeconds(earlier + (clock.now - start)))")
            return (chosen, c.factorization)
        }
        // Nothing fits: name the smallest, with the terms that fill it in.
        let smallest = ranked.min { ($0.bytes, $0.flops) < ($1.bytes, $1.flops) }!
        switch smallest.factorization {
        case .blocked: throw refusal(smallest, cp, limit: limit!, blocked: blockedCost, sparse: nil)
        case .cholmod(let o): throw refusal(smallest, cp, limit: limit!, blocked: nil, sparse: try sparse(o))
        }
    }

    /// The blocked path as a candidate, from its closed-form cost.
    static func blockedCandidate(_ c: BlockedCholesky.Cost, _ cp: CrossProducts, needsInverse: Bool) -> FactorizationCandidate {
        let n2 = Double(c.schurOrder)
        return FactorizationCandidate(factorization: .blocked, flops: c.flops, cost: c.flops,
                                      nonzeros: n2 * (n2 + 1) / 2 + Double(cp.zzRowIndices.count),
                                      bytes: c.bytes + (needsInverse ? c.inverseBytes : 0))
    }

    /// The candidates of `auto`, least cost first (then least memory; the stable sort keeps
    /// blocked, natural, amd, metis on ties), with the time their analysis took.
    typealias Ranking = (candidates: [FactorizationCandidate], analysis: Duration)

    static func rank(_ cp: CrossProducts, needsInverse: Bool, budget: Double, log: ((String) -> Void)?) throws -> Ranking {
        let clock = ContinuousClock(), start = clock.now
        let n = cp.randomEffectsCount
        let weight = cholmodFlopWeight(needsInverse: needsInverse)
        let matrix = SparseCholesky.matrixBytes(dimension: n, nonzeros: cp.zzRowIndices.count)
        let blockedCost = BlockedCholesky.cost(cp)
        var candidates: [FactorizationCandidate] = []
        if let c = blockedCost { candidates.append(blockedCandidate(c, cp, needsInverse: needsInverse)) }
        // CHOLMOD's orderings are analysed (METIS and AMD on Z'Z's graph: 2.3 s of a 10 s fit on
        // crossed 10^6) only when one of them could cost less than the blocked path that fits.
        let floor = cholmodFlopLowerBound(cp)
        let orderings: [FillReducingOrdering] = [.natural, .amd, .metis]
        let analysisBytes = analysisBytesPerEntry * Double(cp.zzRowIndices.count)
        let surveyed: [(ordering: FillReducingOrdering, nonzeros: Double, flops: Double)]
        if let blocked = candidates.first, blocked.bytes <= budget, floor * weight >= blocked.cost {
            log?(String(format: "factorisation candidates cholmod-*: not analysed, as every ordering takes at least %.3g flops "
                + "(cost %.3g), more than the blocked path's %.3g", floor, floor * weight, blocked.cost))
            surveyed = []
        } else if analysisBytes > budget {
            log?("factorisation candidates cholmod-*: not analysed, as each analysis needs about \(formatBytes(analysisBytes)) "
                + "and \(formatBytes(budget)) is available")
            surveyed = []
        } else {
            let together = Double(orderings.count) * analysisBytes <= budget
            if !together {
                log?("factorisation candidates cholmod-*: analysed one at a time, as the three together need about "
                    + "\(formatBytes(Double(orderings.count) * analysisBytes)) and \(formatBytes(budget)) is available")
            }
            surveyed = try SparseCholesky.survey(dimension: n, columnStarts: cp.zzColumnStarts, rowIndices: cp.zzRowIndices,
                                                 orderings: orderings, concurrently: together)
        }
        for s in surveyed {
            let bytes = 8 * s.nonzeros + 48 * Double(n) + matrix
                + (needsInverse ? SparseCholesky.selectedInverseBytes(nonzeros: s.nonzeros) : 0)
            candidates.append(FactorizationCandidate(factorization: .cholmod(s.ordering), flops: s.flops, cost: s.flops * weight,
                                                     nonzeros: s.nonzeros, bytes: bytes))
        }
        let surveyTime = clock.now - start
        // Least cost, then least memory; the stable sort keeps blocked, natural, amd, metis on ties.
        let ranked = candidates.enumerated().sorted { x, y in
            (x.element.cost, x.element.bytes, x.offset) < (y.element.cost, y.element.bytes, y.offset)
        }.map(\.element)
        if let log {
            let what = needsInverse ? "factor + selected inverse" : "factor"
            for c in ranked {
                let name = c.factorization.description.padding(toLength: 15, withPad: " ", startingAt: 0)
                log("factorisation candidate \(name) " + String(format: "%.3g flops (cost %.3g), nnz(L) %.3g, ", c.flops, c.cost, c.nonzeros)
                    + "\(what) \(formatBytes(c.bytes))")
            }
        }
        return (ranked, surveyTime)
    }

    /// Bytes one CHOLMOD analysis holds per stored entry of Z'Z (its copy of the pattern, the
    /// symmetric pattern and the ordering's workspace), measured as the peak memory the three
    /// concurrent analyses add: 420 MB at crossed-mm 10^6 (6.5·10^6 entries, 22 bytes each) and
    /// 2.9 GB at ratings 3·10^7 (3.0·10^7 entries, 32 bytes each); the larger, rounded up.
    static let analysisBytesPerEntry = 40.0

    /// A floor under CHOLMOD's flop count for A's Cholesky factor in any ordering, from the
    /// pattern alone. CHOLMOD counts Σ_j (f_j² + 2f_j), f_j the entries of L's column j below the
    /// diagonal. Whatever the ordering, column j of L holds at least the entries of A's column j
    /// below the diagonal, and those add up to A's e off-diagonal entries of one triangle, so
    /// Σ f_j ≥ e and, by Cauchy–Schwarz, Σ f_j² ≥ e²/n.
    static func cholmodFlopLowerBound(_ cp: CrossProducts) -> Double {
        let n = cp.randomEffectsCount
        guard n > 0 else { return 0 }
        var offDiagonal = 0
        for c in 0..<n {
            for e in cp.zzColumnStarts[c]..<cp.zzColumnStarts[c + 1] where cp.zzRowIndices[e] != c { offDiagonal += 1 }
        }
        let e = Double(offDiagonal)
        return e * e / Double(n) + 2 * e
    }

    /// One line: the predicted size, what is available, and the pair of terms with the most fill.
    static func refusal(_ c: FactorizationCandidate, _ cp: CrossProducts, limit: MemoryLimit,
                        blocked: BlockedCholesky.Cost?, sparse: SparseCholesky?) -> InputError {
        let names = cp.terms.map(termLabel)
        let a = patternByTermPair(cp)
        var fill: [[Double]]?
        if let blocked { fill = blocked.fillByTermPair }
        if let sparse, let l = sparse.patternByTermPair(term: termOfColumn(cp), terms: cp.terms.count) {
            fill = l.indices.map { i in l[i].indices.map { j in max(0, l[i][j] - a[i][j]) } }
        }
        var cause = ""
        if let fill, cp.terms.count > 1 {
            var best = (0, 0), most = -1.0
            for i in fill.indices { for j in i..<fill.count where fill[i][j] > most { most = fill[i][j]; best = (i, j) } }
            let total = fill.joined().reduce(0, +)
            let share = total > 0 ? String(format: " (%.0f%% of the fill)", 100 * most / total) : ""
            if best.0 != best.1 {
                cause = ": most of the fill is between \(names[best.0]) and \(names[best.1])\(share), whose levels are crossed"
            } else {
                // Fill among one term's levels comes from a term that couples them: the one sharing most entries with it.
                let k = best.0
                let partner = cp.terms.indices.filter { $0 != k }.max { a[min($0, k)][max($0, k)] < a[min($1, k)][max($1, k)] }!
                cause = ": most of the fill is among the levels of \(names[k])\(share), which \(names[partner]) couples"
            }
        }
        let what = c.factorization == .blocked ? "the dense Schur complement of the blocked factor" : "the Cholesky factor (\(c.factorization))"
        return InputError("the fit needs \(formatBytes(c.bytes)) for \(what), the least of the orderings that apply, "
            + "and \(formatBytes(limit.bytes)) is available (\(limit.source))\(cause); refusing before allocating it "
            + "(fewer levels, nested terms or a larger --max-memory)")
    }

    /// The term of each column of Z.
    static func termOfColumn(_ cp: CrossProducts) -> [Int] {
        var term = [Int](repeating: 0, count: cp.randomEffectsCount)
        for (k, t) in cp.terms.enumerated() { for c in t.offset..<(t.offset + t.columns) { term[c] = k } }
        return term
    }

    /// Entries of A's stored upper triangle by the pair of terms of their row and column (`[a][b]`, a ≤ b).
    static func patternByTermPair(_ cp: CrossProducts) -> [[Double]] {
        let term = termOfColumn(cp), k = cp.terms.count
        var counts = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
        for c in 0..<cp.randomEffectsCount {
            for e in cp.zzColumnStarts[c]..<cp.zzColumnStarts[c + 1] {
                let a = term[Int(cp.zzRowIndices[e])], b = term[c]
                counts[min(a, b)][max(a, b)] += 1
            }
        }
        return counts
    }

    /// lme4's way of writing a term: `(1 + x | A)`.
    static func termLabel(_ t: RandomEffectsTerm) -> String {
        var effects = t.effects.map { $0 == "(Intercept)" ? "1" : $0 }
        if !t.effects.contains("(Intercept)") { effects.insert("0", at: 0) }
        return "(\(effects.joined(separator: " + ")) | \(t.group))"
    }

    static func formatBytes(_ b: Double) -> String {
        if !b.isFinite { return "unlimited" }
        let units = ["B", "KB", "MB", "GB", "TB"]
        var v = b, u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(Int(v)) B" : String(format: v < 10 ? "%.2f %@" : "%.1f %@", v, units[u] as NSString)
    }

    static func formatSeconds(_ d: Duration) -> String {
        String(format: "%.3f s", Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }
}

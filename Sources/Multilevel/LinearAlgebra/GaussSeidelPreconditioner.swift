import Foundation

/// What conjugate gradients need of a preconditioner M: v ← M⁻¹v for k row-interleaved vectors
/// (or for column `only` of them).
protocol SolvePreconditioner {
    func solve(_ v: UnsafeMutablePointer<Double>, vectors k: Int, only column: Int?)
}

extension BlockJacobiPreconditioner: SolvePreconditioner {
    func solve(_ v: UnsafeMutablePointer<Double>, vectors k: Int, only column: Int?) {
        apply(.solve, to: v, vectors: k, only: column)
    }
}

/// Symmetric block Gauss–Seidel on A = Λ'Z'ZΛ + I, one block per level of each term (D, the
/// block-Jacobi preconditioner's blocks, and L, U the coupling between levels below and above
/// the diagonal): M = (D + L) D⁻¹ (D + U), symmetric positive definite. One application is a
/// forward sweep y_b = D_b⁻¹(v_b − Σ_{c<b} A_bc y_c) and a backward one z_b = y_b − D_b⁻¹ Σ_{c>b}
/// A_bc z_c over the blocks in order, together one pass over Z'Z: as dear as a product with A,
/// and sequential over the blocks. Backfitting for crossed effects converges in a number of
/// sweeps that does not grow with the levels (Papaspiliopoulos, Roberts & Zanella 2020); as a
/// preconditioner it is the stronger alternative to block-Jacobi measured for the solves for β̂,
/// û and the AI matrix (`--preconditioner gauss-seidel`; `bench/RESULTS-iterative.md`). The
/// probes keep block-Jacobi: their log-determinant needs M = LL' with L block diagonal.
struct GaussSeidelPreconditioner: SolvePreconditioner {
    let system: SystemOperator
    let blocks: BlockJacobiPreconditioner
    /// The term of each block (for its template T_k).
    private let blockTerm: [Int]

    init(system: SystemOperator, blocks: BlockJacobiPreconditioner) {
        self.system = system
        self.blocks = blocks
        blockTerm = system.factor.terms.enumerated().flatMap { k, t in Array(repeating: k, count: t.levels.count) }
    }

    func solve(_ v: UnsafeMutablePointer<Double>, vectors k: Int, only column: Int?) {
        let columns = column.map { $0..<($0 + 1) } ?? 0..<k
        let q = system.dimension, templates = system.templates
        // w = Λy over the blocks finished so far (the coupling sums read it).
        var w = [Double](repeating: 0, count: q * k)
        var s = [Double](repeating: 0, count: 8 * k), t = s
        let ls = system.lowerStarts, lc = system.lowerColumns, lv = system.lowerValues
        let us = system.upperStarts, uc = system.upperColumns, uv = system.upperValues
        // Forward: y_b = D_b⁻¹(v_b − T'Σ_{j < start} (Z'Z)_ij w_j).
        for b in blocks.factors.indices {
            let p = blocks.sizes[b], start = blocks.offsets[b], tk = templates[blockTerm[b]]
            if s.count < p * k { s = [Double](repeating: 0, count: p * k); t = s }
            for r in 0..<p {
                let i = start + r
                for c in columns {
                    var sum = 0.0
                    for e in ls[i]..<ls[i + 1] where Int(lc[e]) < start { sum += lv[e] * w[Int(lc[e]) * k + c] }
                    s[r * k + c] = sum
                }
            }
            update(v, block: b, p: p, start: start, template: tk, sums: s, scratch: &t, w: &w, vectors: k, columns: columns,
                   backward: false)
        }
        // Backward: z_b = y_b − D_b⁻¹ T'Σ_{j ≥ end} (Z'Z)_ij w_j, w now Λz over the later blocks.
        for i in 0..<(q * k) { w[i] = 0 }
        for b in blocks.factors.indices.reversed() {
            let p = blocks.sizes[b], start = blocks.offsets[b], end = start + p, tk = templates[blockTerm[b]]
            for r in 0..<p {
                let i = start + r
                for c in columns {
                    var sum = 0.0
                    for e in us[i]..<us[i + 1] where Int(uc[e]) >= end { sum += uv[e] * w[Int(uc[e]) * k + c] }
                    s[r * k + c] = sum
                }
            }
            update(v, block: b, p: p, start: start, template: tk, sums: s, scratch: &t, w: &w, vectors: k, columns: columns,
                   backward: true)
        }
    }

    /// Block b's step given the coupling sums s (p × k row-interleaved): forward v_b ← D_b⁻¹(v_b − T's),
    /// backward v_b ← v_b − D_b⁻¹T's; then w_b = T v_b.
    private func update(_ v: UnsafeMutablePointer<Double>, block b: Int, p: Int, start: Int, template tk: [Double],
                        sums s: [Double], scratch t: inout [Double], w: inout [Double], vectors k: Int, columns: Range<Int>,
                        backward: Bool) {
        let base = start * k
        // t = T's (T lower: (T's)[r] = Σ_{u ≥ r} T[u, r] s[u]); forward, v_b − T's.
        for c in columns {
            for r in 0..<p {
                var sum = 0.0
                for u in r..<p { sum += tk[u + r * p] * s[u * k + c] }
                t[r * k + c] = backward ? sum : v[base + r * k + c] - sum
            }
        }
        t.withUnsafeMutableBufferPointer { blocks.apply(.solve, block: b, to: $0.baseAddress!, vectors: k, columns: columns) }
        for c in columns {
            for r in 0..<p { v[base + r * k + c] = backward ? v[base + r * k + c] - t[r * k + c] : t[r * k + c] }
            for r in 0..<p {
                var sum = 0.0
                for u in 0...r { sum += tk[r + u * p] * v[base + u * k + c] }
                w[base + r * k + c] = sum
            }
        }
    }
}

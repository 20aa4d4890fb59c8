import Foundation

/// G = L D L' for the positive *semi*definite G = [Z X]'[Z X], with a zero pivot wherever a
/// column of [Z X] is (numerically) a combination of the columns before it.
///
/// The parametric bootstrap needs a square root of G: V = D^½ L', so V'V = G, restricted to
/// its r nonzero rows (r = rank of [Z X]). G is singular for almost every mixed model (a
/// random intercept's columns of Z sum to X's intercept column; nested factors sum to their
/// parent), so a Cholesky factorisation that stops or divides by a rounding-error pivot
/// cannot give it. This one (up-looking, on the elimination tree, in the order of Z's columns
/// then X's) sets a pivot to zero when it is below 10⁻¹⁰ of the column's diagonal entry in G;
/// for a semidefinite matrix the rest of that column of L is then zero too, so the factor is
/// the exact one of the nearest singular G. CHOLMOD offers no such pivot rule (its `dbound`
/// replaces small pivots instead), hence this small factorisation, run once per bootstrap.
struct SemidefiniteCholesky {
    let order: Int
    /// Strictly lower part of L, by columns.
    let columnStarts: [Int]
    let rowIndices: [Int32]
    let values: [Double]
    /// D's diagonal; zero for dependent columns.
    let pivots: [Double]
    /// rank: the number of nonzero pivots.
    var rank: Int { pivots.reduce(0) { $0 + ($1 > 0 ? 1 : 0) } }

    /// Factors G given by its upper triangle in compressed columns (row indices ascending, diagonal last).
    init(order n: Int, columnStarts ap: [Int], rowIndices ai: [Int], values ax: [Double]) {
        order = n
        // Symbolic: the elimination tree and the count of each column of L.
        var parent = [Int](repeating: -1, count: n), flag = [Int](repeating: -1, count: n)
        var count = [Int](repeating: 0, count: n)
        for k in 0..<n {
            flag[k] = k
            for p in ap[k]..<ap[k + 1] {
                var i = ai[p]
                while i < k && flag[i] != k {
                    if parent[i] == -1 { parent[i] = k }
                    count[i] += 1
                    flag[i] = k
                    i = parent[i]
                }
            }
        }
        var lp = [Int](repeating: 0, count: n + 1)
        for k in 0..<n { lp[k + 1] = lp[k] + count[k] }
        var li = [Int32](repeating: 0, count: lp[n]), lx = [Double](repeating: 0, count: lp[n])
        var d = [Double](repeating: 0, count: n)
        // Numeric, row by row: row k of L solves L(0..<k, 0..<k) D y = G(0..<k, k).
        var y = [Double](repeating: 0, count: n), pattern = [Int](repeating: 0, count: n)
        var filled = [Int](repeating: 0, count: n)
        for k in 0..<n { flag[k] = -1 }
        li.withUnsafeMutableBufferPointer { li in
        lx.withUnsafeMutableBufferPointer { lx in
        y.withUnsafeMutableBufferPointer { y in
            for k in 0..<n {
                var top = n
                flag[k] = k
                var diagonal = 0.0
                for p in ap[k]..<ap[k + 1] {
                    var i = ai[p]
                    y[i] += ax[p]
                    if i == k { diagonal = ax[p] }
                    var len = 0
                    while flag[i] != k {
                        pattern[len] = i
                        len += 1
                        flag[i] = k
                        i = parent[i]
                    }
                    while len > 0 { top -= 1; len -= 1; pattern[top] = pattern[len] }
                }
                var dk = y[k]
                y[k] = 0
                while top < n {
                    let i = pattern[top]
                    top += 1
                    let yi = y[i]
                    y[i] = 0
                    let end = lp[i] + filled[i]
                    for p in lp[i]..<end { y[Int(li[p])] -= lx[p] * yi }
                    let lki = d[i] > 0 ? yi / d[i] : 0
                    dk -= lki * yi
                    li[end] = Int32(k)
                    lx[end] = lki
                    filled[i] += 1
                }
                d[k] = dk > 1e-10 * diagonal ? dk : 0
            }
        } } }
        columnStarts = lp
        rowIndices = li
        values = lx
        pivots = d
    }

    /// The factor of G = [Z X]'[Z X] from the cross-products (Z's columns, then X's).
    init(_ cp: CrossProducts) {
        let q = cp.randomEffectsCount, p = cp.fixedCount
        var starts = Array(cp.zzColumnStarts), rows = cp.zzRowIndices.map(Int.init), values = Array(cp.zzValues)
        for j in 0..<p {
            for i in 0..<q where cp.zxy[i + j * q] != 0 { rows.append(i); values.append(cp.zxy[i + j * q]) }
            for i in 0...j { rows.append(q + i); values.append(cp.xx(i, j)) }
            starts.append(rows.count)
        }
        self.init(order: q + p, columnStarts: starts, rowIndices: rows, values: values)
    }

    /// V'z = L D^½ z for z of length `order` (its entries at zero pivots are ignored):
    /// a draw from N(0, G) when z is standard normal.
    func transposedRootTimes(_ z: [Double]) -> [Double] {
        var v = (0..<order).map { pivots[$0] > 0 ? pivots[$0].squareRoot() * z[$0] : 0 }
        for j in stride(from: order - 1, through: 0, by: -1) where v[j] != 0 {
            let vj = v[j]
            for p in columnStarts[j]..<columnStarts[j + 1] { v[Int(rowIndices[p])] += values[p] * vj }
        }
        return v
    }
}

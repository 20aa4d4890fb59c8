import Foundation

extension LinearMixedModel {
    /// Fits `formula` to survey data by maximum pseudo-likelihood with sampling weights at each
    /// level (`PseudoLikelihood`), and gives the fixed effects and variance components
    /// linearised standard errors (`SandwichVariance`) with `design`'s PSUs and strata.
    ///
    /// Nested designs of two levels (the random terms share one grouping factor, the clusters;
    /// `design.weights` holds the level-1 and the level-2 weights) and of three (terms on two
    /// grouping factors, the finer nested in the coarser, e.g. `(1 | district/school)`; three
    /// weights); a model without random effects takes one weight and needs `design.psu`. Crossed
    /// and multiple-membership designs have no accepted definition of sampling-weighted
    /// likelihood and are refused; so are precision weights alongside sampling weights. REML has
    /// no pseudo-likelihood version: the fit is ML. With `design.replicateWeights` the standard
    /// errors are the replicates' (`ReplicateVariance`).
    public static func fitSurvey(_ formula: String, data: TableSource, design: SurveyDesign,
                                 options: FitOptions = FitOptions()) throws -> SurveyFitResult {
        guard options.weights == nil else {
            throw InputError("precision weights (--weights) and sampling weights (--survey-weights) cannot be combined")
        }
        let (parsed, names, modelFormula) = try surveyModel(formula, design: design, data: data)
        let levels = names.count + 1
        let frame = try ModelFrame.scan(modelFormula.reading(design.columns), source: data, chunkRows: options.chunkRows,
                                        threads: options.threads, communicator: options.communicator, segmentRows: options.segmentRows)
        let terms = names.isEmpty ? [] : frame.randomEffectsTerms
        // The clusters: the finest grouping (lme4's order puts the terms of the grouping with most
        // levels first); with three levels, their parents: the other grouping, whose terms follow.
        let cluster = frame.randomEffectsTerms[0]
        var parentTerm: Int?
        if levels == 3 {
            let k = terms.firstIndex { $0.group != cluster.group }!
            guard terms[k...].allSatisfy({ $0.group == terms[k].group }) else {
                throw InputError("the terms of \(cluster.group) and \(terms[k].group) have as many levels: which is nested in which cannot be told")
            }
            parentTerm = k
        }
        var columns = ClusterCrossProducts.Columns(weights: design.weights, psu: design.psu, strata: design.strata, clusterTerm: 0,
                                                   parentTerm: parentTerm, termColumns: frame.randomEffectsTerms.map(\.dimension),
                                                   randomEffects: !names.isEmpty)
        columns.replicates = design.replicateWeights
        columns.fpc = design.fpc
        let sums = try ClusterCrossProducts.accumulate(frame, columns: columns, terms: terms, clusterName: cluster.group,
                                                       clusterLabels: cluster.levels, threads: options.threads)
        // The top-level clusters (schools; with three levels, districts), each one's PSU and stratum.
        let top = parentTerm.map { terms[$0] } ?? cluster
        var topOf = Array(0..<sums.clusters)
        if parentTerm != nil {
            topOf = sums.parent
            try checkParents(sums, top: top, weights: design.weights)
        }
        let (psuOfTop, psuLabels, stratumOfPSU) = try samplingUnits(sums, top: top, topOf: topOf, design: design)

        // Without random effects the weights are one level's: nothing to scale within clusters.
        var design = design
        if names.isEmpty { design.scaling = .none }
        let pml = PseudoLikelihood(sums, scaling: design.scaling, parentDimension: parentTerm.map { k in terms[k...].reduce(0) { $0 + $1.dimension } } ?? 0,
                                   parents: parentTerm == nil ? 0 : top.levels.count, threads: options.threads)
        let factor = pml.factor
        var summary = OptimizerSummary()
        var theta: [Double] = []
        if factor.thetaCount > 0 {
            var evaluations = 0
            theta = try Optimizer.minimize({ t in
                let v = pml.deviance(t)
                evaluations += 1
                options.trace?(evaluations, t, v)
                return v
            }, start: factor.initialTheta, lower: factor.lowerBounds, summary: &summary).theta
        } else {
            summary.algorithm = "none (no variance parameters beyond σ²)"
            summary.converged = true
        }
        guard let e = pml.evaluate(theta) else {
            throw InputError("the pseudo-likelihood could not be evaluated at the estimates: the response may be fitted exactly")
        }
        var notes: [String] = []
        let p = sums.p, m = theta.count
        // The parameters ψ = (β, θ, σ²) the variance is linearised in; θ entries at their bound stay fixed.
        let freeTheta = theta.indices.filter { !factor.isDiagonal($0) || theta[$0] > 1e-4 }
        if freeTheta.count < m {
            notes.append("boundary (singular) fit: a variance component is estimated at or near zero; it is held fixed in the standard errors")
        }
        let free = Array(0..<p) + freeTheta.map { p + $0 } + [p + m]
        let psi = e.beta + theta + [e.sigma2]
        func expand(_ x: [Double]) -> [Double] { var full = psi; for (k, i) in free.enumerated() { full[i] = x[k] }; return full }
        let x0 = free.map { psi[$0] }
        let f = free.count, tops = pml.topWeight.count
        let steps = free.enumerated().map { k, i -> Double in
            i == p + m ? 1e-5 * e.sigma2 : 1e-5 * max(abs(x0[k]), i < p ? 1 : 1e-2)
        }
        // The top-level clusters' weighted scores (tops × f): analytic with two levels; with
        // three, central differences of each district's ℓₖ.
        func weightedScores(_ full: [Double]) -> [Double] {
            var out = [Double](repeating: 0, count: tops * f)
            if parentTerm == nil {
                let (_, s) = pml.clusterScores(beta: Array(full[0..<p]), theta: Array(full[p..<(p + m)]), sigma2: full[p + m])
                for j in 0..<tops { for (k, i) in free.enumerated() { out[j * f + k] = pml.weight[j] * s[j * (p + m + 1) + i] } }
                return out
            }
            func logLik(_ x: [Double]) -> [Double] {
                pml.topLogLikelihoods(beta: Array(x[0..<p]), theta: Array(x[p..<(p + m)]), sigma2: x[p + m])
            }
            for (k, i) in free.enumerated() {
                var up = full, down = full
                up[i] += 0.1 * steps[k]
                down[i] -= 0.1 * steps[k]
                let lu = logLik(up), ld = logLik(down)
                for j in 0..<tops { out[j * f + k] = pml.weight[j] * (lu[j] - ld[j]) / (0.2 * steps[k]) }
            }
            return out
        }
        func totalScore(_ x: [Double]) -> [Double] {
            let s = weightedScores(expand(x))
            return (0..<f).map { k in (0..<tops).reduce(0.0) { $0 + s[$1 * f + k] } }
        }
        func components(_ x: [Double]) -> [Double] {
            let full = expand(x)
            return pml.varianceComponents(theta: Array(full[p..<(p + m)]), sigma2: full[p + m])
        }
        let phi = components(x0)
        let nphi = phi.count
        let fixedCovariance: [Double], se: [Double], varcorrSE: [Double]
        if design.replicateWeights.isEmpty {
            // Linearised: H⁻¹JH⁻¹ in ψ, then the variance components by the delta method.
            let jac = SandwichVariance.jacobian(totalScore, at: x0, steps: steps)
            var bread = [Double](repeating: 0, count: f * f)
            for b in 0..<f { for a in 0..<f { bread[a + b * f] = -0.5 * (jac[a + b * f] + jac[b + a * f]) } }
            let meat = try SandwichVariance.meat(weightedScores: weightedScores(psi), width: f, psuOfCluster: psuOfTop,
                                                 psuCount: psuLabels.count, stratumOfPSU: stratumOfPSU, strataLabels: sums.strataLabels,
                                                 singlePSU: design.singlePSU, fpc: try fpcOfStrata(sums, design: design))
            guard let v = SandwichVariance.covariance(bread: bread, meat: meat, order: f) else {
                throw InputError("the pseudo-likelihood's Hessian is not positive definite at the estimates: the standard errors are undefined "
                    + "(a variance component may be unidentified)")
            }
            fixedCovariance = (0..<(p * p)).map { v[($0 % p) + ($0 / p) * f] }
            se = (0..<p).map { v[$0 + $0 * f].squareRoot() }
            let dphi = SandwichVariance.jacobian(components, at: x0, steps: steps)
            varcorrSE = (0..<nphi).map { a in
                var s = 0.0
                for k in 0..<f { for l in 0..<f { s += dphi[a + k * nphi] * v[k + l * f] * dphi[a + l * nphi] } }
                return s.squareRoot()
            }
        } else {
            let v = try ReplicateVariance.covariance(pml, theta: theta, estimate: e.beta + phi, topOf: topOf, top: top, design: design,
                                            options: options)
            let n = p + nphi
            fixedCovariance = (0..<(p * p)).map { v[($0 % p) + ($0 / p) * n] }
            se = (0..<p).map { v[$0 + $0 * n].squareRoot() }
            varcorrSE = (0..<nphi).map { v[(p + $0) + (p + $0) * n].squareRoot() }
        }
        // Entries as VarCorrEntry: variances, then covariances with correlations, then the residual.
        var varcorr: [VarCorrEntry] = []
        var index = 0
        var entrySE: [Double] = []
        for k in factor.terms.indices {
            let t = factor.terms[k], d = t.dimension
            let variances = Array(phi[index..<(index + d)])
            for a in 0..<d {
                varcorr.append(VarCorrEntry(group: t.group, var1: t.effects[a], var2: nil, vcov: variances[a], sdcor: variances[a].squareRoot()))
                entrySE.append(freeTheta.contains(thetaIndex(factor, k, a, a)) ? varcorrSE[index + a] : .nan)
            }
            var c = index + d
            for b in 0..<d {
                for a in (b + 1)..<max(b + 1, d) {
                    let denominator = (variances[a] * variances[b]).squareRoot()
                    varcorr.append(VarCorrEntry(group: t.group, var1: t.effects[b], var2: t.effects[a], vcov: phi[c],
                                                sdcor: denominator > 0 ? phi[c] / denominator : .nan))
                    entrySE.append(varcorrSE[c])
                    c += 1
                }
            }
            index = c
        }
        varcorr.append(VarCorrEntry(group: "Residual", var1: nil, var2: nil, vcov: e.sigma2, sdcor: e.sigma2.squareRoot()))
        entrySE.append(varcorrSE[nphi - 1])
        if summary.converged == false, let w = summary.warning { notes.append(w) }
        notes.append("sampling-weighted fits are by maximum pseudo-likelihood (ML): REML has no accepted pseudo-likelihood version, "
            + "and likelihood-ratio tests are not valid; use the Wald tests")
        let logPL = -0.5 * e.deviance
        return SurveyFitResult(formula: parsed.text, dataName: data.name, design: design, nobs: sums.rows,
                               groups: (parentTerm == nil ? [cluster] : [cluster, top]).map { ($0.group, $0.levels.count) },
                               psus: psuLabels.count, strata: max(1, sums.strataLabels.count),
                               weightedCount: pml.weightedCount, terms: terms, theta: theta, thetaNames: factor.thetaNames,
                               fixedNames: sums.fixedNames, beta: e.beta, fixedCovariance: fixedCovariance, standardErrors: se,
                               sigma: e.sigma2.squareRoot(), varcorr: varcorr, varcorrStandardErrors: entrySE,
                               logPseudoLikelihood: logPL, optimizer: summary, notes: notes, droppedRows: frame.droppedRows)
    }

    /// The formula checked against the design: its grouping factors (none, one, or two nested:
    /// one weight a level), and the model the frame reads (without random effects, the PSUs as
    /// the clusters' grouping); the weight, replicate and correction columns numeric.
    private static func surveyModel(_ formula: String, design: SurveyDesign, data: TableSource) throws
        -> (parsed: Formula, groupings: [String], model: Formula) {
        let parsed = try Formula.parse(formula)
        try parsed.requireGaussian()
        let groupings = parsed.random.map(\.grouping)
        for g in groupings {
            if case .multipleMembership = g {
                throw InputError("sampling weights for a multiple-membership design (\(g.name)) have no accepted definition; "
                    + "precision weights (--weights) still work there")
            }
        }
        let names = groupings.map(\.name).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        if names.count > 2 {
            throw InputError("sampling weights are built for designs of up to three levels (two nested grouping factors); this model has "
                + names.joined(separator: ", "))
        }
        let levels = names.count + 1
        guard design.weights.count == levels else {
            let example = ["\"w\"", "\"w_pupil, w_school\"", "\"w_pupil, w_school, w_district\""][levels - 1]
            throw InputError(levels == 1
                ? "--survey-weights needs one column for a model without random effects; \(design.weights.count) given"
                : "--survey-weights needs \(levels) columns for this \(levels)-level model, level 1 first (e.g. \(example)); \(design.weights.count) given")
        }
        var model = parsed
        if names.isEmpty {
            guard let psu = design.psu else {
                throw InputError("a model without random effects needs --psu, the clusters of the linearised variance")
            }
            // The PSUs (within strata) index the clusters as a grouping factor would; they add no random effect.
            let quoted = ([design.strata, psu].compactMap { $0 }).map { "`\($0.replacingOccurrences(of: "`", with: "\\`"))`" }
            model = try Formula.parse(formula + " + (1 | \(quoted.joined(separator: ":")))")
        }
        if design.fpc != nil && !design.replicateWeights.isEmpty {
            throw InputError("--fpc is for the linearised variance; replicate weights carry their own corrections")
        }
        for w in design.weights + design.replicateWeights + [design.fpc].compactMap({ $0 }) {
            guard try data.columnType(w) == .numeric else {
                throw InputError(w == design.fpc ? "the finite-population correction column '\(w)' is not numeric"
                    : "\(design.weights.contains(w) ? "sampling" : "replicate") weight column '\(w)' is not numeric")
            }
        }
        if !design.replicateWeights.isEmpty {
            if design.replicateMethod == .fay && !(design.fayK >= 0 && design.fayK < 1) {
                throw InputError("--fay-k must be at least 0 and less than 1 (PISA's is 0.5)")
            }
            if design.replicateWeights.count < 2 { throw InputError("--replicate-weights needs at least two replicates") }
        }
        return (parsed, names, model)
    }

    /// Each top-level cluster's PSU (itself unless `design.psu` names a coarser unit, which must
    /// hold it whole), the PSUs' labels, and each PSU's stratum.
    private static func samplingUnits(_ sums: ClusterCrossProducts, top: RandomEffectsTerm, topOf: [Int], design: SurveyDesign) throws
        -> (psuOfTop: [Int], psuLabels: [String], stratumOfPSU: [Int]) {
        var psuOfTop = [Int](repeating: -1, count: top.levels.count), stratumOfTop = psuOfTop
        for j in 0..<sums.clusters where sums.count[j] > 0 {
            let k = topOf[j], psu = design.psu == nil ? k : sums.psu[j]
            if psuOfTop[k] >= 0 && (psuOfTop[k] != psu || stratumOfTop[k] != sums.stratum[j]) {
                let column = psuOfTop[k] != psu ? design.psu! : design.strata!
                throw InputError("column '\(column)' varies within \(top.group) '\(top.levels[k])': the clusters must be nested in the "
                    + (column == design.psu ? "PSUs" : "strata"))
            }
            psuOfTop[k] = psu
            stratumOfTop[k] = sums.stratum[j]
        }
        let psuLabels = design.psu == nil ? top.levels : sums.psuLabels
        // Each PSU lies in one stratum (it is identified within it).
        var stratumOfPSU = [Int](repeating: 0, count: psuLabels.count)
        for k in psuOfTop.indices where psuOfTop[k] >= 0 { stratumOfPSU[psuOfTop[k]] = stratumOfTop[k] }
        return (psuOfTop, psuLabels, stratumOfPSU)
    }

    /// Each stratum's finite-population correction (nil without `--fpc`), the same on all its clusters.
    private static func fpcOfStrata(_ sums: ClusterCrossProducts, design: SurveyDesign) throws -> [Double]? {
        guard let column = design.fpc else { return nil }
        var values = [Double](repeating: .nan, count: max(1, sums.strataLabels.count))
        for j in 0..<sums.clusters where sums.count[j] > 0 {
            let h = sums.stratum[j]
            if values[h].isNaN { values[h] = sums.fpc[j] } else if values[h] != sums.fpc[j] {
                let stratum = design.strata == nil ? "the design's one stratum" : "stratum '\(sums.strataLabels[h])'"
                throw InputError("column '\(column)' varies within \(stratum) (\(rNumber(values[h])) and "
                    + "\(rNumber(sums.fpc[j]))): the finite-population correction is the stratum's")
            }
        }
        return values
    }

    /// Three levels: each parent's weight is the same on all its clusters, and its level-2 weights add up to more than 0.
    private static func checkParents(_ sums: ClusterCrossProducts, top: RandomEffectsTerm, weights: [String]) throws {
        var first = [Int](repeating: -1, count: top.levels.count)
        var total = [Double](repeating: 0, count: top.levels.count)
        for j in 0..<sums.clusters where sums.count[j] > 0 {
            let k = sums.parent[j]
            total[k] += sums.weight2[j]
            if first[k] < 0 { first[k] = j; continue }
            if sums.weight3[j] != sums.weight3[first[k]] {
                throw InputError("the level-3 weight in column '\(weights[2])' varies within \(top.group) '\(top.levels[k])': "
                    + "\(rNumber(sums.weight3[first[k]])) in \(sums.clusterName) '\(sums.clusterLabels[first[k]])' and "
                    + "\(rNumber(sums.weight3[j])) in '\(sums.clusterLabels[j])'")
            }
        }
        if let k = total.indices.first(where: { first[$0] >= 0 && total[$0] <= 0 }) {
            throw InputError("the level-2 sampling weights in column '\(weights[1])' add up to 0 in \(top.group) '\(top.levels[k])'")
        }
    }

    /// The index in θ of T_k[a, b].
    private static func thetaIndex(_ factor: RelativeCovarianceFactor, _ k: Int, _ a: Int, _ b: Int) -> Int {
        var i = factor.thetaOffsets[k]
        let d = factor.terms[k].dimension
        for col in 0..<d { for row in col..<d { if row == a && col == b { return i }; i += 1 } }
        return i
    }
}

import Foundation

/// The self-contained report a reader opens: `index.html` with the summary and every plot
/// inline (no scripts, no plotting runtime, no network), and each plot also as its own `.svg`
/// beside it. Plots: caterpillar plots of the conditional modes with 95% intervals (±1.96
/// conditional SDs) per term and effect; level-1 residuals against fitted values and their
/// normal QQ plot; a normal QQ plot of each term's conditional modes; and, when they were run,
/// the profile ζ traces and the bootstrap histograms.
public enum HTMLReport {
    /// Caterpillar plots show at most this many levels (evenly spaced in the sorted order).
    static let caterpillarLevels = 200
    /// Residual plots show at most this many rows (every k-th row).
    static let residualPoints = 5_000

    /// Writes the report of a fit into `directory` (created if needed); returns the files written.
    @discardableResult
    /// `conditionalVariances`: the fit's `conditionalVariances()`, if already computed.
    public static func write(fit: FitResult, data: TableSource, bootstrap: BootstrapResult? = nil,
                             profile: ProfileResult? = nil, conditionalVariances: [[[Double]]]? = nil,
                             to directory: String) throws -> [String] {
        var sections: [(String, [(String, SVGPlot)])] = []
        sections.append(("Random effects: conditional modes",
                         try caterpillars(fit, variances: conditionalVariances ?? fit.conditionalVariances(), prefix: "")))
        let residuals = try residualPlots(fit, data: data)
        sections.append(("Residuals at level 1", residuals.level1))
        if let v = fit.residualVariance {
            sections.append(("Residuals by the level-1 variance function (\(v.model.nlmeName)(\(v.model.formulaText)))", residuals.variance))
        }
        sections.append(("Residuals of each random term: conditional modes against fitted values, and normal QQ plots",
                         residuals.groups + modeQQPlots(fit, prefix: "")))
        if let profile { sections.append(("Profile likelihood", profilePlots(profile))) }
        if let bootstrap { sections.append(("Parametric bootstrap", bootstrapHistograms(bootstrap))) }
        var text = fit.summary()
        if let bootstrap { text += "\n" + bootstrap.summary() }
        if let profile { text += "\n" + profile.summary() }
        return try write(title: "mlm: \(fit.formula)", text: text, sections: sections, to: directory)
    }

    /// Writes the report of a comparison: the anova table, then each model's summary and caterpillar plots.
    @discardableResult
    public static func write(comparison: ModelComparison, to directory: String) throws -> [String] {
        var text = comparison.summary()
        var sections: [(String, [(String, SVGPlot)])] = []
        for (k, fit) in comparison.fits.enumerated() {
            text += "\n— m\(k + 1) —\n" + fit.summary()
            sections.append(("m\(k + 1): \(fit.formula)",
                             try caterpillars(fit, variances: fit.conditionalVariances(), prefix: "m\(k + 1)-")))
        }
        return try write(title: "mlm compare: \(comparison.dataName)", text: text, sections: sections, to: directory)
    }

    private static func write(title: String, text: String, sections: [(String, [(String, SVGPlot)])],
                              to directory: String) throws -> [String] {
        try OutputFile.prepareFolder(directory)
        var files: [String] = []
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(SVGPlot.escape(title))</title>
        <style>body{font-family:sans-serif;max-width:1360px;margin:1em auto;padding:0 1em}
        pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:13px}
        .plots{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0} figcaption{font-size:12px;color:#555}</style>
        </head><body>
        <h1>\(SVGPlot.escape(title))</h1>
        <pre>\(SVGPlot.escape(text))</pre>

        """
        for (heading, plots) in sections where !plots.isEmpty {
            html += "<h2>\(SVGPlot.escape(heading))</h2>\n<div class=\"plots\">\n"
            for (name, plot) in plots {
                let svg = plot.render()
                let file = name + ".svg"
                try save(svg, to: (directory as NSString).appendingPathComponent(file))
                files.append(file)
                html += "<figure>\(svg)<figcaption><a href=\"\(file)\">\(file)</a></figcaption></figure>\n"
            }
            html += "</div>\n"
        }
        html += "</body></html>\n"
        try save(html, to: (directory as NSString).appendingPathComponent("index.html"))
        return ["index.html"] + files
    }

    /// Writes a page or plot; a label byte that is not UTF-8 shows as `\xXX` (the page must be UTF-8).
    private static func save(_ text: String, to path: String) throws {
        try OutputFile.write(text.displayText, to: path)
    }

    /// A file name from a label: letters, digits, '-' and '_' kept, the rest '_'.
    static func fileName(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    // MARK: Plots

    static func caterpillars(_ fit: FitResult, variances: [[[Double]]], prefix: String) -> [(String, SVGPlot)] {
        var plots: [(String, SVGPlot)] = []
        for (k, t) in fit.terms.enumerated() {
            let p = t.dimension, group = fit.uniqueGroupNames[k]
            for (e, effect) in t.effects.enumerated() {
                let modes = t.levels.indices.map { fit.conditionalModes[k][$0 * p + e] }
                let sds = t.levels.indices.map { variances[k][$0][e + e * p].squareRoot() }
                let order = t.levels.indices.sorted { modes[$0] < modes[$1] }
                let shown = evenlySpaced(order, count: caterpillarLevels)
                var plot = SVGPlot(title: "\(group): \(effect)", xLabel: "conditional mode ± 1.96 conditional SD", yLabel: "level (sorted)")
                plot.height = max(420, min(1400, 60 + Double(shown.count) * 6))
                for (row, l) in shown.enumerated() {
                    plot.points.append((modes[l], Double(row)))
                    plot.segments.append((modes[l] - 1.96 * sds[l], Double(row), modes[l] + 1.96 * sds[l], Double(row)))
                }
                plot.vertical = [0]
                plot.yTickLabels = shown.map { t.levels[$0] }
                if shown.count < t.levels.count {
                    plot.note = "\(shown.count) of \(t.levels.count) levels shown, evenly spaced in the sorted order"
                }
                plots.append((prefix + "caterpillar-" + fileName("\(group)-\(effect)"), plot))
            }
        }
        return plots
    }

    static func modeQQPlots(_ fit: FitResult, prefix: String) -> [(String, SVGPlot)] {
        var plots: [(String, SVGPlot)] = []
        for (k, t) in fit.terms.enumerated() {
            let group = fit.uniqueGroupNames[k]
            for (e, effect) in t.effects.enumerated() {
                let modes = t.levels.indices.map { fit.conditionalModes[k][$0 * t.dimension + e] }
                var plot = qqPlot(modes, title: "\(group): \(effect)", yLabel: "conditional mode")
                if modes.count > 1_000 { plot.note = "1,000 of \(modes.count) quantiles shown, evenly spaced" }
                plots.append((prefix + "qq-" + fileName("\(group)-\(effect)"), plot))
            }
        }
        return plots
    }

    /// Level-1 residuals y − Xβ̂ − Zb̂ against fitted values, and their normal QQ plot (every
    /// k-th row); and per term and effect, each level's conditional mode against the mean of
    /// Xβ̂ over its rows (weighted by membership) — all from one pass over the data.
    ///
    /// With a residual-variance function: per variance group, its residuals against fitted
    /// values and the normal QQ plot of its residuals; or, for `~ x`, the residuals against x
    /// and the standardised residuals e/(σ̂ s(x)) against fitted values.
    static func residualPlots(_ fit: FitResult, data: TableSource) throws
        -> (level1: [(String, SVGPlot)], groups: [(String, SVGPlot)], variance: [(String, SVGPlot)]) {
        let stride = max(1, data.rowCount / residualPoints)
        var fitted: [Double] = [], residuals: [Double] = [], groupNames: [String] = [], covariate: [Double] = []
        var weight = fit.terms.map { [Double](repeating: 0, count: $0.levels.count) }, total = weight
        var row = 0
        try Prediction.forEachChunk(SavedModel(fit: fit), data: data, chunkRows: 65_536) { chunk in
            var r = 0
            for complete in chunk.complete {
                defer { row += 1 }
                guard complete else { continue }
                if row % stride == 0 {
                    fitted.append(chunk.conditional[r])
                    residuals.append(chunk.response[r] - chunk.conditional[r])
                    if !chunk.varianceGroup.isEmpty { groupNames.append(chunk.varianceGroup[r]) }
                    if !chunk.varianceCovariate.isEmpty { covariate.append(chunk.varianceCovariate[r]) }
                }
                for t in chunk.terms {
                    for m in 0..<t.memberships {
                        let level = t.levels[r * t.memberships + m], w = t.weights[r * t.memberships + m]
                        guard level >= 0 else { continue }
                        weight[t.saved][level] += w
                        total[t.saved][level] += w * chunk.population[r]
                    }
                }
                r += 1
            }
        }
        var scatter = SVGPlot(title: "Residuals against fitted values", xLabel: "fitted (conditional on the groups)", yLabel: "residual")
        scatter.points = Array(zip(fitted, residuals)).map { (x: $0.0, y: $0.1) }
        scatter.horizontal = [0]
        if stride > 1 { scatter.note = "every \(stride)th row: \(fitted.count) of \(fit.nobs) residuals" }
        var qq = qqPlot(residuals, title: "Normal QQ plot of the residuals", yLabel: "residual")
        if stride > 1 { qq.note = scatter.note }
        var groups: [(String, SVGPlot)] = []
        for (k, t) in fit.terms.enumerated() {
            let group = fit.uniqueGroupNames[k]
            let levels = evenlySpaced(Array(t.levels.indices), count: 1_000)
            for (e, effect) in t.effects.enumerated() {
                var plot = SVGPlot(title: "\(group): \(effect)", xLabel: "mean fixed-part fitted value of the level's rows",
                                   yLabel: "conditional mode")
                plot.points = levels.map { l in (x: total[k][l] / weight[k][l], y: fit.conditionalModes[k][l * t.dimension + e]) }
                plot.horizontal = [0]
                if levels.count < t.levels.count { plot.note = "1,000 of \(t.levels.count) levels shown, evenly spaced" }
                groups.append(("fitted-" + fileName("\(group)-\(effect)"), plot))
            }
        }
        return ([("residuals-fitted", scatter), ("qq-residuals", qq)], groups,
                fit.residualVariance.map { varianceGroupPlots($0, sigma: fit.sigma, fitted: fitted, residuals: residuals,
                                                               groups: groupNames, covariate: covariate, note: scatter.note) } ?? [])
    }

    /// The residual plots of a residual-variance function (see `residualPlots`).
    static func varianceGroupPlots(_ v: ResidualVarianceFit, sigma: Double, fitted: [Double], residuals: [Double],
                                   groups: [String], covariate: [Double], note: String?) -> [(String, SVGPlot)] {
        var plots: [(String, SVGPlot)] = []
        switch v.model {
        case .groups(let g):
            for (name, ratio) in zip(v.names, v.values) {
                let rows = groups.indices.filter { ExactString(groups[$0]) == ExactString(name) }
                var scatter = SVGPlot(title: "\(g) = \(name): residuals against fitted values (SD \(String(format: "%.4g", sigma * ratio)))",
                                      xLabel: "fitted (conditional on the groups)", yLabel: "residual")
                scatter.points = rows.map { (x: fitted[$0], y: residuals[$0]) }
                scatter.horizontal = [0, 2 * sigma * ratio, -2 * sigma * ratio]
                scatter.note = note
                var qq = qqPlot(rows.map { residuals[$0] }, title: "\(g) = \(name): normal QQ plot of the residuals", yLabel: "residual")
                qq.note = note
                plots.append(("residuals-fitted-" + fileName("\(g)-\(name)"), scatter))
                plots.append(("qq-residuals-" + fileName("\(g)-\(name)"), qq))
            }
        case .exponential(let x), .power(let x):
            var against = SVGPlot(title: "Residuals against \(x)", xLabel: x, yLabel: "residual")
            against.points = Array(zip(covariate, residuals)).map { (x: $0.0, y: $0.1) }
            against.horizontal = [0]
            against.note = note
            var standardised = SVGPlot(title: "Standardised residuals e / (σ̂ s(\(x))) against fitted values",
                                       xLabel: "fitted (conditional on the groups)", yLabel: "standardised residual")
            standardised.points = residuals.indices.compactMap { i in
                v.model.weight(covariate[i], parameter: v.values[0]).map { (x: fitted[i], y: residuals[i] * $0.squareRoot() / sigma) }
            }
            standardised.horizontal = [0, 2, -2]
            standardised.note = note
            plots.append(("residuals-" + fileName(x), against))
            plots.append(("standardised-residuals-fitted", standardised))
        }
        return plots
    }

    static func qqPlot(_ values: [Double], title: String, yLabel: String) -> SVGPlot {
        let sorted = values.sorted()
        let n = sorted.count
        let shown = evenlySpaced(Array(0..<n), count: 1_000)
        var plot = SVGPlot(title: title, xLabel: "standard normal quantile", yLabel: yLabel)
        plot.points = shown.map { (x: NormalDistribution.quantile((Double($0) + 0.5) / Double(n)), y: sorted[$0]) }
        // R's qqline: through the first and third quartiles.
        if n >= 4 {
            let q1 = sorted[n / 4], q3 = sorted[(3 * n) / 4]
            let z1 = NormalDistribution.quantile(0.25), z3 = NormalDistribution.quantile(0.75)
            let b = (q3 - q1) / (z3 - z1)
            plot.abline = (q1 - b * z1, b)
        }
        return plot
    }

    static func profilePlots(_ profile: ProfileResult) -> [(String, SVGPlot)] {
        let z = NormalDistribution.quantile((1 + profile.level) / 2)
        return profile.traces.map { parameter, points in
            var plot = SVGPlot(title: "ζ: \(parameter.label)", xLabel: parameter.label, yLabel: "ζ")
            plot.polylines = [points.map { (x: $0.value, y: $0.zeta) }]
            plot.points = points.map { (x: $0.value, y: $0.zeta) }
            plot.horizontal = [-z, z]
            return ("profile-" + fileName(parameter.label), plot)
        }
    }

    static func bootstrapHistograms(_ boot: BootstrapResult) -> [(String, SVGPlot)] {
        boot.intervals.enumerated().map { j, interval in
            let t = boot.parameterValues.map { $0[j] }.filter(\.isFinite)
            var plot = SVGPlot(title: "Bootstrap: \(interval.parameter.label)", xLabel: interval.parameter.label, yLabel: "replicates")
            if let lo = t.min(), let hi = t.max() {
                let bins = 30, width = hi > lo ? (hi - lo) / Double(bins) : 1
                var counts = [Int](repeating: 0, count: bins)
                for v in t { counts[min(bins - 1, Int((v - lo) / width))] += 1 }
                plot.bars = counts.enumerated().map { (x0: lo + Double($0) * width, x1: lo + Double($0 + 1) * width, height: Double($1)) }
            }
            plot.vertical = [interval.lower, interval.upper].filter(\.isFinite)
            plot.note = "\(t.count) replicates; dashed: the \(Int((boot.level * 100).rounded()))% interval"
            return ("bootstrap-" + fileName(interval.parameter.label), plot)
        }
    }

    /// At most `count` elements, evenly spaced, first and last included.
    static func evenlySpaced<T>(_ items: [T], count: Int) -> [T] {
        guard items.count > count, count > 1 else { return items }
        return (0..<count).map { items[Int((Double($0) * Double(items.count - 1) / Double(count - 1)).rounded())] }
    }
}

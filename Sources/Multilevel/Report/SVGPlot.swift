import Foundation

/// A small plot drawn as SVG text: points, interval segments, polylines and histogram bars on
/// linear axes with rounded ticks — enough for the report's caterpillar, residual, QQ, ζ and
/// histogram plots, with no plotting runtime. Every point is one `<circle>`.
struct SVGPlot {
    var title: String
    var xLabel: String
    var yLabel: String
    var width = 640.0, height = 420.0
    var points: [(x: Double, y: Double)] = []
    /// Horizontal or any segments: (x1, y1, x2, y2).
    var segments: [(Double, Double, Double, Double)] = []
    var polylines: [[(x: Double, y: Double)]] = []
    /// Bars from (x0, 0) to (x1, height).
    var bars: [(x0: Double, x1: Double, height: Double)] = []
    /// Reference lines: horizontal at y, vertical at x, or y = a + b x.
    var horizontal: [Double] = []
    var vertical: [Double] = []
    var abline: (a: Double, b: Double)?
    /// A line of small print under the title (e.g. "200 of 2,972 levels shown").
    var note: String?
    /// Labels at integer y positions (caterpillar level names), drawn when few enough.
    var yTickLabels: [String] = []

    private let left = 70.0, right = 20.0, top = 42.0, bottom = 52.0

    func render() -> String {
        var xs = points.map(\.x) + segments.flatMap { [$0.0, $0.2] } + polylines.flatMap { $0.map(\.x) }
            + bars.flatMap { [$0.x0, $0.x1] } + vertical
        var ys = points.map(\.y) + segments.flatMap { [$0.1, $0.3] } + polylines.flatMap { $0.map(\.y) }
            + bars.map(\.height) + horizontal
        if !bars.isEmpty { ys.append(0) }
        xs = xs.filter(\.isFinite); ys = ys.filter(\.isFinite)
        let (x0, x1) = Self.range(xs), (y0, y1) = Self.range(ys)
        let plotW = width - left - right, plotH = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * plotW }
        func py(_ y: Double) -> Double { top + plotH - (y - y0) / (y1 - y0) * plotH }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="white"/>
        <text x="\(f(width / 2))" y="18" text-anchor="middle" font-size="14">\(Self.escape(title))</text>

        """
        if let note { s += "<text x=\"\(f(width / 2))\" y=\"33\" text-anchor=\"middle\" fill=\"#555\">\(Self.escape(note))</text>\n" }
        s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#999\"/>\n"
        for t in Self.ticks(x0, x1) {
            s += "<line x1=\"\(f(px(t)))\" y1=\"\(f(top + plotH))\" x2=\"\(f(px(t)))\" y2=\"\(f(top + plotH + 4))\" stroke=\"#333\"/>"
            s += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(Self.label(t))</text>\n"
        }
        if !yTickLabels.isEmpty && yTickLabels.count <= 40 {
            for (i, name) in yTickLabels.enumerated() {
                s += "<text x=\"\(f(left - 4))\" y=\"\(f(py(Double(i)) + 3))\" text-anchor=\"end\" font-size=\"9\">\(Self.escape(name))</text>\n"
            }
        } else {
            for t in Self.ticks(y0, y1) {
                s += "<line x1=\"\(f(left - 4))\" y1=\"\(f(py(t)))\" x2=\"\(f(left))\" y2=\"\(f(py(t)))\" stroke=\"#333\"/>"
                s += "<text x=\"\(f(left - 6))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(Self.label(t))</text>\n"
            }
        }
        s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 10))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text x=\"14\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(f(top + plotH / 2)))\">\(Self.escape(yLabel))</text>\n"
        for b in bars {
            s += "<rect x=\"\(f(px(b.x0)))\" y=\"\(f(py(b.height)))\" width=\"\(f(max(0, px(b.x1) - px(b.x0))))\" height=\"\(f(max(0, py(0) - py(b.height))))\" fill=\"#9ecae1\" stroke=\"#3182bd\"/>\n"
        }
        for h in horizontal { s += "<line x1=\"\(f(left))\" y1=\"\(f(py(h)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(py(h)))\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\n" }
        for v in vertical { s += "<line x1=\"\(f(px(v)))\" y1=\"\(f(top))\" x2=\"\(f(px(v)))\" y2=\"\(f(top + plotH))\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\n" }
        if let (a, b) = abline {
            s += "<line x1=\"\(f(px(x0)))\" y1=\"\(f(py(a + b * x0)))\" x2=\"\(f(px(x1)))\" y2=\"\(f(py(a + b * x1)))\" stroke=\"#d62728\"/>\n"
        }
        for (a, b, c, d) in segments {
            s += "<line x1=\"\(f(px(a)))\" y1=\"\(f(py(b)))\" x2=\"\(f(px(c)))\" y2=\"\(f(py(d)))\" stroke=\"#777\"/>\n"
        }
        for line in polylines where !line.isEmpty {
            s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\""
                + line.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ") + "\"/>\n"
        }
        for p in points where p.x.isFinite && p.y.isFinite {
            s += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.2\" fill=\"#1f77b4\"/>\n"
        }
        return s + "</svg>\n"
    }

    /// The data range, widened by 4% (or to ±1 around a single value).
    static func range(_ v: [Double]) -> (Double, Double) {
        guard let lo = v.min(), let hi = v.max() else { return (0, 1) }
        if hi - lo < 1e-12 * max(1, abs(hi)) { return (lo - 1, hi + 1) }
        let pad = (hi - lo) * 0.04
        return (lo - pad, hi + pad)
    }

    /// About five round tick values inside [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let raw = (hi - lo) / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var t = ceil(lo / step) * step, out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(abs(t) < step * 1e-9 ? 0 : t); t += step }
        return out
    }

    static func label(_ v: Double) -> String { String(format: "%g", (v * 1e6).rounded() / 1e6) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

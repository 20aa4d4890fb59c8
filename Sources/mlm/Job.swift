import Foundation
import Multilevel

/// This process's place in the job: one of `mpirun`'s ranks, or the only process.
enum Job {
    static let communicator: Communicator = MPICommunicator.start()

    /// Whether this process prints and writes files (rank 0 does; the others compute).
    static var isRoot: Bool { communicator.isRoot }

    /// Ends MPI (a no-op without it); call once, before exiting.
    static func finish() {
        (communicator as? MPICommunicator)?.finish()
    }
}

/// A progress line on standard error, shown by rank 0: done/total, rate and time left.
/// On a terminal the line is redrawn in place (at most 10 times a second); otherwise a plain
/// line is written at each tenth of the work, so logs stay short.
final class ProgressLine {
    private let label: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var lastTenth = -1
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var initial: Int?

    init(_ label: String) { self.label = label }

    func update(done: Int, total: Int) {
        if initial == nil { initial = done }
        let now = Date()
        let elapsed = now.timeIntervalSince(start)
        let fresh = done - (initial ?? 0)
        let rate = elapsed > 0 ? Double(fresh) / elapsed : 0
        let left = rate > 0 ? Double(total - done) / rate : .nan
        var line = "\(label): \(done)/\(total)"
        if fresh > 0 { line += String(format: ", %.3g/s", rate) }
        if left.isFinite && done < total { line += ", about \(Self.duration(left)) left" }
        if done == total { line += String(format: ", %.1f s", elapsed) }
        if isTerminal {
            guard done == total || now.timeIntervalSince(lastDraw) >= 0.1 else { return }
            lastDraw = now
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (done == total ? "\n" : "")).utf8))
        } else {
            let tenth = total > 0 ? done * 10 / total : 10
            guard tenth != lastTenth else { return }
            lastTenth = tenth
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    private static func duration(_ seconds: Double) -> String {
        seconds < 90 ? String(format: "%.0f s", seconds)
            : seconds < 5400 ? String(format: "%.0f min", seconds / 60) : String(format: "%.1f h", seconds / 3600)
    }
}

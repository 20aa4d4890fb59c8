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

    /// Runs one stage of the command (checking the outputs, opening the data, the fit, the
    /// bootstrap, the profile, writing the outputs) on every rank, and agrees on its outcome:
    /// if it failed on any rank, every rank throws the error of the lowest failing rank as an
    /// `AgreedFailure`, which rank 0 alone prints. A stage that only rank 0 works in (the
    /// checks and writes) keeps the others waiting at its end rather than gone, so rank 0's
    /// error there still reaches them. Inside a stage no rank may throw where another would
    /// go on to talk to it: a stage's collectives are the library's own, which agree likewise.
    static func stage<T>(_ body: () throws -> T) throws -> T {
        do {
            return try communicator.agree(body)
        } catch let error as InputError {
            throw AgreedFailure(message: error.message)
        }
    }

    /// An error every rank of the job has met (see `stage`).
    struct AgreedFailure: Error { let message: String }

    /// Ends every rank of the job at once with `status` (MPI_Abort); without mpirun, nothing.
    static func abortOtherRanks(status: Int32) {
        guard let mpi = communicator as? MPICommunicator, mpi.size > 1 else { return }
        mpi.abort(code: status)
    }
}

/// Exit statuses (README, "Exit status").
enum ExitStatus {
    /// Bad input: data, formula, model, an output that cannot be written, a refused checkpoint.
    static let inputError: Int32 = 1
    /// A command line that does not parse or fails its checks (unknown option, `--level 2`).
    static let usage: Int32 = 2
}

/// Prints `mlm: error: <message>` on stderr, as one line whatever the message holds.
func printError(_ message: String) {
    let line = message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty }.joined(separator: " ")
    FileHandle.standardError.write(Data("mlm: error: \(line)\n".fileBytes))
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

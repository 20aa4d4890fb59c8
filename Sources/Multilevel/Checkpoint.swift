import Foundation

/// A file of finished jobs (bootstrap replicates, profile traces), so that a killed run,
/// started again with the same command, does only what is left (DESIGN §6).
///
/// The first line names the model the jobs belong to; then one line per finished job:
/// `<kind> <job> <hex bytes of its result>`. Lines are appended and flushed as jobs finish; a
/// line cut short by a kill is ignored. A file written for another model is refused rather
/// than mixed in.
final class Checkpoint {
    let path: String
    private var records: [String: [Int: [UInt8]]] = [:]
    private var stream: OutputFile.Stream

    /// Opens (or creates) the checkpoint for the model fitted in `fit`. The file is appended to
    /// in place, through a symbolic link; a folder, device or FIFO is refused (`OutputFile`).
    init(path: String, fit: FitResult) throws {
        self.path = path
        let header = "mlm checkpoint 1 \(Self.fingerprint(fit))"
        let opened: (existing: Data?, real: String, stream: OutputFile.Stream)
        do {
            opened = try OutputFile.openForAppending(path, header: header + "\n")
        } catch let e as InputError {
            throw InputError(e.message.replacingOccurrences(of: "'\(path)'", with: "the checkpoint '\(path)'"))
        }
        stream = opened.stream
        if let data = opened.existing {
            guard let text = String(data: data, encoding: .utf8) else {
                throw InputError("cannot read the checkpoint '\(path)': it is not an mlm checkpoint; delete it or give another --checkpoint file")
            }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let complete = text.hasSuffix("\n")
            if !complete { lines.removeLast() }      // cut short by a kill
            if lines.last == "" { lines.removeLast() }
            guard let first = lines.first else { throw InputError("the checkpoint '\(path)' is empty; delete it to start afresh") }
            guard first == header else {
                throw InputError("the checkpoint '\(path)' was written for another model or data; delete it or give another --checkpoint file")
            }
            for line in lines.dropFirst() {
                let parts = line.split(separator: " ")
                guard parts.count == 3, let job = Int(parts[1]), let bytes = Self.bytes(hex: parts[2]) else { continue }
                records[String(parts[0]), default: [:]][job] = bytes
            }
            // Rewrite without a partial last line, so appends start on a fresh line (at the
            // link's target, so the appending stream, opened on it, sees the new file).
            if !complete {
                try OutputFile.write(lines.joined(separator: "\n") + "\n", to: opened.real)
                stream = try OutputFile.Stream(descriptor: open(opened.real, O_WRONLY | O_APPEND | O_CLOEXEC), shownAs: path)
            }
        }
    }

    /// The finished jobs of one kind (e.g. `bootstrap-<seed>`), by job number.
    func finished(_ kind: String) -> [Int: [UInt8]] { records[kind] ?? [:] }

    /// Records a finished job (written and flushed at once).
    func record(_ kind: String, job: Int, _ bytes: [UInt8]) throws {
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        do {
            try stream.write(Data("\(kind) \(job) \(hex)\n".utf8))
            try stream.synchronize()
        } catch let e as InputError {
            throw InputError(e.message.replacingOccurrences(of: "'\(path)'", with: "the checkpoint '\(path)'"))
        }
        records[kind, default: [:]][job] = bytes
    }

    /// The model's identity: formula, data, criterion, n, the weights column if any, and the
    /// bits of θ̂, β̂ and σ̂.
    private static func fingerprint(_ fit: FitResult) -> String {
        var w = ByteWriter()
        w.string(fit.formula); w.string(fit.dataName); w.bool(fit.reml); w.int(fit.nobs)
        if let weights = fit.weights { w.string(weights) }
        w.doubles(fit.theta); w.doubles(fit.beta); w.double(fit.sigma)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325           // FNV-1a, 64 bits
        for b in w.bytes { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", hash)
    }

    private static func bytes(hex: Substring) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(hex.count / 2)
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            guard let b = UInt8(hex[i..<j], radix: 16) else { return nil }
            out.append(b)
            i = j
        }
        return out
    }
}

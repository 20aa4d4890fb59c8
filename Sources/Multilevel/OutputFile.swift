import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Every file mlm writes goes through here (`--json`, `--ranef`, `--out`, `--bootstrap-table`,
/// `--profile-table`, the files of `--report`, `--checkpoint`, `simulate --out`), so that an
/// output path means one thing everywhere:
///
/// - a regular file, or a path where none exists yet: written beside the target under a
///   temporary name, then renamed onto it, so a failed write never leaves half a file and a
///   reader never sees one;
/// - a symbolic link: followed (the whole chain, also a dangling one), and the file it points
///   at is written as above, so the link stays a link;
/// - anything else — a folder, a device (`/dev/full`, `/dev/null`), a pipe or FIFO, a socket —
///   is refused with one line naming the path, never replaced by a regular file.
///
/// `check` answers before a long fit whether a later write could succeed; `write` does it.
public enum OutputFile {
    /// Fails now, in one line naming `option` and `path`, if `path` could not be written later:
    /// it is not a regular file (a folder, a device, a FIFO), or its folder does not exist or
    /// does not take new files (e.g. `/proc`, a read-only mount).
    public static func check(_ path: String, option: String) throws {
        guard !path.isEmpty else { throw InputError("\(option) needs a file name") }
        let target: String
        do { target = try resolve(path) } catch let e as Refusal { throw InputError("\(option) '\(path)': \(e.reason)") }
        let folder = folderOf(target)
        guard canCreateFiles(in: folder) else {
            throw InputError("\(option) '\(path)': the folder '\(folder)' does not exist or is not writable")
        }
    }

    /// Fails now if `path` could not be made a folder of output files later (`--report DIR`):
    /// it exists and is not a folder, or it does not exist and its parent folder takes no new
    /// entries, or it is a folder that takes no new files.
    public static func checkFolder(_ path: String, option: String) throws {
        guard !path.isEmpty else { throw InputError("\(option) needs a folder name") }
        let target: String
        do { target = try resolve(path, folder: true) } catch let e as Refusal { throw InputError("\(option) '\(path)': \(e.reason)") }
        if kind(of: target) == S_IFDIR {
            guard canCreateFiles(in: target) else { throw InputError("\(option) '\(path)': the folder is not writable") }
        } else {
            let parent = folderOf(target)
            guard canCreateFiles(in: parent) else {
                throw InputError("\(option) '\(path)': the folder '\(parent)' does not exist or is not writable")
            }
        }
    }

    /// Creates the folder `path` (and missing parents) if need be, following a symbolic link to
    /// one; returns the folder's real path, for the files written into it.
    @discardableResult
    public static func prepareFolder(_ path: String) throws -> String {
        let target: String
        do { target = try resolve(path, folder: true) } catch let e as Refusal { throw InputError("cannot write the folder '\(path)': \(e.reason)") }
        if kind(of: target) == S_IFDIR { return target }
        if mkdir(target, 0o777) != 0 && errno != EEXIST {
            let code = errno
            guard code == ENOENT, (try? FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)) != nil else {
                throw InputError("cannot create the folder '\(path)': \(reason(errno: code))")
            }
        }
        return target
    }

    /// Writes `text` as UTF-8 to `path` (see the type's rules).
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.fileBytes), to: path)  // labels as the bytes they were in the data file
    }

    /// Writes `data` to `path` (see the type's rules).
    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { temporary in
            let stream = try Stream(descriptor: open(temporary, O_WRONLY | O_TRUNC | O_CLOEXEC), shownAs: path)
            try stream.write(data)
            try stream.close()
        }
    }

    /// Lets `body` write the file at a temporary path beside the target (for writers that take a
    /// path, such as HDF5's), then renames it onto the target; a throwing body leaves nothing.
    /// The temporary name in any error message is replaced by `path`.
    public static func write(to path: String, _ body: (_ temporary: String) throws -> Void) throws {
        let temporary = try makeTemporary(for: path)
        do {
            try body(temporary.path)
            try commit(temporary, as: path)
        } catch let e as InputError {
            unlink(temporary.path)
            throw InputError(e.message.replacingOccurrences(of: temporary.path, with: path))
        } catch {
            unlink(temporary.path)
            throw error
        }
    }

    /// A file written in pieces (`mlm predict --out`): appended to a temporary file beside the
    /// target and renamed onto it by `commit()`; dropped without one.
    public final class Output {
        private let temporary: Temporary
        private let stream: Stream
        private let path: String
        private var done = false

        public init(path: String) throws {
            self.path = path
            temporary = try OutputFile.makeTemporary(for: path)
            do {
                stream = try Stream(descriptor: open(temporary.path, O_WRONLY | O_TRUNC | O_CLOEXEC), shownAs: path)
            } catch {
                unlink(temporary.path)
                throw error
            }
        }

        public func write(_ data: Data) throws { try stream.write(data) }

        /// Closes the file and puts it at the path.
        public func commit() throws {
            done = true
            do {
                try stream.close()
                try OutputFile.commit(temporary, as: path)
            } catch {
                unlink(temporary.path)
                throw error
            }
        }

        deinit {
            if !done { try? stream.close(); unlink(temporary.path) }
        }
    }

    /// A file to append to in place, creating it if it does not exist, through symbolic links
    /// (`--checkpoint`): the contents it holds already (nil when it is new) and a stream at its end.
    static func openForAppending(_ path: String, header: String) throws -> (existing: Data?, real: String, stream: Stream) {
        let target: String
        do { target = try resolve(path) } catch let e as Refusal { throw InputError("cannot write '\(path)': \(e.reason)") }
        var existing: Data?
        if kind(of: target) != nil {
            guard let data = FileManager.default.contents(atPath: target) else {
                throw InputError("cannot read '\(path)': \(reason(errno: errno))")
            }
            existing = data
        } else {
            let descriptor = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            let stream = try Stream(descriptor: descriptor, shownAs: path)
            try stream.write(Data(header.utf8))
            try stream.close()
        }
        return (existing, target, try Stream(descriptor: open(target, O_WRONLY | O_APPEND | O_CLOEXEC), shownAs: path))
    }

    // MARK: Writing

    /// A file descriptor written with the system's own errors (`No space left on device`,
    /// `File too large`), each reported in one line naming the output's path.
    final class Stream {
        private var descriptor: Int32
        private let path: String

        init(descriptor: Int32, shownAs path: String) throws {
            guard descriptor >= 0 else { throw InputError("cannot write '\(path)': \(reason(errno: errno))") }
            self.descriptor = descriptor
            self.path = path
        }

        func write(_ data: Data) throws {
            try data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw InputError("cannot write '\(path)': \(reason(errno: errno))")
                    }
                    offset += n
                }
            }
        }

        /// Makes what was written durable (a checkpoint line survives a crash of the machine).
        func synchronize() throws {
            guard fsync(descriptor) == 0 || errno == EINVAL else {
                throw InputError("cannot write '\(path)': \(reason(errno: errno))")
            }
        }

        func close() throws {
            guard descriptor >= 0 else { return }
            defer { descriptor = -1 }
            guard Glibc.close(descriptor) == 0 else { throw InputError("cannot write '\(path)': \(reason(errno: errno))") }
        }

        deinit { if descriptor >= 0 { Glibc.close(descriptor) } }
    }

    struct Temporary {
        let path: String
        /// The real path it is renamed onto (symbolic links followed).
        let target: String
    }

    /// An empty file beside the real target of `path`, with the permissions the output will keep:
    /// those of the file it replaces, else the usual ones for a new file (0666 less the umask).
    static func makeTemporary(for path: String) throws -> Temporary {
        let target: String
        do { target = try resolve(path) } catch let e as Refusal { throw InputError("cannot write '\(path)': \(e.reason)") }
        let folder = folderOf(target)
        let name = (target as NSString).lastPathComponent
        var template = Array(((folder as NSString).appendingPathComponent(".\(name).mlm-XXXXXX")).utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw InputError("cannot write '\(path)': \(reason(errno: errno))") }
        let temporary = String(cString: template)
        var info = stat()
        let mode: mode_t
        if stat(target, &info) == 0 {
            mode = info.st_mode & 0o7777
        } else {
            let mask = umask(0o022); umask(mask)
            mode = 0o666 & ~mask
        }
        fchmod(descriptor, mode)
        Glibc.close(descriptor)
        return Temporary(path: temporary, target: target)
    }

    static func commit(_ temporary: Temporary, as path: String) throws {
        // The target may have become something else since: still never replace a non-file.
        if let k = kind(of: temporary.target), k != S_IFREG {
            throw InputError("cannot write '\(path)': \(description(of: k))")
        }
        guard rename(temporary.path, temporary.target) == 0 else {
            throw InputError("cannot write '\(path)': \(reason(errno: errno))")
        }
    }

    // MARK: Paths

    /// Why a path is not an output.
    struct Refusal: Error { let reason: String }

    /// The path to write for `path`: symbolic links followed (the last component, as often as
    /// it takes; a dangling link gives the path it names). Refuses anything that exists and is
    /// not a regular file (or, with `folder`, not a folder).
    static func resolve(_ path: String, folder: Bool = false) throws -> String {
        // /dev/stdout, /dev/fd/N, /proc/self/fd/N name a descriptor of this process, whatever it
        // points at; renaming onto what it points at would take the file from under it.
        if isDescriptor(path) { throw Refusal(reason: "names an open file descriptor, not a file (give '-' for standard output)") }
        // What the path finally is, links followed (also /dev/stdout's /proc magic links).
        if let k = kind(of: path, following: true), k != (folder ? S_IFDIR : S_IFREG) {
            if folder { throw Refusal(reason: "it exists and is not a folder") }
            throw Refusal(reason: description(of: k))
        }
        var current = path
        for _ in 0..<40 {
            guard kind(of: current) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n >= 0 else { throw Refusal(reason: reason(errno: errno)) }
            let destination = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            current = destination.hasPrefix("/") ? destination
                : ((current as NSString).deletingLastPathComponent as NSString).appendingPathComponent(destination)
            if isDescriptor(current) { throw Refusal(reason: "names an open file descriptor, not a file (give '-' for standard output)") }
        }
        throw Refusal(reason: reason(errno: ELOOP))
    }

    /// Whether `path` is one of the kernel's names for a file descriptor.
    static func isDescriptor(_ path: String) -> Bool {
        // Components as written (not Foundation's standardizingPath, which follows the links).
        guard path.hasPrefix("/") else { return false }
        let parts = path.split(separator: "/").filter { $0 != "." }
        if parts.count == 2, parts[0] == "dev", ["stdin", "stdout", "stderr"].contains(parts[1]) { return true }
        if parts.count >= 3, parts[0] == "dev", parts[1] == "fd" { return true }
        return parts.count >= 4 && parts[0] == "proc" && parts[2] == "fd" && (parts[1] == "self" || Int(parts[1]) != nil)
    }

    static func folderOf(_ path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? "." : folder
    }

    /// The file type bits (`S_IFREG`, `S_IFDIR`, …) of what is at `path`, or nil if nothing is.
    static func kind(of path: String, following: Bool = false) -> mode_t? {
        var info = stat()
        guard (following ? stat(path, &info) : lstat(path, &info)) == 0 else { return nil }
        return info.st_mode & S_IFMT
    }

    static func description(of kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return reason(errno: EISDIR)
        case S_IFCHR: return "not a regular file (a character device); mlm writes only regular files"
        case S_IFBLK: return "not a regular file (a block device); mlm writes only regular files"
        case S_IFIFO: return "not a regular file (a pipe or FIFO); mlm writes only regular files"
        case S_IFSOCK: return "not a regular file (a socket); mlm writes only regular files"
        default: return "not a regular file; mlm writes only regular files"
        }
    }

    /// Whether a new file can be made in `folder`: tried, not guessed from permission bits
    /// (root may write anywhere the bits forbid, and nowhere in `/proc`).
    static func canCreateFiles(in folder: String) -> Bool {
        guard kind(of: folder, following: true) == S_IFDIR else { return false }
        var template = Array(((folder as NSString).appendingPathComponent(".mlm-probe-XXXXXX")).utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { return false }
        Glibc.close(descriptor)
        unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        return true
    }

    static func reason(errno code: Int) -> String { String(cString: strerror(Int32(code))) }
    static func reason(errno code: Int32) -> String { String(cString: strerror(code)) }
}

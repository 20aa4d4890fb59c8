import Foundation

/// The ranks of a job and the messages between them (DESIGN §6).
///
/// `SingleProcess` is the job without `mpirun`; `MPICommunicator` is the job under it. Messages
/// are byte arrays (`WireFormat`). Every call is made from the thread that created the
/// communicator (MPI's "funneled" threading): worker threads compute, the main thread talks.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Root's `bytes` on every rank.
    func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8]
    /// Every rank's bytes, in rank order, on every rank.
    func allGather(_ bytes: [UInt8]) -> [[UInt8]]
    func send(_ bytes: [UInt8], to rank: Int, tag: Int)
    /// Blocks until a message with `tag` arrives from `rank` (any rank if nil).
    func receive(from rank: Int?, tag: Int) -> (source: Int, bytes: [UInt8])
    /// Whether a message with `tag` is waiting (any source); never blocks.
    func hasMessage(tag: Int) -> Bool
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Runs `body` on every rank and agrees on the outcome: if any rank failed, every rank throws
    /// the error of the lowest failing rank, so no rank waits forever for one that has stopped.
    public func agree<T>(_ body: () throws -> T) throws -> T {
        var value: T?
        var message = ""
        do { value = try body() } catch let e as InputError { message = e.message } catch { message = "\(error)" }
        if size > 1 {
            let all = allGather(Array(message.utf8))
            if let first = all.first(where: { !$0.isEmpty }) { throw InputError(String(decoding: first, as: UTF8.self)) }
        } else if !message.isEmpty {
            throw InputError(message)
        }
        return value!
    }

    /// The rows of `total` this rank reads: whole groups of `unit` rows, split as evenly as the
    /// groups allow, in rank order (so rank 0 holds the first rows).
    public func slab(of total: Int, unit: Int) -> Range<Int> {
        let groups = (total + unit - 1) / unit
        let first = rank * groups / size, last = (rank + 1) * groups / size
        return min(first * unit, total)..<min(last * unit, total)
    }
}

/// The job as one process: every collective is the identity.
public final class SingleProcess: Communicator, @unchecked Sendable {
    private var mailbox: [(tag: Int, bytes: [UInt8])] = []
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] { bytes }
    public func allGather(_ bytes: [UInt8]) -> [[UInt8]] { [bytes] }
    public func send(_ bytes: [UInt8], to rank: Int, tag: Int) { mailbox.append((tag, bytes)) }
    public func receive(from rank: Int?, tag: Int) -> (source: Int, bytes: [UInt8]) {
        guard let i = mailbox.firstIndex(where: { $0.tag == tag }) else {
            preconditionFailure("a single process waited for a message it never sent")
        }
        return (0, mailbox.remove(at: i).bytes)
    }
    public func hasMessage(tag: Int) -> Bool { mailbox.contains { $0.tag == tag } }
}

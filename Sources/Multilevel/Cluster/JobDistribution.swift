import Foundation

/// Hands independent jobs (bootstrap replicates, profile traces) to every thread of every rank,
/// and brings each result to rank 0 (DESIGN §6).
///
/// Rank 0 keeps the queue. Its own threads take jobs one at a time; other ranks ask for a batch
/// of jobs, compute it on their threads and send the results back with their next request, so
/// a slow rank takes fewer batches. Only the thread that called `run` sends or receives MPI
/// messages. A job's result depends only on the job (never on the rank or thread that ran it),
/// so the results are the same whatever the number of ranks and threads.
public struct JobDistribution {
    public let communicator: Communicator
    /// Threads per rank that run jobs.
    public let threads: Int
    /// The most jobs per request from a rank other than 0 (a multiple of its threads keeps them
    /// busy); fewer when few are left.
    public let batch: Int

    public init(communicator: Communicator, threads: Int, batch: Int? = nil) {
        self.communicator = communicator
        self.threads = max(1, threads)
        self.batch = batch ?? 4 * max(1, threads)
    }

    /// Every rank calls `run` the same number of times in the same order; each call talks on
    /// its own pair of tags, so a rank that has moved on to the next call cannot be answered
    /// by the previous one.
    nonisolated(unsafe) private static var calls = 0

    /// Runs `work(job, thread)` for every job of `jobs` somewhere in the job. On rank 0,
    /// `delivered(job, result)` is called on the calling thread for each result as it arrives
    /// (in no fixed order); other ranks return when rank 0 has no more jobs. `jobs` matters on
    /// rank 0 only. `thread` (0 ..< threads) lets a job use per-thread workspace.
    public func run(jobs: [Int], work: @escaping @Sendable (_ job: Int, _ thread: Int) -> [UInt8],
                    delivered: (_ job: Int, _ result: [UInt8]) throws -> Void) throws {
        Self.calls += 1
        let tags = (request: 100 + 2 * Self.calls, assign: 101 + 2 * Self.calls)
        if communicator.isRoot { try serve(jobs, tags: tags, work: work, delivered: delivered) } else { ask(tags: tags, work: work) }
    }

    /// Rank 0: its threads work from the queue while this thread answers the other ranks.
    private func serve(_ jobs: [Int], tags: (request: Int, assign: Int), work: @escaping @Sendable (Int, Int) -> [UInt8],
                       delivered: (Int, [UInt8]) throws -> Void) throws {
        let queue = SharedQueue(jobs)
        let outbox = Outbox()
        let group = DispatchGroup()
        for t in 0..<threads {
            DispatchQueue.global().async(group: group) {
                while let job = queue.take(1).first { outbox.post(job, work(job, t)) }
            }
        }
        var received = 0, stopped = 0
        var failure: Error?
        func deliver(_ job: Int, _ result: [UInt8]) {
            received += 1
            if failure == nil { do { try delivered(job, result) } catch { failure = error; queue.clear() } }
        }
        // Until every job handed out has come back and every other rank has been told to stop.
        while !(queue.isEmpty && received == queue.handedOut && stopped == communicator.size - 1) {
            var idle = true
            for (job, result) in outbox.drain() { deliver(job, result); idle = false }
            if communicator.size > 1, communicator.hasMessage(tag: tags.request) {
                let (source, bytes) = communicator.receive(from: nil, tag: tags.request)
                var r = ByteReader(bytes)
                let count = r.int()
                for _ in 0..<count { let job = r.int(); deliver(job, r.bytes()) }
                // Guided: smaller batches as the queue empties, so no rank is left holding the last jobs.
                let next = queue.take(max(1, min(batch, queue.remaining / (2 * communicator.size))))
                if next.isEmpty { stopped += 1 }
                // A rank told to stop has sent all its results; jobs it never took stay with others.
                var w = ByteWriter()
                w.ints(next)
                communicator.send(w.bytes, to: source, tag: tags.assign)
                idle = false
            }
            if idle { usleep(500) }
        }
        group.wait()
        if let failure { throw failure }
    }

    /// Ranks after 0: ask for a batch, run it on the threads, send the results with the next request.
    private func ask(tags: (request: Int, assign: Int), work: @escaping @Sendable (Int, Int) -> [UInt8]) {
        var results: [(Int, [UInt8])] = []
        while true {
            var w = ByteWriter()
            w.int(results.count)
            for (job, bytes) in results { w.int(job); w.bytes(bytes) }
            communicator.send(w.bytes, to: 0, tag: tags.request)
            var r = ByteReader(communicator.receive(from: 0, tag: tags.assign).bytes)
            let jobs = r.ints()
            if jobs.isEmpty { return }
            let queue = SharedQueue(jobs), outbox = Outbox()
            DispatchQueue.concurrentPerform(iterations: min(threads, jobs.count)) { t in
                while let job = queue.take(1).first { outbox.post(job, work(job, t)) }
            }
            results = outbox.drain()
        }
    }
}

extension JobDistribution {
    /// Runs jobs 0 ..< count and returns their results in job order on rank 0 (nil on the
    /// other ranks). With a checkpoint, jobs of this `kind` it already holds are not run again
    /// and each new result is recorded as it arrives; `progress` gets (done, count) on rank 0.
    ///
    /// Only rank 0 touches the checkpoint, so whether it could be opened, and whether every
    /// result could be recorded, is agreed on by every rank: a refused checkpoint or a write
    /// that fails part-way (a full disk) stops every rank with rank 0's error, none left
    /// waiting for jobs or messages.
    func run(count: Int, kind: String, checkpoint path: String?, fit: FitResult, progress: ((Int, Int) -> Void)?,
             work: @escaping @Sendable (_ job: Int, _ thread: Int) -> [UInt8]) throws -> [[UInt8]]? {
        var results: [Int: [UInt8]] = [:]
        let checkpoint: Checkpoint? = try communicator.agree {
            guard communicator.isRoot, let path else { return nil }
            let opened = try Checkpoint(path: path, fit: fit)
            results = opened.finished(kind).filter { $0.key < count }
            return opened
        }
        if communicator.isRoot { progress?(results.count, count) }
        try communicator.agree {
            try run(jobs: (0..<count).filter { results[$0] == nil }, work: work, delivered: { job, bytes in
                try checkpoint?.record(kind, job: job, bytes)
                results[job] = bytes
                progress?(results.count, count)
            })
        }
        return communicator.isRoot ? (0..<count).map { results[$0]! } : nil
    }
}

/// Job numbers handed out in order, under a lock.
private final class SharedQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var jobs: [Int]
    private var next = 0
    init(_ jobs: [Int]) { self.jobs = jobs }

    func take(_ n: Int) -> [Int] {
        lock.lock(); defer { lock.unlock() }
        let end = min(jobs.count, next + n)
        defer { next = end }
        return Array(jobs[next..<end])
    }

    /// Hands out nothing more (after a failure).
    func clear() { lock.lock(); jobs.removeSubrange(next...); lock.unlock() }
    var handedOut: Int { lock.lock(); defer { lock.unlock() }; return next }
    var remaining: Int { lock.lock(); defer { lock.unlock() }; return jobs.count - next }
    var isEmpty: Bool { lock.lock(); defer { lock.unlock() }; return next == jobs.count }
}

/// Results posted by worker threads, collected by the thread that talks to the other ranks.
private final class Outbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [(Int, [UInt8])] = []
    func post(_ job: Int, _ result: [UInt8]) { lock.lock(); items.append((job, result)); lock.unlock() }
    func drain() -> [(Int, [UInt8])] { lock.lock(); defer { items = []; lock.unlock() }; return items }
}

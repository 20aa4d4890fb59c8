import CMPI
import Foundation

/// The job under `mpirun`: MPI_COMM_WORLD.
///
/// `start()` initialises MPI only when a launcher started this process (OpenMPI and PMIx set
/// their rank variables), so a plain `mlm fit` neither needs nor waits for an MPI runtime.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    private let world: MPI_Comm

    private init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        world = mlm_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
    }

    /// Whether a launcher (mpirun, srun with PMIx) started this process as one rank of a job.
    public static var isLaunched: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { env[$0] != nil }
    }

    /// The job's communicator: MPI's when launched by `mpirun`, else a single process.
    public static func start() -> Communicator {
        isLaunched ? MPICommunicator() : SingleProcess()
    }

    /// Ends MPI; call once, after the last message.
    public func finish() { MPI_Finalize() }

    /// Ends every rank of the job now, with exit status `code` (MPI_Abort): for an error met by
    /// this rank alone, while the others may be waiting for it in a message or a collective.
    public func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }

    public func broadcast(_ bytes: [UInt8], root: Int) -> [UInt8] {
        var count = Int64(bytes.count)
        MPI_Bcast(&count, 1, mlm_mpi_long(), Int32(root), world)
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        transfer(count: Int(count)) { offset, n in
            buffer.withUnsafeMutableBytes { _ = MPI_Bcast($0.baseAddress! + offset, Int32(n), mlm_mpi_char(), Int32(root), world) }
        }
        return buffer
    }

    public func allGather(_ bytes: [UInt8]) -> [[UInt8]] {
        (0..<size).map { broadcast(rank == $0 ? bytes : [], root: $0) }
    }

    public func send(_ bytes: [UInt8], to target: Int, tag: Int) {
        var count = Int64(bytes.count)
        MPI_Send(&count, 1, mlm_mpi_long(), Int32(target), Int32(tag), world)
        transfer(count: bytes.count) { offset, n in
            bytes.withUnsafeBytes { _ = MPI_Send($0.baseAddress! + offset, Int32(n), mlm_mpi_char(), Int32(target), Int32(tag), world) }
        }
    }

    public func receive(from source: Int?, tag: Int) -> (source: Int, bytes: [UInt8]) {
        var count: Int64 = 0
        var status = MPI_Status()
        MPI_Recv(&count, 1, mlm_mpi_long(), source.map(Int32.init) ?? mlm_mpi_any_source(), Int32(tag), world, &status)
        let from = status.MPI_SOURCE
        var buffer = [UInt8](repeating: 0, count: Int(count))
        transfer(count: Int(count)) { offset, n in
            buffer.withUnsafeMutableBytes { _ = MPI_Recv($0.baseAddress! + offset, Int32(n), mlm_mpi_char(), from, Int32(tag), world, &status) }
        }
        return (Int(from), buffer)
    }

    public func hasMessage(tag: Int) -> Bool {
        var flag: Int32 = 0
        var status = MPI_Status()
        MPI_Iprobe(mlm_mpi_any_source(), Int32(tag), world, &flag, &status)
        return flag != 0
    }

    /// MPI counts are 32-bit: long messages go in pieces of at most 1 GiB.
    private func transfer(count: Int, _ piece: (_ offset: Int, _ count: Int) -> Void) {
        var offset = 0
        while offset < count {
            let n = min(count - offset, 1 << 30)
            piece(offset, n)
            offset += n
        }
    }
}

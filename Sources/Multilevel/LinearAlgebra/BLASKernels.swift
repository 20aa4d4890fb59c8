import CCHOLMOD
import Foundation

/// Which of OpenBLAS's kernel sets the dense work (the Schur complement, its dpotrf and the
/// selected inverse's dtrtri, dtrsm and dgemm) runs on.
///
/// OpenBLAS picks its kernels from the CPU it detects when it is loaded. A CPU newer than the
/// library (here OpenBLAS 0.3.21 on a virtual Xeon with AVX-512 FP16) is not recognised, and
/// OpenBLAS falls back to its oldest x86-64 kernels, `Prescott` (SSE3). Measured on this 2-core
/// machine, one thread, n = 2000 (best of 5): dsyrk 112–138 ms with `Cooperlake`'s kernels
/// against 611 ms with `Prescott`'s, dpotrf 62–64 against 231 ms, dpotri 111–134 against
/// 474 ms. When the kernels detected use less of the CPU than its instruction set allows, the
/// best set that it supports is named in `OPENBLAS_CORETYPE` (read by OpenBLAS only when it is
/// loaded, so `mlm` re-executes itself once; a user's own `OPENBLAS_CORETYPE` is kept).
public enum BLASKernels {
    /// OpenBLAS's name for the kernels it runs on now.
    public static var current: String { String(cString: openblas_get_corename()) }

    /// The CPU's feature flags (`/proc/cpuinfo`), empty where that cannot be read.
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// The kernel set to ask for instead of `detected`, or nil to keep it: the best of
    /// Cooperlake (AVX-512 with BF16), SkylakeX (AVX-512), Haswell (AVX2 and FMA) that `flags`
    /// allow, when `detected` is a set that uses fewer of them. A name this table does not know
    /// (a newer OpenBLAS's) is kept.
    public static func preferred(detected: String, flags: Set<String>) -> String? {
        let level: [String: Int] = [
            "prescott": 0, "core2": 0, "penryn": 0, "dunnington": 0, "nehalem": 0, "atom": 0, "barcelona": 0,
            "bobcat": 0, "opteron": 0, "sandybridge": 1, "bulldozer": 1, "piledriver": 1, "steamroller": 1,
            "excavator": 1, "haswell": 2, "zen": 2, "skylakex": 3, "cooperlake": 4, "sapphirerapids": 5,
        ]
        guard let have = level[detected.lowercased()] else { return nil }
        let avx512 = ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"].allSatisfy(flags.contains)
        let best: (name: String, level: Int)?
        if avx512 && flags.contains("avx512_bf16") {
            best = ("Cooperlake", 4)
        } else if avx512 {
            best = ("SkylakeX", 3)
        } else if flags.contains("avx2") && flags.contains("fma") {
            best = ("Haswell", 2)
        } else {
            best = nil
        }
        guard let best, best.level > have else { return nil }
        return best.name
    }
}

/// CHOLMOD's OpenMP. Its supernodal factorisation opens a parallel region for every supernode;
/// a crossed design has thousands of small supernodes, and their fork/join cost more than the
/// threads saved (10^6 rows of `y ~ x + w + (1 + x | A) + (1 | B)`: one evaluation took 1.4 s
/// with OpenMP's default threads and 0.42 s with one). The dense kernels use the cores through
/// this package's own threads instead.
public enum OpenMPRegions {
    /// Runs every OpenMP parallel region on the calling thread (max-active-levels 0, which,
    /// unlike `OMP_THREAD_LIMIT`, takes effect after the library is loaded: no re-execution).
    public static func runOnOneThread() { omp_set_max_active_levels(0) }
}

import ArgumentParser
import Foundation
import Multilevel

/// Two libraries read their settings when they are loaded, before `main`, so they are set here
/// and the program re-executed once (a user's own values are kept):
/// - CHOLMOD's supernodal factorisation opens an OpenMP parallel region for every supernode.
///   A crossed design has thousands of small supernodes, and their fork/join costs more than the
///   threads save: on 10^6 rows of `y ~ x + w + (1 + x | A) + (1 | B)` one deviance evaluation
///   took 1.4 s with OpenMP's default threads and 0.42 s with one (OMP_THREAD_LIMIT=1). The dense
///   kernels use the cores through this package's own threads.
/// - OpenBLAS falls back to its oldest kernels on a CPU it does not recognise, a third of the
///   speed of the kernels the CPU supports (`BLASKernels`): OPENBLAS_CORETYPE names those.
var reexecute = false
if getenv("OMP_THREAD_LIMIT") == nil {
    setenv("OMP_THREAD_LIMIT", "1", 1)
    reexecute = true
}
if getenv("OPENBLAS_CORETYPE") == nil,
   let kernels = BLASKernels.preferred(detected: BLASKernels.current, flags: BLASKernels.cpuFlags()) {
    setenv("OPENBLAS_CORETYPE", kernels, 1)
    reexecute = true
}
if reexecute {
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // If the re-execution fails, carry on with the defaults: slower, the same answers to rounding.
}
// A file-size limit (ulimit -f, a quota) reached by a write fails that write (EFBIG), which is
// reported in one line like any other failed write, instead of killing the process.
signal(SIGXFSZ, SIG_IGN)
// Under mpirun every rank runs this; MPI starts here, on the main thread, and ends before exit.
_ = Job.communicator
useOneThreadInBLAS()
// Every rank parses the same command line, so every rank meets the same usage error; rank 0 prints it.
do {
    var command = try MLM.parseAsRoot()
    try command.run()
    Job.finish()
} catch {
    Job.finish()
    if MLM.exitCode(for: error) == .success {
        // --help, `mlm help fit` (whose run() asks for the help), no subcommand: the full usage.
        if Job.isRoot { MLM.exit(withError: error) }
        exit(0)
    }
    if let code = error as? ExitCode {
        // reportingErrors has printed the line; the status is the error's (1 for bad input).
        exit(code.rawValue)
    }
    // A command line that does not parse or fails validate(): one line, status 2.
    if Job.isRoot { printError(usageMessage(for: error)) }
    exit(ExitStatus.usage)
}

import ArgumentParser
import Foundation
import Multilevel

/// OpenBLAS reads its kernel set when it is loaded, before `main`, so a better one than it
/// detects is set in OPENBLAS_CORETYPE and the program re-executed once (a user's own value is
/// kept): OpenBLAS falls back to its oldest kernels on a CPU it does not recognise, a third of
/// the speed of the kernels the CPU supports (`BLASKernels`). CHOLMOD's OpenMP regions are made
/// to run on one thread without re-executing (`OpenMPRegions`), unless OMP_THREAD_LIMIT is set.
var reexecute = false
if getenv("OPENBLAS_CORETYPE") == nil,
   let kernels = BLASKernels.preferred(detected: BLASKernels.current, flags: BLASKernels.cpuFlags()) {
    setenv("OPENBLAS_CORETYPE", kernels, 1)
    reexecute = true
}
if reexecute {
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // If the re-execution fails, carry on with the defaults: slower, the same answers to rounding.
}
if getenv("OMP_THREAD_LIMIT") == nil { OpenMPRegions.runOnOneThread() }
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

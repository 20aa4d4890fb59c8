import Foundation
import XCTest
@testable import Multilevel

/// The iterative path (`IterativePenalizedLeastSquares`): with exact traces (the probes the
/// columns of the identity) it must reproduce the direct path to rounding, and with random
/// probes it must agree within its Monte-Carlo error.
///
/// Tolerances: exact traces, the criterion within 1e-8 relative, θ within 1e-5 relative (the
/// CG tolerance is 1e-9), β within 1e-4 SE, the gradient and AI matrix within 1e-6 of their
/// largest entry. Random probes (issue 12's acceptance): the criterion within 0.05 or three of
/// its Monte-Carlo SEs, whichever is larger; θ within 1e-2 relative; β within 0.05 SE.
final class IterativeSolverTests: ScratchDirectoryTestCase {
    let multimember = "y ~ x + (1 | \(ReferenceFitTests.mmText)) + (1 | nbhd)"

    func crossProducts(_ dataset: String, _ formula: String) throws -> CrossProducts {
        let data = try openTable(path: Fixtures.path(dataset), table: nil)
        return try ModelFrame.scan(Formula.parse(formula), source: data).crossProducts()
    }

    func options(reml: Bool, solver: SolverChoice, exact: Bool = false, probes: Int = 16, maxProbes: Int = 512) -> FitOptions {
        var o = FitOptions(reml: reml)
        o.solver = solver
        o.iterative.exactTraces = exact
        o.iterative.probes = probes
        o.iterative.maxProbes = maxProbes
        return o
    }

    func testExactTracesReproduceTheDirectFit() throws {
        let cases: [(String, String, Bool)] = [
            ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", true),
            ("pastes.csv", "strength ~ 1 + (1 | batch/cask)", true),
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", true),
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", false),
            ("multimember.csv", multimember, false),
        ]
        for (dataset, formula, reml) in cases {
            let label = "\(dataset) \(reml ? "REML" : "ML")"
            let cp = try crossProducts(dataset, formula)
            let direct = try LinearMixedModel.fit(cp, options: options(reml: reml, solver: .direct))
            let iterative = try LinearMixedModel.fit(cp, options: options(reml: reml, solver: .iterative, exact: true))
            XCTAssertNil(direct.monteCarlo, label)
            XCTAssertEqual(iterative.monteCarlo?.criterionSE, 0, label)
            XCTAssertEqual(iterative.objective, direct.objective, accuracy: 1e-8 * abs(direct.objective), label)
            for (a, b) in zip(iterative.theta, direct.theta) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(b), 0.1), label) }
            for j in direct.beta.indices {
                XCTAssertEqual(iterative.beta[j], direct.beta[j], accuracy: 1e-4 * direct.standardErrors[j], label)
                XCTAssertEqual(iterative.standardErrors[j], direct.standardErrors[j], accuracy: 1e-6 * direct.standardErrors[j], label)
            }
            // Conditional variances from the probes: exact here.
            let v1 = try iterative.conditionalVariances(), v0 = try direct.conditionalVariances()
            for k in v0.indices { for l in v0[k].indices { for (a, b) in zip(v1[k][l], v0[k][l]) {
                XCTAssertEqual(a, b, accuracy: 1e-6 * max(abs(b), 1e-3), "\(label) conditional variance")
            } } }
        }
    }

    /// Away from the optimum (so the residual part matters): the iterative gradient and AI matrix
    /// with exact traces are the direct path's.
    func testGradientAndInformationWithExactTracesEqualTheDirectOnes() throws {
        let cases: [(String, String, [Double])] = [
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", [0.9, 0.03, 0.2]),
            ("multimember.csv", multimember, [0.5, 0.6]),
            ("pastes.csv", "strength ~ 1 + (1 | batch/cask)", [2.0, 1.0]),
        ]
        for (dataset, formula, theta) in cases {
            let cp = try crossProducts(dataset, formula)
            for reml in [true, false] {
                let label = "\(dataset) \(reml ? "REML" : "ML")"
                var settings = IterativeSettings()
                settings.exactTraces = true
                let iterative = IterativePenalizedLeastSquares(cp, reml: reml, settings: settings, threads: 2, communicator: SingleProcess())
                let direct = try PenalizedLeastSquares(cp, reml: reml, ordering: .natural)
                let ei = try XCTUnwrap(iterative.evaluate(theta)), ed = try XCTUnwrap(direct.evaluate(theta))
                XCTAssertEqual(ei.deviance, ed.deviance, accuracy: 1e-9 * abs(ed.deviance), label)
                let (gi, hi) = iterative.derivatives(theta, ei), (gd, hd) = direct.derivatives(theta, ed)
                let gScale = gd.map(abs).max()!, hScale = hd.map(abs).max()!
                for (a, b) in zip(gi, gd) { XCTAssertEqual(a, b, accuracy: 1e-6 * gScale, "\(label) gradient \(gi) vs \(gd)") }
                for (a, b) in zip(hi, hd) { XCTAssertEqual(a, b, accuracy: 1e-6 * hScale, "\(label) AI matrix") }
            }
        }
    }

    /// Random probes, seeds fixed: InstEval (q = 4,128, ML, 16 probes to start) and the
    /// multiple-membership design (q = 211, REML and ML, 64 probes, none added).
    func testRandomProbesAgreeWithTheDirectFitWithinTheirError() throws {
        let cases: [(String, String, Bool, Int, Int)] = [
            ("insteval.csv", "y ~ 1 + service * dept + (1 | s) + (1 | d)", false, 16, 512),
            ("multimember.csv", multimember, true, 64, 64),
            ("multimember.csv", multimember, false, 64, 64),
        ]
        for (dataset, formula, reml, probes, most) in cases {
            let label = "\(dataset) \(reml ? "REML" : "ML")"
            let cp = try crossProducts(dataset, formula)
            let direct = try LinearMixedModel.fit(cp, options: options(reml: reml, solver: .direct))
            let iterative = try LinearMixedModel.fit(cp, options: options(reml: reml, solver: .iterative, probes: probes, maxProbes: most))
            let mc = try XCTUnwrap(iterative.monteCarlo, label)
            XCTAssertGreaterThan(mc.criterionSE, 0, label)
            XCTAssertEqual(mc.criterionProbes, 2 * mc.probes, label)
            XCTAssertEqual(iterative.objective, direct.objective, accuracy: max(0.05, 3 * mc.criterionSE), label)
            for (a, b) in zip(iterative.theta, direct.theta) { XCTAssertEqual(a, b, accuracy: 1e-2 * abs(b), label) }
            for j in direct.beta.indices {
                XCTAssertEqual(iterative.beta[j], direct.beta[j], accuracy: 0.05 * direct.standardErrors[j], label)
            }
            // The Monte-Carlo SE of θ̂ is about what θ̂ moved by: within 5 of them (and not zero).
            for i in direct.theta.indices {
                XCTAssertGreaterThan(mc.thetaSE[i], 0, label)
                XCTAssertLessThan(abs(iterative.theta[i] - direct.theta[i]), 5 * mc.thetaSE[i] + 1e-6, "\(label) θ[\(i)]")
            }
        }
    }

    /// The profile on the iterative path refits every point on the fit's probes: with exact traces
    /// it gives the direct path's limits (sleepstudy's correlated slopes, penicillin's crossed
    /// terms; REML fits, so the ML refit is Newton's from θ̂ there); with random probes the
    /// limits move by the Monte-Carlo error of differences of deviances on common probes, which
    /// is small: within 1% of the interval's width on multimember with 16 probes (measured:
    /// 2e-4). Every point by Newton, none handed to BOBYQA.
    func testProfileOnTheIterativePathMatchesTheDirectOne() throws {
        let cases: [(String, String, Bool, Double)] = [
            ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", true, 1e-6),
            ("penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", true, 1e-6),
            ("multimember.csv", multimember, false, 1e-2),
        ]
        for (dataset, formula, exact, tolerance) in cases {
            let cp = try crossProducts(dataset, formula)
            let direct = try LinearMixedModel.fit(cp, options: options(reml: true, solver: .direct))
            let iterative = try LinearMixedModel.fit(cp, options: options(reml: true, solver: .iterative, exact: exact, probes: 16, maxProbes: 16))
            XCTAssertEqual(iterative.monteCarlo!.criterionSE == 0, exact, dataset)
            let a = try XCTUnwrap(ProfileLikelihood.run(direct, options: ProfileOptions(threads: 2)))
            let b = try XCTUnwrap(ProfileLikelihood.run(iterative, options: ProfileOptions(threads: 2)))
            for (x, y) in zip(a.intervals, b.intervals) {
                let label = "\(dataset) \(x.parameter.label)", width = x.upper - x.lower
                XCTAssertEqual(y.lower, x.lower, accuracy: tolerance * width, label)
                XCTAssertEqual(y.upper, x.upper, accuracy: tolerance * width, label)
            }
            XCTAssertEqual(b.totalEffort.fallbacks, 0, dataset)
            XCTAssertGreaterThanOrEqual(b.totalEffort.gradients, b.totalEffort.points, dataset)
        }
    }

    /// A probe's signs depend on (seed, index) alone: another seed moves the estimate by about its
    /// Monte-Carlo error, the same seed gives the same fit bit for bit whatever the threads.
    func testProbesDependOnTheSeedAloneNotOnThreads() throws {
        let cp = try crossProducts("multimember.csv", multimember)
        var one = options(reml: true, solver: .iterative, probes: 32, maxProbes: 32)
        one.threads = 1
        var two = one
        two.threads = 2
        var other = one
        other.iterative.seed = 2
        let a = try LinearMixedModel.fit(cp, options: one), b = try LinearMixedModel.fit(cp, options: two)
        let c = try LinearMixedModel.fit(cp, options: other)
        XCTAssertEqual(a.theta, b.theta)
        XCTAssertEqual(a.objective, b.objective)
        XCTAssertEqual(a.beta, b.beta)
        XCTAssertNotEqual(a.objective, c.objective)
        XCTAssertEqual(a.objective, c.objective, accuracy: 4 * (a.monteCarlo!.criterionSE + c.monteCarlo!.criterionSE))
    }

    /// `auto` keeps the direct path where a factor is cheap, and takes the iterative one when no
    /// factor fits (`--max-memory`); the choice and its prediction are logged.
    func testAutoChoosesTheIterativePathWhenNoFactorFits() throws {
        let path = temporary("crossed-mm.h5")
        let simulated = try mlm(["simulate", "--design", "crossed-mm", "--rows", "8000", "--seed", "3", "--out", path])
        XCTAssertEqual(simulated.status, 0, simulated.stderr)
        let formula = "y ~ x + w + (1 + x | A) + (1 | B) + (1 | mm(s1, s2, weights = cbind(m1, m2)))"
        let small = try mlm(["fit", Fixtures.path("penicillin.csv"), "--formula", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                             "--json", "-"])
        XCTAssertEqual(small.status, 0, small.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(small.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((json["solver"] as! [String: Any])["method"] as? String, "direct")

        let run = try mlm(["fit", path, "--formula", formula, "--max-memory", "10M", "--verbose"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stderr.contains("solver: iterative, as no factor fits in 10.0 MB"), run.stderr)
        // Where the solver's time went (bench/iterative.sh reads this line).
        XCTAssertNotNil(run.stderr.range(of: #"iterative solver: [0-9.]+ s in evaluations and AI matrices: probes [0-9.]+ s, low eigenpairs [0-9.]+ s, solves [0-9.]+ s, the rest -?[0-9.]+ s"#,
                                         options: .regularExpression), run.stderr)
        XCTAssertTrue(run.stdout.contains("Iterative solver (conjugate gradients"), run.stdout)
        XCTAssertTrue(run.stdout.contains("Monte-Carlo SE"), run.stdout)

        // CHOLMOD's analyses are predicted too (about 40 bytes per stored entry of Z'Z each): run
        // one at a time when the three together would not fit, left out when one would not.
        let tight = try mlm(["fit", path, "--formula", formula, "--max-memory", "6M", "--verbose"])
        XCTAssertEqual(tight.status, 0, tight.stderr)
        XCTAssertTrue(tight.stderr.contains("factorisation candidates cholmod-*: analysed one at a time"), tight.stderr)
        XCTAssertTrue(tight.stderr.contains("solver: iterative, as no factor fits in 6.00 MB"), tight.stderr)
        let tiny = try mlm(["fit", path, "--formula", formula, "--max-memory", "2M", "--verbose"])
        XCTAssertEqual(tiny.status, 1)
        XCTAssertTrue(tiny.stderr.contains("factorisation candidates cholmod-*: not analysed, as each analysis needs"), tiny.stderr)
        XCTAssertEqual(tiny.stderr.split(separator: "\n").filter { $0.hasPrefix("mlm: error:") }.count, 1, tiny.stderr)

        // The profile needs no factor (`testProfileOnTheIterativePathMatchesTheDirectOne`).
        let profiled = try mlm(["fit", Fixtures.path("penicillin.csv"), "--formula", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                                "--solver", "iterative", "--profile"])
        XCTAssertEqual(profiled.status, 0, profiled.stderr)
        XCTAssertTrue(profiled.stdout.contains("Monte-Carlo SE"), profiled.stdout)
        XCTAssertTrue(profiled.stdout.contains("Profile-likelihood intervals"), profiled.stdout)
    }

    func testBadSolverOptionsAreOneLine() throws {
        let data = Fixtures.path("penicillin.csv"), formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
        for (arguments, expected) in [
            (["--solver", "cg"], "mlm: error: --solver must be one of auto, direct, iterative"),
            (["--solver", "iterative", "--optimizer", "bobyqa"], "mlm: error: --solver iterative takes Newton steps on its estimates: use it with --optimizer newton"),
            (["--probes", "1"], "mlm: error: --probes must be at least 2 and --max-probes at least --probes"),
            (["--probes", "64", "--max-probes", "32"], "mlm: error: --probes must be at least 2 and --max-probes at least --probes"),
            (["--preconditioner", "ilu"], "mlm: error: --preconditioner must be one of block-jacobi, gauss-seidel"),
        ] {
            let run = try mlm(["fit", data, "--formula", formula] + arguments)
            XCTAssertEqual(run.status, 1, arguments.joined(separator: " "))
            XCTAssertEqual(run.stderr, expected + "\n")
        }
        // The iterative path's memory is predicted and checked before it allocates (penicillin:
        // q = 30 random effects, so 30 unit probes).
        let run = try mlm(["fit", data, "--formula", formula, "--solver", "iterative", "--max-memory", "1K"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.hasPrefix("mlm: error: the iterative solver needs "), run.stderr)
        XCTAssertTrue(run.stderr.contains("for Z'Z and its 30 probes, and 1.00 KB is available (--max-memory); refusing before allocating it"),
                      run.stderr)
    }

    // MARK: the bootstrap on the iterative path

    /// Each replicate's cross-products are those of y* = Xβ̂ + ZΛ̂(σ̂u*) + σ̂ε* simulated row by
    /// row and summed directly (exact, not in law only): u* from the replicate's generator, ε_i*
    /// from row i's. Multiple membership with weights, two terms, a slope in X.
    func testIterativeBootstrapReplicatesAreTheRowsOwn() throws {
        let data = try openTable(path: Fixtures.path("multimember.csv"), table: nil)
        var o = options(reml: true, solver: .iterative, exact: true)
        o.segmentRows = 300
        let fit = try LinearMixedModel.fit(multimember, data: data, options: o)
        XCTAssertNotNil(fit.monteCarlo)
        let simulator = try IterativeBootstrapSimulator(fit, threads: 2)
        let frame = fit.rows!.frame
        let cp = fit.crossProducts
        let q = cp.randomEffectsCount, p = cp.fixedCount, terms = frame.randomEffectsTerms
        let lambda = RelativeCovarianceFactor(terms: fit.terms)
        for replicate in [0, 5] {
            let (gamma, _) = replicateEffects(fit, lambda: lambda, templates: lambda.templates(fit.theta), seed: 21, index: replicate)
            let rowSeed = IterativeBootstrapSimulator.rowSeed(seed: 21, replicate: replicate)
            var wy = [Double](repeating: 0, count: q + p), yy = 0.0
            let reader = ChunkReader(source: data, types: frame.types, formula: frame.formula)
            let raw = try reader.read(0..<data.rowCount)
            let chunk = try frame.modelChunk(raw)
            var r = 0
            for i in raw.complete.indices where raw.complete[i] {
                var z: [(Int, Double)] = []
                for (k, tr) in chunk.terms.enumerated() {
                    for m in 0..<tr.memberships where tr.levels[r * tr.memberships + m] >= 0 {
                        let column = terms[k].offset + Int(tr.levels[r * tr.memberships + m]) * terms[k].dimension
                        z.append((column, tr.weights[r * tr.memberships + m] * tr.z[r]))
                    }
                }
                let x = (0..<p).map { chunk.x[r * p + $0] }
                let y = z.reduce(0) { $0 + $1.1 * gamma[$1.0] } + zip(x, fit.beta).reduce(0) { $0 + $1.0 * $1.1 }
                    + fit.sigma * IterativeBootstrapSimulator.rowNoise(rowSeed, row: i)
                for (c, v) in z { wy[c] += v * y }
                for j in 0..<p { wy[q + j] += x[j] * y }
                yy += y * y
                r += 1
            }
            let replicateCP = try simulator.crossProducts(replicate: replicate, seed: 21)
            let scale = wy.map(abs).max()!
            for c in 0..<q { XCTAssertEqual(replicateCP.zxy[c + p * q], wy[c], accuracy: 1e-10 * scale, "Z'y* \(c)") }
            for j in 0..<p { XCTAssertEqual(replicateCP.xx(j, p), wy[q + j], accuracy: 1e-10 * scale, "X'y* \(j)") }
            XCTAssertEqual(replicateCP.xx(p, p), yy, accuracy: 1e-10 * yy, "y*'y*")
        }
    }

    /// With exact traces, a replicate refit on the iterative path is the direct path's refit of
    /// the same cross-products; and replicates are the same bit for bit on 1 and 3 threads
    /// (rows summed in segments of 50, the segments in order).
    func testIterativeBootstrapRefitsAsTheDirectPathAndIgnoresThreads() throws {
        let data = try openTable(path: Fixtures.path("penicillin.csv"), table: nil)
        let formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
        var o = options(reml: true, solver: .iterative, exact: true)
        o.segmentRows = 50
        o.threads = 1
        let one = try IterativeBootstrapSimulator(LinearMixedModel.fit(formula, data: data, options: o), threads: 1)
        o.threads = 3
        let three = try IterativeBootstrapSimulator(LinearMixedModel.fit(formula, data: data, options: o), threads: 3)
        let direct = try LinearMixedModel.fit(formula, data: data, options: options(reml: true, solver: .direct))
        let refitter = BootstrapSimulator(direct, threads: 1)
        for i in 0..<4 {
            let a = one.replicate(i, seed: 4, thread: 0), b = three.replicate(i, seed: 4, thread: 0)
            XCTAssertEqual(a, b, "replicate \(i)")
            XCTAssertFalse(a.failed)
            let d = refitter.refit(try one.crossProducts(replicate: i, seed: 4), index: i, thread: 0)
            for (x, y) in zip(a.theta, d.theta) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(y, 0.1), "θ* \(i)") }
            XCTAssertEqual(a.beta[0], d.beta[0], accuracy: 1e-6 * abs(d.beta[0]))
            XCTAssertEqual(a.sigma, d.sigma, accuracy: 1e-6 * d.sigma)
            XCTAssertEqual(a.deviance, d.deviance, accuracy: 1e-8 * abs(d.deviance))
        }
        // A fit given cross-products alone has no rows to read: one line.
        let cp = try crossProducts("penicillin.csv", formula)
        let bare = try LinearMixedModel.fit(cp, options: options(reml: true, solver: .iterative, exact: true))
        XCTAssertThrowsError(try ParametricBootstrap.run(bare, options: BootstrapOptions(replicates: 3, seed: 1))) { error in
            XCTAssertTrue("\(error)".contains("reads the rows again"), "\(error)")
        }
    }

    /// Probes solved in blocks of 8 (cache-sized), and the products' SIMD8/SIMD4/scalar lanes,
    /// give each column the bits it gets in one block of any width.
    func testBlocksOfRightHandSidesGiveTheSameBits() throws {
        let cp = try crossProducts("multimember.csv", multimember)
        let system = SystemOperator(cp, threads: 2)
        system.setTheta(RelativeCovarianceFactor(terms: cp.terms).initialTheta)
        let m = try XCTUnwrap(BlockJacobiPreconditioner(diagonal: system.diagonalBlocks(), terms: cp.terms, templates: system.templates))
        let q = system.dimension, k = 21
        var random = Xoshiro256(seed: 5)
        let b = (0..<(q * k)).map { _ in random.nextNormal() }
        let whole = ConjugateGradients.solve(system, preconditioner: m, rhs: b, vectors: k, tolerance: 1e-9, maxIterations: 500,
                                             lanczos: true)
        XCTAssertTrue(whole.converged.allSatisfy { $0 })
        for block in [1, 4, 5, 8, 16] {
            let parts = ConjugateGradients.solve(system, preconditioner: m, rhs: b, vectors: k, tolerance: 1e-9, maxIterations: 500,
                                                 lanczos: true, block: block)
            XCTAssertEqual(parts.x, whole.x, "block \(block)")
            XCTAssertEqual(parts.iterations, whole.iterations, "block \(block)")
            XCTAssertEqual(parts.tridiagonals.map(\.diagonal), whole.tridiagonals.map(\.diagonal), "block \(block)")
            XCTAssertEqual(parts.tridiagonals.map(\.offDiagonal), whole.tridiagonals.map(\.offDiagonal), "block \(block)")
        }
    }

    /// Symmetric block Gauss–Seidel inverts M = (D + L)D⁻¹(D + U), D the level blocks of A and L,
    /// U the coupling between levels (multiple membership couples levels of one term too): M
    /// applied densely to its output gives the input back, one column or all; and CG with it
    /// solves A x = b to the same x as with block-Jacobi, in fewer iterations.
    func testGaussSeidelPreconditionerInvertsItsSplittingAndSolvesInFewerIterations() throws {
        let cp = try crossProducts("multimember.csv", multimember)
        let system = SystemOperator(cp, threads: 2)
        system.setTheta([0.7, 0.4])
        let jacobi = try XCTUnwrap(BlockJacobiPreconditioner(diagonal: system.diagonalBlocks(), terms: cp.terms, templates: system.templates))
        let gaussSeidel = GaussSeidelPreconditioner(system: system, blocks: jacobi)
        let q = system.dimension, k = 3
        // Dense A, and each index's block.
        var a = [Double](repeating: 0, count: q * q)
        for j in 0..<q {
            var e = [Double](repeating: 0, count: q)
            e[j] = 1
            let column = system.apply(e, vectors: 1)
            for i in 0..<q { a[i + j * q] = column[i] }
        }
        var blockOf = [Int](repeating: 0, count: q)
        for (b, offset) in jacobi.offsets.enumerated() { for r in 0..<jacobi.sizes[b] { blockOf[offset + r] = b } }
        var random = Xoshiro256(seed: 9)
        let v = (0..<(q * k)).map { _ in random.nextNormal() }
        var z = v
        z.withUnsafeMutableBufferPointer { gaussSeidel.solve($0.baseAddress!, vectors: k, only: nil) }
        var single = v
        single.withUnsafeMutableBufferPointer { gaussSeidel.solve($0.baseAddress!, vectors: k, only: 1) }
        for c in 0..<k {
            // u = (D + U)z, then D⁻¹u, then (D + L)·.
            var u = [Double](repeating: 0, count: q)
            for i in 0..<q { for j in 0..<q where blockOf[j] >= blockOf[i] { u[i] += a[i + j * q] * z[j * k + c] } }
            u.withUnsafeMutableBufferPointer { jacobi.apply(.solve, to: $0.baseAddress!, vectors: 1) }
            for i in 0..<q {
                var back = 0.0
                for j in 0..<q where blockOf[j] <= blockOf[i] { back += a[i + j * q] * u[j] }
                XCTAssertEqual(back, v[i * k + c], accuracy: 1e-10 * max(1, abs(v[i * k + c])), "row \(i), column \(c)")
                XCTAssertEqual(single[i * k + c], c == 1 ? z[i * k + c] : v[i * k + c], "row \(i), column \(c) alone")
            }
        }
        let b = (0..<(q * k)).map { _ in random.nextNormal() }
        let x0 = ConjugateGradients.solve(system, preconditioner: jacobi, rhs: b, vectors: k, tolerance: 1e-10, maxIterations: 500,
                                          lanczos: false)
        let x1 = ConjugateGradients.solve(system, preconditioner: gaussSeidel, rhs: b, vectors: k, tolerance: 1e-10,
                                          maxIterations: 500, lanczos: false)
        XCTAssertTrue((x0.converged + x1.converged).allSatisfy { $0 })
        for i in x0.x.indices { XCTAssertEqual(x1.x[i], x0.x[i], accuracy: 1e-8 * max(1, abs(x0.x[i]))) }
        for c in 0..<k { XCTAssertLessThan(x1.iterations[c], x0.iterations[c], "column \(c)") }
    }
}

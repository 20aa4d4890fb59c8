import ArgumentParser
import Foundation
import Multilevel

/// `mlm convert`: a CSV file to an HDF5 table, streamed.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a CSV file to an HDF5 table of 1-D column datasets, streamed (memory does not grow with the rows).",
        discussion: """
            Columns are typed as `mlm fit` types a CSV's: numeric columns become float64 datasets (missing \
            values NaN), string columns variable-length UTF-8 strings (missing values "NA"), so `mlm fit` \
            gives the same fit on either file. h5py, hdf5r and rhdf5 read the group as a table too. The CSV \
            is read twice (to type the columns, then to write them), --chunk-rows rows at a time.
            """)

    @Argument(help: "The CSV file to read.")
    var input: String

    @Argument(help: "The HDF5 file to write (.h5, .hdf5 or .he5; replaced if it exists).")
    var output: String

    @Option(help: "The group to hold the columns.")
    var table = "data"

    @Option(help: "Rows written per chunk (the file's values do not depend on it).")
    var chunkRows = 65_536

    func run() throws {
        try reportingErrors {
            guard chunkRows > 0 else { throw InputError("--chunk-rows must be a positive number of rows") }
            guard ["h5", "hdf5", "he5"].contains(URL(fileURLWithPath: output).pathExtension.lowercased()) else {
                throw InputError("the output '\(output)' must end in .h5, .hdf5 or .he5, as mlm reads HDF5 files by their extension")
            }
            // One file: rank 0 writes it (through a symbolic link; never onto a device or folder),
            // the other ranks of an mpirun wait for the outcome.
            try Job.stage {
                guard Job.isRoot else { return }
                try requireWritable(output, option: "output")
                var result: CSVConversion?
                try OutputFile.write(to: output) { temporary in
                    result = try convertCSVToHDF5(csvPath: input, h5Path: temporary, group: table, chunkRows: chunkRows)
                }
                guard let result else { return }
                let strings = result.columns.filter { if case .string = $0 { return true } else { return false } }.count
                let group = table.hasPrefix("/") ? table : "/" + table
                print("wrote \(result.rowCount) rows of \(result.columns.count) columns (\(result.columns.count - strings) numeric, "
                    + "\(strings) string) to \(output), table \(group)")
            }
        }
    }
}

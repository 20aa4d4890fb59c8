/// The storage type of a data column, as the file holds it.
public enum ColumnType: Equatable, Sendable {
    /// Any integer or floating-point column.
    case numeric
    /// Fixed- or variable-length strings (a categorical variable).
    case string
}

/// A rectangular data source read by column in row ranges (chunks).
///
/// Implementations: `CSVSource` (small data, held in memory) and `HDF5Source`
/// (a group of 1-D column datasets, or a 1-D compound dataset, read by hyperslab).
/// A reader never holds a whole column of a large file: callers ask for
/// `rows` ranges of bounded length.
///
/// Missing values: numeric reads give `.nan` (NaN in the file, or "NA"/empty in CSV);
/// string reads give `nil` for "NA", the empty string, or a CSV `NA`.
public protocol TableSource: AnyObject {
    /// A short description for messages, e.g. the file path and table name.
    var name: String { get }
    /// The column names in file order.
    var columnNames: [String] { get }
    /// The number of rows (all columns have this length).
    var rowCount: Int { get }
    /// The type of a column; throws `InputError` naming the column if there is none.
    func columnType(_ column: String) throws -> ColumnType
    /// Values of a numeric column for `rows`; missing values are NaN.
    func readNumeric(_ column: String, rows: Range<Int>) throws -> [Double]
    /// Values of a string column for `rows`; missing values are nil.
    func readStrings(_ column: String, rows: Range<Int>) throws -> [String?]
    /// Where 0-based row `row` is, for messages: "row 5" (1-based) by default; a CSV file
    /// says "line 6", the line its record starts on.
    func rowDescription(_ row: Int) -> String
}

extension TableSource {
    public func rowDescription(_ row: Int) -> String { "row \(row + 1)" }
}

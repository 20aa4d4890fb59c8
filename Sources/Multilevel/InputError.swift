/// A problem with what the user gave: the file, a column, the formula.
///
/// Its `message` is one line that names the column, term, line or position at fault;
/// the CLI prints it after `error: ` and exits non-zero.
public struct InputError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

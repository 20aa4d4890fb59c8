import CHDF5

extension HDF5Source {
    /// Names of filters that plugins provide, for files that do not store the name.
    private static let pluginFilterNames: [H5Z_filter_t: String] = [
        305: "lzo", 307: "bzip2", 32000: "lzf", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle",
        32013: "zfp", 32015: "zstd", 32026: "blosc2",
    ]

    /// The first filter in `dataset`'s pipeline that this HDF5 library cannot decode (neither
    /// built in nor found as a plugin), as "'blosc' (id 32001)", or nil if it can read them all.
    ///
    /// The caller holds the HDF5 lock.
    static func missingFilter(_ dataset: hid_t) -> String? {
        let creation = H5Dget_create_plist(dataset)
        guard creation >= 0 else { return nil }
        defer { H5Pclose(creation) }
        for index in 0..<max(0, H5Pget_nfilters(creation)) {
            var flags: UInt32 = 0
            var valueCount = 0
            var config: UInt32 = 0
            var name = [CChar](repeating: 0, count: 256)
            let filter = H5Pget_filter2(creation, UInt32(index), &flags, &valueCount, nil, name.count, &name, &config)
            guard filter >= 0, H5Zfilter_avail(filter) <= 0 else { continue }
            let stored = String(cString: name)
            let known = stored.isEmpty ? pluginFilterNames[filter] ?? "unnamed" : stored
            return "'\(known)' (id \(filter))"
        }
        return nil
    }
}

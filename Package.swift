// swift-tools-version:5.9
import PackageDescription

let package = Package(
    name: "Multilevel",
    products: [
        .library(name: "Multilevel", targets: ["Multilevel"]),
        .executable(name: "mlm", targets: ["mlm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: C shims (not API: module maps and static inline wrappers for macros)
        .systemLibrary(name: "CCHOLMOD", path: "Sources/CCHOLMOD"),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5"),
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c"),
        .systemLibrary(name: "CNLopt", path: "Sources/CNLopt", pkgConfig: "nlopt"),

        // MARK: The library: formula → cross-products → optimise → result
        .target(
            name: "Multilevel",
            dependencies: ["CCHOLMOD", "CHDF5", "CMPI", "CNLopt"]
        ),

        // MARK: The command-line tool
        .executableTarget(
            name: "mlm",
            dependencies: [
                "Multilevel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests
        .testTarget(
            name: "MultilevelTests",
            dependencies: ["Multilevel"],
            exclude: ["Fixtures"]
        ),
    ]
)

// swift-tools-version:6.2
// Microbenchmarks (package-benchmark). A package of its own so the main build stays lean.
// Run from the repository root: `make bench-micro` (or `cd Benchmarks && swift package --disable-sandbox benchmark`).
import PackageDescription

let package = Package(
    name: "FlashSaleBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "flashsale", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
    ],
    targets: [
        .executableTarget(
            name: "RedisCommandBenchmarks",
            dependencies: [
                .product(name: "Replication", package: "flashsale"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/RedisCommandBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "EngineBenchmarks",
            dependencies: [
                .product(name: "ReservationEngine", package: "flashsale"),
                .product(name: "Replication", package: "flashsale"),
                .product(name: "TestSupport", package: "flashsale"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/EngineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "FrontBenchmarks",
            dependencies: [
                .product(name: "HTTPFront", package: "flashsale"),
                .product(name: "Replication", package: "flashsale"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/FrontBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)

// swift-tools-version:6.2
import Foundation
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    // Our own targets build without a warning, and CI keeps it so (dependencies are not affected).
    .treatAllWarnings(as: .error),
]

/// Every file under Sources/Replication/Ledger/Scripts (SwiftPM embeds them one by one).
/// The pages served at `/` and `/admin/` (HTTPFront's `StaticRoutes`), built into the binary.
let pages = ["sale.html", "console.html", "flashsale.css", "flashsale.js", "sale.js", "console.js"]

let ledgerScripts = [
    "prelude", "create_sale", "acquire_lease", "renew_leases", "return_lease", "commit_batch", "cancel_order",
    "fail_order", "restore_begin", "restore_orders", "restore_finish", "join_waitlist", "close_sale", "snapshot",
    "revoke_leases", "direct_order", "retention", "store_summary", "add_rejections", "ensure_groups", "retire_sale",
    "migrate_registries",
]

let package = Package(
    name: "flashsale",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flashsale", targets: ["flashsale"]),
        .library(name: "ReservationEngine", targets: ["ReservationEngine"]),
        .library(name: "Replication", targets: ["Replication"]),
        .library(name: "HTTPFront", targets: ["HTTPFront"]),
        // A real redis-server per test or benchmark run (used by Tests/ and Benchmarks/).
        .library(name: "TestSupport", targets: ["TestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    ],
    targets: [
        // The C world: module maps and one-line shim headers, nothing else.
        .systemLibrary(
            name: "CHiredis",
            path: "Sources/CInterop/CHiredis",
            pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CMongoc",
            path: "Sources/CInterop/CMongoc",
            pkgConfig: "libmongoc-1.0",
            providers: [.apt(["libmongoc-dev"])]
        ),
        .systemLibrary(
            name: "CJemalloc",
            path: "Sources/CInterop/CJemalloc",
            pkgConfig: "jemalloc",
            providers: [.apt(["libjemalloc-dev"])]
        ),

        // Pure decision logic: no I/O, deterministic.
        .target(
            name: "ReservationEngine",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")],
            swiftSettings: swiftSettings
        ),
        // Everything that talks to Redis and MongoDB.
        .target(
            name: "Replication",
            dependencies: [
                "ReservationEngine",
                "CHiredis",
                "CMongoc",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The ledger's Lua, one script per file, compiled into the binary (`PackageResources`).
            resources: ledgerScripts.map { .embedInCode("Ledger/Scripts/\($0).lua") },
            swiftSettings: swiftSettings
        ),
        // The Hummingbird application.
        .target(
            name: "HTTPFront",
            dependencies: [
                "Replication",
                "ReservationEngine",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: pages.map { .embedInCode("Static/Pages/\($0)") },
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "flashsale",
            dependencies: [
                "HTTPFront",
                "Replication",
                "CJemalloc",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),

        // Test support: a real redis-server per test, on a free loopback port.
        .target(
            name: "TestSupport",
            dependencies: ["Replication"],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReservationEngineTests",
            dependencies: ["ReservationEngine"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: ["Replication", "TestSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTPFrontTests",
            dependencies: [
                "HTTPFront",
                "ReservationEngine",
                "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                // Test-time identity-provider keys (ES256, EdDSA, RS256) signing tokens for the JWKS path.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

// libFuzzer targets for the parsers of untrusted input (the bearer-token verifier, the request-body
// decoder): declared only for scripts/fuzz.sh, which builds them with -sanitize=fuzzer,address in its
// own scratch directory; `swift build` and `swift test` never see them.
if ProcessInfo.processInfo.environment["FLASHSALE_FUZZ"] == "1" {
    for name in ["FuzzTokens", "FuzzBodies"] {
        package.targets.append(.executableTarget(
            name: name,
            dependencies: ["HTTPFront", "Replication", .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Hummingbird", package: "hummingbird"), .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/\(name)"
        ))
    }
}

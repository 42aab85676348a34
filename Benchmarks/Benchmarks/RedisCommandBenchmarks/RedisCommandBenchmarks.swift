import Benchmark
import Replication

/// Building the argument list of one EVALSHA for a commit batch: the cost paid per batch on the
/// committer thread before any byte goes to Redis. Five arguments per order, as a commit carries
/// (order id, customer id, quantity, idempotency key, sealed delivery blob).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        maxDuration: .seconds(3)
    )

    let delivery = [UInt8](repeating: 0x2a, count: 96)
    let customers = (0..<512).map { "customer-\($0)" }
    let keys = (0..<512).map { "idem-\($0)" }
    for orders in [1, 64, 512] {
        Benchmark("RedisCommand encode batch of \(orders) orders") { benchmark in
            for _ in benchmark.scaledIterations {
                var command = RedisCommand()
                command.reserveCapacity(arguments: 3 + orders * 5, bytes: orders * 160)
                command.append("EVALSHA")
                command.append("0123456789abcdef0123456789abcdef01234567")
                command.append(1)
                for index in 0..<orders {
                    command.append(index)
                    command.append(customers[index])
                    command.append(1)
                    command.append(keys[index])
                    command.append(bytes: delivery)
                }
                blackHole(command)
            }
        }
    }
}

import Foundation
import Replication
import Testing
import TestSupport

@Suite("RedisConnection against a real redis-server")
struct RedisConnectionTests {
    // Every RESP2 reply type is copied into the Swift enum with its value.
    @Test func replyTypes() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        #expect(try connection.send("SET", "greeting", "hello") == .status("OK"))
        #expect(try connection.send("GET", "greeting") == .bulk(Array("hello".utf8)))
        #expect(try connection.send("INCRBY", "counter", "41") == .integer(41))
        #expect(try connection.send("GET", "missing") == .null)
        #expect(try connection.send("RPUSH", "list", "a", "b") == .integer(2))
        #expect(try connection.send("LRANGE", "list", "0", "-1") == .array([.bulk([97]), .bulk([98])]))
        let error = try connection.send("INCR", "greeting")
        #expect(error.errorMessage?.hasPrefix("ERR") == true)
        #expect(throws: RedisError.self) { try error.throwingServerError() }
    }

    // Keys and values are binary-safe: NUL and 0xFF bytes survive a round trip unchanged.
    @Test func binaryValuesWithNulBytes() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        let key: [UInt8] = [0x6b, 0x00, 0x01, 0xff]
        let value: [UInt8] = [0x00, 0x00, 0x41, 0x00, 0xfe, 0xff, 0x00] + Array(repeating: 0, count: 1_000)
        var set = RedisCommand("SET")
        set.append(bytes: key)
        set.append(bytes: value)
        #expect(try connection.send(set) == .status("OK"))
        var get = RedisCommand("GET")
        get.append(bytes: key)
        #expect(try connection.send(get) == .bulk(value))
        var strlen = RedisCommand("STRLEN")
        strlen.append(bytes: key)
        #expect(try connection.send(strlen) == .integer(Int64(value.count)))
        // An empty argument is a valid, distinct value.
        #expect(try connection.send("SET", "empty", "") == .status("OK"))
        #expect(try connection.send("GET", "empty") == .bulk([]))
    }

    // 10,000 pipelined commands come back in order, each with its own reply.
    @Test func pipeliningTenThousandCommands() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        let count = 10_000
        let sets = (0..<count).map { RedisCommand("SET", "key:\($0)", "value:\($0)") }
        let setReplies = try connection.pipeline(sets)
        #expect(setReplies.count == count)
        #expect(setReplies.allSatisfy { $0 == .status("OK") })

        var mixed: [RedisCommand] = []
        for index in 0..<count {
            mixed.append(index % 1_000 == 999 ? RedisCommand("INCR", "key:\(index)") : RedisCommand("GET", "key:\(index)"))
        }
        let replies = try connection.pipeline(mixed)
        #expect(replies.count == count)
        for (index, reply) in replies.enumerated() {
            if index % 1_000 == 999 {
                #expect(reply.errorMessage != nil, "INCR on a non-number answers an error in place")
            } else {
                #expect(reply == .bulk(Array("value:\(index)".utf8)))
            }
        }
        #expect(try connection.send("DBSIZE") == .integer(Int64(count)))
    }

    // After SCRIPT FLUSH the next EVALSHA gets NOSCRIPT, and the connection reloads and runs the script.
    @Test func noscriptRecoveryAfterScriptFlush() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        let script = RedisScript(name: "add", source: "return redis.call('INCRBY', KEYS[1], ARGV[1])")
        var arguments = RedisCommand()
        arguments.append(5)
        #expect(try connection.evaluate(script, keys: ["sum"], arguments: arguments) == .integer(5))

        let other = try server.connect()
        #expect(try other.send("SCRIPT", "FLUSH") == .status("OK"))
        let digest = try #require(try other.send("SCRIPT", "LOAD", script.source).string)
        #expect(digest == script.digest)  // the connection's EVALSHA names the script as the server does
        #expect(try other.send("SCRIPT", "FLUSH") == .status("OK"))
        #expect(try other.send("SCRIPT", "EXISTS", digest) == .array([.integer(0)]))

        #expect(try connection.evaluate(script, keys: ["sum"], arguments: arguments) == .integer(10))
        #expect(try other.send("SCRIPT", "EXISTS", digest) == .array([.integer(1)]))
        // A script error is a server error reply, not a reload loop.
        let broken = RedisScript(name: "broken", source: "return redis.call('NOPE')")
        #expect(try connection.evaluate(broken, keys: []).errorMessage != nil)
    }

    // A connection killed by the server while idle is replaced before the next command; nothing is lost.
    @Test func reconnectAfterClientKill() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        let identifier = try #require(try connection.send("CLIENT", "ID").integer)
        #expect(connection.connectCount == 1)

        let admin = try server.connect()
        #expect(try admin.send("CLIENT", "KILL", "ID", String(identifier)) == .integer(1))
        // Give the kernel a moment to deliver the FIN.
        Thread.sleep(forTimeInterval: 0.05)

        #expect(try connection.send("PING") == .status("PONG"))
        #expect(connection.connectCount == 2)
        let newIdentifier = try #require(try connection.send("CLIENT", "ID").integer)
        #expect(newIdentifier != identifier)
    }

    // A server that is down gives connectionFailed at once; a frozen one gives timeout, not a hang.
    @Test func downOrFrozenServerGivesTypedErrors() throws {
        let server = try RedisServer()
        var configuration = server.configuration
        configuration.commandTimeoutMilliseconds = 300
        let connection = try RedisConnection(configuration: configuration)
        #expect(try connection.send("PING") == .status("PONG"))

        server.pause()
        defer { server.resume() }
        let started = ContinuousClock.now
        let frozen = #expect(throws: RedisError.self) { try connection.send("PING") }
        #expect(frozen?.code == .timeout)
        #expect(frozen?.outcomeUnknown == true)
        #expect(ContinuousClock.now - started < .seconds(5), "the timeout bounds the wait")
        server.resume()

        // The timed-out socket was discarded; the next command reconnects.
        #expect(try connection.send("PING") == .status("PONG"))

        server.shutdown()
        let down = #expect(throws: RedisError.self) { try connection.send("PING") }
        #expect(down?.code == .connectionFailed || down?.code == .connectionLost)
        let refused = #expect(throws: RedisError.self) { try RedisConnection(configuration: configuration) }
        #expect(refused?.code == .connectionFailed)
    }

    // AUTH runs on every (re)connect; a wrong password is a connectionFailed error.
    @Test func authentication() throws {
        let server = try RedisServer(extraArguments: ["--requirepass", "s3cret"])
        var configuration = server.configuration
        configuration.password = "s3cret"
        configuration.database = 3
        let connection = try RedisConnection(configuration: configuration)
        #expect(try connection.send("SET", "in-db-3", "yes") == .status("OK"))
        let admin = try RedisConnection(configuration: configuration)
        #expect(try admin.send("SELECT", "0") == .status("OK"))
        #expect(try admin.send("EXISTS", "in-db-3") == .integer(0))

        configuration.password = "wrong"
        let failure = #expect(throws: RedisError.self) { try RedisConnection(configuration: configuration) }
        #expect(failure?.code == .connectionFailed)
    }

    // With AOF and appendfsync always, a write acknowledged before SIGKILL is there after restart.
    @Test func harnessKillAndRestartKeepsData() throws {
        let server = try RedisServer()
        let connection = try server.connect()
        #expect(try connection.send("SET", "durable", "yes") == .status("OK"))
        server.kill()
        try server.restart()
        #expect(try connection.send("GET", "durable") == .bulk(Array("yes".utf8)))
    }
}

@Suite("RedisConfiguration URL parsing")
struct RedisConfigurationTests {
    // Every part of a redis:// URL lands in its field; defaults fill the rest.
    @Test(arguments: [
        ("redis://127.0.0.1:6379", "127.0.0.1", 6379, nil as String?, nil as String?, 0),
        ("redis://cache.local", "cache.local", 6379, nil, nil, 0),
        ("redis://:pa%40ss@10.0.0.1:7000/2", "10.0.0.1", 7000, nil, "pa@ss", 2),
        ("redis://app:pw@host:1234/", "host", 1234, "app", "pw", 0),
    ])
    func parses(url: String, host: String, port: Int, username: String?, password: String?, database: Int) throws {
        let configuration = try RedisConfiguration(url: url)
        #expect(configuration.host == host)
        #expect(configuration.port == port)
        #expect(configuration.username == username)
        #expect(configuration.password == password)
        #expect(configuration.database == database)
    }

    // Malformed URLs are refused with invalidConfiguration.
    @Test(arguments: ["http://x:1", "redis://", "redis://host:0", "redis://host:99999", "redis://host:6379/x", "redis://host:abc"])
    func refuses(url: String) {
        let error = #expect(throws: RedisError.self) { try RedisConfiguration(url: url) }
        #expect(error?.code == .invalidConfiguration)
    }
}

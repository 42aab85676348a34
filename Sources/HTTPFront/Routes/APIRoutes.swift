import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Replication
import ReservationEngine

/// Every route of the HTTP contract (../API.md) except health, metrics and the live socket.
struct APIRoutes: Sendable {
    let engine: ReservationService
    let tokens: TokenVerifier
    let customerLimiter: RateLimiter
    let addressLimiter: RateLimiter
    /// Per client address, for requests whose token is missing or fails verification.
    let unverifiedLimiter: RateLimiter
    /// Whose forwarding headers (and `X-Request-Start`) are believed.
    var trustedProxies = TrustedProxies.none
    /// The live socket also takes `?access_token=` (`FLASHSALE_ALLOW_QUERY_TOKEN`, for old clients).
    var allowQueryToken = false
    /// Moves the front's stamps onto this instance's clock.
    let frontClock = FrontClock()
    let metrics: FlashSaleMetrics
    /// Seals the delivery fields before they reach the engine (and so Redis and MongoDB).
    let cipher: FieldCipher
    var orderPath: OrderPath = .engine
    /// Arrival from the front's `X-Request-Start` (``ServerConfiguration/trustRequestStart``).
    var trustRequestStart = false
    /// Connections of the textbook comparison path (`OrderPath.direct` only).
    var directClients: [RedisClient] = []
    /// MongoDB's sales and orders, for reads after a sale left Redis (``APIRoutes+Archive``); nil without MONGO_URI.
    var archive: SaleArchive?

    func register(on router: Router<FlashSaleRequestContext>) {
        router.post("admin/sales") { request, context in try await createSale(request, context) }
        router.get("admin/sales") { request, context in try await listSales(request, context) }
        router.post("admin/sales/:saleId/close") { request, context in try await closeSale(request, context) }
        router.get("admin/sales/:saleId/shards") { request, context in try await shards(request, context) }
        router.post("admin/sales/:saleId/rebalance") { request, context in try await rebalance(request, context) }
        router.get("sales/:saleId") { request, context in try await sale(request, context) }
        router.get("sales/:saleId/stock") { request, context in try await stock(request, context) }
        router.get("sales/:saleId/summary") { request, context in try await summary(request, context) }
        router.post("sales/:saleId/orders") { request, context in try await placeOrder(request, context) }
        router.get("sales/:saleId/me") { request, context in try await me(request, context) }
        router.get("orders/:orderId") { request, context in try await order(request, context) }
        router.delete("orders/:orderId") { request, context in try await cancel(request, context) }
    }

    // MARK: Authentication and rate limits

    /// The bearer token, verified; then the client's address budget and the customer's. A request whose token
    /// is missing or fails verification spends only its address's small budget for such requests
    /// (`unverifiedLimiter`), never the one shoppers behind the same address share. The HS256 token is verified
    /// on the header's own bytes (no copy, no suspension: this runs for every order).
    ///
    /// `live`: the live socket's upgrade, whose token comes as the subprotocol `bearer.<token>` (browsers cannot
    /// set headers on a WebSocket), or as `?access_token=` only when ``allowQueryToken`` (old clients).
    func authenticate(_ request: Request, _ context: FlashSaleRequestContext, live: Bool = false) async throws -> Principal {
        let client = clientKey(request, context)
        let nowSeconds = Timestamps.now.timeIntervalSince1970
        let pending: TokenVerifier.Pending
        if var header = request.headers[.authorization] {
            pending = header.withUTF8 { bytes in
                guard let token = Self.bearerToken(in: bytes) else {
                    return .decided(.failure(Problem.unauthorized("the Authorization header must be 'Bearer <token>'")))
                }
                guard !token.isEmpty else { return .decided(.failure(Problem.unauthorized("a bearer token is required"))) }
                return tokens.verify(bytes: token, nowSeconds: nowSeconds)
            }
        } else if live, var token = Self.subprotocolToken(request) {
            pending = token.withUTF8 { tokens.verify(bytes: $0, nowSeconds: nowSeconds) }
        } else if live, let token = request.uri.queryParameters.get("access_token"), !token.isEmpty {
            if allowQueryToken {
                var token = String(token)
                pending = token.withUTF8 { tokens.verify(bytes: $0, nowSeconds: nowSeconds) }
            } else {
                pending = .decided(.failure(Problem.unauthorized(
                    "a token in the URL is refused (proxies log URLs): offer it as the WebSocket subprotocol 'bearer.<token>' beside '\(Self.liveSubprotocol)'")))
            }
        } else {
            pending = .decided(.failure(Problem.unauthorized("a bearer token is required")))
        }
        switch await pending.result(nowSeconds: nowSeconds) {
        case .failure(let problem):
            if let wait = unverifiedLimiter.acquire(client) { throw Problem.rateLimited(retryAfterSeconds: wait) }
            throw problem
        case .success(let principal):
            if let wait = addressLimiter.acquire(client) { throw Problem.rateLimited(retryAfterSeconds: wait) }
            if let wait = customerLimiter.acquire(principal.customerID) { throw Problem.rateLimited(retryAfterSeconds: wait) }
            return principal
        }
    }

    /// The rate-limit key of the client: behind trusted proxies the address they forwarded, else the connection's
    /// (or its PROXY protocol header's); an IPv6 client by its /64.
    func clientKey(_ request: Request, _ context: FlashSaleRequestContext) -> String {
        if !trustedProxies.isEmpty { return trustedProxies.clientKey(peer: context.clientAddress, headers: request.headers) }
        guard context.clientAddress.utf8.contains(UInt8(ascii: ":")) else { return context.clientAddress }
        return IPAddress(context.clientAddress)?.bucketKey ?? context.clientAddress
    }

    /// The token in an `Authorization: Bearer <token>` value, without the spaces or tabs around it; nil when
    /// the scheme is not `Bearer `.
    static func bearerToken(in header: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        let scheme = "Bearer ".utf8
        guard header.count >= scheme.count, zip(header, scheme).allSatisfy({ $0 == $1 }) else { return nil }
        var start = scheme.count
        var end = header.count
        while start < end, header[start] == UInt8(ascii: " ") || header[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, header[end - 1] == UInt8(ascii: " ") || header[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        return UnsafeBufferPointer(rebasing: header[start..<end])
    }

    /// The live socket's protocol: a client offers it with its token (`Sec-WebSocket-Protocol: flashsale.live.v1,
    /// bearer.<JWT>`, as the Kubernetes API takes bearer tokens over WebSockets) and the server selects it.
    static let liveSubprotocol = "flashsale.live.v1"
    static let bearerSubprotocolPrefix = "bearer."

    /// The token offered as the subprotocol `bearer.<token>`, if any.
    static func subprotocolToken(_ request: Request) -> String? {
        for value in request.headers[values: .secWebSocketProtocol] {
            for offered in value.split(separator: ",") {
                let name = offered.trimmingCharacters(in: .whitespaces)
                if name.hasPrefix(bearerSubprotocolPrefix) { return String(name.dropFirst(bearerSubprotocolPrefix.count)) }
            }
        }
        return nil
    }

    /// Whether the client offered the live protocol by name.
    static func offersLiveSubprotocol(_ request: Request) -> Bool {
        request.headers[values: .secWebSocketProtocol].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == liveSubprotocol }
        }
    }

    /// The bearer token of the Authorization header, the subprotocol, or `?access_token=` where allowed.
    func bearerToken(of request: Request, live: Bool) -> String? {
        if var header = request.headers[.authorization] {
            return header.withUTF8 { bytes in Self.bearerToken(in: bytes).map { String(decoding: $0, as: UTF8.self) } }
        }
        if live, let token = Self.subprotocolToken(request) { return token }
        guard live, allowQueryToken, let token = request.uri.queryParameters.get("access_token") else { return nil }
        return String(token)
    }

    func requireAdmin(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Principal {
        let principal = try await authenticate(request, context)
        guard principal.isAdmin else { throw Problem.forbidden("this route needs the admin scope") }
        return principal
    }

    func saleID(_ context: FlashSaleRequestContext) throws -> String {
        guard let saleID = context.parameters.get("saleId"), SaleDefinition.isValidID(saleID) else {
            throw Problem.notFound("no such sale")
        }
        return saleID
    }

    // MARK: Sales

    /// How far from now a sale may start (API.md).
    static let pastStartWindowMilliseconds: Int64 = 86_400_000
    static let futureStartWindowMilliseconds: Int64 = 366 * 86_400_000

    func createSale(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        var request = request
        let body = try await request.decodeBody(CreateSaleBody.self, context: context)
        let id = body.id ?? "sale-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        guard SaleDefinition.isValidID(id) else { throw Problem.invalidRequest("id must match [A-Za-z0-9_-]{1,64}") }
        try requireLength(body.name, 1...200, field: "name")
        guard SaleDefinition.stockRange.contains(body.stock) else { throw Problem.invalidRequest("stock must be between 1 and 10000000") }
        let limit = body.perCustomerLimit ?? 2
        guard SaleDefinition.perCustomerLimitRange.contains(limit) else { throw Problem.invalidRequest("perCustomerLimit must be between 1 and 100") }
        guard let start = Timestamps.parse(body.startsAt) else { throw Problem.invalidRequest("startsAt must be an RFC 3339 timestamp") }
        let now = Timestamps.nowMilliseconds
        guard start >= now - Self.pastStartWindowMilliseconds, start <= now + Self.futureStartWindowMilliseconds else {
            throw Problem.invalidRequest("startsAt must lie between now - 1 day and now + 1 year")
        }
        let end: Int64
        switch (body.endsAt, body.durationSeconds) {
        case (let endsAt?, nil):
            guard let parsed = Timestamps.parse(endsAt) else { throw Problem.invalidRequest("endsAt must be an RFC 3339 timestamp") }
            guard parsed > start else { throw Problem.invalidRequest("endsAt must be after startsAt") }
            end = parsed
        case (nil, let duration?):
            guard (1...604_800).contains(duration) else { throw Problem.invalidRequest("durationSeconds must be between 1 and 604800") }
            end = start + Int64(duration) * 1_000
        default:
            throw Problem.invalidRequest("give exactly one of endsAt and durationSeconds")
        }
        let definition = SaleDefinition(id: id, name: body.name, stock: body.stock, startsAtMilliseconds: start,
                                        endsAtMilliseconds: end, perCustomerLimit: limit)
        // A sale MongoDB still keeps (retired from the ledger) keeps its id: reusing it would mix two sales'
        // orders under one id. For an id the caller chose, MongoDB unreachable refuses the creation (503) rather
        // than guess; a generated id (96 random bits) needs no look-up.
        if let archive, body.id != nil {
            let known: SaleArchive.ArchivedSale?
            do { known = try await archive.sale(id: id) } catch { throw Self.problem(error) }
            if known != nil { throw Problem(ReservationError(.saleExists, "a sale with id \(id) exists (settled, kept in MongoDB)")) }
        }
        do {
            try definition.validate()
            try await engine.createSale(definition)
        } catch {
            throw Problem(error)
        }
        let view = try? await engine.stock(saleID: id)
        return try jsonResponse(SaleResponse(definition: definition, view: view), status: .created)
    }

    /// Sales per page of `GET /admin/sales` (`limit`), and how many registry entries one call reads at
    /// most while filtering by status.
    static let salePageSizes = 1...100
    static let defaultSalePageSize = 20
    static let maximumSalesScannedPerPage = 1_000

    func listSales(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let query = request.uri.queryParameters
        var wanted: SaleStatus?
        if let status = query["status"].map(String.init), !status.isEmpty {
            guard let parsed = SaleStatus(rawValue: status) else { throw Problem.invalidRequest("status must be scheduled, open or closed") }
            wanted = parsed
        }
        var pageSize = Self.defaultSalePageSize
        if let limit = query["limit"].map(String.init) {
            guard let parsed = Int(limit), Self.salePageSizes.contains(parsed) else { throw Problem.invalidRequest("limit must be between 1 and 100") }
            pageSize = parsed
        }
        var cursor: (id: String, startsAtMilliseconds: Int64)?
        if let text = query["cursor"].map(String.init), !text.isEmpty {
            guard let parsed = Self.parseSaleCursor(text) else { throw Problem.invalidRequest("cursor is not one this server issued") }
            cursor = parsed
        }
        let startCursor = cursor
        var sales: [SaleResponse] = []
        var scanned = 0
        var exhausted = false
        while sales.count < pageSize, scanned < Self.maximumSalesScannedPerPage {
            let batch: [(id: String, startsAtMilliseconds: Int64, snapshot: LedgerSnapshot?)]
            do {
                batch = try await engine.salePage(after: cursor, count: wanted == nil ? pageSize - sales.count : 100)
            } catch {
                throw Problem(error)
            }
            if batch.isEmpty { exhausted = true; break }
            for entry in batch {
                scanned += 1
                cursor = (entry.id, entry.startsAtMilliseconds)
                // A registry entry without a sale (a creation that failed half-way) is skipped.
                guard let snapshot = entry.snapshot else { continue }
                let response = SaleResponse(definition: snapshot.definition, view: ReservationService.view(of: snapshot))
                if let wanted, response.status != wanted.rawValue { continue }
                sales.append(response)
                if sales.count == pageSize { break }
            }
        }
        // The sales MongoDB keeps after the ledger retired them, merged into the same order and cursor.
        let archived = try await archivedSalePage(before: startCursor, count: pageSize, status: wanted)
            .map { SaleResponse(definition: $0.definition, view: $0.view) }
        let page = Self.mergeSalePages(ledger: sales, ledgerExhausted: exhausted, ledgerScanned: cursor, archived: archived, pageSize: pageSize)
        let next = page.next.map { "\($0.startsAtMilliseconds).\($0.id)" }
        return try jsonResponse(SaleListResponse(sales: page.sales, next: next))
    }

    /// `<startsAt ms>.<sale id>`: the last sale of the previous page.
    static func parseSaleCursor(_ text: String) -> (id: String, startsAtMilliseconds: Int64)? {
        guard text.utf8.count <= 96, let dot = text.firstIndex(of: ".") else { return nil }
        guard let milliseconds = Int64(text[..<dot]) else { return nil }
        let id = String(text[text.index(after: dot)...])
        guard SaleDefinition.isValidID(id) else { return nil }
        return (id, milliseconds)
    }

    func closeSale(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let saleID = try saleID(context)
        do {
            guard try await engine.closeSale(saleID: saleID) else {
                throw Problem(ReservationError(.saleEnded, "the sale is already closed"))
            }
            let definition = try await engine.definition(saleID: saleID)
            let view = try await engine.stock(saleID: saleID)
            return try jsonResponse(SaleResponse(definition: definition, view: view))
        } catch let error as ReservationError {
            throw Problem(error)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(ReservationError(.retryLater, "the ledger is unreachable"))
        }
    }

    func sale(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await authenticate(request, context)
        let saleID = try saleID(context)
        do {
            let definition = try await engine.definition(saleID: saleID)
            let view = try await engine.stock(saleID: saleID)
            return try jsonResponse(SaleResponse(definition: definition, view: view))
        } catch let error as ReservationError where error.code == .notFound {
            let archived = try await archivedSale(saleID)
            return try jsonResponse(SaleResponse(definition: archived.definition, view: archived.view))
        } catch let error as ReservationError {
            throw Problem(error)
        } catch {
            throw Problem(ReservationError(.retryLater, "the ledger is unreachable"))
        }
    }

    func stock(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await authenticate(request, context)
        let saleID = try saleID(context)
        do {
            let definition = try await engine.definition(saleID: saleID)
            guard let view = try await engine.stock(saleID: saleID) else { throw ReservationError(.notFound, "no sale \(saleID)") }
            return try jsonResponse(StockResponse(definition: definition, view: view))
        } catch let error as ReservationError where error.code == .notFound {
            let archived = try await archivedSale(saleID)
            return try jsonResponse(StockResponse(definition: archived.definition, view: archived.view))
        } catch let error as ReservationError {
            throw Problem(error)
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(ReservationError(.retryLater, "the ledger is unreachable"))
        }
    }

    func summary(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await authenticate(request, context)
        let saleID = try saleID(context)
        do {
            return try jsonResponse(SummaryResponse(try await engine.summary(saleID: saleID)))
        } catch let error as ReservationError where error.code == .notFound {
            guard let summary = try await archivedSale(saleID).summary else {
                throw Problem.notFound("sale \(saleID) has no final summary stored in MongoDB")
            }
            return try jsonResponse(SummaryResponse(summary))
        } catch let error as ReservationError {
            throw Problem(error)
        }
    }

    // MARK: Orders

    static let idempotencyKeyField = HTTPField.Name("Idempotency-Key")!

    /// An order request, checked and with its delivery sealed: all the order path keeps across its awaits.
    ///
    /// An async function keeps its locals in a frame from the connection task's allocator, and the task
    /// keeps the memory of its deepest request for as long as the connection lives (a connection costs
    /// about 56 KiB once it has placed an order: scripts/conn_memory.py). So the order path does its
    /// synchronous work (token, body, validation, sealing, the answer) in functions that are not inlined
    /// into it, and its frame holds this and little else.
    struct PlacedOrder {
        let saleID: String
        let customerID: String
        let quantity: Int
        let idempotencyKey: String?
        let delivery: String
    }

    func placeOrder(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        let principal = try await authenticate(request, context)
        let (customerID, saleID, idempotencyKey) = try orderHead(request, context, principal: principal)
        let arrival = arrivalStamp(request, context)
        var request = request
        let body = try await request.collectBody(context: context)
        let order = try placedOrder(body, saleID: saleID, customerID: customerID, idempotencyKey: idempotencyKey)
        if let arrival { metrics.frontLag(microseconds: wallClockMicroseconds() - arrival.stamp) }
        let outcome: ReservationOutcome
        switch orderPath {
        case .engine:
            outcome = await engine.reserve(saleID: order.saleID, customerID: order.customerID, quantity: order.quantity,
                                           idempotencyKey: order.idempotencyKey, delivery: order.delivery, arrivalMicroseconds: arrival?.corrected)
        case .direct:
            outcome = await directOrder(saleID: order.saleID, customerID: order.customerID, quantity: order.quantity,
                                        idempotencyKey: order.idempotencyKey ?? "", delivery: order.delivery)
        case .noop:
            outcome = Self.noopOutcome(order)
        }
        return try orderResponse(outcome, saleID: order.saleID)
    }

    /// The head of an order request: who asks (the token), for which sale, under which idempotency key.
    @inline(never)
    func orderHead(_ request: Request, _ context: FlashSaleRequestContext, principal: Principal) throws -> (customerID: String, saleID: String, idempotencyKey: String?) {
        let saleID = try saleID(context)
        guard let key = request.headers[Self.idempotencyKeyField] else { return (principal.customerID, saleID, nil) }
        guard (1...64).contains(key.utf8.count) else {
            engine.recordRejection(saleID: saleID, code: .invalidRequest)
            throw Problem.invalidRequest("Idempotency-Key must be 1 to 64 bytes")
        }
        return (principal.customerID, saleID, key)
    }

    /// When the front read the request (`X-Request-Start`), from a trusted proxy only: its stamp, and the stamp on
    /// this instance's clock (``FrontClock``).
    @inline(never)
    func arrivalStamp(_ request: Request, _ context: FlashSaleRequestContext) -> (stamp: Int64, corrected: Int64)? {
        guard trustRequestStart, trustedProxies.contains(context.peerAddress),
              let stamp = RequestStart.microseconds(request.headers[RequestStart.field]) else { return nil }
        return (stamp, frontClock.arrival(stamp: stamp, receivedAt: wallClockMicroseconds()))
    }

    /// The body of an order request decoded and checked, its delivery sealed to the sale and customer.
    @inline(never)
    func placedOrder(_ body: ByteBuffer, saleID: String, customerID: String, idempotencyKey: String?) throws -> PlacedOrder {
        let body = try OrderBody.decode(body)
        try requireLength(body.delivery.name, 1...100, field: "delivery.name")
        try requirePhone(body.delivery.phone, field: "delivery.phone")
        try requireLength(body.delivery.address, 1...500, field: "delivery.address")
        guard body.quantity >= 1 else { throw Problem.invalidRequest("quantity must be at least 1") }
        let delivery = try cipher.seal(body.delivery.jsonText, context: Self.deliveryContext(saleID: saleID, customerID: customerID))
        return PlacedOrder(saleID: saleID, customerID: customerID, quantity: body.quantity, idempotencyKey: idempotencyKey, delivery: delivery)
    }

    /// The answer to an order: 201 with the order, 202 with the waitlist position, or the problem.
    @inline(never)
    func orderResponse(_ outcome: ReservationOutcome, saleID: String) throws -> Response {
        switch outcome {
        case .confirmed(let record):
            metrics.order(result: "confirmed")
            return JSONText.response(status: .created, OrderResponse(record, saleID: saleID).jsonText)
        case .waitlisted(let position):
            metrics.order(result: "waitlisted")
            return JSONText.response(status: .accepted, WaitlistedResponse(position: position).jsonText)
        case .rejected(let error, let retryAfter):
            metrics.order(result: error.code.rawValue)
            throw Problem(error, retryAfterSeconds: retryAfter)
        }
    }

    /// The `noop` comparison path: an order confirmed without the engine or the ledger (the front's cost alone).
    @inline(never)
    static func noopOutcome(_ order: PlacedOrder) -> ReservationOutcome {
        .confirmed(OrderRecord(orderID: OrderID.make(saleID: order.saleID), customerID: order.customerID, quantity: order.quantity,
                               createdAtMilliseconds: Timestamps.nowMilliseconds, status: .confirmed,
                               idempotencyKey: order.idempotencyKey ?? "", delivery: order.delivery, shardID: "", fence: 0,
                               instanceID: "noop", source: "noop"))
    }

    /// The textbook comparison path: one `EVALSHA` per order on one of a pool of connections.
    func directOrder(saleID: String, customerID: String, quantity: Int, idempotencyKey: String, delivery: String) async -> ReservationOutcome {
        precondition(!directClients.isEmpty, "the direct order path needs its connections")
        let orderID = OrderID.make(saleID: saleID)
        let client = directClients[Int.random(in: 0..<directClients.count)]
        let outcome: DirectOrderOutcome
        do {
            outcome = try await client.withConnection { connection throws(RedisError) in
                try Ledger(connection: connection).directOrder(saleID: saleID, orderID: orderID, customerID: customerID, quantity: quantity,
                                                               idempotencyKey: idempotencyKey, delivery: delivery)
            }
        } catch {
            return .rejected(ReservationError(.retryLater, "the ledger is unreachable (\(error.code))"), retryAfterSeconds: 1)
        }
        switch outcome {
        case .committed(let createdAt):
            return .confirmed(OrderRecord(orderID: orderID, customerID: customerID, quantity: quantity, createdAtMilliseconds: createdAt,
                                          status: .confirmed, idempotencyKey: idempotencyKey, delivery: delivery, shardID: "", fence: 0,
                                          instanceID: "direct", source: "direct"))
        case .duplicate(let record): return .confirmed(record)
        case .waitlisted(let position): return .waitlisted(position: position)
        case .limitExceeded: return .rejected(ReservationError(.limitExceeded, "per-customer limit reached"), retryAfterSeconds: nil)
        case .insufficientStock(let unsold): return .rejected(ReservationError(.insufficientStock, unsold == 1 ? "only 1 unit is left" : "only \(unsold) units are left"), retryAfterSeconds: nil)
        case .closed(let reason): return .rejected(ReservationService.closedError(reason), retryAfterSeconds: nil)
        case .notStarted(let milliseconds):
            return .rejected(ReservationError(.saleNotStarted, "the sale has not started"), retryAfterSeconds: Int((milliseconds + 999) / 1_000))
        case .notFound: return .rejected(ReservationError(.notFound, "no sale \(saleID)"), retryAfterSeconds: nil)
        }
    }

    func me(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        let principal = try await authenticate(request, context)
        let saleID = try saleID(context)
        do {
            let view = try await engine.customerView(saleID: saleID, customerID: principal.customerID)
            let orders = view.orders.map { OrderResponse($0, saleID: saleID) }
            let purchased = view.orders.filter { $0.status == .confirmed }.reduce(0) { $0 + $1.quantity }
            return try jsonResponse(MeResponse(purchased: purchased, orders: orders, waitlist: view.waitlistPosition.map { .init(position: $0) }))
        } catch let error as ReservationError where error.code == .notFound {
            // Settled and retired: the customer's orders as MongoDB keeps them (nobody waits any more).
            _ = try await archivedSale(saleID)
            let records = try await archivedCustomerOrders(saleID: saleID, customerID: principal.customerID)
            let purchased = records.filter { $0.status == .confirmed }.reduce(0) { $0 + $1.quantity }
            return try jsonResponse(MeResponse(purchased: purchased, orders: records.map { OrderResponse($0, saleID: saleID) }, waitlist: nil))
        } catch let error as ReservationError {
            throw Problem(error)
        }
    }

    /// The order if the caller may see it; someone else's order is NOT_FOUND, never revealed. `archived`: it came
    /// from MongoDB (its sale has left the ledger).
    private func visibleOrder(_ request: Request, _ context: FlashSaleRequestContext) async throws -> (Principal, OrderRecord, String, archived: Bool) {
        let principal = try await authenticate(request, context)
        guard let orderID = context.parameters.get("orderId"), let saleID = OrderID.saleID(of: orderID) else {
            throw Problem.notFound("no such order")
        }
        var record: OrderRecord?
        do {
            record = try await engine.order(orderID: orderID)
        } catch {
            throw Problem(error)
        }
        var archived = false
        if record == nil, let stored = try await archivedOrder(orderID) {
            record = stored
            archived = true
        }
        guard let record, principal.isAdmin || CustomerKey.same(record.customerID, principal.customerID) else {
            throw Problem.notFound("no such order")
        }
        return (principal, record, saleID, archived)
    }

    func order(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        let (principal, record, saleID, _) = try await visibleOrder(request, context)
        var response = OrderResponse(record, saleID: saleID)
        // Only the owner sees the delivery details in clear.
        if CustomerKey.same(principal.customerID, record.customerID) {
            do {
                let opened = try cipher.open(record.delivery, context: Self.deliveryContext(saleID: saleID, customerID: record.customerID))
                response.delivery = try JSONDecoder().decode(OrderBody.Delivery.self, from: Data(opened.utf8))
            } catch {
                context.logger.error("delivery details do not open", metadata: ["order": "\(record.orderID)", "error": "\(error)"])
            }
        }
        return try jsonResponse(response)
    }

    /// What a sealed delivery is bound to: its sale and customer (copied onto another customer's order,
    /// it does not open).
    static func deliveryContext(saleID: String, customerID: String) -> String {
        "delivery/\(saleID)/\(customerID)"
    }

    func cancel(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        let (principal, record, saleID, archived) = try await visibleOrder(request, context)
        // A retired sale is settled: its orders can no longer be cancelled.
        if archived { throw Problem(ReservationError(.saleEnded, "the sale is closed; orders can no longer be cancelled")) }
        do {
            let cancelled = try await engine.cancel(saleID: saleID, orderID: record.orderID,
                                                    customerID: principal.isAdmin ? nil : principal.customerID)
            return try jsonResponse(CancelResponse(orderId: cancelled.orderID, status: cancelled.status.rawValue))
        } catch let error as ReservationError {
            throw Problem(error)
        }
    }

    // MARK: Admin

    func shards(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let saleID = try saleID(context)
        let snapshot: LedgerSnapshot?
        do {
            snapshot = try await engine.snapshot(saleID: saleID)
        } catch {
            throw Problem(ReservationError(.retryLater, "the ledger is unreachable (\(error.code))"))
        }
        guard let snapshot else { throw Problem.notFound("no sale \(saleID)") }
        let backlog: Int
        do {
            backlog = try await engine.outboxBacklog(saleID: saleID)
        } catch {
            throw Problem(error)
        }
        return try jsonResponse(ShardsResponse(snapshot, outboxBacklog: backlog))
    }

    func rebalance(_ request: Request, _ context: FlashSaleRequestContext) async throws -> Response {
        _ = try await requireAdmin(request, context)
        let saleID = try saleID(context)
        var request = request
        let body = try await request.decodeBody(RebalanceBody.self, context: context)
        let drain: String?
        switch body.mode {
        case "even": drain = nil
        case "drain":
            guard let instance = body.instance, (1...256).contains(instance.count) else {
                throw Problem.invalidRequest("mode drain needs the instance to drain")
            }
            drain = instance
        default:
            throw Problem.invalidRequest("mode must be even or drain")
        }
        do {
            let result = try await engine.rebalance(saleID: saleID, drainInstance: drain)
            return try jsonResponse(RebalanceResponse(revokedLeases: result.revokedLeases, returnedUnits: result.returnedUnits), status: .accepted)
        } catch let error as ReservationError {
            throw Problem(error)
        }
    }
}

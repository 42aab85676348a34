/// The OpenAPI 3.1 document served at `/openapi.yaml`; it states the contract of ../API.md.
enum OpenAPIDocument {
    static let yaml = #"""
    openapi: 3.1.0
    info:
      title: FlashSale API
      version: "1.0"
      description: Flash-sale reservations that never oversell. Errors are application/problem+json with a stable code.
    servers:
      - url: /
    security:
      - bearer: []
    paths:
      /healthz:
        get:
          security: []
          responses:
            "200": {description: The process is up, content: {application/json: {schema: {type: object}}}}
      /readyz:
        get:
          security: []
          responses:
            "200": {description: The ledger answers, content: {application/json: {schema: {type: object}}}}
            "503": {description: The ledger does not answer, content: {application/json: {schema: {type: object}}}}
      /admin/sales:
        get:
          description: Every sale, latest start first, a page at a time; the ones Redis holds with live numbers, the settled ones it retired from MongoDB (503 when MongoDB does not answer).
          parameters:
            - {name: status, in: query, required: false, schema: {type: string, enum: [scheduled, open, closed]}}
            - {name: cursor, in: query, required: false, description: The previous page's `next`, schema: {type: string, maxLength: 96}}
            - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 100, default: 20}}
          responses:
            "200": {description: One page, content: {application/json: {schema: {$ref: "#/components/schemas/SalePage"}}}}
            "400": {$ref: "#/components/responses/Problem"}
            "401": {$ref: "#/components/responses/Problem"}
            "403": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
        post:
          requestBody:
            required: true
            content: {application/json: {schema: {$ref: "#/components/schemas/CreateSale"}}}
          responses:
            "201": {description: Created, content: {application/json: {schema: {$ref: "#/components/schemas/Sale"}}}}
            "400": {$ref: "#/components/responses/Problem"}
            "401": {$ref: "#/components/responses/Problem"}
            "403": {$ref: "#/components/responses/Problem"}
            "409": {$ref: "#/components/responses/Problem"}
            "413": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /admin/sales/{saleId}/shards:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          responses:
            "200": {description: The lease table, content: {application/json: {schema: {$ref: "#/components/schemas/Shards"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "403": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /admin/sales/{saleId}/close:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        post:
          description: Closes the sale now (closedReason `closed`); the final summary is stored as for any close.
          responses:
            "200": {description: The closed sale, content: {application/json: {schema: {$ref: "#/components/schemas/Sale"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "403": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "409": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /admin/sales/{saleId}/rebalance:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        post:
          requestBody:
            required: true
            content: {application/json: {schema: {$ref: "#/components/schemas/Rebalance"}}}
          responses:
            "202": {description: Leases revoked, content: {application/json: {schema: {$ref: "#/components/schemas/RebalanceResult"}}}}
            "400": {$ref: "#/components/responses/Problem"}
            "401": {$ref: "#/components/responses/Problem"}
            "403": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "413": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          description: From Redis while the sale's keys live; afterwards from MongoDB, the same shape (503 when MongoDB does not answer, never an empty answer).
          responses:
            "200": {description: The sale, content: {application/json: {schema: {$ref: "#/components/schemas/Sale"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}/stock:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          responses:
            "200": {description: Stock (at most 100 ms old), content: {application/json: {schema: {$ref: "#/components/schemas/Stock"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}/summary:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          responses:
            "200": {description: The summary, final once closed, content: {application/json: {schema: {$ref: "#/components/schemas/Summary"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}/orders:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        post:
          parameters:
            - {name: Idempotency-Key, in: header, required: false, schema: {type: string, minLength: 1, maxLength: 64}}
          requestBody:
            required: true
            content: {application/json: {schema: {$ref: "#/components/schemas/OrderRequest"}}}
          responses:
            "201": {description: Confirmed (in the ledger), content: {application/json: {schema: {$ref: "#/components/schemas/Order"}}}}
            "202": {description: Waitlisted, content: {application/json: {schema: {$ref: "#/components/schemas/Waitlisted"}}}}
            "400": {$ref: "#/components/responses/Problem"}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "409": {$ref: "#/components/responses/Problem"}
            "413": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}/me:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          description: From Redis while the sale's keys live; afterwards from MongoDB (waitlist null); 503 when MongoDB does not answer, never an empty list in its place.
          responses:
            "200": {description: The caller's orders and waitlist position, content: {application/json: {schema: {$ref: "#/components/schemas/Me"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
      /sales/{saleId}/live:
        parameters: [{$ref: "#/components/parameters/saleId"}]
        get:
          description: >-
            WebSocket upgrade; messages are Stock objects with type "stock", then {"type":"closed","reason"}. Browsers pass the token
            as a subprotocol offered beside the live protocol (Sec-WebSocket-Protocol: flashsale.live.v1, bearer.<token>); the server
            selects flashsale.live.v1. Other clients may send an Authorization header. A token in the URL (access_token) is refused
            with 401 unless the server allows it (FLASHSALE_ALLOW_QUERY_TOKEN).
          parameters:
            - {name: Sec-WebSocket-Protocol, in: header, required: false, schema: {type: string}, example: "flashsale.live.v1, bearer.eyJ..."}
          responses:
            "101": {description: Switching to WebSocket; Sec-WebSocket-Protocol is flashsale.live.v1 when it was offered}
            "400": {$ref: "#/components/responses/Problem"}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "405": {description: Not a WebSocket upgrade request}
            "429": {$ref: "#/components/responses/Problem"}
      /orders/{orderId}:
        parameters: [{name: orderId, in: path, required: true, schema: {type: string, maxLength: 100}}]
        get:
          description: From Redis while the sale's keys live; afterwards from MongoDB (cached in Redis), the same shape; 503 when MongoDB does not answer.
          responses:
            "200": {description: The order, content: {application/json: {schema: {$ref: "#/components/schemas/Order"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
        delete:
          description: While the sale is open; after close (its keys in Redis or retired to MongoDB) 409 SALE_ENDED.
          responses:
            "200": {description: Cancelled, content: {application/json: {schema: {$ref: "#/components/schemas/Cancelled"}}}}
            "401": {$ref: "#/components/responses/Problem"}
            "404": {$ref: "#/components/responses/Problem"}
            "409": {$ref: "#/components/responses/Problem"}
            "429": {$ref: "#/components/responses/Problem"}
            "503": {$ref: "#/components/responses/Problem"}
    components:
      securitySchemes:
        bearer:
          type: http
          scheme: bearer
          bearerFormat: JWT
          description: >-
            A JWT signed by the shop's identity provider (ES256, RS256 or EdDSA; the key by kid from the configured JWKS; iss and aud
            as configured) or, for local use, HS256 with the service's secret. sub is the customer; scope "admin" grants the admin
            routes (only from the admin issuer or audience when one is configured); name is what the pages show.
      parameters:
        saleId: {name: saleId, in: path, required: true, schema: {type: string, pattern: "^[A-Za-z0-9_-]{1,64}$"}}
      responses:
        Problem:
          description: An error (RFC 9457)
          content: {application/problem+json: {schema: {$ref: "#/components/schemas/Problem"}}}
      schemas:
        Problem:
          type: object
          required: [type, title, status, detail, code]
          properties:
            type: {type: string}
            title: {type: string}
            status: {type: integer}
            detail: {type: string}
            code: {type: string, enum: [INVALID_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, SALE_EXISTS, SALE_NOT_STARTED, SALE_ENDED, SOLD_OUT, INSUFFICIENT_STOCK, LIMIT_EXCEEDED, RATE_LIMITED, RETRY_LATER]}
        CreateSale:
          type: object
          required: [name, stock, startsAt]
          properties:
            id: {type: string, pattern: "^[A-Za-z0-9_-]{1,64}$"}
            name: {type: string, minLength: 1, maxLength: 200}
            stock: {type: integer, minimum: 1, maximum: 10000000}
            startsAt: {type: string, format: date-time, description: "between now - 1 day and now + 1 year"}
            endsAt: {type: string, format: date-time}
            durationSeconds: {type: integer, minimum: 1, maximum: 604800}
            perCustomerLimit: {type: integer, minimum: 1, maximum: 100, default: 2}
        Sale:
          type: object
          required: [id, name, stock, startsAt, endsAt, perCustomerLimit, status, available, sold]
          properties:
            id: {type: string}
            name: {type: string}
            stock: {type: integer}
            startsAt: {type: string, format: date-time}
            endsAt: {type: string, format: date-time}
            perCustomerLimit: {type: integer}
            status: {type: string, enum: [scheduled, open, closed]}
            available: {type: integer}
            sold: {type: integer}
            closedReason: {type: string, enum: [sold_out, ended, closed], description: Present once closed}
        SalePage:
          type: object
          required: [sales, next]
          properties:
            sales: {type: array, items: {$ref: "#/components/schemas/Sale"}}
            next: {type: [string, "null"]}
        Stock:
          type: object
          required: [available, sold, status, waitlist, asOf]
          properties:
            available: {type: integer}
            sold: {type: integer}
            status: {type: string, enum: [scheduled, open, closed]}
            waitlist: {type: integer}
            asOf: {type: string, format: date-time}
        Summary:
          type: object
          required: [final, status, stock, sold, orders, buyers, openedAt, soldOutAt, sellOutMilliseconds, closedAt, closedReason, cancelled, rejections, waitlist]
          properties:
            final: {type: boolean}
            status: {type: string, enum: [scheduled, open, closed]}
            stock: {type: integer}
            sold: {type: integer}
            orders: {type: integer}
            buyers: {type: integer}
            openedAt: {type: [string, "null"], format: date-time}
            soldOutAt: {type: [string, "null"], format: date-time}
            sellOutMilliseconds: {type: [integer, "null"]}
            closedAt: {type: [string, "null"], format: date-time}
            closedReason: {type: [string, "null"], enum: [sold_out, ended, closed, null]}
            cancelled: {type: integer}
            rejections: {type: object, additionalProperties: {type: integer}}
            waitlist:
              type: object
              required: [joined, served, unserved]
              properties: {joined: {type: integer}, served: {type: integer}, unserved: {type: integer}}
        OrderRequest:
          type: object
          required: [quantity, delivery]
          properties:
            quantity: {type: integer, minimum: 1, maximum: 100}
            delivery:
              type: object
              required: [name, phone, address]
              properties:
                name: {type: string, minLength: 1, maxLength: 100}
                phone: {type: string, minLength: 6, maxLength: 20, pattern: "^\\+?[0-9][0-9 -]{4,18}[0-9]$", description: "digits, an optional leading +, spaces or dashes between digits; limits count UTF-8 bytes"}
                address: {type: string, minLength: 1, maxLength: 500}
        Order:
          type: object
          required: [orderId, saleId, customerId, quantity, status, createdAt]
          properties:
            orderId: {type: string}
            saleId: {type: string}
            customerId: {type: string}
            quantity: {type: integer}
            status: {type: string, enum: [confirmed, cancelled, failed]}
            createdAt: {type: string, format: date-time}
            delivery:
              type: object
              properties: {name: {type: string}, phone: {type: string}, address: {type: string}}
        Waitlisted:
          type: object
          required: [status, position]
          properties:
            status: {type: string, enum: [waitlisted]}
            position: {type: integer, minimum: 1}
        Me:
          type: object
          required: [purchased, orders, waitlist]
          properties:
            purchased: {type: integer}
            orders: {type: array, items: {$ref: "#/components/schemas/Order"}}
            waitlist:
              oneOf:
                - {type: "null"}
                - {type: object, required: [position], properties: {position: {type: integer}}}
        Cancelled:
          type: object
          required: [orderId, status]
          properties:
            orderId: {type: string}
            status: {type: string, enum: [cancelled, failed]}
        Shards:
          type: object
          required: [pool, sold, stock, leases, instances, outboxBacklog]
          properties:
            pool: {type: integer}
            sold: {type: integer}
            stock: {type: integer}
            leases:
              type: array
              items:
                type: object
                required: [shardId, owner, fence, remaining, expiresAt]
                properties:
                  shardId: {type: string}
                  owner: {type: string}
                  fence: {type: integer}
                  remaining: {type: integer}
                  expiresAt: {type: string, format: date-time}
            instances: {type: array, items: {type: string}}
            outboxBacklog: {type: integer, description: Confirmed orders not yet written to MongoDB}
        Rebalance:
          type: object
          required: [mode]
          properties:
            mode: {type: string, enum: [even, drain]}
            instance: {type: string}
        RebalanceResult:
          type: object
          required: [revokedLeases, returnedUnits]
          properties:
            revokedLeases: {type: integer}
            returnedUnits: {type: integer}
    """#
}

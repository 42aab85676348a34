import Crypto
import Hummingbird

/// The sale page and the OpenAPI document, with headers fit for a CDN (`Cache-Control`, strong `ETag`,
/// `304 Not Modified` on a matching `If-None-Match`).
struct StaticRoutes: Sendable {
    struct Asset: Sendable {
        let body: String
        let contentType: String
        let etag: String

        init(body: String, contentType: String) {
            self.body = body
            self.contentType = contentType
            let digest = SHA256.hash(data: Array(body.utf8))
            etag = "\"" + digest.prefix(16).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() + "\""
        }
    }

    static let page = Asset(body: SalePage.html, contentType: "text/html; charset=utf-8")
    static let openAPI = Asset(body: OpenAPIDocument.yaml, contentType: "application/yaml")

    func register(on router: Router<some RequestContext>) {
        router.get("/") { request, _ in Self.serve(Self.page, request) }
        router.get("openapi.yaml") { request, _ in Self.serve(Self.openAPI, request) }
    }

    static func serve(_ asset: Asset, _ request: Request) -> Response {
        var headers = HTTPFields()
        headers[.cacheControl] = "public, max-age=60"
        headers[.eTag] = asset.etag
        if request.headers[.ifNoneMatch] == asset.etag {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = asset.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: asset.body)))
    }
}

import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// The pages (the shopper's sale page at `/`, the operator console at `/admin/`, their scripts and styles
/// under `/assets/`) and the OpenAPI document, with headers fit for a CDN: a strong `ETag` and `304 Not
/// Modified` on a matching `If-None-Match`; the HTML revalidates every time (a new release shows at once),
/// the assets are cached for 5 minutes. The pages are static and call the API by URL, so a CDN or the
/// shop's own domain can serve copies of them (see `FLASHSALE_CORS_ORIGINS`).
struct StaticRoutes: Sendable {
    struct Asset: Sendable {
        let file: String
        let body: [UInt8]
        let contentType: String
        let cacheControl: String
        let etag: String

        init(file: String, body: [UInt8], contentType: String, cacheControl: String) {
            self.file = file
            self.body = body
            self.contentType = contentType
            self.cacheControl = cacheControl
            etag = Self.etag(of: body)
        }

        static func etag(of body: [UInt8]) -> String {
            let hex = SHA256.hash(data: body).prefix(16).map { byte in
                let digits = String(byte, radix: 16)
                return digits.count == 1 ? "0" + digits : digits
            }
            return "\"" + hex.joined() + "\""
        }

        /// The same asset with the body of `file` in `directory` when that file exists (FLASHSALE_PAGES_DIR).
        func replaced(from directory: String?) -> Asset {
            guard let directory, let data = FileManager.default.contents(atPath: directory + "/" + file) else { return self }
            return Asset(file: file, body: Array(data), contentType: contentType, cacheControl: cacheControl)
        }
    }

    static let html = "text/html; charset=utf-8"
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let crossOriginOpenerPolicy = HTTPField.Name("Cross-Origin-Opener-Policy")!
    static let revalidate = "no-cache"
    static let cacheable = "public, max-age=300"

    static let salePage = Asset(file: "sale.html", body: PackageResources.sale_html, contentType: html, cacheControl: revalidate)
    static let console = Asset(file: "console.html", body: PackageResources.console_html, contentType: html, cacheControl: revalidate)
    /// The files under `/assets/`, by name.
    static let assets: [String: Asset] = [
        "flashsale.css": Asset(file: "flashsale.css", body: PackageResources.flashsale_css, contentType: "text/css; charset=utf-8", cacheControl: cacheable),
        "flashsale.js": Asset(file: "flashsale.js", body: PackageResources.flashsale_js, contentType: "text/javascript; charset=utf-8", cacheControl: cacheable),
        "sale.js": Asset(file: "sale.js", body: PackageResources.sale_js, contentType: "text/javascript; charset=utf-8", cacheControl: cacheable),
        "console.js": Asset(file: "console.js", body: PackageResources.console_js, contentType: "text/javascript; charset=utf-8", cacheControl: cacheable),
    ]
    static let openAPI = Asset(file: "openapi.yaml", body: Array(OpenAPIDocument.yaml.utf8), contentType: "application/yaml", cacheControl: "public, max-age=60")

    /// The pages' policy: scripts and styles only from files (no inline code), API calls to any origin
    /// (the API origin is configurable), never framed (the order button cannot be overlaid).
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https: ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    /// FLASHSALE_PAGES_DIR, when set.
    let pagesDirectory: String?

    func register(on router: Router<some RequestContext>) {
        router.get("/") { request, _ in Self.serve(Self.salePage.replaced(from: pagesDirectory), request) }
        router.get("admin") { request, _ in
            // The console's relative links need the trailing slash.
            guard request.uri.path.hasSuffix("/") else {
                return Response(status: .permanentRedirect, headers: [.location: "/admin/"])
            }
            return Self.serve(Self.console.replaced(from: pagesDirectory), request)
        }
        router.get("assets/:file") { request, context in
            guard let name = context.parameters.get("file"), let asset = Self.assets[name] else {
                throw HTTPError(.notFound, message: "no such asset")
            }
            return Self.serve(asset.replaced(from: pagesDirectory), request)
        }
        router.get("openapi.yaml") { request, _ in Self.serve(Self.openAPI, request) }
    }

    static func serve(_ asset: Asset, _ request: Request) -> Response {
        var headers = HTTPFields()
        headers[.cacheControl] = asset.cacheControl
        headers[.eTag] = asset.etag
        headers[.xContentTypeOptions] = "nosniff"
        if asset.contentType == html {
            headers[.contentSecurityPolicy] = contentSecurityPolicy
            headers[Self.referrerPolicy] = "no-referrer"
            // A page opened from another site gets no handle on this one (window.opener) and vice versa.
            headers[Self.crossOriginOpenerPolicy] = "same-origin"
        }
        if request.headers[.ifNoneMatch] == asset.etag {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = asset.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.body)))
    }
}

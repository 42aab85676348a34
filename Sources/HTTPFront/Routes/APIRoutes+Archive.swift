import Foundation
import Hummingbird
import Replication
import ReservationEngine

/// Reads after the sale: when Redis no longer knows a sale or an order (its keys retired after
/// `FLASHSALE_RETENTION_SECONDS`, or a replaced Redis), the same routes answer from MongoDB with the same shapes.
/// MongoDB unreachable is 503 RETRY_LATER, never an empty answer; without MongoDB the 404 says why.
extension APIRoutes {
    /// The settled sale from MongoDB; NOT_FOUND when it has none either.
    func archivedSale(_ saleID: String) async throws -> SaleArchive.ArchivedSale {
        guard let archive else { throw Self.unknownWithoutArchive("no sale \(saleID)") }
        let sale: SaleArchive.ArchivedSale?
        do { sale = try await archive.sale(id: saleID) } catch { throw Self.problem(error) }
        guard let sale else { throw Problem.notFound("no sale \(saleID)") }
        return sale
    }

    /// The order from MongoDB; nil when it has none (or no MongoDB is configured).
    func archivedOrder(_ orderID: String) async throws -> OrderRecord? {
        guard let archive else { return nil }
        do { return try await archive.order(id: orderID) } catch { throw Self.problem(error) }
    }

    /// A customer's orders in a settled sale, from MongoDB.
    func archivedCustomerOrders(saleID: String, customerID: String) async throws -> [OrderRecord] {
        guard let archive else { throw Self.unknownWithoutArchive("no sale \(saleID)") }
        do { return try await archive.customerOrders(saleID: saleID, customerID: customerID) } catch { throw Self.problem(error) }
    }

    /// Settled sales from MongoDB for `GET /admin/sales`, older than `cursor`; none without MongoDB.
    func archivedSalePage(before cursor: (id: String, startsAtMilliseconds: Int64)?, count: Int, status: SaleStatus?) async throws -> [SaleArchive.ArchivedSale] {
        guard let archive else { return [] }
        do { return try await archive.salePage(before: cursor, count: count, status: status) } catch { throw Self.problem(error) }
    }

    static func problem(_ failure: SaleArchive.Failure) -> Problem {
        switch failure {
        case .busy: Problem(ReservationError(.retryLater, "too many reads of settled sales at once on this instance; retry shortly"))
        case .unavailable, .malformed: Problem(ReservationError(.retryLater, "the order store (MongoDB) is unavailable: \(failure)"))
        }
    }

    static func unknownWithoutArchive(_ detail: String) -> Problem {
        Problem.notFound("\(detail) in the ledger; settled sales are kept in MongoDB, which this instance is not configured with (MONGO_URI)")
    }

    /// `GET /admin/sales`: the ledger's registries and MongoDB's sales as one list, newest start first, `(startsAt,
    /// id)` keyset-paged. The ledger answers for a sale it holds (live numbers); MongoDB for the ones it retired.
    /// `ledgerScanned` is the ledger's scan cursor: when the ledger was not exhausted, MongoDB's sales are taken
    /// only down to it, so no ledger sale beyond it is skipped.
    static func mergeSalePages(ledger: [SaleResponse], ledgerExhausted: Bool, ledgerScanned: (id: String, startsAtMilliseconds: Int64)?,
                               archived: [SaleResponse], pageSize: Int) -> (sales: [SaleResponse], next: (id: String, startsAtMilliseconds: Int64)?) {
        func key(_ sale: SaleResponse) -> (Int64, String) { (sale.startsAtMilliseconds, sale.id) }
        var seen = Set(ledger.map(\.id))
        var merged = ledger
        for sale in archived where !seen.contains(sale.id) {
            if !ledgerExhausted, let bound = ledgerScanned, key(sale) < (bound.startsAtMilliseconds, bound.id) { continue }
            seen.insert(sale.id)
            merged.append(sale)
        }
        merged.sort { key($0) > key($1) }
        let page = Array(merged.prefix(pageSize))
        let more = merged.count > pageSize || !ledgerExhausted || archived.count >= pageSize
        let next = more ? (page.last.map { ($0.id, $0.startsAtMilliseconds) } ?? ledgerScanned) : nil
        return (page, next)
    }
}

@testable import Replication
import Synchronization
import Testing

@Suite("Order ids")
struct OrderIDTests {
    // Every id names its sale and carries 96 random bits as 24 lowercase hex digits; ids drawn from many
    // tasks at once, across many refills of the random pool, never repeat; and not every digit position is
    // stuck (a pool handing out zeros or the same bytes would show here).
    @Test func idsAreWellFormedAndDistinct() async {
        let perTask = 4 * RandomPool.size / 12
        let ids = await withTaskGroup(of: [String].self) { group in
            for task in 0..<4 {
                group.addTask { (0..<perTask).map { _ in OrderID.make(saleID: "sale-\(task)") } }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(ids.count == 4 * perTask)
        #expect(Set(ids).count == ids.count, "no id repeats")
        for id in ids.prefix(2_000) {
            let random = id.split(separator: ".").last.map(String.init) ?? ""
            #expect(OrderID.saleID(of: id)?.hasPrefix("sale-") == true, "\(id)")
            #expect(random.utf8.count == 25 && random.dropFirst().allSatisfy { "0123456789abcdef".contains($0) }, "\(id)")
        }
        let digits = ids.map { Array($0.utf8.suffix(24)) }
        for position in 0..<24 {
            #expect(Set(digits.map { $0[position] }).count == 16, "position \(position) takes every hex digit")
        }
    }
}

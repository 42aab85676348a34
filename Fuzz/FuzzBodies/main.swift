// libFuzzer target: the request-body decoder and the field checks of the order and sale bodies. Any input
// must end in a value or an INVALID_REQUEST problem (status 400): never a crash, a hang or another error.
import Foundation
@testable import HTTPFront
import Hummingbird
import NIOCore

private func expectProblem(_ error: any Error) {
    guard let problem = error as? Problem else { preconditionFailure("not a problem: \(error)") }
    precondition(problem.status == .badRequest && problem.code == "INVALID_REQUEST", "\(problem)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = UnsafeBufferPointer(start: data, count: size)
    guard let mode = input.first else { return 0 }
    let buffer = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: input.dropFirst()))
    do {
        if mode % 2 == 0 {
            let body = try OrderBody.decode(buffer)
            // The hot-path reader and JSONDecoder agree on every body both accept.
            if let reference = try? Request.decodeJSON(OrderBody.self, from: buffer) {
                precondition(reference == body, "OrderBody.decode and JSONDecoder disagree")
            }
            try requireLength(body.delivery.name, 1...100, field: "delivery.name")
            try requirePhone(body.delivery.phone, field: "delivery.phone")
            try requireLength(body.delivery.address, 1...500, field: "delivery.address")
            precondition(body.delivery.phone.utf8.count <= 20, "an accepted phone fits its limit")
        } else {
            let body = try Request.decodeJSON(CreateSaleBody.self, from: buffer)
            try requireLength(body.name, 1...200, field: "name")
        }
    } catch {
        expectProblem(error)
    }
    return 0
}

// SwiftPM links an executable's entry point under this name; libFuzzer's driver runs from it.
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>, _ callback: FuzzCallback) -> Int32

@_cdecl("FuzzBodies_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOne)
}

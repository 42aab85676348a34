import ServiceLifecycle

/// Runs ``ReservationService/reconcileAll()`` every reconcile interval for the life of the service group;
/// on graceful shutdown it returns the instance's leases and stops the committer.
public struct LeaseReconciler: Service {
    public let service: ReservationService

    public init(service: ReservationService) {
        self.service = service
    }

    public func run() async throws {
        let interval = Duration.milliseconds(service.configuration.reconcileIntervalMilliseconds)
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            await service.reconcileAll()
            try? await cancelWhenGracefulShutdown {
                try await Task.sleep(for: interval)
            }
        }
        await service.shutdown()
    }
}

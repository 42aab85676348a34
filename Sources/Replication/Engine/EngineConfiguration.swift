import ReservationEngine

/// Tuning of one instance's reservation engine. Units are in the names.
public struct EngineConfiguration: Sendable {
    /// This instance's name in the lease table.
    public var instanceID: String
    /// Lease lifetime in the ledger (Redis time).
    public var leaseTTLMilliseconds: Int
    /// Start renewing a lease this long before its local deadline.
    public var leaseRenewMarginMilliseconds: Int
    /// The local deadline is the grant's TTL from the request's send time minus this margin.
    public var leaseSafetyMarginMilliseconds: Int
    public var shardSizing: ShardSizing
    /// Ask for another lease when the local units fall below this fraction of the last grant.
    public var prefetchFraction: Double
    /// Leases per sale this instance expects to sell from at once; a hard cap of 16 times this bounds them.
    public var maxLeasesPerSale: Int
    /// Reconcile (renew, prefetch, return surplus, refresh the global view) this often.
    public var reconcileIntervalMilliseconds: Int
    public var commitQueueCapacity: Int
    public var commitBatchMaxOrders: Int
    /// The group committer's commit delay (``GroupCommitter/Configuration/commitDelayMicroseconds``): 0, the
    /// default, sends each batch as soon as the previous one answered.
    public var commitDelayMicroseconds: Int = 0
    /// Reservations of one sale that may wait in this instance's admission queue (FIFO) at once; an
    /// arrival beyond it is refused with RETRY_LATER (overload).
    public var admissionQueueCapacity: Int
    /// How long a reservation may wait in the admission queue before it is refused with RETRY_LATER.
    public var admissionDeadlineMilliseconds: Int
    /// Size the leases the admission pump asks for to what its waiting customers need (capped by the
    /// adaptive share), and prefetch no more than twice what sold in the last interval: units then follow
    /// the customers across instances (first come, first served across the fleet, within one lease round).
    /// Off, every lease takes the adaptive share.
    public var leaseToDemand = true
    /// Across instances, customers who arrived within this many microseconds of each other count as
    /// simultaneous (see acquire_lease.lua): a smaller value orders the fleet's customers more finely, at the
    /// cost of more, smaller leases while several instances have customers waiting. Also the bound on the
    /// instances' clock skew that the order can be trusted to.
    public var arrivalToleranceMicroseconds = 3_000
    /// With several instances, a customer waiting for a lease is served only this long after their arrival
    /// (`FLASHSALE_FLEET_ORDER_DELAY_MS`; see acquire_lease.lua): customers who arrived earlier but reached
    /// their instance up to this much later still come first. 0: serve at once, in the order of the
    /// customers the instances have seen. Set it above the p99 of `flashsale_front_lag_seconds` when exact
    /// arrival order across the fleet is worth that much latency for the customers who park.
    public var fleetOrderDelayMicroseconds = 0
    /// The customers' arrivals are stamped on this instance's clock, so each lease request says that clock and
    /// the ledger corrects a skew of more than a second (see acquire_lease.lua). The front's stamps
    /// (`FLASHSALE_TRUST_REQUEST_START`) are moved onto this clock first (HTTPFront's `FrontClock`), so it stays on
    /// with them; off only for a caller whose arrivals are on some other clock.
    public var arrivalsOnOwnClock = true
    /// Tests only: keep every grant's arrival number per sale (``ReservationService/admissionGrantLog(saleID:)``).
    public var recordAdmissionOrder = false
    /// Tests only: in every hand-over to the waitlist, the join at this index (0-based) fails as a lost connection
    /// would, before it is sent.
    public var faultFailingWaitlistJoin: Int?

    public init(
        instanceID: String,
        leaseTTLMilliseconds: Int = 2_000,
        leaseRenewMarginMilliseconds: Int = 1_000,
        leaseSafetyMarginMilliseconds: Int = 250,
        shardSizing: ShardSizing = ShardSizing(),
        prefetchFraction: Double = 0.25,
        maxLeasesPerSale: Int = 4,
        reconcileIntervalMilliseconds: Int = 200,
        commitQueueCapacity: Int = 65_536,
        commitBatchMaxOrders: Int = 512,
        admissionQueueCapacity: Int = 100_000,
        admissionDeadlineMilliseconds: Int = 10_000
    ) {
        precondition(!instanceID.isEmpty, "instanceID must not be empty")
        precondition(leaseTTLMilliseconds > leaseSafetyMarginMilliseconds + leaseRenewMarginMilliseconds / 2)
        precondition(maxLeasesPerSale >= 1 && reconcileIntervalMilliseconds >= 1)
        precondition(admissionQueueCapacity >= 1 && admissionDeadlineMilliseconds >= 1)
        self.instanceID = instanceID
        self.leaseTTLMilliseconds = leaseTTLMilliseconds
        self.leaseRenewMarginMilliseconds = leaseRenewMarginMilliseconds
        self.leaseSafetyMarginMilliseconds = leaseSafetyMarginMilliseconds
        self.shardSizing = shardSizing
        self.prefetchFraction = prefetchFraction
        self.maxLeasesPerSale = maxLeasesPerSale
        self.reconcileIntervalMilliseconds = reconcileIntervalMilliseconds
        self.commitQueueCapacity = commitQueueCapacity
        self.commitBatchMaxOrders = commitBatchMaxOrders
        self.admissionQueueCapacity = admissionQueueCapacity
        self.admissionDeadlineMilliseconds = admissionDeadlineMilliseconds
    }
}

/// What a reservation came to.
public enum ReservationOutcome: Sendable, Hashable {
    /// In the ledger (also for a replayed idempotency key: the first order).
    case confirmed(OrderRecord)
    /// No unit is free now but some are held by leases or pending commits.
    case waitlisted(position: Int)
    case rejected(ReservationError, retryAfterSeconds: Int?)
}

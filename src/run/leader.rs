//! Leader election on a Kubernetes Lease (kube-lease-manager): only the replica holding the
//! Lease reconciles; a second replica waits, and takes over when the holder stops renewing.

/// Field manager of one replica's writes to the Lease.
pub(super) fn lease_field_manager(identity: &str) -> String {
    format!("{}-{identity}", crate::controller::FIELD_MANAGER)
}

/// Leader election on a Lease.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub lease: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Lease duration in seconds; a leader that stops renewing loses the lease after it.
    pub duration_seconds: u64,
}

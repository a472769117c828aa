//! connectivity-operator: keeps IoT SIM connectivity (service profiles, subscriptions) in Git
//! and reconciles it against the vendors' APIs.
//!
//! Layout: [`crd`] holds the custom resource types; [`backend`] the vendor contract and the
//! vendor clients; [`controller`] the reconcile pipeline (resolve, observe, plan, act, status)
//! and the kube-runtime controllers; [`offline`] runs the same pipeline on manifest files.

pub mod backend;
pub mod crd;
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
pub mod metrics;
pub mod reason;

/// Select rustls' ring provider once per process (reqwest is built without a default provider
/// so that only one crypto library is compiled in, the one kube uses).
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod controller;
pub mod import;
pub mod offline;
pub mod run;

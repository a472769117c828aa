//! Every reason the operator writes: condition reasons, Event reasons and the `reason` metric
//! label. One enum is the single source of each reason's string, what it means, whether a person
//! must act, how the operator retries, and how Argo CD rates it: the README's reasons table and
//! the three `health.lua` files are generated from it (`connectivity-operator generate`), and
//! `tests/generated_sync.rs` fails when a generated file drifts.

use std::fmt;

/// What happens next after a reason was reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Nothing failed: the next resync (or the next poll of a pending change).
    None,
    /// The operator retries by itself with backoff (5 s doubling to 5 min, jittered).
    Backoff,
    /// After the vendor's `Retry-After` when it sends one, else with backoff.
    RetryAfter,
    /// Only a change helps: retried at the longest backoff (5 min), and at once when the object
    /// (spec, annotation, Secret) changes.
    OnChange,
}

/// How Argo CD's health check rates a `False` condition with this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// A success reason (or Paused: Suspended), no verdict of its own.
    Fine,
    /// Work in flight: Progressing.
    InProgress,
    /// The operator retries by itself: Progressing.
    Transient,
    /// Only a person can resolve it: Degraded.
    NeedsPerson,
    /// An observe-only finding (the vendor differs from Git): Degraded when the reconcile itself
    /// succeeded.
    ObservedMismatch,
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident : $health:ident, $retry:ident, $meaning:literal; )*) => {
        /// A reason string, with its meaning and policies.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[$doc])* $name, )*
        }

        impl Reason {
            /// Every reason, in the order of the README table.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// The PascalCase string in conditions, Events and metrics.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name),)* }
            }

            /// Argo CD's rating of a `False` condition with this reason.
            pub fn health(self) -> Health {
                match self { $(Reason::$name => Health::$health,)* }
            }

            /// How the operator goes on after it.
            pub fn retry(self) -> Retry {
                match self { $(Reason::$name => Retry::$retry,)* }
            }

            /// One line for people (the README table).
            pub fn meaning(self) -> &'static str {
                match self { $(Reason::$name => $meaning,)* }
            }
        }
    };
}

reasons! {
    // Success and progress.
    ReconcileSuccess: Fine, None, "`Synced=True`: the last reconcile succeeded";
    Available: Fine, None, "`Ready=True`: the vendor object matches the spec (the SIM is in the desired mode)";
    Observed: Fine, None, "`Ready=True` for a subscription without a desired mode (observe only)";
    Authenticated: Fine, None, "`Ready=True` on a ProviderConfig: the credentials authenticate";
    Created: Fine, None, "Event: the vendor object was created";
    Adopted: Fine, None, "Event: an existing vendor object was taken over (by id or by name)";
    Updated: Fine, None, "Event: changes were sent to the vendor";
    Deleted: Fine, None, "Event: the vendor object was deleted with the Kubernetes object (`deletionPolicy: Delete`)";
    Orphaned: Fine, None, "Event: the vendor object was left as it is (`deletionPolicy: Orphan`)";
    Deactivated: Fine, None, "Event: the SIM was deactivated as the object was deleted (`deletionPolicy: Deactivate`)";
    ChangeRequested: Fine, None, "Event: an asynchronous vendor accepted a change (Telenor 202)";
    Paused: Fine, None, "`managementPolicy: Paused`: no vendor calls; Argo CD shows Suspended";
    Creating: InProgress, None, "`Ready=False` right after a create, while services and limits are applied";
    Pending: InProgress, None, "`Synced=False`: an asynchronous vendor change is in flight; read again every `--pending-poll-interval`";
    // Observe-only findings.
    Drifted: ObservedMismatch, None, "`Ready=False`: observe-only, and the vendor object differs from the spec (the message lists how)";
    // Failures the operator retries by itself.
    VendorUnavailable: Transient, Backoff, "the vendor timed out, answered 5xx or could not be reached";
    RateLimited: Transient, RetryAfter, "the vendor answered 429";
    OutcomeUnknown: Transient, Backoff, "a write timed out: it is read back before anything is sent again";
    NotFound: Transient, Backoff, "the vendor did not find an object the operator expected; as `Ready=False` of an observe-only profile: no vendor profile with that name";
    KubernetesApiError: Transient, Backoff, "a Kubernetes API call failed";
    StatusWriteFailed: Transient, Backoff, "the status write failed; the next reconcile finds the vendor object by id or name";
    FinalizerFailed: Transient, Backoff, "adding or removing the finalizer failed";
    ServiceProfileNotReady: Transient, Backoff, "the referenced ServiceProfile has no vendor id yet";
    // Failures a person resolves (the operator keeps checking).
    ProviderConfigNotFound: NeedsPerson, Backoff, "the referenced ProviderConfig does not exist";
    SecretNotFound: NeedsPerson, Backoff, "the credentials Secret does not exist";
    ServiceProfileNotFound: NeedsPerson, Backoff, "the referenced ServiceProfile does not exist";
    SimNotFound: NeedsPerson, Backoff, "the vendor has no SIM with the subscription's ICCID / IMSI";
    IdentityMismatch: NeedsPerson, Backoff, "`spec.imsi` and `spec.iccid` name two different SIMs at the vendor (the message says which SIM each names); nothing is sent";
    InUse: NeedsPerson, Backoff, "a delete the vendor refuses while the object is used (emnify 409, BICS 1338) or a ProviderConfig still used; the finalizer stays until it is free";
    CredentialsGone: NeedsPerson, Backoff, "Event: the account's credentials are gone, so the vendor object is left as it is while the namespace goes";
    // Failures only a change resolves.
    SecretKeyMissing: NeedsPerson, OnChange, "the Secret lacks the vendor's credential keys";
    InvalidProviderConfig: NeedsPerson, OnChange, "the ProviderConfig cannot be used (e.g. an endpoint that is no URL)";
    CredentialsRejected: NeedsPerson, OnChange, "the vendor rejected the ProviderConfig's credentials";
    Unauthorized: NeedsPerson, OnChange, "the vendor rejected the credentials (after one re-authentication)";
    Forbidden: NeedsPerson, OnChange, "the vendor answered 403: valid credentials that may not do this; the vendor's message says which";
    InvalidRequest: NeedsPerson, OnChange, "the vendor refused the request as invalid (the message has its code and text), or the spec cannot be sent as it is";
    Conflict: NeedsPerson, OnChange, "the vendor state conflicts: several objects carry the name (set `spec.externalId`), or a different object has it";
    ExternalIdNotFound: NeedsPerson, OnChange, "`spec.externalId` names no vendor object; it is never created in its place";
    VendorSectionMissing: NeedsPerson, OnChange, "the spec lacks the section the account's API needs (`spec.emnify` / `spec.bicsSft`)";
    InvalidSpec: NeedsPerson, OnChange, "the spec cannot work on this vendor (e.g. `serviceProfileRef` on a BICS RPC account)";
    InvalidReference: NeedsPerson, OnChange, "the referenced ServiceProfile belongs to another ProviderConfig";
    DuplicateIdentity: NeedsPerson, OnChange, "an older ConnectivitySubscription on the same ProviderConfig already manages this SIM (same IMSI or ICCID); this one sends nothing, also not on delete";
    TerminationNotConfirmed: NeedsPerson, OnChange, "mode `Terminated` without the confirmation annotation: nothing was sent";
    Terminated: NeedsPerson, OnChange, "the SIM is terminated, which is irreversible, and the spec asks for another mode";
}

impl Reason {
    /// A person must act (Argo CD: Degraded).
    pub fn needs_person(self) -> bool {
        self.health() == Health::NeedsPerson
    }

    /// Only a change of the object helps: the longest backoff, and at once on a change.
    pub fn is_permanent(self) -> bool {
        self.retry() == Retry::OnChange
    }

    /// The README table of reasons.
    pub fn markdown_table() -> String {
        let mut out = String::from("| Reason | Meaning | Who acts | What happens next |\n|---|---|---|---|\n");
        for r in Reason::ALL {
            let who = match r.health() {
                Health::NeedsPerson | Health::ObservedMismatch => "a person",
                Health::Transient | Health::InProgress => "the operator",
                Health::Fine => "—",
            };
            let next = match r.retry() {
                Retry::None => "next resync",
                Retry::Backoff => "retried with backoff",
                Retry::RetryAfter => "after `Retry-After`, else backoff",
                Retry::OnChange => "5 min, or at once on a change",
            };
            out.push_str(&format!("| `{}` | {} | {who} | {next} |\n", r.as_str(), r.meaning()));
        }
        out
    }

    /// The Lua tables of the Argo CD health check.
    pub fn lua_tables() -> String {
        let table = |name: &str, comment: &str, keep: &dyn Fn(Reason) -> bool| {
            let mut out = format!("-- {comment}\nlocal {name} = {{\n");
            for r in Reason::ALL.iter().copied().filter(|r| keep(*r)) {
                out.push_str(&format!("  {} = true,\n", r.as_str()));
            }
            out.push_str("}\n");
            out
        };
        [
            table(
                "needsPerson",
                "Reasons only a person can resolve: fix the spec, the Secret, or the state at the vendor.",
                &|r| r.health() == Health::NeedsPerson,
            ),
            table(
                "inProgress",
                "Work in flight: the operator (or the vendor) is getting there.",
                &|r| r.health() == Health::InProgress,
            ),
            table(
                "transient",
                "Failures the operator retries by itself with backoff.",
                &|r| r.health() == Health::Transient,
            ),
            // `NotFound` is both: a vendor object missing during a reconcile (transient), and the
            // finding of an observe-only profile that does not exist (a mismatch).
            table(
                "observedMismatch",
                "Ready=False findings of an observe-only reconcile that succeeded: the vendor differs from Git\n-- and the operator will not change it.",
                &|r| r.health() == Health::ObservedMismatch || r == Reason::NotFound,
            ),
        ]
        .join("\n")
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_unique_pascal_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(s.chars().next().unwrap().is_ascii_uppercase() && s.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(!r.meaning().is_empty());
        }
    }

    #[test]
    fn permanent_reasons_need_a_person() {
        for r in Reason::ALL {
            if r.is_permanent() {
                assert!(r.needs_person(), "{r} waits for a change nobody is asked to make");
            }
        }
    }
}

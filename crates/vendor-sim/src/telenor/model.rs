//! The simulator's in-memory world: one domain with its service policies and IoT subscriptions
//! (each holding one plain-UICC `SIM_PROFILE` profile and its connectivity subscription), the
//! identifier rules of spec §2, how each resource renders into the §0 envelope, and the
//! deterministic seed.
//!
//! Subscriptions live in an arena (`Vec<Option<Subscription>>`) addressed by a stable `u32` slot:
//! search cursors snapshot slots (4 bytes a hit) and a removed subscription leaves a hole, so a
//! cursor taken before the removal simply skips it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Timelike, Utc};
use rand::{Rng, RngCore};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::search::Cursor;
use super::{Fault, TelenorConfig};

pub(crate) const REQUEST_LOG_CAP: usize = 10_000;

pub(crate) const SUBSCRIPTIONS_PREFIX: &str = "/iot-connect/subscriptions/v1";
pub(crate) const POLICIES_PREFIX: &str = "/iot-connect/service-policies/v1";

/// Every mode a connectivity subscription can be in (seed page enum).
pub(crate) const MODES: [&str; 5] = ["ACTIVE", "ACTIVE_NO_BILLING", "DEACTIVATED", "PAUSED", "TERMINATED"];
/// The modes change-mode accepts (spec §4: `ACTIVE_NO_BILLING` is read-only).
pub(crate) const WRITABLE_MODES: [&str; 4] = ["ACTIVE", "DEACTIVATED", "PAUSED", "TERMINATED"];

/// The canonical `&'static str` of a mode name, if it is one.
pub(crate) fn mode_name(mode: &str) -> Option<&'static str> {
    MODES.iter().copied().find(|m| *m == mode)
}

/// SplitMix64: the seed's random stream. Chosen over `StdRng` because it is portable and stable
/// across `rand` versions (same seed, same world, everywhere) and cheap in unoptimised builds,
/// where ChaCha dominated seeding 10 000 subscriptions. Not for secrets (tokens use `rand::rng`).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

// ------------------------------------------------------------------ identifiers (spec §2)

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `^[0-9]{6,15}$`
pub(crate) fn is_imsi(s: &str) -> bool {
    all_digits(s) && (6..=15).contains(&s.len())
}

/// `^89[0-9]{16,18}$`
pub(crate) fn is_iccid(s: &str) -> bool {
    s.starts_with("89") && all_digits(s) && (18..=20).contains(&s.len())
}

/// `^[0-9]{5,15}$`; MSISDNs only arrive as the `{id}` of idType endpoints, checked with
/// [`is_id_param`], so this one only guards the seed.
#[cfg(test)]
pub(crate) fn is_msisdn(s: &str) -> bool {
    all_digits(s) && (5..=15).contains(&s.len())
}

/// `^[0-9]{32}$`
pub(crate) fn is_eid(s: &str) -> bool {
    all_digits(s) && s.len() == 32
}

/// `[0-9]{5,20}`, the `{id}` of the idType endpoints; enforced anchored (the whole segment).
pub(crate) fn is_id_param(s: &str) -> bool {
    all_digits(s) && (5..=20).contains(&s.len())
}

const IOT_ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// `^[85,97]{2}[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{16}$`, the documented regex taken literally
/// (its first class is the five characters `8`, `5`, `,`, `9`, `7`).
pub(crate) fn is_iot_subscription_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 18 && b[..2].iter().all(|c| b"85,97".contains(c)) && b[2..].iter().all(|c| IOT_ID_ALPHABET.contains(c))
}

/// `^22[A-HJ-NP-Z2-9]{6}$`
pub(crate) fn is_service_policy_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b.starts_with(b"22")
        && b[2..]
            .iter()
            .all(|c| matches!(c, b'A'..=b'H' | b'J'..=b'N' | b'P'..=b'Z' | b'2'..=b'9'))
}

/// `^([A-Za-z0-9]{8}-){0,6}[A-Za-z0-9]{8}$`
pub(crate) fn is_domain_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() <= 7
        && parts
            .iter()
            .all(|p| p.len() == 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Luhn check digit of a digit string (ICCIDs carry one as their last digit).
pub(crate) fn luhn_digit(digits: &str) -> u32 {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (10 - sum % 10) % 10
}

// ------------------------------------------------------------------ time formats

// Formatted by hand rather than with chrono's `format`, which parses its pattern on every call
// and dominated seeding 10 000 subscriptions.

/// Calendar dates as the seed page's example renders them: `2024-10-17`.
pub(crate) fn date(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
}

/// Timestamps as the search page's filter example renders them: `2024-05-18T12:12:34.000Z`.
pub(crate) fn date_time(t: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    )
}

// ------------------------------------------------------------------ resources

/// An IoTA service policy of the domain with its CMP subscription package (spec §5).
#[derive(Debug, Clone)]
pub(crate) struct ServicePolicy {
    pub id: &'static str,
    pub name: &'static str,
    pub metadata: BTreeMap<String, String>,
    /// Dotted IoTA subscription package id.
    pub package_id: &'static str,
    pub description: &'static str,
    pub apn: &'static str,
    pub lte: bool,
    pub nb_iot: bool,
    /// A blocking policy bars data entirely (used to quarantine SIMs).
    pub blocked: bool,
}

/// One IoT subscription with its single `SIM_PROFILE` profile and connectivity subscription.
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    pub iot_id: String,
    pub in_service_date: String,
    pub last_modified_at: String,
    pub metadata: BTreeMap<String, String>,
    pub iccid: String,
    pub sim_profile_id: String,
    pub imsi: String,
    pub msisdn: String,
    pub mode: &'static str,
    pub service_policy_id: &'static str,
    pub first_activation_date: Option<String>,
    pub trm_exited_at: Option<String>,
    /// Detected (and assigned) IMEI, 15 digits.
    pub imei: u64,
    pub ip: Ipv4Addr,
    /// Seed for the PIN/PUK codes shown with `extendWith=pinPuk`.
    pub pin_seed: u32,
}

/// Which optional attributes a request asked for with `extendWith`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extend {
    pub fixed_ip_addresses: bool,
    pub imei: bool,
    pub pin_puk: bool,
}

/// What a change is about; one pending slot of each kind per subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Mode,
    ServicePolicy,
}

/// Accepted but not yet applied changes of one subscription: `(sequence, target)`. A newer write
/// of the same kind replaces the older one (last writer wins).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub mode: Option<(u64, &'static str)>,
    pub policy: Option<(u64, &'static str)>,
}

impl Pending {
    pub fn count(&self) -> usize {
        usize::from(self.mode.is_some()) + usize::from(self.policy.is_some())
    }
}

/// A per-token bucket (spec §6 simulator rule).
#[derive(Debug)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub last: Instant,
}

impl Bucket {
    /// Takes one token; `false` means 429. The bucket starts full at `burst`.
    pub fn take(slot: &mut Option<Bucket>, rate: f64, burst: u32, now: Instant) -> bool {
        let capacity = f64::from(burst.max(1));
        let b = slot.get_or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A search hit as serialised (spec §3.6): every array holds the one child our model has.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SearchRow<'a> {
    iot_subscription: IotRow<'a>,
    euiccs: [ConnRow<'a>; 0],
    profiles: [ProfileRow<'a>; 1],
    service_policies: Vec<PolicyRow<'a>>,
    connectivity_subscriptions: [ConnRow<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IotRow<'a> {
    iot_subscription_id: &'a str,
    subscription_type: &'a str,
    domain_id: &'a str,
    in_service_date: &'a str,
    last_modified_at: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileRow<'a> {
    iccid: &'a str,
    service_policy_id: &'a str,
    profile_type: &'a str,
    cmp: &'a str,
    is_enabled: bool,
    connectivity_profile: ConnectivityProfileRow<'a>,
}

#[derive(Serialize)]
struct ConnectivityProfileRow<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct PolicyRow<'a> {
    id: &'a str,
    name: &'a str,
    r#type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnRow<'a> {
    imsi: &'a str,
    iccid: &'a str,
    msisdn: &'a str,
    mode: &'a str,
    first_activation_date: Option<&'a str>,
    trm_exited_at: Option<&'a str>,
    service_policy_id: &'a str,
}

pub(crate) struct State {
    pub config: TelenorConfig,
    pub domain_id: String,
    pub policies: Vec<ServicePolicy>,
    pub subs: Vec<Option<Subscription>>,
    pub live: usize,
    pub by_imsi: HashMap<String, u32>,
    pub by_iccid: HashMap<String, u32>,
    pub by_msisdn: HashMap<String, u32>,
    pub by_iot_id: HashMap<String, u32>,
    pub pending: HashMap<u32, Pending>,
    /// Due time and sequence -> (slot, kind); entries whose sequence no longer matches the
    /// subscription's pending slot were superseded and are skipped.
    pub queue: BTreeMap<(Instant, u64), (u32, OpKind)>,
    pub next_seq: u64,
    /// Accepted mode / service-policy writes per IMSI.
    pub write_counts: HashMap<String, usize>,
    /// Live access tokens and when they expire.
    pub tokens: HashMap<String, Instant>,
    pub buckets: HashMap<String, Option<Bucket>>,
    pub cursors: HashMap<String, Cursor>,
    pub faults: Vec<Fault>,
    pub request_count: u64,
    pub request_log: VecDeque<(String, String, u16)>,
    /// Continues the seed's random stream for subscriptions added later.
    pub rng: SplitMix64,
    pub next_serial: u64,
    pub numbering: Numbering,
}

/// Bases of the seeded number ranges; serial `n` gets base + n.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Numbering {
    imsi_base: u64,
    iccid_base: u64,
    msisdn_base: u64,
}

fn policy(
    id: &'static str,
    name: &'static str,
    metadata: &[(&str, &str)],
    package_id: &'static str,
    description: &'static str,
    flags: (bool, bool, bool),
) -> ServicePolicy {
    ServicePolicy {
        id,
        name,
        metadata: metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        package_id,
        description,
        apn: "telenor.iot",
        lte: flags.0,
        nb_iot: flags.1,
        blocked: flags.2,
    }
}

/// The seeded domain's policies. `22A8BC76` is the id of the seed page's example.
fn seed_policies() -> Vec<ServicePolicy> {
    vec![
        policy(
            "22A8BC76",
            "EU 5MB",
            &[("team", "fleet-a"), ("tier", "standard")],
            "9.25.2.986.1.5.2.6.1.1.1.30.100.100.20480.1.10.953",
            "5 MB Europe",
            (true, false, false),
        ),
        policy(
            "22GLBDAT",
            "Global 1GB LTE",
            &[("team", "fleet-b"), ("tier", "premium")],
            "9.25.2.986.1.5.2.6.1.1.1.30.100.100.1048576.1.10.954",
            "1 GB Global LTE",
            (true, false, false),
        ),
        policy(
            "22NBT5MS",
            "NB-IoT Sensors 10MB",
            &[("team", "sensors"), ("tier", "low-power")],
            "9.25.2.986.1.5.2.6.1.1.1.30.100.100.10240.1.10.955",
            "10 MB Europe NB-IoT",
            (false, true, false),
        ),
        policy(
            "22BLCK2D",
            "Blocked (no data)",
            &[("purpose", "quarantine")],
            "9.25.2.986.1.5.2.6.1.1.1.30.0.0.0.1.10.956",
            "All services barred",
            (false, false, true),
        ),
    ]
}

const SITES: [&str; 6] = ["oslo", "bergen", "trondheim", "stavanger", "tromso", "drammen"];
const FLEETS: [&str; 3] = ["meters", "trackers", "gateways"];

fn seed_base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 8, 9, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Builds the seeded world; identical for identical `rng_seed` and size.
pub(crate) fn seed(config: TelenorConfig) -> State {
    let mut rng = SplitMix64::new(config.seed.rng_seed);
    let domain_id = format!("{}-{}", random_word(&mut rng), random_word(&mut rng));
    // 242 01 = Telenor Norway; ICCIDs 89 47 (Norway) 01; M2M MSISDNs +47 580.
    let numbering = Numbering {
        imsi_base: 242_010_000_000_000 + rng.random_range(0..4_000_000_000),
        iccid_base: 8_947_010_000_000_000_000 + rng.random_range(0..4_000_000_000_000),
        msisdn_base: 475_800_000_000 + rng.random_range(0..4_000_000),
    };
    let n = config.seed.subscriptions;
    let mut state = State {
        domain_id,
        policies: seed_policies(),
        subs: Vec::with_capacity(n),
        live: 0,
        by_imsi: HashMap::with_capacity(n),
        by_iccid: HashMap::with_capacity(n),
        by_msisdn: HashMap::with_capacity(n),
        by_iot_id: HashMap::with_capacity(n),
        pending: HashMap::new(),
        queue: BTreeMap::new(),
        next_seq: 0,
        write_counts: HashMap::new(),
        tokens: HashMap::new(),
        buckets: HashMap::new(),
        cursors: HashMap::new(),
        faults: Vec::new(),
        request_count: 0,
        request_log: VecDeque::new(),
        rng: SplitMix64::new(0),
        next_serial: 0,
        numbering,
        config,
    };
    let base = seed_base();
    let mut seen_ids = HashSet::with_capacity(n);
    for _ in 0..n {
        // Mostly ACTIVE; some still in Test Ready Mode, some paused or deactivated.
        let mode = match rng.random_range(0..100) {
            0..70 => "ACTIVE",
            70..80 => "ACTIVE_NO_BILLING",
            80..90 => "PAUSED",
            _ => "DEACTIVATED",
        };
        let policy = match rng.random_range(0..10) {
            0..6 => 0,
            6..9 => 1,
            _ => 2,
        };
        let in_service = base + ChronoDuration::days(rng.random_range(0..400));
        let mut sub = state.new_subscription(&mut rng, &mut seen_ids, mode, policy, in_service);
        if mode != "ACTIVE_NO_BILLING" {
            let activated = in_service + ChronoDuration::days(rng.random_range(0..14));
            sub.first_activation_date = Some(date(activated));
            sub.trm_exited_at = Some(date(activated));
            let modified = activated + ChronoDuration::minutes(rng.random_range(0..200_000));
            sub.last_modified_at = date_time(modified);
        }
        state.insert(sub);
    }
    state.rng = SplitMix64::new(rng.random());
    state
}

fn random_word(rng: &mut SplitMix64) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

impl State {
    /// A new subscription with the next serial numbers; not yet inserted.
    fn new_subscription(
        &mut self,
        rng: &mut SplitMix64,
        seen_ids: &mut HashSet<String>,
        mode: &'static str,
        policy: usize,
        in_service: DateTime<Utc>,
    ) -> Subscription {
        let serial = self.next_serial;
        self.next_serial += 1;
        let iot_id = loop {
            let prefix = if rng.random_bool(0.5) { "97" } else { "85" };
            let rest: String = (0..16)
                .map(|_| char::from(IOT_ID_ALPHABET[rng.random_range(0..IOT_ID_ALPHABET.len())]))
                .collect();
            let id = format!("{prefix}{rest}");
            if !seen_ids.contains(&id) && !self.by_iot_id.contains_key(&id) {
                seen_ids.insert(id.clone());
                break id;
            }
        };
        let iccid19 = (self.numbering.iccid_base + serial).to_string();
        let iccid = format!("{iccid19}{}", luhn_digit(&iccid19));
        let site = SITES[rng.random_range(0..SITES.len())];
        let fleet = FLEETS[rng.random_range(0..FLEETS.len())];
        let mut metadata = BTreeMap::new();
        metadata.insert("site".to_string(), site.to_string());
        metadata.insert("fleet".to_string(), fleet.to_string());
        Subscription {
            iot_id,
            in_service_date: date(in_service),
            last_modified_at: date_time(in_service),
            metadata,
            sim_profile_id: format!("SP{:010}", 7_000_000 + serial),
            imsi: (self.numbering.imsi_base + serial).to_string(),
            msisdn: (self.numbering.msisdn_base + serial).to_string(),
            iccid,
            mode,
            service_policy_id: self.policies[policy].id,
            first_activation_date: None,
            trm_exited_at: None,
            imei: 350_000_000_000_000 + rng.random_range(0..9_999_999_999_999),
            ip: Ipv4Addr::from(0x0A40_0000u32 + 2 + u32::try_from(serial).unwrap_or(0) % 0x3F_FFFD),
            pin_seed: rng.random(),
        }
    }

    fn insert(&mut self, sub: Subscription) -> u32 {
        let slot = u32::try_from(self.subs.len()).unwrap_or(u32::MAX);
        self.by_imsi.insert(sub.imsi.clone(), slot);
        self.by_iccid.insert(sub.iccid.clone(), slot);
        self.by_msisdn.insert(sub.msisdn.clone(), slot);
        self.by_iot_id.insert(sub.iot_id.clone(), slot);
        self.subs.push(Some(sub));
        self.live += 1;
        slot
    }

    /// A subscription that appears at the vendor now (a SIM bought and put in service today).
    pub fn add_subscription(&mut self, mode: &'static str) -> u32 {
        let mut rng = std::mem::replace(&mut self.rng, SplitMix64::new(0));
        let now = Utc::now();
        let mut seen = HashSet::new();
        let mut sub = self.new_subscription(&mut rng, &mut seen, mode, 0, now);
        self.rng = rng;
        if mode != "ACTIVE_NO_BILLING" {
            sub.first_activation_date = Some(date(now));
            sub.trm_exited_at = Some(date(now));
        }
        self.insert(sub)
    }

    pub fn remove_subscription(&mut self, imsi: &str) -> bool {
        let Some(slot) = self.by_imsi.remove(imsi) else {
            return false;
        };
        if let Some(sub) = self.subs.get_mut(slot as usize).and_then(Option::take) {
            self.by_iccid.remove(&sub.iccid);
            self.by_msisdn.remove(&sub.msisdn);
            self.by_iot_id.remove(&sub.iot_id);
            self.live -= 1;
        }
        self.pending.remove(&slot);
        true
    }

    pub fn sub(&self, slot: u32) -> Option<&Subscription> {
        self.subs.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn policy(&self, id: &str) -> Option<&ServicePolicy> {
        self.policies.iter().find(|p| p.id == id)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.values().map(Pending::count).sum()
    }

    /// Applies a mode now, with the Test Ready Mode bookkeeping of spec §4: leaving
    /// `ACTIVE_NO_BILLING` stamps `trmExitedAt`, the first `ACTIVE` stamps `firstActivationDate`.
    pub fn apply_mode(&mut self, slot: u32, mode: &'static str) {
        let Some(sub) = self.subs.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if sub.mode == mode {
            return;
        }
        let now = Utc::now();
        if sub.mode == "ACTIVE_NO_BILLING" && sub.trm_exited_at.is_none() {
            sub.trm_exited_at = Some(date(now));
        }
        if mode == "ACTIVE" && sub.first_activation_date.is_none() {
            sub.first_activation_date = Some(date(now));
        }
        sub.mode = mode;
        sub.last_modified_at = date_time(now);
    }

    fn apply_policy(&mut self, slot: u32, policy: &'static str) {
        let Some(sub) = self.subs.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if sub.service_policy_id != policy {
            sub.service_policy_id = policy;
            sub.last_modified_at = date_time(Utc::now());
        }
    }

    /// Queues a change due after `async_delay`, replacing a pending change of the same kind.
    pub fn enqueue(&mut self, slot: u32, kind: OpKind, target: &'static str, now: Instant) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let entry = self.pending.entry(slot).or_default();
        match kind {
            OpKind::Mode => entry.mode = Some((seq, target)),
            OpKind::ServicePolicy => entry.policy = Some((seq, target)),
        }
        self.queue.insert((now + self.config.async_delay, seq), (slot, kind));
    }

    /// Drops a pending change of `kind` (a later write asked for the state already in place).
    pub fn cancel(&mut self, slot: u32, kind: OpKind) {
        if let Some(p) = self.pending.get_mut(&slot) {
            match kind {
                OpKind::Mode => p.mode = None,
                OpKind::ServicePolicy => p.policy = None,
            }
            if p.count() == 0 {
                self.pending.remove(&slot);
            }
        }
    }

    /// Applies every queued change due at `until` (all of them with `None`), in due order.
    pub fn settle(&mut self, until: Option<Instant>) {
        while let Some((&(due, seq), &(slot, kind))) = self.queue.first_key_value() {
            if until.is_some_and(|t| due > t) {
                break;
            }
            self.queue.remove(&(due, seq));
            let Some(p) = self.pending.get_mut(&slot) else {
                continue;
            };
            let target = match kind {
                OpKind::Mode => p.mode.filter(|(s, _)| *s == seq).map(|(_, t)| t),
                OpKind::ServicePolicy => p.policy.filter(|(s, _)| *s == seq).map(|(_, t)| t),
            };
            let Some(target) = target else {
                continue;
            };
            self.cancel(slot, kind);
            match kind {
                OpKind::Mode => self.apply_mode(slot, target),
                OpKind::ServicePolicy => self.apply_policy(slot, target),
            }
        }
    }

    // -------------------------------------------------------------- rendering (spec §0, §3, §5)

    fn iot_url(sub: &Subscription) -> String {
        format!("{SUBSCRIPTIONS_PREFIX}/iot-subscriptions/{}", sub.iot_id)
    }
    fn profile_url(sub: &Subscription) -> String {
        format!("{SUBSCRIPTIONS_PREFIX}/profiles/{}", sub.iccid)
    }
    fn conn_url(sub: &Subscription) -> String {
        format!("{SUBSCRIPTIONS_PREFIX}/connectivity-subscriptions/{}", sub.imsi)
    }
    pub fn policy_url(id: &str) -> String {
        format!("{POLICIES_PREFIX}/iot-platform/{id}")
    }
    fn package_url(p: &ServicePolicy) -> String {
        format!("{POLICIES_PREFIX}/iota/iota_eu/{}", p.package_id)
    }

    /// Connectivity subscription attributes. All non-extended ones count as required (they are
    /// not extendable, and the base answer holds only required ones), so included = base.
    pub fn conn_attrs(&self, sub: &Subscription, ext: Extend) -> Value {
        let mut a = json!({
            "imsi": sub.imsi,
            "iccid": sub.iccid,
            "msisdn": sub.msisdn,
            "mode": sub.mode,
            "firstActivationDate": sub.first_activation_date,
            "trmExitedAt": sub.trm_exited_at,
        });
        if ext.fixed_ip_addresses {
            a["fixedIpAddresses"] = json!([{
                "ipAddress": sub.ip.to_string(),
                "subnet": "255.192.0.0",
                "ipVersion": "IPv4",
                "apnName": self.policy(sub.service_policy_id).map_or("telenor.iot", |p| p.apn),
                "radiusServer": "RADIUS2",
            }]);
        }
        if ext.imei {
            let imei = sub.imei.to_string();
            a["imei"] = json!({"assignedImei": imei, "detectedImei": imei});
        }
        a
    }

    /// IoT subscription attributes; `full` adds the optional `metadata`.
    pub fn iot_attrs(&self, sub: &Subscription, full: bool) -> Value {
        let mut a = json!({
            "id": sub.iot_id,
            "subscriptionType": "IOT_CONNECT",
            "domain": {"domainId": self.domain_id},
        });
        if full {
            a["metadata"] = json!(sub.metadata);
        }
        a
    }

    /// Profile attributes: `iccid` and `profileType` are the required ones; `full` adds the rest.
    pub fn profile_attrs(&self, sub: &Subscription, full: bool, ext: Extend) -> Value {
        let mut a = json!({"iccid": sub.iccid, "profileType": "SIM_PROFILE"});
        if full {
            a["isEnabled"] = json!(true);
            a["simProfileId"] = json!(sub.sim_profile_id);
            a["cmp"] = json!("IOTA_EU");
            a["connectivityProfile"] = json!({"id": "GLOBAL_SUBSCRIPTION", "name": "Global subscription"});
        }
        if ext.pin_puk {
            let s = sub.pin_seed;
            a["pinPuk"] = json!({
                "pin1": format!("{:04}", s % 10_000),
                "pin2": format!("{:04}", (s / 7) % 10_000),
                "puk1": format!("{:08}", s % 100_000_000),
                "puk2": format!("{:08}", (s / 3) % 100_000_000),
            });
        }
        a
    }

    /// Service policy attributes; `full` adds the optional `metadata`.
    pub fn policy_attrs(&self, p: &ServicePolicy, full: bool) -> Value {
        let mut a = json!({
            "id": p.id,
            "domainId": self.domain_id,
            "name": p.name,
            "type": "IOTA_SERVICE_POLICY",
        });
        if full {
            a["metadata"] = json!(p.metadata);
        }
        a
    }

    /// The IoTA subscription package behind a policy; `full = false` gives the included form.
    pub fn package_attrs(&self, p: &ServicePolicy, full: bool) -> Value {
        let mut a = json!({"id": p.package_id, "description": p.description});
        if full {
            let on = !p.blocked;
            a["services"] = json!({
                "bearerServices": {"2g3g": on, "lte": on && p.lte, "smsMo": on, "smsMt": on, "voice": false},
                "lteRadioAccessTechnologyRestrictions": {
                    "2g": false, "3g": false, "lte": !p.lte, "nbIot": !p.nb_iot, "5g": true,
                },
                "supplementaryServices": {
                    "baoc": p.blocked, "baic": p.blocked, "boic": false, "obopre": false, "ard": "NO_RESTRICTIONS",
                },
            });
            a["apns"] = json!([{"apnName": p.apn}]);
            a["roamingProfiles"] = json!({
                "2g3g": {"id": "RP-EU-2G3G", "description": "Europe 2G/3G roaming"},
                "lte": {"id": "RP-EU-LTE", "description": "Europe LTE roaming"},
            });
            a["version"] = json!("v2");
        }
        a
    }

    fn rel(url: String, attrs: Option<Value>) -> Value {
        match attrs {
            Some(a) => json!({"url": url, "attributes": a}),
            None => json!({"url": url}),
        }
    }

    /// `GET connectivity-subscriptions/{imsi}`; `include` holds the accepted include names.
    pub fn conn_json(&self, sub: &Subscription, include: &[&str], ext: Extend) -> Value {
        let inc = |name: &str| include.contains(&name);
        let policy = self.policy(sub.service_policy_id);
        json!({
            "attributes": self.conn_attrs(sub, ext),
            "relationships": {
                "iotSubscription": Self::rel(Self::iot_url(sub), inc("iotSubscription").then(|| self.iot_attrs(sub, false))),
                "euicc": Value::Null,
                "profile": Self::rel(Self::profile_url(sub), inc("profile").then(|| self.profile_attrs(sub, false, Extend::default()))),
                "servicePolicy": Self::rel(
                    Self::policy_url(sub.service_policy_id),
                    policy.filter(|_| inc("servicePolicy")).map(|p| self.policy_attrs(p, false)),
                ),
            },
        })
    }

    /// `GET iot-subscriptions/{id}`.
    pub fn iot_json(&self, sub: &Subscription, include: &[&str]) -> Value {
        let inc = |name: &str| include.contains(&name);
        json!({
            "attributes": self.iot_attrs(sub, true),
            "relationships": {
                "euiccs": [],
                "profiles": [Self::rel(Self::profile_url(sub), inc("profiles").then(|| self.profile_attrs(sub, false, Extend::default())))],
                "connectivitySubscriptions": [Self::rel(
                    Self::conn_url(sub),
                    inc("connectivitySubscriptions").then(|| self.conn_attrs(sub, Extend::default())),
                )],
            },
        })
    }

    /// `GET profiles/{iccid}`.
    pub fn profile_json(&self, sub: &Subscription, include: &[&str], ext: Extend) -> Value {
        let inc = |name: &str| include.contains(&name);
        json!({
            "attributes": self.profile_attrs(sub, true, ext),
            "relationships": {
                "iotSubscription": Self::rel(Self::iot_url(sub), inc("iotSubscription").then(|| self.iot_attrs(sub, false))),
                "euicc": Value::Null,
                "connectivitySubscriptions": [Self::rel(
                    Self::conn_url(sub),
                    inc("connectivitySubscriptions").then(|| self.conn_attrs(sub, Extend::default())),
                )],
            },
        })
    }

    /// A service policy in the list or `GET iot-platform/{id}`.
    pub fn policy_json(&self, p: &ServicePolicy, include_cmp: bool) -> Value {
        json!({
            "attributes": self.policy_attrs(p, true),
            "relationships": {
                "cmpServicePolicy": Self::rel(Self::package_url(p), include_cmp.then(|| self.package_attrs(p, false))),
            },
        })
    }

    /// One search hit (spec §3.6 item shape): the IoT subscription with its children.
    pub fn search_row<'a>(&'a self, sub: &'a Subscription) -> SearchRow<'a> {
        let policy = self.policy(sub.service_policy_id);
        SearchRow {
            iot_subscription: IotRow {
                iot_subscription_id: &sub.iot_id,
                subscription_type: "IOT_CONNECT",
                domain_id: &self.domain_id,
                in_service_date: &sub.in_service_date,
                last_modified_at: &sub.last_modified_at,
            },
            euiccs: [],
            profiles: [ProfileRow {
                iccid: &sub.iccid,
                service_policy_id: sub.service_policy_id,
                profile_type: "SIM_PROFILE",
                cmp: "IOTA_EU",
                is_enabled: true,
                connectivity_profile: ConnectivityProfileRow {
                    id: "GLOBAL_SUBSCRIPTION",
                    name: "Global subscription",
                },
            }],
            service_policies: policy
                .map(|p| PolicyRow {
                    id: p.id,
                    name: p.name,
                    r#type: "IOTA_SERVICE_POLICY",
                })
                .into_iter()
                .collect(),
            connectivity_subscriptions: [ConnRow {
                imsi: &sub.imsi,
                iccid: &sub.iccid,
                msisdn: &sub.msisdn,
                mode: sub.mode,
                first_activation_date: sub.first_activation_date.as_deref(),
                trm_exited_at: sub.trm_exited_at.as_deref(),
                service_policy_id: sub.service_policy_id,
            }],
        }
    }

    /// The inspection-hook view of a subscription: connectivity attributes plus the links the
    /// API only shows as relationships.
    pub fn hook_json(&self, sub: &Subscription) -> Value {
        let mut v = self.conn_attrs(sub, Extend::default());
        v["servicePolicyId"] = json!(sub.service_policy_id);
        v["iotSubscriptionId"] = json!(sub.iot_id);
        v
    }

    pub fn summary(&self) -> Value {
        let mut modes: Map<String, Value> = MODES.iter().map(|m| (m.to_string(), json!(0))).collect();
        for sub in self.subs.iter().flatten() {
            if let Some(v) = modes.get_mut(sub.mode) {
                *v = json!(v.as_u64().unwrap_or(0) + 1);
            }
        }
        json!({
            "domainId": self.domain_id,
            "subscriptions": self.live,
            "modes": modes,
            "service_policies": self.policies.len(),
            "pending_operations": self.pending_count(),
            "live_tokens": self.tokens.len(),
            "live_cursors": self.cursors.len(),
            "pending_faults": self.faults.iter().map(|f| u64::from(f.count)).sum::<u64>(),
            "request_count": self.request_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telenor::{TelenorConfig, TelenorSeed};

    #[test]
    fn identifier_rules() {
        assert!(is_imsi("242010000000001") && !is_imsi("24201") && !is_imsi("2420100000000011"));
        assert!(is_iccid("89470100000000000017") && !is_iccid("8847010000000000001") && !is_iccid("89123"));
        assert!(is_msisdn("4758000001") && !is_msisdn("47a58"));
        assert!(is_eid(&"8".repeat(32)) && !is_eid(&"8".repeat(31)));
        assert!(is_iot_subscription_id("9746U5LX6B24P3AZ8X") && !is_iot_subscription_id("9746U5LX6B24P3AZ81"));
        assert!(
            is_service_policy_id("22A8BC76") && !is_service_policy_id("22A8BC70") && !is_service_policy_id("22A8BCI6")
        );
        assert!(is_domain_id("1bu9s9t4-4khtvflt") && !is_domain_id("1bu9s9t4-") && !is_domain_id("short"));
        assert!(is_id_param("12345") && !is_id_param("1234") && !is_id_param(&"1".repeat(21)));
    }

    #[test]
    fn seed_is_deterministic_and_valid() {
        let config = TelenorConfig {
            seed: TelenorSeed {
                subscriptions: 200,
                rng_seed: 7,
            },
            ..TelenorConfig::default()
        };
        assert_eq!(
            date_time(Utc.with_ymd_and_hms(2024, 5, 18, 12, 12, 34).unwrap()),
            "2024-05-18T12:12:34.000Z"
        );
        assert_eq!(date(Utc.with_ymd_and_hms(2024, 10, 7, 0, 0, 0).unwrap()), "2024-10-07");
        let a = seed(config.clone());
        let b = seed(config);
        assert_eq!(a.live, 200);
        assert_eq!(a.domain_id, b.domain_id);
        assert!(is_domain_id(&a.domain_id));
        for (x, y) in a.subs.iter().flatten().zip(b.subs.iter().flatten()) {
            let row = |s: &State, x| serde_json::to_value(s.search_row(x)).expect("serialisable");
            assert_eq!(row(&a, x), row(&b, y));
            assert!(is_imsi(&x.imsi) && x.imsi.starts_with("24201"));
            assert!(is_iccid(&x.iccid) && x.iccid.starts_with("8947"));
            assert!(is_msisdn(&x.msisdn) && x.msisdn.starts_with("47"));
            assert!(is_iot_subscription_id(&x.iot_id));
            assert_eq!(luhn_digit(&x.iccid[..19]).to_string(), x.iccid[19..]);
            assert_eq!(x.first_activation_date.is_none(), x.mode == "ACTIVE_NO_BILLING");
        }
        let active = a.subs.iter().flatten().filter(|s| s.mode == "ACTIVE").count();
        assert!(active > 100, "mostly ACTIVE, got {active}");
        assert!(a.policies.iter().all(|p| is_service_policy_id(p.id)));
    }

    #[test]
    fn last_writer_wins_and_trm_exit() {
        let mut s = seed(TelenorConfig::default());
        let slot = s.add_subscription("ACTIVE_NO_BILLING");
        let now = Instant::now();
        s.enqueue(slot, OpKind::Mode, "PAUSED", now);
        s.enqueue(slot, OpKind::Mode, "ACTIVE", now);
        assert_eq!(s.pending_count(), 1);
        s.settle(Some(now));
        assert_eq!(s.sub(slot).map(|x| x.mode), Some("ACTIVE_NO_BILLING"));
        s.settle(None);
        let sub = s.sub(slot).cloned().expect("added");
        assert_eq!(sub.mode, "ACTIVE");
        assert!(sub.trm_exited_at.is_some() && sub.first_activation_date.is_some());
        assert_eq!(s.pending_count(), 0);
    }
}

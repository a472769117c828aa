//! The simulator's in-memory world: one organisation with its profiles, lookups, endpoints and
//! SIMs, how each renders to emnify's JSON, and the deterministic seed.
//!
//! Rendering lives next to the structs so that every JSON shape has one definition, used by both
//! the HTTP handlers and the inspection hooks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::ratelimit::Buckets;
use super::{EmnifyConfig, Fault};

/// Resource timestamps as emnify renders them: `2022-04-07T12:06:06.000+0000`.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

/// The current time at second resolution (emnify stores seconds, hence the `.000`).
pub(crate) fn now_secs() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_opt(now.timestamp(), 0).single().unwrap_or(now)
}

/// Boolean switches of a service profile with their create-time defaults (spec §5.1).
pub(crate) const PROFILE_FLAGS: &[(&str, bool)] = &[
    ("allowed_3g", true),
    ("allowed_4g", true),
    ("allowed_nb_iot", true),
    ("allowed_nb_iot_geo", false),
    ("apply_data_quota", false),
    ("apply_sms_quota", false),
    ("retail", false),
    ("sms_p2p_int", true),
    ("sms_p2p_ext", true),
    ("prepaid", false),
    ("nipdp", false),
];

/// Flags that appear in the list ("short") view besides id/name/description/used_count.
const SHORT_VIEW_FLAGS: &[&str] = &[
    "allowed_3g",
    "allowed_4g",
    "allowed_nb_iot",
    "allowed_nb_iot_geo",
    "apply_data_quota",
    "apply_sms_quota",
];

pub(crate) const SERVICE_DATA: i64 = 38;
pub(crate) const DATA_LIMIT_PERIOD: i64 = 2;

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceDef {
    pub id: i64,
    pub description: &'static str,
    pub teleservice_code: Option<i64>,
    pub used_with_vlr: bool,
    pub used_with_sgsn: bool,
    pub traffic_type: (i64, &'static str, &'static str),
}

impl ServiceDef {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "description": self.description,
            "teleservice_code": self.teleservice_code,
            "used_with_vlr": self.used_with_vlr,
            "used_with_sgsn": self.used_with_sgsn,
            "traffic_type": {"id": self.traffic_type.0, "description": self.traffic_type.1, "unit": self.traffic_type.2},
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Period {
    pub id: i64,
    pub time_units: i64,
    pub unit: &'static str,
}

impl Period {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "time_units": self.time_units, "unit": self.unit})
    }
}

/// A predefined ("assignment-style") traffic limit from the catalogue (spec §5.4).
#[derive(Debug, Clone)]
pub(crate) struct TrafficLimitDef {
    pub id: i64,
    pub service_id: i64,
    pub volume: i64,
    pub period_id: i64,
}

/// A per-profile data limit created with `POST /service_profile/{pid}/traffic_limit`.
#[derive(Debug, Clone)]
pub(crate) struct DataLimit {
    pub id: i64,
    pub satellite_only: bool,
    pub volume: i64,
    pub warning_percent: Option<i64>,
}

impl DataLimit {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "service": {"id": SERVICE_DATA, "description": "Data"},
            "satellite_only": self.satellite_only,
            "period": {"id": DATA_LIMIT_PERIOD, "time_units": 1, "unit": "Calendar Month"},
            "volume": self.volume,
            "warning_percent": self.warning_percent,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceProfile {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub flags: BTreeMap<&'static str, bool>,
    pub api_callback: Option<i64>,
    pub api_secret: Option<i64>,
    pub moc_callback: Option<i64>,
    pub esme_interface_type: Option<i64>,
    pub breakout_region: Option<i64>,
    pub dns: Option<i64>,
    /// service id -> assigned catalogue limit ids
    pub services: BTreeMap<i64, BTreeSet<i64>>,
    pub data_limits: Vec<DataLimit>,
    pub firewall_profiles: Vec<(i64, &'static str, String)>,
}

impl ServiceProfile {
    pub fn new(id: i64, name: String) -> Self {
        Self {
            id,
            name,
            description: None,
            flags: PROFILE_FLAGS.iter().copied().collect(),
            api_callback: None,
            api_secret: None,
            moc_callback: None,
            esme_interface_type: None,
            breakout_region: None,
            dns: None,
            services: BTreeMap::new(),
            data_limits: Vec::new(),
            firewall_profiles: Vec::new(),
        }
    }

    fn firewall_json(&self) -> Value {
        let profiles: Vec<Value> = self
            .firewall_profiles
            .iter()
            .map(|(id, name, added)| json!({"id": id, "name": name, "added": added}))
            .collect();
        json!({"ip_firewall_profiles": profiles, "enforce": !profiles.is_empty()})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TariffProfile {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub satellite_capable: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Dns {
    pub id: i64,
    pub primary: String,
    pub secondary: String,
    pub ip_address_version: i64,
}

impl Dns {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "primary": self.primary, "secondary": self.secondary, "ip_address_version": self.ip_address_version})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ApiCallback {
    pub id: i64,
    pub url: String,
    pub purpose: Option<String>,
    pub created: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ApiSecret {
    pub id: i64,
    pub purpose: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub id: i64,
    pub created: String,
    pub last_updated: String,
    pub name: String,
    pub tags: Option<String>,
    pub ip_address: Ipv4Addr,
    pub imei: Option<String>,
    pub imei_lock: bool,
    pub status: i64,
    pub service_profile: i64,
    pub tariff_profile: i64,
    pub sim: Option<i64>,
    /// `OFFLINE` / `ATTACHED` / `ONLINE` / `BLOCKED`
    pub connectivity: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Sim {
    pub id: i64,
    pub iccid: String,
    pub imsi: String,
    pub msisdn: String,
    pub production_date: String,
    pub activation_date: Option<String>,
    pub status: i64,
    pub endpoint: Option<i64>,
}

pub(crate) fn endpoint_status_desc(id: i64) -> &'static str {
    match id {
        0 => "Enabled",
        1 => "Disabled",
        _ => "Deleted",
    }
}

pub(crate) fn sim_status_desc(id: i64) -> &'static str {
    match id {
        0 => "Issued",
        1 => "Activated",
        2 => "Suspended",
        3 => "Deleted",
        _ => "Factory Test",
    }
}

/// Luhn check digit of a digit string (ICCID / IMEI).
pub(crate) fn luhn_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .chars()
        .rev()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// The single IP address space of the organisation; big enough for any seed size.
pub(crate) struct IpSpace {
    pub id: i64,
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl IpSpace {
    /// `10.189.0.0/16`, or the smallest larger block around it that holds `endpoints` seeded
    /// endpoints with room for as many again (a /16 holds 65,534 hosts).
    pub fn sized(id: i64, endpoints: usize) -> Self {
        let wanted = (endpoints as u64 * 2 + 2).next_power_of_two().max(1 << 16);
        let prefix = 32 - wanted.trailing_zeros().min(24) as u8;
        let mask = u32::MAX << (32 - prefix);
        IpSpace {
            id,
            network: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 189, 0, 0)) & mask),
            prefix,
        }
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }
    /// Whether `ip` is a usable host address of the space (not network or broadcast).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        let ip = u32::from(ip);
        let network = u32::from(self.network);
        (ip & mask) == network && ip != network && ip != network | !mask
    }
    /// Usable host addresses (network and broadcast excluded).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (1..size - 1).map(move |o| Ipv4Addr::from(base + o))
    }
}

pub(crate) struct State {
    pub config: EmnifyConfig,
    pub jwt_key: Vec<u8>,
    pub org: Org,
    pub app_token_id: i64,
    pub user_id: i64,
    pub next_id: i64,
    pub services: Vec<ServiceDef>,
    pub periods: Vec<Period>,
    pub traffic_limits: BTreeMap<i64, TrafficLimitDef>,
    pub breakout_regions: Vec<(i64, &'static str, &'static str)>,
    pub esme_types: Vec<(i64, &'static str)>,
    pub dns: BTreeMap<i64, Dns>,
    pub api_callbacks: BTreeMap<i64, ApiCallback>,
    pub api_secrets: BTreeMap<i64, ApiSecret>,
    pub service_profiles: BTreeMap<i64, ServiceProfile>,
    pub tariff_profiles: BTreeMap<i64, TariffProfile>,
    pub ip_space: IpSpace,
    pub used_ips: HashSet<Ipv4Addr>,
    pub endpoints: BTreeMap<i64, Endpoint>,
    pub sims: BTreeMap<i64, Sim>,
    /// Auth tokens that are still valid; `expire_tokens` empties it.
    pub live_auth_tokens: HashSet<String>,
    pub live_refresh_tokens: HashSet<String>,
    /// username -> (consecutive failures, locked until unix seconds)
    pub login_failures: HashMap<String, (u32, i64)>,
    pub buckets: Buckets,
    pub faults: Vec<Fault>,
    pub request_count: u64,
    pub request_log: VecDeque<(String, String, u16)>,
    /// `/api` exchanges, when `EmnifyConfig::record_exchanges` is on.
    pub exchanges: Vec<super::Exchange>,
    /// Bulk requests being served, and how many arrived while another was (emnify asks for
    /// them one after another; the simulator counts instead of guessing an answer).
    pub bulk_in_flight: usize,
    pub bulk_overlaps: u64,
    /// Creates whose object already existed when they arrived: a service profile with the name
    /// of an existing one, an endpoint for a SIM already assigned or with an existing endpoint's
    /// name. A client that re-sends a create that had applied shows up here (chaos runs).
    pub repeated_creates: u64,
    /// `(iccid, imsi)` of every SIM deleted through the API, in order.
    pub deleted_sims: Vec<(String, String)>,
}

pub(crate) const REQUEST_LOG_CAP: usize = 10_000;

impl State {
    pub fn alloc_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn used_count(&self, profile_id: i64) -> usize {
        self.endpoints
            .values()
            .filter(|e| e.service_profile == profile_id)
            .count()
    }

    pub fn tariff_used_count(&self, tariff_id: i64) -> usize {
        self.endpoints
            .values()
            .filter(|e| e.tariff_profile == tariff_id)
            .count()
    }

    pub fn next_free_ip(&self) -> Option<Ipv4Addr> {
        self.ip_space.hosts().find(|ip| !self.used_ips.contains(ip))
    }

    pub fn traffic_limit_json(&self, l: &TrafficLimitDef) -> Value {
        let period = self.periods.iter().find(|p| p.id == l.period_id).map(Period::to_json);
        json!({"id": l.id, "volume": l.volume, "period": period})
    }

    pub fn callback_json(&self, c: &ApiCallback) -> Value {
        json!({"id": c.id, "url": c.url, "purpose": c.purpose, "organisation_id": self.org.id, "created": c.created})
    }

    pub fn secret_json(&self, s: &ApiSecret) -> Value {
        json!({"id": s.id, "purpose": s.purpose, "organisation_id": self.org.id})
    }

    pub fn breakout_json(&self, id: i64) -> Value {
        self.breakout_regions
            .iter()
            .find(|b| b.0 == id)
            .map(|b| json!({"id": b.0, "name": b.1, "ip_address": b.2}))
            .unwrap_or(Value::Null)
    }

    pub fn esme_json(&self, id: i64) -> Value {
        self.esme_types
            .iter()
            .find(|e| e.0 == id)
            .map(|e| json!({"id": e.0, "description": e.1}))
            .unwrap_or(Value::Null)
    }

    /// List ("short") view: `used_count` is a string there, as documented.
    pub fn profile_short(&self, p: &ServiceProfile) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(p.id));
        m.insert("name".into(), json!(p.name));
        m.insert("description".into(), json!(p.description));
        m.insert("used_count".into(), json!(self.used_count(p.id).to_string()));
        for f in SHORT_VIEW_FLAGS {
            m.insert((*f).into(), json!(p.flags.get(f).copied().unwrap_or(false)));
        }
        m.insert("ip_firewall_rule_set".into(), p.firewall_json());
        Value::Object(m)
    }

    /// Detail view of `GET /service_profile/{id}`.
    pub fn profile_detail(&self, p: &ServiceProfile) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(p.id));
        m.insert("name".into(), json!(p.name));
        m.insert("description".into(), json!(p.description));
        for (f, v) in &p.flags {
            m.insert((*f).into(), json!(v));
        }
        m.insert("used_count".into(), json!(self.used_count(p.id)));
        let cb = |id: Option<i64>| {
            id.and_then(|id| self.api_callbacks.get(&id))
                .map(|c| self.callback_json(c))
                .unwrap_or(Value::Null)
        };
        m.insert("api_callback".into(), cb(p.api_callback));
        m.insert("moc_callback".into(), cb(p.moc_callback));
        m.insert(
            "api_secret".into(),
            p.api_secret
                .and_then(|id| self.api_secrets.get(&id))
                .map(|s| self.secret_json(s))
                .unwrap_or(Value::Null),
        );
        m.insert(
            "esme_interface_type".into(),
            p.esme_interface_type
                .map(|id| self.esme_json(id))
                .unwrap_or(Value::Null),
        );
        m.insert(
            "breakout_region".into(),
            p.breakout_region
                .map(|id| self.breakout_json(id))
                .unwrap_or(Value::Null),
        );
        m.insert(
            "dns".into(),
            p.dns
                .and_then(|id| self.dns.get(&id))
                .map(Dns::to_json)
                .unwrap_or(Value::Null),
        );
        let services: Vec<Value> = p
            .services
            .iter()
            .filter_map(|(sid, limits)| {
                let def = self.services.iter().find(|s| s.id == *sid)?;
                let mut v = def.to_json();
                let limits: Vec<Value> = limits
                    .iter()
                    .filter_map(|lid| self.traffic_limits.get(lid))
                    .map(|l| self.traffic_limit_json(l))
                    .collect();
                v["traffic_limit"] = Value::Array(limits);
                Some(v)
            })
            .collect();
        m.insert("service".into(), Value::Array(services));
        m.insert("ip_firewall_rule_set".into(), p.firewall_json());
        Value::Object(m)
    }

    pub fn tariff_json(&self, t: &TariffProfile) -> Value {
        json!({
            "id": t.id,
            "name": t.name,
            "description": t.description,
            // A string, as emnify's OpenAPI spec types it (as for service profiles).
            "used_count": self.tariff_used_count(t.id).to_string(),
            "satellite_capable": t.satellite_capable,
        })
    }

    fn sim_embedded(&self, s: &Sim) -> Value {
        json!({
            "id": s.id,
            "iccid": s.iccid,
            "iccid_with_luhn": format!("{}{}", s.iccid, luhn_digit(&s.iccid)),
            "sim_profile_type_id": 1,
            "status": {"id": s.status, "description": sim_status_desc(s.status)},
            "imsi": s.imsi,
            "msisdn": s.msisdn,
        })
    }

    /// The endpoint object; `detail` adds what only `GET /endpoint/{id}` carries.
    pub fn endpoint_json(&self, e: &Endpoint, detail: bool) -> Value {
        let sp_name = self.service_profiles.get(&e.service_profile).map(|p| p.name.clone());
        let tp = self.tariff_profiles.get(&e.tariff_profile);
        let mut v = json!({
            "id": e.id,
            "created": e.created,
            "last_updated": e.last_updated,
            "name": e.name,
            "tags": e.tags,
            "ip_address": e.ip_address.to_string(),
            "imei": e.imei,
            "imei_lock": e.imei_lock,
            "status": {"id": e.status, "description": endpoint_status_desc(e.status)},
            "tariff_profile": {"id": e.tariff_profile, "name": tp.map(|t| t.name.clone())},
            "service_profile": {"id": e.service_profile, "name": sp_name},
        });
        if let Some(sim) = e.sim.and_then(|id| self.sims.get(&id)) {
            v["sim"] = self.sim_embedded(sim);
        }
        if detail {
            v["ip_address_space"] =
                json!({"id": self.ip_space.id, "ip_address_space": self.ip_space.cidr(), "ip_address_version": 4});
            v["tariff_profile"]["satellite_capable"] = json!(tp.map(|t| t.satellite_capable).unwrap_or(false));
            if let Some(imei) = &e.imei
                && imei.len() >= 14
                && imei.chars().all(|c| c.is_ascii_digit())
            {
                let body = &imei[..14];
                v["imei_with_luhn"] = json!(format!("{body}{}", luhn_digit(body)));
            }
            if e.connectivity != "OFFLINE" {
                v["runtime_data"] =
                    json!({"msc": "423663003000", "sgsn": "423663003100", "sgsn_ip_address": "185.24.36.10"});
            }
        } else {
            v["ip_address_space"] = json!({"id": self.ip_space.id});
        }
        v
    }

    fn org_json(&self) -> Value {
        json!({"id": self.org.id, "name": self.org.name, "country": {"id": 74, "name": "Germany"}})
    }

    /// SIM object (list and detail); assigned SIMs carry the flat endpoint summary.
    pub fn sim_json(&self, s: &Sim) -> Value {
        let mut v = json!({
            "id": s.id,
            "iccid": s.iccid,
            "iccid_with_luhn": format!("{}{}", s.iccid, luhn_digit(&s.iccid)),
            "production_date": s.production_date,
            "status": {"id": s.status, "description": sim_status_desc(s.status)},
            "customer_org": self.org_json(),
            "issuer_org": {"id": 2, "name": "emnify GmbH", "country": {"id": 74, "name": "Germany"}},
            "imsi": s.imsi,
            "msisdn": s.msisdn,
            "satellite_capable": false,
            "model": {"id": 4, "description": "Classic", "memory_size": 128,
                      "formfactor": {"id": 6, "name": "1/2/3FF (3in1) "},
                      "manufacturer": {"id": 2, "name": "Bluefish"}},
        });
        if let Some(a) = &s.activation_date {
            v["activation_date"] = json!(a);
        }
        if let Some(e) = s.endpoint.and_then(|id| self.endpoints.get(&id)) {
            v["endpoint"] = json!({
                "id": e.id,
                "name": e.name,
                "imei": e.imei,
                "created": e.created,
                "last_updated": e.last_updated,
                "organisation_id": self.org.id,
                "service_profile_id": e.service_profile,
                "tariff_profile_id": e.tariff_profile,
                "tags": e.tags,
                "ip_address": e.ip_address.to_string(),
                "ip_address_space_id": self.ip_space.id,
            });
        }
        v
    }
}

/// Builds the seeded world. Everything except the JWT key derives from `rng_seed`, and seeded
/// timestamps hang off a fixed date so two runs with the same seed serve identical JSON.
pub(crate) fn seed(config: EmnifyConfig, jwt_key: Vec<u8>) -> State {
    let mut rng = StdRng::seed_from_u64(config.seed.rng_seed);
    let base = Utc
        .with_ymd_and_hms(2024, 3, 4, 9, 0, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let org = Org {
        id: 13_000 + rng.random_range(0..1_000),
        name: "Demo Fleet GmbH".into(),
    };

    let services = vec![
        ServiceDef {
            id: 3,
            description: "Voice",
            teleservice_code: Some(17),
            used_with_vlr: true,
            used_with_sgsn: false,
            traffic_type: (6, "Voice", "Minutes"),
        },
        ServiceDef {
            id: 38,
            description: "Data",
            teleservice_code: None,
            used_with_vlr: false,
            used_with_sgsn: true,
            traffic_type: (5, "Data", "MB"),
        },
        ServiceDef {
            id: 53,
            description: "SMS MO",
            teleservice_code: Some(34),
            used_with_vlr: true,
            used_with_sgsn: true,
            traffic_type: (2, "SMS", "SMS"),
        },
        ServiceDef {
            id: 54,
            description: "SMS MT",
            teleservice_code: Some(33),
            used_with_vlr: true,
            used_with_sgsn: true,
            traffic_type: (2, "SMS", "SMS"),
        },
    ];
    let periods = vec![
        Period {
            id: 31,
            time_units: 1,
            unit: "Days",
        },
        Period {
            id: 33,
            time_units: 5,
            unit: "Days",
        },
        Period {
            id: 34,
            time_units: 1,
            unit: "Weeks",
        },
        Period {
            id: 35,
            time_units: 1,
            unit: "Months",
        },
    ];
    let traffic_limits: BTreeMap<i64, TrafficLimitDef> = [
        (101, 38, 100, 31),
        (102, 38, 1024, 35),
        (103, 38, 5120, 35),
        (111, 53, 64, 33),
        (112, 53, 100, 35),
        (113, 53, 10, 31),
        (121, 54, 64, 33),
        (122, 54, 100, 35),
    ]
    .into_iter()
    .map(|(id, service_id, volume, period_id)| {
        (
            id,
            TrafficLimitDef {
                id,
                service_id,
                volume,
                period_id,
            },
        )
    })
    .collect();

    let mut next_id: i64 = 540_000 + rng.random_range(0..10_000);
    let mut alloc = || {
        next_id += 1;
        next_id
    };

    let dns_id = alloc();
    let dns = BTreeMap::from([(
        dns_id,
        Dns {
            id: dns_id,
            primary: "8.8.8.8".into(),
            secondary: "8.8.4.4".into(),
            ip_address_version: 4,
        },
    )]);
    let cb_id = alloc();
    let api_callbacks = BTreeMap::from([(
        cb_id,
        ApiCallback {
            id: cb_id,
            url: "https://iot.example.org/emnify/callback".into(),
            purpose: Some("Fleet backend webhook".into()),
            created: ts(base - ChronoDuration::days(200)),
        },
    )]);
    let secret_id = alloc();
    let api_secrets = BTreeMap::from([(
        secret_id,
        ApiSecret {
            id: secret_id,
            purpose: Some("Fleet backend webhook JWT".into()),
        },
    )]);

    let fw_added = ts(base - ChronoDuration::days(100));
    let mut default = ServiceProfile::new(alloc(), "Default Policy".into());
    default.description = Some("Data + SMS for the production fleet, 1 GB per month".into());
    default.api_callback = Some(cb_id);
    default.api_secret = Some(secret_id);
    default.esme_interface_type = Some(1);
    default.breakout_region = Some(1);
    default.dns = Some(dns_id);
    default.services = BTreeMap::from([
        (38, BTreeSet::new()),
        (53, BTreeSet::new()),
        (54, BTreeSet::from([122])),
    ]);
    default.firewall_profiles = vec![(43, "Default Inbound Block", fw_added)];
    let mut data_only = ServiceProfile::new(alloc(), "Data only 500 MB".into());
    data_only.description = Some("Data without SMS, capped at 500 MB per month".into());
    data_only.flags.insert("allowed_3g", false);
    data_only.flags.insert("sms_p2p_int", false);
    data_only.flags.insert("sms_p2p_ext", false);
    data_only.esme_interface_type = Some(1);
    data_only.breakout_region = Some(2);
    data_only.services = BTreeMap::from([(38, BTreeSet::from([101]))]);
    let mut nbiot = ServiceProfile::new(alloc(), "NB-IoT sensors".into());
    nbiot.description = Some("Low-power sensors on NB-IoT and LTE-M".into());
    nbiot.flags.insert("allowed_3g", false);
    nbiot.flags.insert("allowed_nb_iot_geo", true);
    nbiot.services = BTreeMap::from([(38, BTreeSet::new()), (54, BTreeSet::new())]);
    let default_id = default.id;
    let mut service_profiles = BTreeMap::new();
    for mut p in [default, data_only, nbiot] {
        if p.id == default_id {
            p.data_limits.push(DataLimit {
                id: alloc(),
                satellite_only: false,
                volume: 1 << 30,
                warning_percent: Some(80),
            });
        }
        service_profiles.insert(p.id, p);
    }
    for p in service_profiles.values_mut() {
        if p.name == "Data only 500 MB" {
            p.data_limits.push(DataLimit {
                id: alloc(),
                satellite_only: false,
                volume: 500 << 20,
                warning_percent: Some(90),
            });
        }
    }

    let tp_global = alloc();
    let tp_eu = alloc();
    let tariff_profiles = BTreeMap::from([
        (
            tp_global,
            TariffProfile {
                id: tp_global,
                name: "Global IoT Standard".into(),
                description: "Worldwide coverage, all RATs".into(),
                satellite_capable: false,
            },
        ),
        (
            tp_eu,
            TariffProfile {
                id: tp_eu,
                name: "EU Regional".into(),
                description: "EU/EEA coverage only".into(),
                satellite_capable: false,
            },
        ),
    ]);

    let ip_space = IpSpace::sized(14_000 + rng.random_range(0..1_000), config.seed.endpoints);

    // SIM identifiers: emnify's ICCID range 8988303..., IMSIs 29505..., MSISDNs 423663...
    let iccid_base: u64 = 100_000_000 + rng.random_range(0..800_000_000);
    let imsi_base: u64 = 900_000_000 + rng.random_range(0..90_000_000);
    let msisdn_base: u64 = 900_000_000 + rng.random_range(0..90_000_000);
    let sim_id_base: i64 = 4_400_000 + rng.random_range(0..100_000);
    let endpoint_id_base: i64 = 11_800_000 + rng.random_range(0..100_000);

    let total_sims = config.seed.endpoints + config.seed.free_sims;
    let mut sims = BTreeMap::new();
    for i in 0..total_sims {
        let id = sim_id_base + i as i64;
        let production = base - ChronoDuration::days(400) + ChronoDuration::minutes(i as i64);
        sims.insert(
            id,
            Sim {
                id,
                iccid: format!("8988303{:012}", iccid_base + i as u64),
                imsi: format!("29505{:010}", imsi_base + i as u64),
                msisdn: format!("423663{:09}", msisdn_base + i as u64),
                production_date: ts(production),
                activation_date: None,
                status: 0,
                endpoint: None,
            },
        );
    }

    let tags = ["fleet,sensor", "fleet,tracker", "gateway", "fleet,sensor,cold-chain"];
    let mut endpoints = BTreeMap::new();
    let mut used_ips = HashSet::new();
    let mut hosts = ip_space.hosts();
    for i in 0..config.seed.endpoints {
        let id = endpoint_id_base + i as i64;
        let sim_id = sim_id_base + i as i64;
        let created = base - ChronoDuration::days(90)
            + ChronoDuration::hours(i as i64 * 7)
            + ChronoDuration::seconds(rng.random_range(0..3600));
        let updated = created + ChronoDuration::days(rng.random_range(1..60));
        let Some(ip) = hosts.next() else { break };
        used_ips.insert(ip);
        let imei = format!("35{:014}", rng.random_range(0..100_000_000_000_000u64));
        endpoints.insert(
            id,
            Endpoint {
                id,
                created: ts(created),
                last_updated: ts(updated),
                name: format!("{}-{:03}", if i % 4 == 2 { "gateway" } else { "sensor" }, i + 1),
                tags: Some(tags[i % tags.len()].to_string()),
                ip_address: ip,
                imei: Some(imei),
                imei_lock: false,
                status: 0,
                service_profile: default_id,
                tariff_profile: tp_global,
                sim: Some(sim_id),
                connectivity: "OFFLINE".into(),
            },
        );
        if let Some(s) = sims.get_mut(&sim_id) {
            s.status = 1;
            s.endpoint = Some(id);
            s.activation_date = Some(ts(created + ChronoDuration::minutes(5)));
        }
    }

    State {
        org,
        app_token_id: 7_000 + rng.random_range(0..1_000),
        user_id: 90_000 + rng.random_range(0..1_000),
        next_id: next_id.max(20_000_000),
        services,
        periods,
        traffic_limits,
        breakout_regions: vec![
            (1, "eu-west-1 (Ireland)", "52.213.14.100"),
            (2, "eu-central-1 (Frankfurt)", "3.120.5.200"),
            (3, "eu-west-1 (VPN)", "0.0.0.0"),
            (4, "us-east-1 (N. Virginia)", "34.195.84.70"),
            (5, "ap-southeast-1 (Singapore)", "13.250.32.140"),
        ],
        esme_types: vec![(1, "RestAPI"), (2, "SMPP"), (3, "Console")],
        dns,
        api_callbacks,
        api_secrets,
        service_profiles,
        tariff_profiles,
        ip_space,
        used_ips,
        endpoints,
        sims,
        live_auth_tokens: HashSet::new(),
        live_refresh_tokens: HashSet::new(),
        login_failures: HashMap::new(),
        buckets: Buckets::default(),
        faults: Vec::new(),
        request_count: 0,
        request_log: VecDeque::new(),
        exchanges: Vec::new(),
        bulk_in_flight: 0,
        bulk_overlaps: 0,
        repeated_creates: 0,
        deleted_sims: Vec::new(),
        config,
        jwt_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_space_holds_every_seeded_endpoint() {
        for (endpoints, cidr) in [
            (0, "10.189.0.0/16"),
            (10_000, "10.189.0.0/16"),
            (100_000, "10.188.0.0/14"),
        ] {
            let space = IpSpace::sized(1, endpoints);
            assert_eq!(space.cidr(), cidr);
            assert!(space.hosts().count() >= endpoints * 2, "{cidr}");
        }
    }

    #[test]
    fn luhn_matches_recorded_iccid() {
        // From the recorded endpoint: iccid 8988303000006738593 -> with luhn ...37.
        assert_eq!(luhn_digit("8988303000006738593"), 7);
    }

    #[test]
    fn seed_is_deterministic() {
        let a = seed(EmnifyConfig::default(), vec![1]);
        let b = seed(EmnifyConfig::default(), vec![2]);
        let ja: Vec<Value> = a.endpoints.values().map(|e| a.endpoint_json(e, true)).collect();
        let jb: Vec<Value> = b.endpoints.values().map(|e| b.endpoint_json(e, true)).collect();
        assert_eq!(ja, jb);
        assert_eq!(a.endpoints.len(), 25);
        assert_eq!(
            a.sims
                .values()
                .filter(|s| s.endpoint.is_none() && s.status == 0)
                .count(),
            10
        );
        assert_eq!(
            ts(Utc.with_ymd_and_hms(2022, 4, 7, 12, 6, 6).unwrap()),
            "2022-04-07T12:06:06.000+0000"
        );
    }
}

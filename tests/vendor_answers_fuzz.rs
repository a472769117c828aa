//! No vendor answer makes the operator panic or hang. A property test (proptest) plays a vendor
//! that answers every request with the same generated response: any status, a body of arbitrary
//! bytes, arbitrary JSON, or JSON shaped like the vendors' answers with extreme values (huge
//! `expires_in`, JWT `exp` at the edge of time, counts of i64::MIN), and any `Retry-After`. Each
//! vendor's client and backends (emnify, Telenor IoT Connect, BICS SIM for Things) then
//! authenticate, verify, observe and sweep against it; every call must return (Ok or Err) within
//! its deadline, and a rate-limit error never asks to wait longer than the documented cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use connectivity_operator::backend::bics::BicsBackend;
use connectivity_operator::backend::bics::client::{self as bics_client, BicsClient};
use connectivity_operator::backend::emnify::EmnifyBackend;
use connectivity_operator::backend::emnify::client::{ClientConfig, Credentials, EmnifyClient};
use connectivity_operator::backend::http::MAX_RETRY_AFTER;
use connectivity_operator::backend::telenor::TelenorBackend;
use connectivity_operator::backend::telenor::client::{self as telenor_client, TelenorClient};
use connectivity_operator::backend::{
    AccountBackend, BackendError, DesiredServiceProfile, ErrorKind, Lookup, SecretString, ServiceProfileBackend,
    SimIdentity, SubscriptionBackend,
};
use connectivity_operator::crd::ServiceProfileSpec;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One canned answer.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<String>,
}

/// A vendor that answers every request with the current [`Answer`].
struct FakeVendor {
    url: String,
    answer: Arc<Mutex<Answer>>,
}

impl FakeVendor {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            body: b"{}".to_vec(),
            retry_after: None,
        }));
        let current = answer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let answer = current.lock().unwrap().clone();
                tokio::spawn(async move {
                    // Read the request head and its body, then answer and close.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        if let Some(end) = find(&request, b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    if let Some(after) = &answer.retry_after {
                        head.push_str(&format!("Retry-After: {after}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&answer.body).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        FakeVendor { url, answer }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// --- generated answers -------------------------------------------------------------------------

/// Field names the vendors' answers use, so generated JSON reaches the parsers' deeper paths.
const KEYS: &[&str] = &[
    "id",
    "name",
    "status",
    "description",
    "data",
    "items",
    "content",
    "totalCount",
    "total",
    "page",
    "access_token",
    "expires_in",
    "token_type",
    "auth_token",
    "refresh_token",
    "token",
    "resultCode",
    "resultDescription",
    "result",
    "profileId",
    "profileName",
    "serviceName",
    "ratTypeName",
    "category",
    "endpointId",
    "iccid",
    "imsi",
    "msisdn",
    "imei",
    "mode",
    "sim",
    "service_profile",
    "tariff_profile",
    "used_count",
    "servicePolicyId",
    "connectivitySubscriptions",
    "subscriptionInventory",
    "meta",
    "links",
    "errors",
    "message",
    "error_code",
    "planId",
    "basicInfo",
    "attributes",
    "relationships",
    "included",
];

fn extreme_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(i64::MIN)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        extreme_number(),
        "[ -~]{0,24}".prop_map(Value::String),
        proptest::sample::select(KEYS).prop_map(|k| Value::String(k.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![proptest::sample::select(KEYS).prop_map(str::to_string), "[a-z_]{1,10}"],
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A JWT with the given `exp` (emnify's tokens are read for `exp` and the organisation name).
fn jwt(exp: Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.sig",
        b64(&json!({"alg": "none"})),
        b64(&json!({"exp": exp, "esc.orgName": "Fuzz"}))
    )
}

/// JSON shaped like the vendors' token and login answers, with extreme values.
fn shaped() -> impl Strategy<Value = Value> {
    (extreme_number(), extreme_number(), json_value()).prop_map(|(a, b, extra)| {
        json!({
            "access_token": "t", "expires_in": a, "token_type": "Bearer",
            "auth_token": jwt(b.clone()), "refresh_token": "r",
            "token": jwt(b), "refreshToken": "r", "resultCode": "0", "data": extra
        })
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    let status = prop_oneof![
        proptest::sample::select(vec![
            200u16, 201, 202, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504
        ]),
        100u16..600,
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        shaped().prop_map(|v| v.to_string().into_bytes()),
    ];
    let retry_after = proptest::option::of(prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        "[ -~]{0,20}",
    ]);
    (status, body, retry_after).prop_map(|(status, body, retry_after)| Answer {
        status,
        body,
        retry_after,
    })
}

// --- the clients under test --------------------------------------------------------------------

const TIMEOUT: Duration = Duration::from_secs(2);

/// Every call must come back within this (a client that waited for a vendor's huge
/// `Retry-After`, or looped on an answer, would not).
const DEADLINE: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, call: impl std::future::Future<Output = Result<T, BackendError>>) {
    match tokio::time::timeout(DEADLINE, call).await {
        Err(_) => panic!("{what} did not return within {DEADLINE:?}"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            if let ErrorKind::RateLimited {
                retry_after: Some(after),
            } = e.kind
            {
                assert!(after <= MAX_RETRY_AFTER, "{what}: asked to wait {after:?}");
            }
        }
    }
}

fn spec(section: Value) -> ServiceProfileSpec {
    let mut spec = section;
    spec["providerConfigRef"] = json!({"name": "x"});
    serde_json::from_value(spec).unwrap()
}

/// A BICS backend on `url` with test credentials.
fn bics_backend(url: &str) -> BicsBackend {
    let client = BicsClient::new(
        bics_client::ClientConfig {
            base_url: url.into(),
            username: "user".into(),
            password: SecretString::new("password"),
            target_account_id: None,
            requests_per_second: 1000.0,
            burst: 1000,
            timeout: TIMEOUT,
            slow_timeout: TIMEOUT,
        },
        None,
    )
    .unwrap();
    BicsBackend::new(Arc::new(client), Duration::from_secs(1))
}

async fn every_vendor_against(url: &str) {
    let identity = SimIdentity {
        imsi: Some("295050903090853".into()),
        iccid: Some("8988303000424721407".into()),
    };
    let by_name = Lookup::Name("fuzz".into());

    let emnify = Arc::new(
        EmnifyClient::new(
            ClientConfig {
                base_url: url.into(),
                credentials: Credentials::ApplicationToken(SecretString::new("token")),
                requests_per_second: 1000.0,
                burst: 1000,
                timeout: TIMEOUT,
            },
            None,
        )
        .unwrap(),
    );
    let emnify = EmnifyBackend::new(emnify);
    let iccid_only = SimIdentity {
        imsi: None,
        iccid: identity.iccid.clone(),
    };
    let emnify_spec = spec(json!({"emnify": {
        "services": [{"service": "Data", "trafficLimits": [{"id": 1}]}],
        "dataLimits": [{"volume": "1Gi", "warningPercent": 80}]}}));
    let desired = DesiredServiceProfile {
        name: "fuzz".into(),
        spec: &emnify_spec,
        written: None,
    };
    within("emnify verify", emnify.verify()).await;
    within(
        "emnify profile observe",
        ServiceProfileBackend::observe(&emnify, &desired, &by_name),
    )
    .await;
    within("emnify inventory", emnify.inventory()).await;
    within("emnify SIM observe", SubscriptionBackend::observe(&emnify, &identity)).await;

    let telenor = Arc::new(
        TelenorClient::new(
            telenor_client::ClientConfig {
                base_url: url.into(),
                token_url: None,
                client_id: "id".into(),
                client_secret: SecretString::new("secret"),
                requests_per_second: 1000.0,
                burst: 1000,
                timeout: TIMEOUT,
            },
            None,
        )
        .unwrap(),
    );
    let telenor = TelenorBackend::new(telenor);
    within("Telenor verify", telenor.verify()).await;
    within("Telenor inventory", telenor.inventory()).await;
    within("Telenor observe", SubscriptionBackend::observe(&telenor, &identity)).await;
    within(
        "Telenor observe by ICCID (Get profile)",
        SubscriptionBackend::observe(&telenor, &iccid_only),
    )
    .await;

    let bics = bics_backend(url);
    let bics_spec = spec(json!({"bicsSft": {"services": ["Data"], "accessType": "2G/3G/4G"}}));
    let desired = DesiredServiceProfile {
        name: "fuzz".into(),
        spec: &bics_spec,
        written: None,
    };
    within("BICS verify", bics.verify()).await;
    within(
        "BICS profile observe",
        ServiceProfileBackend::observe(&bics, &desired, &by_name),
    )
    .await;
    within("BICS inventory", bics.inventory()).await;
    within("BICS SIM observe", SubscriptionBackend::observe(&bics, &identity)).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_vendor_answer_panics_or_hangs_a_client(answer in answer()) {
        connectivity_operator::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let vendor = FakeVendor::start().await;
            *vendor.answer.lock().unwrap() = answer;
            every_vendor_against(&vendor.url).await;
        });
    }
}

/// A BICS that ignores `page` answers every fetchSIM page with the same rows: the sweep stops
/// with an error naming the repeated page instead of looping or reporting a short inventory.
#[tokio::test]
async fn a_bics_that_repeats_its_first_page_ends_the_sweep_with_an_error() {
    connectivity_operator::install_crypto_provider();
    let vendor = FakeVendor::start().await;
    // One body serves login (tokens) and fetchSIM (rows).
    let rows: Vec<Value> = (0..1000)
        .map(|i| json!({"iccid": format!("89320715212459{i:05}"), "simStatus": "Active", "endPointId": "-"}))
        .collect();
    *vendor.answer.lock().unwrap() = Answer {
        status: 200,
        body: serde_json::to_vec(&json!({
            "AccessToken": "access", "RefreshToken": "refresh",
            "Response": {"resultCode": "0", "responseParam": {"rows": rows}}
        }))
        .unwrap(),
        retry_after: None,
    };
    let bics = bics_backend(&vendor.url);
    let err = bics.inventory().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert!(err.message.contains("page 2 repeats page 1"), "{err}");
}

//! emnify client against the simulator over HTTP: every authentication form, token caching and
//! renewal, paging, error mapping, and the backend contract's idempotency rules.

use std::sync::Arc;
use std::time::Duration;

use connectivity_operator::backend::emnify::EmnifyBackend;
use connectivity_operator::backend::emnify::client::{ClientConfig, Credentials, EmnifyClient};
use connectivity_operator::backend::{
    AccountBackend, DesiredServiceProfile, ErrorKind, Lookup, SecretString, ServiceProfileBackend,
};
use connectivity_operator::crd::ServiceProfileSpec;
use connectivity_operator::metrics::Metrics;
use reqwest::Method;
use serde_json::{Value, json};
use vendor_sim::emnify::{EmnifyConfig, EmnifySim, Fault, RunningSim};

async fn sim(config: EmnifyConfig) -> RunningSim {
    EmnifySim::new(config)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn quiet() -> EmnifyConfig {
    EmnifyConfig {
        rate_limits: false,
        ..EmnifyConfig::default()
    }
}

fn client(sim: &RunningSim, credentials: Credentials, metrics: Option<Metrics>) -> EmnifyClient {
    EmnifyClient::new(
        ClientConfig {
            base_url: sim.url.clone(),
            credentials,
            requests_per_second: 1000.0,
            burst: 1000,
            timeout: Duration::from_secs(5),
        },
        metrics,
    )
    .unwrap()
}

/// No rate limits, a world of `endpoints` SIMs in devices and `free_sims` without, listings with
/// or without emnify's paging headers.
fn seeded(endpoints: usize, free_sims: usize, paging_headers: bool) -> EmnifyConfig {
    EmnifyConfig {
        rate_limits: false,
        paging_headers,
        seed: vendor_sim::emnify::SeedConfig {
            endpoints,
            free_sims,
            rng_seed: 7,
        },
        ..EmnifyConfig::default()
    }
}

fn app_token(sim: &RunningSim) -> Credentials {
    Credentials::ApplicationToken(SecretString::new(
        sim.credentials()["application_token"].as_str().unwrap(),
    ))
}

fn auth_calls(sim: &RunningSim) -> usize {
    sim.sim
        .requests()
        .iter()
        .filter(|(_, p, _)| p == "/api/v1/authenticate")
        .count()
}

#[tokio::test]
async fn application_token_is_cached_across_calls() {
    let sim = sim(quiet()).await;
    let c = client(&sim, app_token(&sim), None);
    for _ in 0..5 {
        c.call(
            "service.list",
            Method::GET,
            "/api/v1/service",
            None,
            None,
            "list services",
        )
        .await
        .unwrap();
    }
    assert_eq!(auth_calls(&sim), 1, "one authentication for five calls");
    assert_eq!(c.account_name().await.unwrap().as_deref(), Some("Demo Fleet GmbH"));
}

#[tokio::test]
async fn user_login_hashes_the_password_and_refreshes() {
    let sim = sim(EmnifyConfig {
        token_ttl: Duration::from_secs(30),
        rate_limits: false,
        ..EmnifyConfig::default()
    })
    .await;
    let creds = sim.credentials();
    let c = client(
        &sim,
        Credentials::User {
            username: creds["username"].as_str().unwrap().into(),
            password: SecretString::new(creds["password"].as_str().unwrap()),
        },
        None,
    );
    c.call(
        "service.list",
        Method::GET,
        "/api/v1/service",
        None,
        None,
        "list services",
    )
    .await
    .unwrap();
    // The token's exp is within the 60 s renewal margin: the next call refreshes first.
    c.call(
        "service.list",
        Method::GET,
        "/api/v1/service",
        None,
        None,
        "list services",
    )
    .await
    .unwrap();
    assert_eq!(auth_calls(&sim), 2, "login, then refresh");
}

#[tokio::test]
async fn expired_token_is_renewed_once_and_replayed() {
    let sim = sim(quiet()).await;
    let c = client(&sim, app_token(&sim), None);
    c.call(
        "service.list",
        Method::GET,
        "/api/v1/service",
        None,
        None,
        "list services",
    )
    .await
    .unwrap();
    sim.sim.expire_tokens();
    let answer = c
        .call(
            "service.list",
            Method::GET,
            "/api/v1/service",
            None,
            None,
            "list services",
        )
        .await
        .unwrap();
    assert!(answer.status.is_success());
    let statuses: Vec<u16> = sim.sim.requests().iter().map(|(_, _, s)| *s).collect();
    assert_eq!(statuses, vec![200, 200, 401, 200, 200]);
}

#[tokio::test]
async fn wrong_token_is_unauthorized_after_one_try() {
    let sim = sim(quiet()).await;
    let c = client(&sim, Credentials::ApplicationToken(SecretString::new("wrong")), None);
    let backend = EmnifyBackend::new(Arc::new(c));
    let err = backend.verify().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert_eq!(err.to_string(), "failed to authenticate at emnify: HTTP 401");
    assert!(
        !format!("{err:?} {backend_debug:?}", backend_debug = backend.client()).contains("wrong"),
        "secret in Debug"
    );
}

#[tokio::test]
async fn paging_follows_x_total_pages() {
    let sim = sim(seeded(12, 5, true)).await;
    let c = client(&sim, app_token(&sim), None);
    let sims: Vec<Value> = c
        .list_paged("sim.list", "/api/v1/sim", &[], 5, "list sims")
        .await
        .unwrap();
    assert_eq!(sims.len(), 17);
    let pages = sim
        .sim
        .requests()
        .iter()
        .filter(|(_, p, _)| p.starts_with("/api/v1/sim"))
        .count();
    assert_eq!(pages, 4, "17 SIMs at 5 per page");
    let free: Vec<Value> = c
        .list_paged(
            "sim.list",
            "/api/v1/sim",
            &[("q", "endpoint:null".to_string())],
            100,
            "list free sims",
        )
        .await
        .unwrap();
    assert_eq!(free.len(), 5);
}

/// emnify's OpenAPI spec declares no paging headers: without them a listing still reads to its
/// end (an empty page, a short page, or the last page repeated), and never past it.
#[tokio::test]
async fn paging_without_headers_reads_to_the_end() {
    for (endpoints, free_sims) in [(12, 5), (10, 5), (0, 0)] {
        let sim = sim(seeded(endpoints, free_sims, false)).await;
        let c = client(&sim, app_token(&sim), None);
        let sims: Vec<Value> = c
            .list_paged("sim.list", "/api/v1/sim", &[], 5, "list sims")
            .await
            .unwrap();
        let total = endpoints + free_sims;
        assert_eq!(sims.len(), total, "{total} SIMs");
        let ids: std::collections::HashSet<i64> = sims.iter().map(|s| s["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), total, "no SIM twice");
        let pages = sim
            .sim
            .requests()
            .iter()
            .filter(|(_, p, _)| p.starts_with("/api/v1/sim"))
            .count();
        assert!(pages <= total / 5 + 2, "{pages} requests for {total} SIMs");
    }
}

#[tokio::test]
async fn errors_map_onto_contract_kinds() {
    let sim = sim(quiet()).await;
    let c = client(&sim, app_token(&sim), Some(Metrics::new()));
    let err = c
        .call(
            "x",
            Method::GET,
            "/api/v1/endpoint/999999999",
            None,
            None,
            "get endpoint",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = c
        .call(
            "x",
            Method::POST,
            "/api/v1/service_profile",
            None,
            Some(&json!({"description": "no name"})),
            "create",
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.message.contains("422"), "{}", err.message);
    sim.sim.inject_fault(Fault {
        method: None,
        path_prefix: "/api/v1/service".into(),
        status: 503,
        count: 1,
        retry_after: None,
        delay: None,
    });
    let err = c
        .call("x", Method::GET, "/api/v1/service", None, None, "list services")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    sim.sim.inject_fault(Fault {
        method: None,
        path_prefix: "/api/v1/service".into(),
        status: 429,
        count: 1,
        retry_after: Some(2),
        delay: None,
    });
    let err = c
        .call("x", Method::GET, "/api/v1/service", None, None, "list services")
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
}

#[tokio::test]
async fn timeouts_are_transient() {
    let sim = sim(quiet()).await;
    let c = EmnifyClient::new(
        ClientConfig {
            base_url: sim.url.clone(),
            credentials: app_token(&sim),
            requests_per_second: 100.0,
            burst: 10,
            timeout: Duration::from_millis(200),
        },
        None,
    )
    .unwrap();
    c.auth_token().await.unwrap();
    sim.sim.inject_fault(Fault {
        method: None,
        path_prefix: "/api/v1/service".into(),
        status: 200,
        count: 1,
        retry_after: None,
        delay: Some(Duration::from_secs(2)),
    });
    let err = c
        .call("x", Method::GET, "/api/v1/service", None, None, "list services")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient);
    assert!(err.message.contains("timed out"), "{}", err.message);
}

#[tokio::test]
async fn vendor_requests_are_counted_in_metrics() {
    let sim = sim(quiet()).await;
    let metrics = Metrics::new();
    let c = client(&sim, app_token(&sim), Some(metrics.clone()));
    c.call(
        "service.list",
        Method::GET,
        "/api/v1/service",
        None,
        None,
        "list services",
    )
    .await
    .unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(
            r#"connectivity_operator_vendor_requests_total{vendor="emnify",operation="service.list",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"operation="authenticate",status="200"} 1"#), "{text}");
    assert!(text.contains("connectivity_operator_vendor_request_duration_seconds_bucket"));
    assert_eq!(metrics.vendor_request_total(), 2);
}

fn spec(value: Value) -> ServiceProfileSpec {
    let mut value = value;
    value["providerConfigRef"] = json!({"name": "x"});
    serde_json::from_value(value).unwrap()
}

// The backend contract (idempotency, observe never mutates, in use is a Conflict) is in
// tests/backend_contract.rs, run against every vendor.

#[tokio::test]
async fn non_numeric_ids_are_invalid() {
    let sim = sim(quiet()).await;
    let backend = EmnifyBackend::new(Arc::new(client(&sim, app_token(&sim), None)));
    let spec = spec(json!({"emnify": {}}));
    let desired = DesiredServiceProfile {
        name: "x".into(),
        spec: &spec,
        written: None,
    };
    let err = backend
        .observe(&desired, &Lookup::Id("SP_123".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(sim.sim.requests().iter().all(|(_, p, _)| !p.contains("SP_123")));
}

#[tokio::test]
async fn forbidden_is_its_own_permanent_error_and_is_not_retried_with_a_new_token() {
    let sim = sim(quiet()).await;
    let c = client(&sim, app_token(&sim), None);
    let list = || {
        c.call(
            "service.list",
            Method::GET,
            "/api/v1/service",
            None,
            None,
            "list services",
        )
    };
    list().await.unwrap();
    let (auth_before, requests_before) = (auth_calls(&sim), sim.sim.requests().len());
    sim.sim.inject_fault(Fault {
        method: None,
        path_prefix: "/api/v1/service".into(),
        status: 403,
        count: 1,
        retry_after: None,
        delay: None,
    });
    let err = list().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    assert_eq!(err.kind.reason(), "Forbidden");
    assert!(err.kind.is_permanent(), "a person must grant the right");
    assert!(err.to_string().contains("Forbidden"), "emnify's message is kept: {err}");
    assert_eq!(auth_calls(&sim), auth_before, "no re-authentication on 403");
    assert_eq!(sim.sim.requests().len(), requests_before + 1, "and no replay");
}

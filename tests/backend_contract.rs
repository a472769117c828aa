//! One contract suite, run unchanged against every vendor backend (each against its simulator
//! over HTTP): observe never mutates, create / update / delete are idempotent, "not found" on
//! delete is success, in use is a Conflict; subscriptions are found the same way by a sweep and
//! by a single read, and writes can be repeated safely.

use std::sync::Arc;
use std::time::Duration;

use connectivity_operator::backend::bics::BicsBackend;
use connectivity_operator::backend::bics::client::{self as bics_client, BicsClient};
use connectivity_operator::backend::emnify::EmnifyBackend;
use connectivity_operator::backend::emnify::client::{ClientConfig, Credentials, EmnifyClient};
use connectivity_operator::backend::telenor::TelenorBackend;
use connectivity_operator::backend::telenor::client::{self as telenor_client, TelenorClient};
use connectivity_operator::backend::{
    DesiredServiceProfile, DesiredSubscription, ErrorKind, Lookup, Observation, SecretString, ServiceProfileBackend,
    SimIdentity, SubscriptionBackend, SubscriptionChange,
};
use connectivity_operator::crd::{ConnectivitySubscriptionSpec, ServiceProfileSpec, SubscriptionMode};
use serde_json::{Value, json};

/// A vendor under test: its backends, a spec section, and hooks into its simulator.
struct Vendor {
    name: &'static str,
    profiles: Option<Arc<dyn ServiceProfileBackend>>,
    subscriptions: Arc<dyn SubscriptionBackend>,
    profile_spec: Value,
    /// Writes the simulator has served so far.
    writes: Box<dyn Fn() -> usize + Send + Sync>,
    /// Make a profile "in use" at the vendor.
    use_profile: Box<dyn Fn(&str) + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

fn writes_of(requests: Vec<(String, String, u16)>, reads: &[&str]) -> usize {
    requests
        .iter()
        .filter(|(m, p, _)| m != "GET" && !reads.iter().any(|r| p.contains(r)))
        .count()
}

async fn emnify() -> Vendor {
    connectivity_operator::install_crypto_provider();
    let sim = vendor_sim::emnify::EmnifySim::new(vendor_sim::emnify::EmnifyConfig {
        rate_limits: false,
        ..Default::default()
    })
    .serve("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let token = sim.credentials()["application_token"].as_str().unwrap().to_string();
    let client = EmnifyClient::new(
        ClientConfig {
            base_url: sim.url.clone(),
            credentials: Credentials::ApplicationToken(SecretString::new(token)),
            requests_per_second: 1000.0,
            burst: 1000,
            timeout: Duration::from_secs(5),
        },
        None,
    )
    .unwrap();
    let backend = Arc::new(EmnifyBackend::new(Arc::new(client)));
    let (s1, s2) = (sim.sim.clone(), sim.sim.clone());
    Vendor {
        name: "emnify",
        profiles: Some(backend.clone()),
        subscriptions: backend,
        profile_spec: json!({"emnify": {"allowed3g": false, "services": [{"service": "Data", "trafficLimits": [{"id": 101}]}]}}),
        writes: Box::new(move || writes_of(s1.requests(), &["/authenticate"])),
        use_profile: Box::new(move |id| {
            s2.assign_profile_to_new_endpoint(id.parse().unwrap());
        }),
        _keep: Box::new(sim),
    }
}

async fn bics() -> Vendor {
    connectivity_operator::install_crypto_provider();
    let sim = vendor_sim::bics::BicsSim::new(vendor_sim::bics::BicsConfig {
        rate_limit: None,
        ..Default::default()
    })
    .serve("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let creds = sim.credentials();
    let client = BicsClient::new(
        bics_client::ClientConfig {
            base_url: sim.url.clone(),
            username: creds["username"].as_str().unwrap().into(),
            password: SecretString::new(creds["password"].as_str().unwrap()),
            target_account_id: None,
            requests_per_second: 1000.0,
            burst: 1000,
            timeout: Duration::from_secs(5),
            slow_timeout: Duration::from_secs(5),
        },
        None,
    )
    .unwrap();
    let backend = Arc::new(BicsBackend::new(Arc::new(client), Duration::from_secs(2)));
    let (s1, s2) = (sim.sim.clone(), sim.sim.clone());
    Vendor {
        name: "bicsSft",
        profiles: Some(backend.clone()),
        subscriptions: backend,
        profile_spec: json!({"bicsSft": {"services": ["Data", "SmsMo"], "accessType": "2G/3G/4G"}}),
        writes: Box::new(move || writes_of(s1.requests(), &["/login", "/RefreshToken"])),
        use_profile: Box::new(move |id| {
            s2.attach_profile_to_plan(id);
        }),
        _keep: Box::new(sim),
    }
}

async fn telenor() -> Vendor {
    connectivity_operator::install_crypto_provider();
    let sim = vendor_sim::telenor::TelenorSim::new(vendor_sim::telenor::TelenorConfig {
        rate_limit: None,
        async_delay: Duration::from_millis(1),
        ..Default::default()
    })
    .serve("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let creds = sim.credentials();
    let client = TelenorClient::new(
        telenor_client::ClientConfig {
            base_url: sim.url.clone(),
            token_url: Some(sim.token_url.clone()),
            client_id: creds["client_id"].as_str().unwrap().into(),
            client_secret: SecretString::new(creds["client_secret"].as_str().unwrap()),
            requests_per_second: 1000.0,
            burst: 1000,
            timeout: Duration::from_secs(5),
        },
        None,
    )
    .unwrap();
    let backend = Arc::new(TelenorBackend::new(Arc::new(client)));
    let s1 = sim.sim.clone();
    Vendor {
        name: "telenorIotConnect",
        // Telenor's service policies are read-only: the profile contract does not apply.
        profiles: None,
        subscriptions: backend,
        profile_spec: json!({}),
        writes: Box::new(move || writes_of(s1.requests(), &["/oauth2/token", "/search"])),
        use_profile: Box::new(|_| {}),
        _keep: Box::new(sim),
    }
}

fn profile_spec(v: &Vendor) -> ServiceProfileSpec {
    let mut spec = v.profile_spec.clone();
    spec["providerConfigRef"] = json!({"name": "x"});
    serde_json::from_value(spec).unwrap()
}

async fn profile_contract(v: Vendor) {
    let backend = v.profiles.clone().expect("profile backend");
    let spec = profile_spec(&v);
    let mut desired = DesiredServiceProfile {
        name: format!("contract-{}", v.name),
        spec: &spec,
        written: None,
    };
    let by_name = Lookup::Name(desired.name.clone());

    // observe never mutates
    let writes = (v.writes)();
    assert_eq!(
        backend.observe(&desired, &by_name).await.unwrap(),
        Observation::Missing,
        "{}",
        v.name
    );
    assert_eq!((v.writes)(), writes, "{}: observe wrote", v.name);

    // create, then update until in sync; repeating the same changes is harmless. The create sent
    // the write-only settings, so they are recorded as sent (as the controller does in status).
    let id = backend.create(&desired).await.unwrap();
    desired.written = backend.write_only(&desired);
    let Observation::Present(observed) = backend.observe(&desired, &Lookup::Id(id.clone())).await.unwrap() else {
        panic!("{}: created profile not observed by id", v.name)
    };
    backend.update(&id, &observed.changes).await.unwrap();
    backend.update(&id, &observed.changes).await.unwrap();
    let Observation::Present(observed) = backend.observe(&desired, &by_name).await.unwrap() else {
        panic!("{}: not observed by name", v.name)
    };
    assert_eq!(observed.id, id, "{}", v.name);
    assert!(
        observed.changes.is_empty(),
        "{}: still differs: {:?}",
        v.name,
        observed.changes
    );

    // in use: delete is a Conflict and nothing is deleted
    (v.use_profile)(&id);
    let err = backend.delete(&id).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict, "{}: {err}", v.name);
    assert!(matches!(
        backend.observe(&desired, &Lookup::Id(id.clone())).await.unwrap(),
        Observation::Present(_)
    ));

    // delete twice: the second finds nothing, which is success
    let other = DesiredServiceProfile {
        name: format!("contract-{}-2", v.name),
        spec: &spec,
        written: None,
    };
    let id2 = backend.create(&other).await.unwrap();
    backend.delete(&id2).await.unwrap();
    backend.delete(&id2).await.unwrap();
    assert_eq!(
        backend.observe(&other, &Lookup::Id(id2)).await.unwrap(),
        Observation::Missing,
        "{}",
        v.name
    );
}

async fn subscription_contract(v: Vendor) {
    let backend = v.subscriptions.clone();
    let writes = (v.writes)();
    let inventory = backend.inventory().await.unwrap();
    assert!(inventory.len() >= 5, "{}: seeded SIMs are in the sweep", v.name);
    assert_eq!((v.writes)(), writes, "{}: the sweep wrote", v.name);
    // Every SIM the sweep reports is found by a single read too, with the same identity and mode.
    let swept: Vec<_> = inventory
        .iter()
        .filter(|s| s.mode == Some(SubscriptionMode::Active))
        .take(3)
        .collect();
    assert!(!swept.is_empty(), "{}: some active SIMs", v.name);
    for s in &swept {
        for identity in [
            SimIdentity {
                imsi: s.imsi.clone(),
                iccid: None,
            },
            SimIdentity {
                imsi: None,
                iccid: s.iccid.clone(),
            },
        ] {
            let single = backend
                .observe(&identity)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{}: {identity} not found", v.name));
            assert_eq!(
                (single.imsi.clone(), single.mode),
                (s.imsi.clone(), s.mode),
                "{}: {identity}",
                v.name
            );
        }
    }
    assert!(
        backend
            .observe(&SimIdentity {
                imsi: Some("999999999999999".into()),
                iccid: None
            })
            .await
            .unwrap()
            .is_none()
    );
    // A mode change can be sent twice (e.g. after a lost answer) without harm.
    let target = &swept[0];
    let spec: ConnectivitySubscriptionSpec =
        serde_json::from_value(json!({"providerConfigRef": {"name": "x"}, "imsi": target.imsi, "mode": "Paused"}))
            .unwrap();
    let desired = DesiredSubscription {
        name: "contract".into(),
        identity: SimIdentity {
            imsi: target.imsi.clone(),
            iccid: target.iccid.clone(),
        },
        mode: Some(SubscriptionMode::Paused),
        service_profile_id: None,
        spec: &spec,
        defaults: Default::default(),
    };
    let change = [SubscriptionChange::SetMode(SubscriptionMode::Paused)];
    backend.update(&desired, target, &change).await.unwrap();
    backend.update(&desired, target, &change).await.unwrap();
    // Asynchronous vendors apply later; read until it shows (bounded).
    for _ in 0..50 {
        let now = backend.observe(&desired.identity).await.unwrap().unwrap();
        if now.satisfies(SubscriptionMode::Paused) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{}: the SIM never became Paused", v.name);
}

#[tokio::test]
async fn emnify_meets_the_profile_contract() {
    profile_contract(emnify().await).await;
}

#[tokio::test]
async fn bics_meets_the_profile_contract() {
    profile_contract(bics().await).await;
}

#[tokio::test]
async fn emnify_meets_the_subscription_contract() {
    subscription_contract(emnify().await).await;
}

#[tokio::test]
async fn bics_meets_the_subscription_contract() {
    subscription_contract(bics().await).await;
}

#[tokio::test]
async fn telenor_meets_the_subscription_contract() {
    subscription_contract(telenor().await).await;
}

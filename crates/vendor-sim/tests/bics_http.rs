//! HTTP-level tests of the BICS SIM for Things simulator: each test serves a fresh simulator on
//! `127.0.0.1:0`, drives it with reqwest like a client would (X-Authorization, string scalars,
//! the `Request`/`Response` envelopes), and asserts on both the wire answers and the
//! simulator's state.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use vendor_sim::bics::{BicsConfig, BicsFault, BicsInferred, BicsSeed, BicsSim, Outcome, RunningSim};

/// A plain-HTTP client. In a workspace build reqwest's features are unified with the operator's
/// (`rustls-no-provider`), so a crypto provider must be chosen before a client is built.
fn http_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

/// No rate limit, so tests are not paced at 2 requests per second. Most tests check the
/// simulator's state through its answers, so they switch on the inferred extras (raw codes,
/// totals, IMSIs, plan ids); `documented_shapes_by_default` checks the default answers.
fn config() -> BicsConfig {
    BicsConfig {
        rate_limit: None,
        inferred: BicsInferred::all(),
        ..BicsConfig::default()
    }
}

async fn start(config: BicsConfig) -> RunningSim {
    BicsSim::new(config)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// `Response.resultCode` ("0"/"1") and `Response.resultParam.resultCode`.
fn codes(v: &Value) -> (&str, &str) {
    (
        v["Response"]["resultCode"].as_str().unwrap_or("<none>"),
        v["Response"]["resultParam"]["resultCode"].as_str().unwrap_or("<none>"),
    )
}

struct Api {
    http: Client,
    url: String,
    access: String,
    refresh: String,
}

impl Api {
    async fn login(sim: &RunningSim) -> Api {
        let http = http_client();
        let creds = sim.credentials();
        let resp = http
            .post(format!("{}/api/login", sim.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .json(&json!({"username": creds["username"], "password": creds["password"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        Api {
            http,
            url: sim.url.clone(),
            access: body["AccessToken"].as_str().expect("AccessToken").to_string(),
            refresh: body["RefreshToken"].as_str().expect("RefreshToken").to_string(),
        }
    }

    fn req(&self, method: reqwest::Method, api: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/{api}", self.url))
            .header("X-Requested-With", "XMLHttpRequest")
            .header("X-Authorization", format!("Bearer {}", self.access))
    }

    async fn post(&self, api: &str, body: Value) -> (StatusCode, Value) {
        let r = self.req(reqwest::Method::POST, api).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, api_and_query: &str) -> (StatusCode, Value) {
        let r = self.req(reqwest::Method::GET, api_and_query).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn create_profile(&self, sp: Value) -> Value {
        self.post(
            "CreateServiceProfile",
            json!({"Request": {"requestParam": {"serviceProfile": sp}}}),
        )
        .await
        .1
    }

    async fn modify_profile(&self, sp: Value) -> Value {
        self.post(
            "ModifyServiceProfile",
            json!({"Request": {"requestParam": {"serviceProfile": sp}}}),
        )
        .await
        .1
    }

    async fn delete_profile(&self, id: &str) -> Value {
        self.post(
            "DeleteServiceProfile",
            json!({"Request": {"requestParam": {"serviceProfile": {"id": id}}}}),
        )
        .await
        .1
    }

    /// GetServiceProfile rows (all profiles).
    async fn profiles(&self) -> Vec<Value> {
        let (status, v) = self.get("GetServiceProfile").await;
        assert_eq!(status, 200);
        assert_eq!(codes(&v), ("0", "1331"));
        v["Response"]["responseParam"]["rows"].as_array().unwrap().clone()
    }

    async fn profile_named(&self, name: &str) -> Option<Value> {
        self.profiles().await.into_iter().find(|r| r["profileName"] == name)
    }

    async fn endpoint_action(&self, api: &str, id: &str, param: Option<Value>) -> Value {
        let mut request = json!({"endPointId": id});
        if let Some(p) = param {
            request["requestParam"] = p;
        }
        self.post(api, json!({ "Request": request })).await.1
    }

    async fn endpoint(&self, id: &str) -> Value {
        self.get(&format!("GetEndPointProfile?endPointId={id}")).await.1
    }
}

fn data_sms(name: &str) -> Value {
    json!({"name": name, "category": "0", "status": "1", "service": "4|2|3", "accessType": "06"})
}

// ------------------------------------------------------------------------------------------ auth

#[tokio::test]
async fn login_refresh_and_x_authorization() {
    let sim = start(config()).await;
    let http = http_client();

    // Bad password: HTTP 200, envelope with "1" and no tokens.
    let r = http
        .post(format!("{}/api/login", sim.url))
        .json(&json!({"username": "demo@connectivity-operator.local", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(codes(&v), ("1", "99003"));
    assert!(v.get("AccessToken").is_none());
    assert!(v["Response"]["responseId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["Response"]["responseTimestamp"].as_str().is_some());

    // Unknown support-access target.
    let creds = sim.credentials();
    let r = http
        .post(format!("{}/api/login", sim.url))
        .json(&json!({"username": creds["username"], "password": creds["password"], "targetAccountId": "999"}))
        .send()
        .await
        .unwrap();
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("1", "99004"));

    let api = Api::login(&sim).await;
    assert_eq!(api.access.split('.').count(), 3, "JWT-shaped");
    assert_ne!(api.access, api.refresh);

    // X-Authorization works; a plain Authorization header does not.
    let (status, v) = api.get("GetServiceProfile").await;
    assert_eq!((status, codes(&v)), (StatusCode::OK, ("0", "1331")));
    let r = http
        .get(format!("{}/api/GetServiceProfile", sim.url))
        .bearer_auth(&api.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(codes(&v), ("1", "401"));
    assert!(
        v["Response"]["resultParam"]["resultDescription"]
            .as_str()
            .unwrap()
            .contains("X-Authorization")
    );

    // The refresh token is not an access token.
    let r = http
        .get(format!("{}/api/GetServiceProfile", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("1", "401"));

    // Refresh: GET with the refresh token in X-Authorization returns a new, un-enveloped pair.
    let r = http
        .get(format!("{}/api/RefreshToken", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let pair: Value = r.json().await.unwrap();
    let new_access = pair["AccessToken"].as_str().unwrap();
    assert!(pair["RefreshToken"].as_str().is_some_and(|t| t != api.refresh));
    assert_ne!(new_access, api.access);
    let r = http
        .get(format!("{}/api/GetServiceProfile", sim.url))
        .header("X-Authorization", format!("Bearer {new_access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("0", "1331"));

    // An access token cannot refresh.
    let r = http
        .get(format!("{}/api/RefreshToken", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.access))
        .send()
        .await
        .unwrap();
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("1", "401"));
    assert_eq!(sim.sim.call_count("RefreshToken"), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_answer_inner_401_by_default() {
    let sim = start(BicsConfig {
        access_ttl: Duration::from_millis(300),
        ..config()
    })
    .await;
    let api = Api::login(&sim).await;
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("0", "1331"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, v) = api.get("GetServiceProfile").await;
    assert_eq!(status, 200, "expiry is in-band by default");
    assert_eq!(codes(&v), ("1", "401"));
    sim.shutdown().await;

    // ExpireTokens: every access token so far dies, the refresh token still works.
    let sim = start(config()).await;
    let mut api = Api::login(&sim).await;
    sim.sim.inject(BicsFault::ExpireTokens);
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("1", "401"));
    let pair: Value = api
        .http
        .get(format!("{}/api/RefreshToken", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.refresh))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    api.access = pair["AccessToken"].as_str().unwrap().to_string();
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("0", "1331"));
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_tokens_answer_http_401_when_switched_on() {
    let sim = start(BicsConfig {
        http_401: true,
        ..config()
    })
    .await;
    let api = Api::login(&sim).await;
    sim.sim.inject(BicsFault::ExpireTokens);
    let (status, v) = api.get("GetServiceProfile").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(codes(&v), ("1", "401"), "same body as the in-band form");
    let r = http_client()
        .get(format!("{}/api/fetchSIM", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "missing X-Authorization too");
    sim.shutdown().await;
}

#[tokio::test]
async fn x_requested_with_is_enforced_only_when_asked() {
    let sim = start(BicsConfig {
        require_x_requested_with: true,
        ..config()
    })
    .await;
    let api = Api::login(&sim).await; // sends the header
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("0", "1331"));
    let r = http_client()
        .get(format!("{}/api/GetServiceProfile", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.access))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("1", "403"));
    sim.shutdown().await;

    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let r = http_client()
        .get(format!("{}/api/GetServiceProfile", sim.url))
        .header("X-Authorization", format!("Bearer {}", api.access))
        .send()
        .await
        .unwrap();
    assert_eq!(codes(&r.json::<Value>().await.unwrap()), ("0", "1331"));
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_api_and_wrong_method() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let (status, v) = api.get("createServiceProfile").await;
    assert_eq!((status, codes(&v)), (StatusCode::NOT_FOUND, ("1", "404")));
    let (status, v) = api.get("CreateServiceProfile").await;
    assert_eq!((status, codes(&v)), (StatusCode::METHOD_NOT_ALLOWED, ("1", "405")));
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_per_account_answers_429() {
    let sim = start(BicsConfig {
        rate_limit: Some((1.0, 2)),
        ..BicsConfig::default()
    })
    .await;
    let api = Api::login(&sim).await; // the login takes the first token
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("0", "1331"));
    let (status, v) = api.get("GetServiceProfile").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(codes(&v), ("1", "429"));
    assert!(
        v["Response"]["resultParam"]["resultDescription"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("rate limit")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("0", "1331"));
    assert_eq!(sim.sim.call_count("GetServiceProfile"), 3);
    sim.shutdown().await;
}

// ------------------------------------------------------------------------------ service profiles

#[tokio::test]
async fn service_profile_lifecycle() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;

    let default = api.profile_named("DEFAULT").await.expect("seeded DEFAULT");
    assert_eq!(default["serviceName"], "DATA|SMS-MO|SMS-MT|NB-IOT");
    assert_eq!(default["ratTypeName"], "2G/3G/4G/5G");

    let v = api.create_profile(data_sms("iot-data-sms")).await;
    assert_eq!(codes(&v), ("0", "1323"));
    let id = v["Response"]["serviceProfile"].as_str().unwrap().to_string();
    assert!(id.starts_with("SP_"));

    let (_, v) = api.get(&format!("GetServiceProfile?serviceProfileId={id}")).await;
    assert_eq!(codes(&v), ("0", "1331"));
    let rows = v["Response"]["responseParam"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0],
        json!({
            "profileId": id, "profileName": "iot-data-sms", "serviceName": "DATA|SMS-MO|SMS-MT",
            "ratTypeName": "2G/3G/4G", "category": "0", "status": "1", "service": "4|2|3", "accessType": "06"
        })
    );

    // Numbers are accepted wherever strings are; NB-IoT alone has no RAT.
    let v = api
        .create_profile(json!({"name": "nbiot", "category": 1, "status": 0, "service": 5}))
        .await;
    assert_eq!(codes(&v), ("0", "1323"));
    let nb = api.profile_named("nbiot").await.unwrap();
    assert_eq!(nb["category"], "1");
    assert!(nb.get("ratTypeName").is_none() && nb.get("accessType").is_none());

    // Modify: rename, deactivate, upgrade RAT (numeric accessType), add NB-IoT.
    let v = api
        .modify_profile(json!({"id": id, "name": "iot-renamed", "status": "0", "accessType": 10, "service": "4|2|3|5"}))
        .await;
    assert_eq!(codes(&v), ("0", "1325"));
    let row = &sim.sim.service_profile_by_name("iot-renamed")[0];
    assert_eq!(row["status"], "0");
    assert_eq!(row["accessType"], "10");
    assert_eq!(row["serviceName"], "DATA|SMS-MO|SMS-MT|NB-IOT");
    assert!(sim.sim.service_profile_by_name("iot-data-sms").is_empty());
    // Not attached: a downgrade is fine; `serviceProfileId` is accepted as the id key too.
    let v = api
        .modify_profile(json!({"serviceProfileId": id, "accessType": "02"}))
        .await;
    assert_eq!(codes(&v), ("0", "1325"));

    let v = api.delete_profile(&id).await;
    assert_eq!(codes(&v), ("0", "1329"));
    let (_, v) = api.get(&format!("GetServiceProfile?serviceProfileId={id}")).await;
    assert_eq!(codes(&v), ("1", "1359"));
    // The brief's body form: requestParam.serviceProfileId.
    let nb_id = nb["profileId"].as_str().unwrap();
    let (_, v) = api
        .post(
            "DeleteServiceProfile",
            json!({"Request": {"requestParam": {"serviceProfileId": nb_id}}}),
        )
        .await;
    assert_eq!(codes(&v), ("0", "1329"));
    assert_eq!(sim.sim.service_profiles().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn service_profile_validation_codes() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    assert_eq!(codes(&api.create_profile(data_sms("p1")).await), ("0", "1323"));

    // 6554 duplicate name (create and modify).
    assert_eq!(codes(&api.create_profile(data_sms("p1")).await), ("1", "6554"));
    assert_eq!(codes(&api.create_profile(data_sms("p2")).await), ("0", "1323"));
    let p2 = sim.sim.service_profile_by_name("p2")[0]["profileId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        codes(&api.modify_profile(json!({"id": p2, "name": "p1"})).await),
        ("1", "6554")
    );
    // Renaming to its own name is not a duplicate.
    assert_eq!(
        codes(&api.modify_profile(json!({"id": p2, "name": "p2"})).await),
        ("0", "1325")
    );

    // 10111 obsolete / unknown access type.
    let mut sp = data_sms("p3");
    sp["accessType"] = json!("03");
    assert_eq!(codes(&api.create_profile(sp).await), ("1", "10111"));
    assert_eq!(
        codes(&api.modify_profile(json!({"id": p2, "accessType": "04"})).await),
        ("1", "10111")
    );

    // accessType required with DATA/SMS (1324), refused with NB-IoT only (1324).
    let v = api
        .create_profile(json!({"name": "p4", "category": "0", "status": "1", "service": "4"}))
        .await;
    assert_eq!(codes(&v), ("1", "1324"));
    assert!(
        v["Response"]["resultParam"]["resultDescription"]
            .as_str()
            .unwrap()
            .contains("accessType")
    );
    let v = api
        .create_profile(json!({"name": "p4", "category": "0", "status": "1", "service": "5", "accessType": "10"}))
        .await;
    assert_eq!(codes(&v), ("1", "1324"));

    // 6565 service not granted; 1324 missing mandatory fields.
    let mut sp = data_sms("p5");
    sp["service"] = json!("4|9");
    assert_eq!(codes(&api.create_profile(sp).await), ("1", "6565"));
    assert_eq!(
        codes(
            &api.create_profile(json!({"category": "0", "status": "1", "service": "5"}))
                .await
        ),
        ("1", "1324")
    );
    let (_, v) = api.post("CreateServiceProfile", json!({"Request": {}})).await;
    assert_eq!(codes(&v), ("1", "1324"));

    // 1359 for unknown ids on get, modify and delete; 1326 for a category change.
    let (_, v) = api.get("GetServiceProfile?serviceProfileId=SP_9999").await;
    assert_eq!(codes(&v), ("1", "1359"));
    assert_eq!(
        codes(&api.modify_profile(json!({"id": "SP_9999", "status": "1"})).await),
        ("1", "1359")
    );
    assert_eq!(codes(&api.delete_profile("SP_9999").await), ("1", "1359"));
    assert_eq!(
        codes(&api.modify_profile(json!({"id": p2, "category": "1"})).await),
        ("1", "1326")
    );
    assert_eq!(codes(&api.modify_profile(json!({"status": "1"})).await), ("1", "1326"));

    // Nothing invalid was stored.
    let names: Vec<String> = api
        .profiles()
        .await
        .iter()
        .map(|r| r["profileName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["DEFAULT", "p1", "p2"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn attached_profiles_refuse_delete_downgrade_and_addon_service_changes() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;

    // The seeded DEFAULT is used by the seeded plan.
    let default = api.profile_named("DEFAULT").await.unwrap();
    let v = api.delete_profile(default["profileId"].as_str().unwrap()).await;
    assert_eq!(codes(&v), ("1", "1338"));

    assert_eq!(codes(&api.create_profile(data_sms("base")).await), ("0", "1323"));
    let base = sim.sim.service_profile_by_name("base")[0]["profileId"]
        .as_str()
        .unwrap()
        .to_string();
    let plan = sim.sim.attach_profile_to_plan(&base);

    assert_eq!(codes(&api.delete_profile(&base).await), ("1", "1338"));
    // RAT downgrade 06 -> 01 refused, upgrade 06 -> 10 allowed, then 10 -> 06 refused.
    let v = api.modify_profile(json!({"id": base, "accessType": "01"})).await;
    assert_eq!(codes(&v), ("1", "10085"));
    assert!(
        v["Response"]["resultParam"]["resultDescription"]
            .as_str()
            .unwrap()
            .contains(&plan)
    );
    assert_eq!(
        codes(&api.modify_profile(json!({"id": base, "accessType": "10"})).await),
        ("0", "1325")
    );
    assert_eq!(
        codes(&api.modify_profile(json!({"id": base, "accessType": "06"})).await),
        ("1", "10085")
    );
    assert_eq!(sim.sim.service_profile_by_name("base")[0]["accessType"], "10");
    // A Base profile may change services while attached.
    assert_eq!(
        codes(&api.modify_profile(json!({"id": base, "service": "4"})).await),
        ("0", "1325")
    );

    // Addon profile: service change refused (10100) while attached, fine otherwise.
    let mut addon = data_sms("addon");
    addon["category"] = json!("1");
    assert_eq!(codes(&api.create_profile(addon).await), ("0", "1323"));
    let addon = sim.sim.service_profile_by_name("addon")[0]["profileId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        codes(&api.modify_profile(json!({"id": addon, "service": "4|2"})).await),
        ("0", "1325")
    );
    // Attach through the API this time: CreatePlan + QueryRatePlan.
    let (_, v) = api
        .post(
            "CreatePlan",
            json!({"Request": {"plan": {"basicInfo": {
                "planName": "addon-plan", "planCategory": "ADDON", "planType": "0", "serviceProfile": addon
            }}}}),
        )
        .await;
    assert_eq!(codes(&v), ("0", "99000"));
    let addon_plan = v["Response"]["planId"].as_str().unwrap().to_string();
    let (_, v) = api.get("QueryRatePlan?planCategory=ADDON&planType=0").await;
    let rows = v["Response"]["responseParam"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["planId"], addon_plan.as_str());
    assert_eq!(rows[0]["serviceProfile"], addon.as_str());

    let v = api.modify_profile(json!({"id": addon, "service": "4|2|3"})).await;
    assert_eq!(codes(&v), ("1", "10100"));
    // The same services in another order are not a change; renaming is allowed.
    assert_eq!(
        codes(
            &api.modify_profile(json!({"id": addon, "service": "2|4", "name": "addon2"}))
                .await
        ),
        ("0", "1325")
    );
    assert_eq!(codes(&api.delete_profile(&addon).await), ("1", "1338"));

    // CreatePlan refuses an unknown profile; DeletePlan frees the addon profile.
    let (_, v) = api
        .post(
            "CreatePlan",
            json!({"Request": {"plan": {"basicInfo": {"planName": "x", "planCategory": "NORMAL", "serviceProfile": "SP_4242"}}}}),
        )
        .await;
    assert_eq!(codes(&v), ("1", "99001"));
    let (_, v) = api
        .post(
            "DeletePlan",
            json!({"Request": {"plan": {"basicInfo": {"planId": addon_plan}}}}),
        )
        .await;
    assert_eq!(codes(&v), ("0", "99000"));
    assert_eq!(codes(&api.delete_profile(&addon).await), ("0", "1329"));

    // Detaching the hook plan frees the base profile.
    sim.sim.detach_plan(&plan);
    assert_eq!(
        codes(
            &api.modify_profile(json!({"id": base, "service": "4|2", "accessType": "02"}))
                .await
        ),
        ("0", "1325")
    );
    assert_eq!(codes(&api.delete_profile(&base).await), ("0", "1329"));
    sim.shutdown().await;
}

// ------------------------------------------------------------------------- verify completion (§6)

#[tokio::test]
async fn verify_completion_create_commits_or_not() {
    for (code, outcome) in [
        (10239, Outcome::Committed),
        (10239, Outcome::NotCommitted),
        (10240, Outcome::Committed),
        (10240, Outcome::NotCommitted),
    ] {
        let sim = start(config()).await;
        let api = Api::login(&sim).await;
        sim.sim.inject(BicsFault::VerifyCompletion {
            api: "CreateServiceProfile".into(),
            code,
            outcome,
            count: 1,
        });
        let v = api.create_profile(data_sms("vc")).await;
        assert_eq!(codes(&v), ("1", code.to_string().as_str()), "{code} {outcome:?}");
        assert!(
            v["Response"].get("serviceProfile").is_none(),
            "no id on a verify-completion answer"
        );
        assert!(
            v["Response"]["resultParam"]["resultDescription"]
                .as_str()
                .unwrap()
                .contains("verify completion")
        );

        let found = api.profile_named("vc").await;
        match outcome {
            Outcome::Committed => {
                assert_eq!(found.unwrap()["serviceName"], "DATA|SMS-MO|SMS-MT");
                // A blind retry of the create now hits 6554: the first attempt landed.
                assert_eq!(codes(&api.create_profile(data_sms("vc")).await), ("1", "6554"));
            }
            Outcome::NotCommitted => {
                assert!(found.is_none());
                // The fault is used up: a retry is committed normally.
                assert_eq!(codes(&api.create_profile(data_sms("vc")).await), ("0", "1323"));
            }
        }
        assert_eq!(sim.sim.service_profile_by_name("vc").len(), 1);
        assert_eq!(sim.sim.call_count("CreateServiceProfile"), 2);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn verify_completion_modify_and_delete() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    assert_eq!(codes(&api.create_profile(data_sms("m")).await), ("0", "1323"));
    let id = sim.sim.service_profile_by_name("m")[0]["profileId"]
        .as_str()
        .unwrap()
        .to_string();

    sim.sim.inject(BicsFault::VerifyCompletion {
        api: "ModifyServiceProfile".into(),
        code: 10240,
        outcome: Outcome::NotCommitted,
        count: 1,
    });
    assert_eq!(
        codes(&api.modify_profile(json!({"id": id, "accessType": "10"})).await),
        ("1", "10240")
    );
    assert_eq!(sim.sim.service_profile_by_name("m")[0]["accessType"], "06");
    sim.sim.inject(BicsFault::VerifyCompletion {
        api: "ModifyServiceProfile".into(),
        code: 10239,
        outcome: Outcome::Committed,
        count: 1,
    });
    assert_eq!(
        codes(&api.modify_profile(json!({"id": id, "accessType": "10"})).await),
        ("1", "10239")
    );
    assert_eq!(api.profile_named("m").await.unwrap()["accessType"], "10");

    sim.sim.inject(BicsFault::VerifyCompletion {
        api: "DeleteServiceProfile".into(),
        code: 10239,
        outcome: Outcome::NotCommitted,
        count: 1,
    });
    assert_eq!(codes(&api.delete_profile(&id).await), ("1", "10239"));
    assert!(api.profile_named("m").await.is_some());
    sim.sim.inject(BicsFault::VerifyCompletion {
        api: "DeleteServiceProfile".into(),
        code: 10240,
        outcome: Outcome::Committed,
        count: 1,
    });
    assert_eq!(codes(&api.delete_profile(&id).await), ("1", "10240"));
    assert!(api.profile_named("m").await.is_none());
    // Deleting again: the profile is gone.
    assert_eq!(codes(&api.delete_profile(&id).await), ("1", "1359"));
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_calls_commit_or_not_while_the_client_times_out() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let impatient = Api {
        http: {
            let _ = http_client();
            Client::builder().timeout(Duration::from_millis(300)).build().unwrap()
        },
        url: api.url.clone(),
        access: api.access.clone(),
        refresh: api.refresh.clone(),
    };
    let send = |sp: Value| {
        impatient
            .req(reqwest::Method::POST, "CreateServiceProfile")
            .json(&json!({"Request": {"requestParam": {"serviceProfile": sp}}}))
            .send()
    };

    // Committed: the client times out, but the profile is there when it verifies.
    sim.sim.inject(BicsFault::Slow {
        api: "CreateServiceProfile".into(),
        delay: Duration::from_secs(2),
        outcome: Outcome::Committed,
        count: 1,
    });
    let err = send(data_sms("slow-yes")).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(api.profile_named("slow-yes").await.unwrap()["accessType"], "06");

    // NotCommitted: the client times out and nothing is there, now or later.
    sim.sim.inject(BicsFault::Slow {
        api: "CreateServiceProfile".into(),
        delay: Duration::from_millis(800),
        outcome: Outcome::NotCommitted,
        count: 1,
    });
    let err = send(data_sms("slow-no")).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(api.profile_named("slow-no").await.is_none());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(api.profile_named("slow-no").await.is_none());

    // A patient client gets the stalled answer: 10240 when not committed, the real one otherwise.
    sim.sim.inject(BicsFault::Slow {
        api: "CreateServiceProfile".into(),
        delay: Duration::from_millis(400),
        outcome: Outcome::NotCommitted,
        count: 1,
    });
    let t0 = std::time::Instant::now();
    assert_eq!(codes(&api.create_profile(data_sms("slow-no")).await), ("1", "10240"));
    assert!(t0.elapsed() >= Duration::from_millis(400));
    sim.sim.inject(BicsFault::Slow {
        api: "CreateServiceProfile".into(),
        delay: Duration::from_millis(400),
        outcome: Outcome::Committed,
        count: 1,
    });
    assert_eq!(codes(&api.create_profile(data_sms("slow-no")).await), ("0", "1323"));
    assert_eq!(sim.sim.call_count("CreateServiceProfile"), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn http_faults_precede_auth_and_run_out() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    sim.sim.inject(BicsFault::Http {
        api: "GetServiceProfile".into(),
        status: 503,
        count: 2,
    });
    sim.sim.inject(BicsFault::Http {
        api: "fetchSIM".into(),
        status: 429,
        count: 1,
    });
    for _ in 0..2 {
        let (status, v) = api.get("GetServiceProfile").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(codes(&v), ("1", "503"));
    }
    assert_eq!(api.get("GetServiceProfile").await.0, StatusCode::OK);
    let (status, v) = api.get("fetchSIM").await;
    assert_eq!((status, codes(&v)), (StatusCode::TOO_MANY_REQUESTS, ("1", "429")));
    assert_eq!(api.get("fetchSIM").await.0, StatusCode::OK);
    let log = sim.sim.requests();
    assert!(log.contains(&("GET".to_string(), "/api/GetServiceProfile".to_string(), 503)));
    assert_eq!(sim.sim.request_count(), 6); // login + 3 + 2
    sim.shutdown().await;
}

// ------------------------------------------------------------------------ endpoints and SIMs (§7)

/// By default every answer carries what BICS documents (or, for fetchSIM and GetEndPointProfile,
/// what BICS's own clients read) and nothing the simulator invented; CreateEndPoint requires the
/// documented mandatory `roamingProfileId`.
#[tokio::test]
async fn documented_shapes_by_default() {
    let sim = start(BicsConfig {
        rate_limit: None,
        max_per_page: 4,
        ..BicsConfig::default()
    })
    .await;
    let api = Api::login(&sim).await;
    let (_, v) = api.get("GetServiceProfile").await;
    for row in v["Response"]["responseParam"]["rows"].as_array().unwrap() {
        let mut keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        keys.retain(|k| *k != "ratTypeName");
        keys.sort();
        assert_eq!(keys, ["category", "profileId", "profileName", "serviceName"], "{row}");
    }
    let (_, v) = api.get("fetchSIM?page=1&perPage=1000").await;
    let param = &v["Response"]["responseParam"];
    assert!(
        param.get("totalCount").is_none() && param.get("page").is_none(),
        "{param}"
    );
    let rows = param["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "the page-size cap applies whatever perPage asks");
    for row in rows {
        assert!(row.get("imsi").is_none() && row.get("msisdn").is_none() && row.get("simStatusId").is_none());
        assert!(
            row["iMSIList"][0]["supplierIMSIList"][0]["supplierIMSI"]
                .as_str()
                .is_some()
        );
    }
    let endpoint = rows
        .iter()
        .find_map(|r| r["endPointId"].as_str().filter(|e| *e != "-"))
        .unwrap();
    let info = api.endpoint(endpoint).await;
    let mut keys: Vec<&str> = info["Response"]["info"]["basicInfo"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["iccid", "imeiLockStatus", "imsi", "msisdn", "name"]);

    let (_, v) = api.get("fetchSIM?simAttachStatusId=0").await;
    let iccid = v["Response"]["responseParam"]["rows"][0]["iccid"]
        .as_str()
        .unwrap()
        .to_string();
    for (roaming, why) in [
        (None, "roamingProfileId is mandatory"),
        (Some("RP_9"), "RP_9 does not exist"),
    ] {
        let mut param = json!({"name": "dev", "isLinkSIM": "true", "iccid": iccid, "isDefaultActivation": "false"});
        if let Some(r) = roaming {
            param["roamingProfileId"] = json!(r);
        }
        let (_, v) = api
            .post("CreateEndPoint", json!({"Request": {"requestParam": param}}))
            .await;
        assert_eq!(codes(&v).0, "1");
        let text = v.to_string();
        assert!(text.contains(why), "{text}");
    }
}

#[tokio::test]
async fn fetch_sim_filters_and_pages() {
    let sim = start(BicsConfig {
        seed: BicsSeed {
            endpoints: 6,
            free_sims: 5,
            rng_seed: 7,
        },
        ..config()
    })
    .await;
    let api = Api::login(&sim).await;

    let mut seen = Vec::new();
    for page in 1..=3 {
        let (_, v) = api.get(&format!("fetchSIM?page={page}&perPage=4")).await;
        assert_eq!(codes(&v), ("0", "99000"));
        assert_eq!(v["Response"]["responseParam"]["totalCount"], "11");
        let rows = v["Response"]["responseParam"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), if page < 3 { 4 } else { 3 });
        seen.extend(rows.iter().map(|r| r["iccid"].as_str().unwrap().to_string()));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 11, "pages do not overlap");
    let (_, v) = api.get("fetchSIM?page=4&perPage=4").await;
    assert!(v["Response"]["responseParam"]["rows"].as_array().unwrap().is_empty());

    // Free SIMs: not attached, Ready To Activate, endPointId "-".
    let (_, v) = api.get("fetchSIM?simAttachStatusId=0").await;
    let free = v["Response"]["responseParam"]["rows"].as_array().unwrap().clone();
    assert_eq!(free.len(), 5);
    assert!(free.iter().all(|r| r["simStatus"] == "Ready To Activate"
        && r["endPointId"] == "-"
        && r["simAttachStatus"] == "NOT ATTACHED"));
    let (_, v) = api.get("fetchSIM?simAttachStatusId=1").await;
    assert_eq!(v["Response"]["responseParam"]["rows"].as_array().unwrap().len(), 6);

    // simStatusId=12 is Pre-Active (documented).
    let (_, v) = api.get("fetchSIM?simStatusId=12").await;
    let pre = v["Response"]["responseParam"]["rows"].as_array().unwrap();
    assert!(!pre.is_empty() && pre.iter().all(|r| r["simStatus"] == "Pre-Active"));

    // ICCID lookup.
    let iccid = seen[3].clone();
    let (_, v) = api.get(&format!("fetchSIM?iccid={iccid}")).await;
    let rows = v["Response"]["responseParam"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["iccid"], iccid.as_str());
    let (_, v) = api.get("fetchSIM?iccid=0000").await;
    assert!(v["Response"]["responseParam"]["rows"].as_array().unwrap().is_empty());
    let (_, v) = api.get("fetchSIM?page=abc").await;
    assert_eq!(codes(&v), ("1", "99001"));
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoint_state_machine_and_codes() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let (_, v) = api.get("fetchSIM?simAttachStatusId=0&perPage=1").await;
    let iccid = v["Response"]["responseParam"]["rows"][0]["iccid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = api.get("QueryRatePlan?planCategory=NORMAL").await;
    let base_plan = v["Response"]["responseParam"]["rows"][0]["planId"]
        .as_str()
        .unwrap()
        .to_string();

    // Create with the SIM linked, not activated: both Pre-Active.
    let (_, v) = api
        .post(
            "CreateEndPoint",
            json!({"Request": {"requestParam": {
                "name": "dev-1", "isLinkSIM": "true", "iccid": iccid, "roamingProfileId": "RP_1",
                "apnGroupId": "PDP_1785", "planId": base_plan, "isDefaultActivation": "false"
            }}}),
        )
        .await;
    assert_eq!(codes(&v), ("0", "99000"));
    let id = v["Response"]["endPointId"].as_str().unwrap().to_string();
    let info = api.endpoint(&id).await;
    let basic = &info["Response"]["info"]["basicInfo"];
    assert_eq!(basic["iccid"], iccid.as_str());
    assert_eq!(basic["name"], "dev-1");
    assert_eq!(basic["status"], "Pre-Active");
    assert_eq!(basic["planId"], base_plan.as_str());
    assert!(basic["imsi"].as_str().unwrap().starts_with("20628"));
    assert!(basic["msisdn"].as_str().is_some() && basic["imeiLockStatus"].as_str().is_some());
    assert_eq!(sim.sim.endpoint_by_iccid(&iccid).unwrap()["simStatus"], "Pre-Active");

    // The same SIM cannot be linked twice.
    let (_, v) = api
        .post(
            "CreateEndPoint",
            json!({"Request": {"requestParam": {"name": "dev-2", "isLinkSIM": "true", "iccid": iccid, "roamingProfileId": "RP_1"}}}),
        )
        .await;
    assert_eq!(codes(&v), ("1", "99002"));

    // Activation 5014, then 2507 already active.
    assert_eq!(
        codes(&api.endpoint_action("EndPointActivation", &id, None).await),
        ("0", "5014")
    );
    assert_eq!(
        codes(&api.endpoint_action("EndPointActivation", &id, None).await),
        ("1", "2507")
    );
    assert_eq!(sim.sim.endpoint_by_iccid(&iccid).unwrap()["simStatus"], "Active");

    // Suspend and resume: 5017 with currentStatus/previousStatus.
    let v = api
        .endpoint_action(
            "EndPointLifeCycleChange",
            &id,
            Some(json!({"lifeCycle": "S", "reason": "1"})),
        )
        .await;
    assert_eq!(codes(&v), ("0", "5017"));
    assert_eq!(
        v["Response"]["responseParam"],
        json!({"currentStatus": "Suspended", "previousStatus": "Active"})
    );
    assert_eq!(sim.sim.endpoint_by_iccid(&iccid).unwrap()["simStatus"], "Suspended");
    let v = api
        .endpoint_action(
            "EndPointLifeCycleChange",
            &id,
            Some(json!({"lifeCycle": "A", "reason": "1"})),
        )
        .await;
    assert_eq!(codes(&v), ("0", "5017"));
    assert_eq!(v["Response"]["responseParam"]["currentStatus"], "Active");
    let v = api
        .endpoint_action("EndPointLifeCycleChange", &id, Some(json!({"lifeCycle": "X"})))
        .await;
    assert_eq!(codes(&v), ("1", "99001"));

    // ChangePlan 7001; an unknown plan is refused.
    let (_, v) = api
        .post(
            "CreatePlan",
            json!({"Request": {"plan": {"basicInfo": {"planName": "gold", "planCategory": "NORMAL", "serviceProfile": "SP_1001"}}}}),
        )
        .await;
    let gold = v["Response"]["planId"].as_str().unwrap().to_string();
    let v = api
        .endpoint_action("ChangePlan", &id, Some(json!({"planId": gold})))
        .await;
    assert_eq!(codes(&v), ("0", "7001"));
    assert_eq!(
        api.endpoint(&id).await["Response"]["info"]["basicInfo"]["planId"],
        gold.as_str()
    );
    let v = api
        .endpoint_action("ChangePlan", &id, Some(json!({"planId": "nope"})))
        .await;
    assert_eq!(codes(&v), ("1", "99001"));
    // A plan in use cannot be deleted.
    let (_, v) = api
        .post(
            "DeletePlan",
            json!({"Request": {"plan": {"basicInfo": {"planId": gold}}}}),
        )
        .await;
    assert_eq!(codes(&v), ("1", "99002"));

    // Delete refused while the SIM is linked.
    assert_eq!(
        codes(&api.endpoint_action("DeleteEndPoint", &id, None).await),
        ("1", "99002")
    );

    // De-link: 6413, endpoint Hold, SIM back in inventory; again 6420.
    assert_eq!(codes(&api.endpoint_action("DeLinkSim", &id, None).await), ("0", "6413"));
    assert_eq!(
        api.endpoint(&id).await["Response"]["info"]["basicInfo"]["status"],
        "Hold"
    );
    let (_, v) = api.get(&format!("fetchSIM?iccid={iccid}")).await;
    let row = &v["Response"]["responseParam"]["rows"][0];
    assert_eq!(row["simStatus"], "Ready To Activate");
    assert_eq!(row["endPointId"], "-");
    assert!(sim.sim.endpoint_by_iccid(&iccid).is_none());
    assert_eq!(codes(&api.endpoint_action("DeLinkSim", &id, None).await), ("1", "6420"));
    assert_eq!(
        codes(&api.endpoint_action("EndPointActivation", &id, None).await),
        ("1", "6420")
    );
    let v = api
        .endpoint_action("EndPointLifeCycleChange", &id, Some(json!({"lifeCycle": "S"})))
        .await;
    assert_eq!(codes(&v), ("1", "6420"));

    // Link it back (Pre-Active again), de-link, delete 10159, then 1359.
    let v = api.endpoint_action("LinkSim", &id, Some(json!({"iccid": iccid}))).await;
    assert_eq!(codes(&v), ("0", "99000"));
    assert_eq!(
        api.endpoint(&id).await["Response"]["info"]["basicInfo"]["status"],
        "Pre-Active"
    );
    assert_eq!(codes(&api.endpoint_action("DeLinkSim", &id, None).await), ("0", "6413"));
    assert_eq!(
        codes(&api.endpoint_action("DeleteEndPoint", &id, None).await),
        ("0", "10159")
    );
    assert_eq!(codes(&api.endpoint(&id).await), ("1", "1359"));
    assert_eq!(
        codes(&api.endpoint_action("DeleteEndPoint", &id, None).await),
        ("1", "1359")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn seeded_endpoints_and_drift() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let endpoints = sim.sim.endpoints();
    assert_eq!(endpoints.len(), 10);
    let states: std::collections::BTreeSet<&str> = endpoints.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        ["Active", "Pre-Active", "Suspended"].into_iter().collect(),
        "mixed states"
    );
    // A Pre-Active endpoint cannot be suspended before activation.
    let pre = endpoints.iter().find(|e| e["status"] == "Pre-Active").unwrap();
    let pre_id = pre["endPointId"].as_str().unwrap();
    let v = api
        .endpoint_action("EndPointLifeCycleChange", pre_id, Some(json!({"lifeCycle": "S"})))
        .await;
    assert_eq!(codes(&v), ("1", "99002"));

    // Drift made in the portal shows through the API.
    let active = endpoints.iter().find(|e| e["status"] == "Active").unwrap();
    let id = active["endPointId"].as_str().unwrap();
    sim.sim.set_endpoint_state(id, "Suspended");
    assert_eq!(
        api.endpoint(id).await["Response"]["info"]["basicInfo"]["status"],
        "Suspended"
    );
    let (_, v) = api
        .get(&format!("fetchSIM?iccid={}", active["iccid"].as_str().unwrap()))
        .await;
    assert_eq!(v["Response"]["responseParam"]["rows"][0]["simStatus"], "Suspended");
    sim.shutdown().await;
}

// ------------------------------------------------------------------------------------ admin routes

#[tokio::test]
async fn admin_routes() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let http = http_client();

    let r = http
        .post(format!("{}/_sim/faults", sim.url))
        .json(&json!({"type": "VerifyCompletion", "api": "CreateServiceProfile", "code": 10240, "outcome": "NotCommitted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(format!("{}/_sim/faults", sim.url))
        .json(&json!({"type": "Nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let state: Value = http
        .get(format!("{}/_sim/state", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["pending_faults"], 1);
    assert_eq!(state["endpoints"], 10);
    assert_eq!(state["free_sims"], 5);

    assert_eq!(codes(&api.create_profile(data_sms("adm")).await), ("1", "10240"));
    let profiles: Value = http
        .get(format!("{}/_sim/service_profiles", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        profiles.as_array().unwrap().len(),
        1,
        "only DEFAULT: the create was not committed"
    );

    let r = http
        .post(format!("{}/_sim/faults", sim.url))
        .json(&json!({"type": "ExpireTokens"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(codes(&api.get("GetServiceProfile").await.1), ("1", "401"));

    let log: Value = http
        .get(format!("{}/_sim/requests", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/api/login", "/api/CreateServiceProfile", "/api/GetServiceProfile"]
    );
    sim.shutdown().await;
}

/// Chaos over HTTP: "applied, then an error" is BICS's 10239 with the profile committed; a
/// stall that does not commit leaves nothing; gateway errors and throttles are HTTP answers.
#[tokio::test]
async fn chaos_verify_completion_stalls_and_gateway_answers() {
    let sim = start(config()).await;
    let api = Api::login(&sim).await;
    let chaos = |config: Value| {
        let http = api.http.clone();
        let url = format!("{}/_sim/chaos", sim.url);
        async move {
            let r = http.post(url).json(&config).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };

    chaos(json!({"seed": 4, "error_after_apply": 1.0})).await;
    let v = api.create_profile(data_sms("chaos-vc")).await;
    assert_eq!(codes(&v), ("1", "10239"));
    // A read drawn so is a gateway error: nothing to verify.
    assert_eq!(api.get("GetServiceProfile").await.0, 500);
    chaos(json!({})).await;
    assert_eq!(sim.sim.service_profile_by_name("chaos-vc").len(), 1);

    chaos(json!({"stall": 1.0, "stall_ms": 500, "stall_applied": 0.0})).await;
    let timed_out = api
        .req(reqwest::Method::POST, "CreateServiceProfile")
        .timeout(Duration::from_millis(150))
        .json(&json!({"Request": {"requestParam": {"serviceProfile": data_sms("chaos-lost")}}}))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    chaos(json!({"stall": 1.0, "stall_ms": 500, "stall_applied": 1.0})).await;
    let timed_out = api
        .req(reqwest::Method::POST, "CreateServiceProfile")
        .timeout(Duration::from_millis(150))
        .json(&json!({"Request": {"requestParam": {"serviceProfile": data_sms("chaos-kept")}}}))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());
    chaos(json!({"throttle": 1.0, "burst": 1, "retry_after": 5})).await;
    let r = api.req(reqwest::Method::GET, "GetServiceProfile").send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()),
        (429, "5")
    );
    chaos(json!({})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sim.sim.service_profile_by_name("chaos-lost").is_empty());
    assert_eq!(sim.sim.service_profile_by_name("chaos-kept").len(), 1);
    let counts = sim.sim.chaos_counts();
    assert_eq!(
        (
            counts.errors_after_apply,
            counts.server_errors,
            counts.stalls_applied,
            counts.stalls_not_applied,
            counts.throttled
        ),
        (1, 1, 1, 1, 1),
        "{counts:?}"
    );
    sim.shutdown().await;
}

//! HTTP-level tests of the emnify simulator: each test serves a fresh simulator on
//! `127.0.0.1:0`, drives it with reqwest like a client would, and asserts on both the wire
//! answers and the simulator's state.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use vendor_sim::emnify::{EmnifyConfig, EmnifySim, Fault, RunningSim, SeedConfig, sha1_hex};

/// A plain-HTTP client. In a workspace build reqwest's features are unified with the operator's
/// (`rustls-no-provider`), so a crypto provider must be chosen before a client is built.
fn http_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

async fn start(config: EmnifyConfig) -> RunningSim {
    EmnifySim::new(config)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn no_limits() -> EmnifyConfig {
    EmnifyConfig {
        rate_limits: false,
        ..EmnifyConfig::default()
    }
}

struct Api {
    http: Client,
    url: String,
    token: String,
}

impl Api {
    async fn login(sim: &RunningSim) -> Api {
        let http = http_client();
        let app = sim.credentials()["application_token"].as_str().unwrap().to_string();
        let resp = http
            .post(format!("{}/api/v1/authenticate", sim.url))
            .json(&json!({"application_token": app}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        Api {
            http,
            url: sim.url.clone(),
            token: body["auth_token"].as_str().unwrap().to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.call(Method::GET, path, None).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends and returns status plus body parsed leniently (empty -> Null).
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.call(method, path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[tokio::test]
async fn auth_forms_tokens_and_gateway_401() {
    let config = EmnifyConfig {
        token_ttl: Duration::from_secs(600),
        ..no_limits()
    };
    let sim = start(config).await;
    let http = http_client();
    let auth = format!("{}/api/v1/authenticate", sim.url);
    let creds = sim.credentials();

    // Application token: auth_token only, HS384 with the recorded claims and our TTL.
    let r: Value = http
        .post(&auth)
        .json(&json!({"application_token": creds["application_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.get("refresh_token").is_none());
    let app_token = r["auth_token"].as_str().unwrap().to_string();
    let claims = jwt_claims(&app_token);
    assert_eq!(claims["aud"], "/api/v1/authentication");
    assert_eq!(claims["iss"], "spc-frontend001@spc-frontend");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert!(claims["esc.app"].is_i64() && claims["esc.org"].is_i64() && claims["esc.orgName"].is_string());

    // User credentials: password must be the SHA-1 hex; returns auth + refresh.
    let user = json!({"username": creds["username"], "password": sha1_hex(creds["password"].as_str().unwrap())});
    let r: Value = http.post(&auth).json(&user).send().await.unwrap().json().await.unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_string();
    assert!(r["auth_token"].is_string());

    // Refresh token -> new auth token only.
    let r: Value = http
        .post(&auth)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["auth_token"].is_string() && r.get("refresh_token").is_none());

    // A refresh token is no bearer token.
    let resp = http
        .get(format!("{}/api/v1/service_profile", sim.url))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error_code"], 1102);

    // Bad app token: 401 with an empty body.
    let resp = http
        .post(&auth)
        .json(&json!({"application_token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), "");

    // Gateway 401 for `Bearer None` (the Python SDK's first call).
    let resp = http
        .get(format!("{}/api/v1/endpoint", sim.url))
        .header("authorization", "Bearer None")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "x-amzn-errortype"), "AccessDeniedException");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "token contains an invalid number of segments"})
    );

    // Tampered signature -> 1102.
    let mut parts: Vec<String> = app_token.split('.').map(str::to_string).collect();
    parts[2] = "AAAA".into();
    let resp = http
        .get(format!("{}/api/v1/endpoint", sim.url))
        .bearer_auth(parts.join("."))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error_token"], "InvalidToken");

    // Valid token works, then expire_tokens -> 1103, and re-authentication recovers.
    let ok = http
        .get(format!("{}/api/v1/service_profile", sim.url))
        .bearer_auth(&app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    sim.sim.expire_tokens();
    let resp = http
        .get(format!("{}/api/v1/service_profile", sim.url))
        .bearer_auth(&app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error_code"], 1103);
    let api = Api::login(&sim).await;
    assert_eq!(api.get("/service_profile").await.0, 200);

    // Same over the admin route.
    let r = http
        .post(format!("{}/_sim/expire-tokens", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(api.get("/service_profile").await.0, 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn expired_by_exp_and_lockout_after_three_failures() {
    let config = EmnifyConfig {
        token_ttl: Duration::from_secs(1),
        ..no_limits()
    };
    let sim = start(config).await;
    let api = Api::login(&sim).await;
    assert_eq!(api.get("/service_profile").await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = api.get("/service_profile").await;
    assert_eq!(status, 401);
    assert_eq!(body["error_token"], "TokenExpired");

    let http = http_client();
    let auth = format!("{}/api/v1/authenticate", sim.url);
    let username = sim.credentials()["username"].clone();
    for _ in 0..3 {
        let r = http
            .post(&auth)
            .json(&json!({"username": username, "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.text().await.unwrap(), "");
    }
    // Locked: even the right password gets the 1105 body for 5 minutes.
    let right = sha1_hex(sim.credentials()["password"].as_str().unwrap());
    let r = http
        .post(&auth)
        .json(&json!({"username": username, "password": right}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], 1105);
    // Plain-text passwords are never accepted (emnify wants SHA-1 hex).
    let other = start(no_limits()).await;
    let r = http
        .post(format!("{}/api/v1/authenticate", other.url))
        .json(&json!({"username": username, "password": "demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Malformed body -> 400.
    let r = http
        .post(&auth)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    sim.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn service_profile_crud_in_use_and_drift_hooks() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;

    let (status, list) = api.get("/service_profile").await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap().clone();
    assert!(list.len() >= 3);
    let default = list.iter().find(|p| p["name"] == "Default Policy").unwrap();
    // used_count is a string in the list view and counts the 25 seeded endpoints.
    assert_eq!(default["used_count"], json!("25"));
    assert!(default.get("service").is_none(), "short view has no services");
    let default_id = default["id"].as_i64().unwrap();

    // Detail view expands lookups.
    let (_, detail) = api.get(&format!("/service_profile/{default_id}")).await;
    assert_eq!(detail["used_count"], json!(25));
    assert!(detail["api_callback"]["url"].is_string());
    assert!(detail["api_secret"]["purpose"].is_string() && detail["api_secret"].get("secret").is_none());
    assert_eq!(detail["breakout_region"]["id"], 1);
    assert_eq!(detail["esme_interface_type"]["description"], "RestAPI");
    assert_eq!(detail["dns"]["primary"], "8.8.8.8");
    assert!(detail["ip_firewall_rule_set"]["ip_firewall_profiles"].is_array());
    let services = detail["service"].as_array().unwrap();
    assert!(services.iter().any(|s| s["id"] == 38 && s["traffic_limit"].is_array()));

    // Create: name required.
    let (status, body) = api
        .send(Method::POST, "/service_profile", Some(json!({"description": "x"})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["error_code"], 1402);
    let r = api
        .call(
            Method::POST,
            "/service_profile",
            Some(json!({"name": "Op Managed", "allowed_3g": false})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location").to_string();
    assert!(
        location.starts_with(&format!("{}/api/v1/service_profile/", sim.url)),
        "{location}"
    );
    assert_eq!(r.text().await.unwrap(), "");
    let id: i64 = location.rsplit('/').next().unwrap().parse().unwrap();
    let p = sim.sim.service_profile(id).unwrap();
    assert_eq!(p["allowed_3g"], false);
    assert_eq!(p["allowed_4g"], true, "defaults apply");
    assert_eq!(p["used_count"], 0);

    // PATCH a subset -> 201 empty; bad references -> 422 1400 + 1401.
    let (status, _) = api
        .send(
            Method::PATCH,
            &format!("/service_profile/{id}"),
            Some(json!({"description": "d", "breakout_region": {"id": 2}})),
        )
        .await;
    assert_eq!(status, 201);
    let p = sim.sim.service_profile(id).unwrap();
    assert_eq!(p["description"], "d");
    assert_eq!(p["breakout_region"]["id"], 2);
    assert_eq!(p["name"], "Op Managed", "untouched fields stay");
    let (status, body) = api
        .send(
            Method::PATCH,
            &format!("/service_profile/{id}"),
            Some(json!({"dns": {"id": 999}, "api_secret": {"id": -1}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error_code"], 1400);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(body["errors"][0]["error_code"], 1401);
    // Clearing a reference with {"id": null}.
    api.send(
        Method::PATCH,
        &format!("/service_profile/{id}"),
        Some(json!({"breakout_region": {"id": null}})),
    )
    .await;
    assert_eq!(sim.sim.service_profile(id).unwrap()["breakout_region"], Value::Null);

    // In use -> 409 with the Conflict body; unknown -> 404 1201.
    let ep = sim.sim.assign_profile_to_new_endpoint(id);
    let (_, list) = api.get("/service_profile").await;
    let listed = list.as_array().unwrap().iter().find(|p| p["id"] == id).unwrap().clone();
    assert_eq!(listed["used_count"], json!("1"));
    let (status, body) = api.send(Method::DELETE, &format!("/service_profile/{id}"), None).await;
    assert_eq!(status, 409);
    assert_eq!(body["error_code"], 1409);
    assert_eq!(body["error_token"], "Conflict");
    assert!(body["message"].as_str().unwrap().contains("is in use"));
    // Free it: move the endpoint to another profile, then delete works.
    let (status, _) = api
        .send(
            Method::PATCH,
            &format!("/endpoint/{ep}"),
            Some(json!({"service_profile": {"id": default_id}})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.send(Method::DELETE, &format!("/service_profile/{id}"), None).await;
    assert_eq!(status, 204);
    assert!(sim.sim.service_profile(id).is_none());
    let (status, body) = api.get(&format!("/service_profile/{id}")).await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (404, Some(1201)));
    let (status, body) = api.send(Method::DELETE, "/service_profile/abc", None).await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (400, Some(1000)));

    // Out-of-band hooks: create (adoption) and drift.
    let adopted = sim.sim.create_service_profile(json!({"name": "Made in Portal"}));
    sim.sim.patch_service_profile(adopted, json!({"sms_p2p_ext": false}));
    let (_, detail) = api.get(&format!("/service_profile/{adopted}")).await;
    assert_eq!(detail["sms_p2p_ext"], false);
    assert_eq!(sim.sim.service_profiles().len(), list.as_array().unwrap().len());
    sim.shutdown().await;
}

#[tokio::test]
async fn services_assignment_limits_and_data_limits() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;
    let pid = sim.sim.create_service_profile(json!({"name": "Limits"}));
    let base = format!("/service_profile/{pid}");

    // Catalogue lookups.
    let (_, services) = api.get("/service").await;
    let ids: Vec<i64> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&38) && ids.contains(&3) && ids.contains(&53) && ids.contains(&54));
    let (_, sms_limits) = api.get("/service/54/traffic_limit").await;
    let sms_limit = sms_limits[0]["id"].as_i64().unwrap();
    assert!(sms_limits[0]["period"]["unit"].is_string());
    let (_, all) = api.get("/traffic_limit").await;
    let data_limit = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["service"]["id"] == 38)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(api.get("/service/999/traffic_limit").await.0, 404);

    // Services: PUT 204, again 409; limit on a service not on the profile -> 422.
    assert_eq!(api.send(Method::PUT, &format!("{base}/service/38"), None).await.0, 204);
    assert_eq!(api.send(Method::PUT, &format!("{base}/service/38"), None).await.0, 409);
    assert_eq!(api.send(Method::PUT, &format!("{base}/service/999"), None).await.0, 404);
    assert_eq!(
        api.send(
            Method::PUT,
            &format!("{base}/service/54/traffic_limit/{sms_limit}"),
            None
        )
        .await
        .0,
        422
    );
    assert_eq!(api.send(Method::PUT, &format!("{base}/service/54"), None).await.0, 204);
    let (status, body) = api
        .send(
            Method::PUT,
            &format!("{base}/service/54/traffic_limit/{sms_limit}"),
            None,
        )
        .await;
    assert_eq!((status.as_u16(), body), (200, Value::Null));
    // Limit of another service -> 422; unknown limit -> 404.
    assert_eq!(
        api.send(
            Method::PUT,
            &format!("{base}/service/38/traffic_limit/{sms_limit}"),
            None
        )
        .await
        .0,
        422
    );
    assert_eq!(
        api.send(Method::PUT, &format!("{base}/service/38/traffic_limit/424242"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api.send(
            Method::PUT,
            &format!("{base}/service/38/traffic_limit/{data_limit}"),
            None
        )
        .await
        .0,
        200
    );
    let p = sim.sim.service_profile(pid).unwrap();
    let s54 = p["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 54)
        .unwrap()
        .clone();
    assert_eq!(s54["traffic_limit"][0]["id"], sms_limit);
    assert_eq!(s54["description"], "SMS MT");

    // Service with limits cannot be removed; detach first.
    assert_eq!(
        api.send(Method::DELETE, &format!("{base}/service/54"), None).await.0,
        409
    );
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("{base}/service/54/traffic_limit/{sms_limit}"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.send(
            Method::DELETE,
            &format!("{base}/service/54/traffic_limit/{sms_limit}"),
            None
        )
        .await
        .0,
        422
    );
    assert_eq!(
        api.send(Method::DELETE, &format!("{base}/service/54"), None).await.0,
        204
    );
    let p = sim.sim.service_profile(pid).unwrap();
    assert_eq!(p["service"].as_array().unwrap().len(), 1);

    // Data limits.
    let (status, list) = api.get(&format!("{base}/traffic_limit")).await;
    assert_eq!((status.as_u16(), list), (200, json!([])));
    let limit = json!({"service": {"id": 38}, "volume": 1_073_741_824i64, "period": {"id": 2}, "warning_percent": 80});
    let r = api
        .call(Method::POST, &format!("{base}/traffic_limit"), Some(limit.clone()))
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        api.send(Method::POST, &format!("{base}/traffic_limit"), Some(limit.clone()))
            .await
            .0,
        409
    );
    let mut sat = limit.clone();
    sat["satellite_only"] = json!(true);
    assert_eq!(
        api.send(Method::POST, &format!("{base}/traffic_limit"), Some(sat))
            .await
            .0,
        201
    );
    let mut bad = limit.clone();
    bad["service"] = json!({"id": 53});
    assert_eq!(
        api.send(Method::POST, &format!("{base}/traffic_limit"), Some(bad))
            .await
            .0,
        400
    );
    let mut bad = limit.clone();
    bad["period"] = json!({"id": 3});
    assert_eq!(
        api.send(Method::POST, &format!("{base}/traffic_limit"), Some(bad))
            .await
            .0,
        400
    );
    assert_eq!(
        api.send(
            Method::POST,
            &format!("{base}/traffic_limit"),
            Some(json!({"service": {"id": 38}}))
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.send(Method::POST, "/service_profile/1/traffic_limit", Some(limit.clone()))
            .await
            .0,
        403
    );
    assert_eq!(api.get("/service_profile/1/traffic_limit").await.0, 403);
    let (_, list) = api.get(&format!("{base}/traffic_limit")).await;
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["service"]["id"], 38);
    assert_eq!(list[0]["volume"], 1_073_741_824i64);
    assert_eq!(list[0]["warning_percent"], 80);
    let first = list[0]["id"].as_i64().unwrap();
    assert_eq!(
        api.send(Method::DELETE, &format!("{base}/traffic_limit/{first}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        api.send(Method::DELETE, &format!("{base}/traffic_limit/{first}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api.send(Method::DELETE, &format!("{base}/traffic_limit"), None).await.0,
        204
    );
    assert_eq!(api.get(&format!("{base}/traffic_limit")).await.1, json!([]));

    // Other lookups.
    for path in [
        "/breakout_region",
        "/esme_interface_type",
        "/dns",
        "/api_callback",
        "/api_secret",
        "/tariff_profile",
        "/endpoint/status",
        "/sim/status",
    ] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.as_array().unwrap().is_empty(), "{path}");
    }
    assert_eq!(
        api.send(Method::POST, "/dns", Some(json!({"primary": "1.1.1.1"})))
            .await
            .0,
        422
    );
    assert_eq!(
        api.send(
            Method::POST,
            "/dns",
            Some(json!({"primary": "1.1.1.1", "secondary": "1.0.0.1", "ip_address_version": 4}))
        )
        .await
        .0,
        201
    );
    let (_, dns) = api.get("/dns").await;
    let new_dns = dns
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["primary"] == "1.1.1.1")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let in_use = sim.sim.service_profiles()[0]["dns"]["id"].as_i64().unwrap();
    assert_eq!(api.send(Method::DELETE, &format!("/dns/{in_use}"), None).await.0, 409);
    assert_eq!(api.send(Method::DELETE, &format!("/dns/{new_dns}"), None).await.0, 204);
    let r = api
        .call(
            Method::POST,
            "/api_secret",
            Some(json!({"purpose": "p", "secret": "s3cr3t"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location").to_string();
    let (_, secret) = api
        .get(&format!("/api_secret/{}", loc.rsplit('/').next().unwrap()))
        .await;
    assert_eq!(secret["purpose"], "p");
    assert!(secret.get("secret").is_none());
    let (_, tariffs) = api.get("/tariff_profile").await;
    let tid = tariffs[0]["id"].as_i64().unwrap();
    assert_eq!(api.get(&format!("/tariff_profile/{tid}")).await.1["id"], tid);
    sim.shutdown().await;
}

#[tokio::test]
async fn paging_headers_and_clamping() {
    let config = EmnifyConfig {
        seed: SeedConfig {
            endpoints: 7,
            free_sims: 3,
            rng_seed: 7,
        },
        ..no_limits()
    };
    let sim = start(config).await;
    let api = Api::login(&sim).await;

    let r = api.call(Method::GET, "/endpoint?per_page=3&page=2", None).await;
    assert_eq!(header(&r, "x-count-per-page"), "3");
    assert_eq!(header(&r, "x-current-page"), "2");
    assert_eq!(header(&r, "x-total-count"), "7");
    assert_eq!(header(&r, "x-total-pages"), "3");
    assert_eq!(header(&r, "x-sort"), "id");
    let link = header(&r, "link").to_string();
    for rel in ["first", "prev", "next", "last"] {
        assert!(link.contains(&format!("rel=\"{rel}\"")), "{link}");
    }
    let page2: Vec<Value> = r.json().await.unwrap();
    assert_eq!(page2.len(), 3);

    // page > last -> last page (not empty); page < 1 -> first.
    let r = api.call(Method::GET, "/endpoint?per_page=3&page=99", None).await;
    assert_eq!(header(&r, "x-current-page"), "3");
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
    let r = api.call(Method::GET, "/endpoint?per_page=3&page=0", None).await;
    assert_eq!(header(&r, "x-current-page"), "1");
    // per_page < 1 -> default; too large -> max (endpoints 1000, SIMs 2500).
    let r = api.call(Method::GET, "/endpoint?per_page=0", None).await;
    assert_eq!(header(&r, "x-count-per-page"), "1000");
    let r = api.call(Method::GET, "/endpoint?per_page=5000", None).await;
    assert_eq!(header(&r, "x-count-per-page"), "1000");
    let r = api.call(Method::GET, "/sim", None).await;
    assert_eq!(header(&r, "x-count-per-page"), "2000");
    assert_eq!(header(&r, "x-total-count"), "10");
    let r = api.call(Method::GET, "/sim?per_page=9999", None).await;
    assert_eq!(header(&r, "x-count-per-page"), "2500");

    // Endpoint shape as the recorded example.
    let (_, list) = api.get("/endpoint?per_page=1").await;
    let e = &list[0];
    for key in [
        "id",
        "created",
        "last_updated",
        "name",
        "tags",
        "ip_address",
        "imei",
        "imei_lock",
        "status",
        "tariff_profile",
        "service_profile",
        "sim",
        "ip_address_space",
    ] {
        assert!(e.get(key).is_some(), "missing {key}");
    }
    let created = e["created"].as_str().unwrap();
    assert!(created.ends_with(".000+0000") && created.len() == 28, "{created}");
    let sim_obj = &e["sim"];
    assert!(
        sim_obj["iccid"].as_str().unwrap().starts_with("8988303") && sim_obj["iccid"].as_str().unwrap().len() == 19
    );
    assert_eq!(sim_obj["iccid_with_luhn"].as_str().unwrap().len(), 20);
    assert!(sim_obj["imsi"].as_str().unwrap().starts_with("29505"));
    assert!(sim_obj["msisdn"].as_str().unwrap().starts_with("423663"));
    assert_eq!(sim_obj["status"], json!({"id": 1, "description": "Activated"}));
    sim.shutdown().await;
}

#[tokio::test]
async fn query_and_sort() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;

    // Free SIMs: q=endpoint:null.
    let (_, free) = api.get("/sim?q=endpoint:null").await;
    let free = free.as_array().unwrap().clone();
    assert_eq!(free.len(), 10);
    assert!(
        free.iter()
            .all(|s| s.get("endpoint").is_none() && s["status"]["id"] == 0)
    );
    let (_, assigned) = api.get("/sim?q=status:1").await;
    let assigned = assigned.as_array().unwrap().clone();
    assert_eq!(assigned.len(), 25);
    let summary = &assigned[0]["endpoint"];
    for key in [
        "id",
        "name",
        "imei",
        "created",
        "last_updated",
        "organisation_id",
        "service_profile_id",
        "tariff_profile_id",
        "tags",
        "ip_address",
        "ip_address_space_id",
    ] {
        assert!(summary.get(key).is_some(), "endpoint summary lacks {key}");
    }

    // Endpoint filters: substring on name, exact on status.
    let (_, gw) = api.get("/endpoint?q=name:GATEWAY").await;
    let gw = gw.as_array().unwrap().clone();
    assert!(!gw.is_empty() && gw.iter().all(|e| e["name"].as_str().unwrap().starts_with("gateway")));
    let (_, none) = api.get("/endpoint?q=status:1").await;
    assert_eq!(none, json!([]));
    let (_, both) = api.get("/endpoint?q=status:0,tags:cold-chain").await;
    assert!(
        both.as_array()
            .unwrap()
            .iter()
            .all(|e| e["tags"].as_str().unwrap().contains("cold-chain"))
    );

    // Sort descending by name, ties by id.
    let (_, sorted) = api.get("/endpoint?sort=-name").await;
    let names: Vec<&str> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut expected = names.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, expected);
    let r = api.call(Method::GET, "/sim?sort=-id&q=endpoint:null", None).await;
    assert_eq!(header(&r, "x-sort"), "-id");
    assert_eq!(header(&r, "x-filter"), "endpoint:null");
    let ids: Vec<i64> = r
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]));

    // Unknown fields -> 422 1301 / 1302.
    let (status, body) = api.get("/endpoint?q=color:red").await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (422, Some(1301)));
    let (status, body) = api.get("/sim?sort=imsi").await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (422, Some(1302)));
    let (status, _) = api.get("/endpoint?q=status:abc").await;
    assert_eq!(status, 422);
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoint_lifecycle_and_sim_transitions() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;
    let (_, free) = api.get("/sim?q=endpoint:null&per_page=2").await;
    let sim_a = free[0]["id"].as_i64().unwrap();
    let sim_b = free[1]["id"].as_i64().unwrap();
    let profile = sim.sim.service_profiles()[0]["id"].as_i64().unwrap();
    let (_, tariffs) = api.get("/tariff_profile").await;
    let tariff = tariffs[0]["id"].as_i64().unwrap();

    // Validation: nested 1401 for unknown references, 1402 for missing fields.
    let (status, body) = api
        .send(
            Method::POST,
            "/endpoint",
            Some(json!({"name": "x", "status": {"id": 0}, "service_profile": {"id": -1}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error_code"], 1400);
    let codes: Vec<i64> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![1401, 1402]);

    // Create with activate:true -> SIM Activated with activation_date.
    let r = api
        .call(
            Method::POST,
            "/endpoint",
            Some(
                json!({"name": "dev-1", "status": {"id": 0}, "service_profile": {"id": profile},
                        "tariff_profile": {"id": tariff}, "sim": {"id": sim_a, "activate": true}}),
            ),
        )
        .await;
    assert_eq!(r.status(), 201);
    let loc = header(&r, "location").to_string();
    assert!(loc.starts_with(&format!("{}/api/v1/endpoint/", sim.url)));
    let ep: i64 = loc.rsplit('/').next().unwrap().parse().unwrap();
    let (_, e) = api.get(&format!("/endpoint/{ep}")).await;
    assert_eq!(e["sim"]["id"], sim_a);
    assert!(e["ip_address"].as_str().unwrap().starts_with("10.189."));
    assert!(e["ip_address_space"]["ip_address_space"].is_string());
    let (_, s) = api.get(&format!("/sim/{sim_a}")).await;
    assert_eq!(s["status"]["id"], 1);
    assert!(s["activation_date"].is_string());
    assert_eq!(s["endpoint"]["id"], ep);
    // The same SIM cannot go to a second endpoint; a taken IP is 409 1405.
    let (status, body) = api
        .send(
            Method::POST,
            "/endpoint",
            Some(
                json!({"name": "dev-2", "status": {"id": 1}, "service_profile": {"id": profile},
               "tariff_profile": {"id": tariff}, "sim": {"id": sim_a}}),
            ),
        )
        .await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (409, Some(1405)));
    let space = e["ip_address_space"]["id"].clone();
    let (status, body) = api
        .send(
            Method::POST,
            "/endpoint",
            Some(
                json!({"name": "dev-2", "status": {"id": 1}, "service_profile": {"id": profile},
               "tariff_profile": {"id": tariff}, "ip_address": e["ip_address"], "ip_address_space": {"id": space}}),
            ),
        )
        .await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (409, Some(1405)));

    // SIM transitions: 1 -> 2 ok, 2 -> 1 ok, 1 -> 4 refused, 1 -> 0 refused (409 + body).
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/sim/{sim_a}"),
            Some(json!({"status": {"id": 2}}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api.get(&format!("/sim/{sim_a}")).await.1["status"]["description"],
        "Suspended"
    );
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/sim/{sim_a}"),
            Some(json!({"status": {"id": 1}}))
        )
        .await
        .0,
        204
    );
    for bad in [4, 0] {
        let (status, body) = api
            .send(
                Method::PATCH,
                &format!("/sim/{sim_a}"),
                Some(json!({"status": {"id": bad}})),
            )
            .await;
        assert_eq!(status, 409, "1 -> {bad}");
        assert_eq!(body["error_code"], 1409);
    }
    // 0 -> 4 -> 1 via factory test; activation_date set once.
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/sim/{sim_b}"),
            Some(json!({"status": {"id": 4}}))
        )
        .await
        .0,
        204
    );
    assert!(
        api.get(&format!("/sim/{sim_b}"))
            .await
            .1
            .get("activation_date")
            .is_none()
    );
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/sim/{sim_b}"),
            Some(json!({"status": {"id": 1}}))
        )
        .await
        .0,
        204
    );
    assert!(api.get(&format!("/sim/{sim_b}")).await.1["activation_date"].is_string());
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/sim/{sim_b}"),
            Some(json!({"status": {"id": 9}}))
        )
        .await
        .0,
        422
    );

    // Endpoint PATCH partial; unknown -> 404 1401; non-numeric -> 400 1000.
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/endpoint/{ep}"),
            Some(json!({"name": "renamed"}))
        )
        .await
        .0,
        204
    );
    let (_, e2) = api.get(&format!("/endpoint/{ep}")).await;
    assert_eq!(e2["name"], "renamed");
    assert_eq!(e2["tags"], e["tags"]);
    let (status, body) = api
        .send(Method::PATCH, "/endpoint/-1", Some(json!({"name": "x"})))
        .await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (404, Some(1401)));
    assert_eq!(body["message"], "Endpoint with Id '-1' not found.");
    let (status, body) = api
        .send(Method::PATCH, "/endpoint/None", Some(json!({"name": "x"})))
        .await;
    assert_eq!((status.as_u16(), body["error_code"].as_i64()), (400, Some(1000)));
    let (status, body) = api
        .send(
            Method::PATCH,
            &format!("/endpoint/{ep}"),
            Some(json!({"service_profile": {"id": -1}})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["message"], "Service profile with Id '-1' not found.");

    // Connectivity: OFFLINE by default; hook can set ONLINE; PATCH resets.
    assert_eq!(
        api.get(&format!("/endpoint/{ep}/connectivity")).await.1,
        json!({"status": {"description": "OFFLINE"}, "services": []})
    );
    assert!(sim.sim.set_connectivity(ep, "ONLINE"));
    let (_, c) = api.get(&format!("/endpoint/{ep}/connectivity")).await;
    assert_eq!(c["status"]["description"], "ONLINE");
    assert!(c["pdp_context"].is_object());
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/endpoint/{ep}/connectivity"),
            Some(json!({"location": null}))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        api.get(&format!("/endpoint/{ep}/connectivity")).await.1["status"]["description"],
        "OFFLINE"
    );

    // DELETE: 409 while a SIM is assigned; release with {"sim":{"id":null}} then 204.
    let (status, _) = api.send(Method::DELETE, &format!("/endpoint/{ep}"), None).await;
    assert_eq!(status, 409);
    assert_eq!(api.send(Method::DELETE, &format!("/sim/{sim_a}"), None).await.0, 409);
    assert_eq!(
        api.send(
            Method::PATCH,
            &format!("/endpoint/{ep}"),
            Some(json!({"sim": {"id": null}}))
        )
        .await
        .0,
        204
    );
    let (_, e3) = api.get(&format!("/endpoint/{ep}")).await;
    assert!(e3.get("sim").is_none(), "sim key omitted when none");
    assert!(api.get(&format!("/sim/{sim_a}")).await.1.get("endpoint").is_none());
    assert_eq!(api.send(Method::DELETE, &format!("/endpoint/{ep}"), None).await.0, 204);
    assert_eq!(api.get(&format!("/endpoint/{ep}")).await.0, 404);
    assert_eq!(api.send(Method::DELETE, &format!("/endpoint/{ep}"), None).await.0, 404);
    // SIM DELETE once free.
    assert_eq!(api.send(Method::DELETE, &format!("/sim/{sim_a}"), None).await.0, 204);
    assert_eq!(api.get(&format!("/sim/{sim_a}")).await.0, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429() {
    let sim = start(EmnifyConfig::default()).await;
    let api = Api::login(&sim).await;
    // GET /endpoint: 10 req/s, burst 5.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            api.call(Method::GET, "/endpoint?per_page=1", None)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = api.call(Method::GET, "/endpoint?per_page=1", None).await;
    if r.status() == 429 {
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error_code": 1105, "error_token": "TooManyRequests", "message": "Too Many Requests"})
        );
    }
    // Other paths have their own bucket.
    assert_eq!(api.get("/service_profile").await.0, 200);
    // Refill: after 300 ms the endpoint bucket has tokens again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.call(Method::GET, "/endpoint?per_page=1", None).await.status(), 200);

    // Scaled down, /authenticate (100 per 5 min) runs out quickly.
    let tight = start(EmnifyConfig {
        rate_limit_scale: 0.03,
        ..EmnifyConfig::default()
    })
    .await;
    let http = http_client();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = http
            .post(format!("{}/api/v1/authenticate", tight.url))
            .json(&json!({"application_token": tight.credentials()["application_token"]}))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    sim.shutdown().await;
    tight.shutdown().await;
}

#[tokio::test]
async fn fault_injection_and_admin_routes() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;
    sim.sim.inject_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v1/service_profile".into(),
        status: 503,
        count: 2,
        retry_after: Some(7),
        delay: None,
    });
    let r = api.call(Method::GET, "/service_profile", None).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "7");
    // Other methods/paths are unaffected.
    assert_eq!(api.get("/tariff_profile").await.0, 200);
    assert_eq!(api.get("/service_profile").await.0, 503);
    assert_eq!(api.get("/service_profile").await.0, 200, "fault used up");

    // Over HTTP: a 429 then a delayed success.
    let http = http_client();
    let r = http
        .post(format!("{}/_sim/faults", sim.url))
        .json(&json!({"path_prefix": "/api/v1/endpoint", "status": 429, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = api.get("/endpoint").await;
    assert_eq!(status, 429);
    assert_eq!(body["error_code"], 1105);
    http.post(format!("{}/_sim/faults", sim.url))
        .json(&json!({"method": "GET", "path_prefix": "/api/v1/sim", "status": 200, "delay_ms": 300}))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(api.get("/sim/status").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Faults apply before auth: an unauthenticated call gets the fault too.
    sim.sim.inject_fault(Fault {
        method: None,
        path_prefix: "/api/v1/authenticate".into(),
        status: 500,
        count: 1,
        retry_after: None,
        delay: None,
    });
    let r = http
        .post(format!("{}/api/v1/authenticate", sim.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    // Request log and counters.
    let log = sim.sim.requests();
    assert!(log.contains(&("GET".to_string(), "/api/v1/service_profile".to_string(), 503)));
    assert!(log.contains(&("GET".to_string(), "/api/v1/endpoint".to_string(), 429)));
    assert_eq!(sim.sim.request_count(), log.len() as u64);
    let served: Vec<Value> = http
        .get(format!("{}/_sim/requests", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served.len(), log.len());
    assert_eq!(served[0]["path"], "/api/v1/authenticate");
    let state: Value = http
        .get(format!("{}/_sim/state", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["endpoints"], 25);
    assert_eq!(state["free_sims"], 10);
    assert_eq!(state["service_profiles"], 3);
    assert_eq!(state["request_count"], log.len() as u64);
    assert_eq!(sim.sim.request_count(), log.len() as u64, "/_sim calls are not counted");
    sim.shutdown().await;
}

impl Api {
    async fn bulk(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .patch(format!("{}/api/v2/endpoint/multi", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn endpoint_status(&self, id: i64) -> i64 {
        self.get(&format!("/endpoint/{id}")).await.1["status"]["id"]
            .as_i64()
            .unwrap()
    }
}

#[tokio::test]
async fn bulk_endpoint_update_all_or_nothing_limit_and_partial_switch() {
    for partial in [false, true] {
        let sim = start(EmnifyConfig {
            bulk_partial_apply: partial,
            ..no_limits()
        })
        .await;
        let api = Api::login(&sim).await;
        let (_, endpoints) = api.get("/endpoint?per_page=3").await;
        let ids: Vec<i64> = endpoints
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        let profile = sim.sim.service_profiles()[1]["id"].as_i64().unwrap();

        // Every element applied, each with its own fields: 204 without a body.
        let (status, body) = api
            .bulk(json!([
                {"id": ids[0], "status": {"id": 1}},
                {"id": ids[1], "status": {"id": 1}, "service_profile": {"id": profile}},
            ]))
            .await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(api.endpoint_status(ids[0]).await, 1);
        assert_eq!(api.endpoint_status(ids[1]).await, 1);
        let (_, e1) = api.get(&format!("/endpoint/{}", ids[1])).await;
        assert_eq!(e1["service_profile"]["id"], profile);

        // One invalid element fails the request with the single update's 422; the valid element
        // before it is applied only with the partial switch.
        let (status, body) = api
            .bulk(json!([
                {"id": ids[0], "status": {"id": 0}},
                {"id": ids[2], "status": {"id": 7}},
            ]))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error_code"], 1400);
        assert!(body["errors"].is_array() && body["message"].is_string() && body["error_token"].is_string());
        assert_eq!(api.endpoint_status(ids[0]).await, if partial { 0 } else { 1 });
        assert_eq!(
            api.endpoint_status(ids[2]).await,
            0,
            "the failing element is never applied"
        );

        // An unknown endpoint answers 404 for the request.
        let (status, _) = api
            .bulk(json!([{"id": ids[2], "status": {"id": 1}}, {"id": 999_999_999, "status": {"id": 1}}]))
            .await;
        assert_eq!(status, 404);
        assert_eq!(api.endpoint_status(ids[2]).await, if partial { 1 } else { 0 });

        // Malformed bodies and the documented maximum.
        assert_eq!(api.bulk(json!({"id": ids[0]})).await.0, 400);
        assert_eq!(api.bulk(json!([{"status": {"id": 1}}])).await.0, 422, "id is required");
        let too_many: Vec<Value> = (0..2001).map(|_| json!({"id": ids[0], "status": {"id": 1}})).collect();
        assert_eq!(api.bulk(Value::Array(too_many)).await.0, 422);
        let at_max: Vec<Value> = (0..2000).map(|_| json!({"id": ids[0], "status": {"id": 0}})).collect();
        assert_eq!(api.bulk(Value::Array(at_max)).await.0, 204);
        assert_eq!(sim.sim.bulk_overlaps(), 0, "one request after another");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn bulk_requests_count_as_one_and_overlaps_are_counted() {
    let sim = start(EmnifyConfig {
        latency: Duration::from_millis(200),
        ..no_limits()
    })
    .await;
    let api = Api::login(&sim).await;
    let (_, endpoints) = api.get("/endpoint?per_page=2").await;
    let id = endpoints[0]["id"].as_i64().unwrap();
    let before = sim.sim.request_count();
    let body = json!([{"id": id, "status": {"id": 1}}]);
    let (a, b) = tokio::join!(api.bulk(body.clone()), api.bulk(body));
    assert_eq!((a.0, b.0), (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT));
    assert_eq!(sim.sim.request_count() - before, 2);
    assert_eq!(
        sim.sim.bulk_overlaps(),
        1,
        "the second arrived while the first was served"
    );
    sim.shutdown().await;
}

/// `POST /_sim/chaos` over HTTP: each kind of draw, forced with a share of 1, does what its
/// vendor would; `{}` turns chaos off and `GET /_sim/chaos` counts what was injected.
#[tokio::test]
async fn chaos_faults_apply_or_not_as_drawn_and_are_counted() {
    let sim = start(no_limits()).await;
    let api = Api::login(&sim).await;
    let http = http_client();
    let chaos = |config: Value| {
        let http = http.clone();
        let url = format!("{}/_sim/chaos", sim.url);
        async move { http.post(url).json(&config).send().await.unwrap() }
    };
    let profiles = |name: &str| -> usize { sim.sim.service_profiles().iter().filter(|p| p["name"] == name).count() };
    let create = |name: &'static str| {
        let api = &api;
        async move {
            api.http
                .post(format!("{}/api/v1/service_profile", api.url))
                .bearer_auth(&api.token)
                .timeout(Duration::from_millis(200))
                .json(&json!({"name": name, "description": "chaos"}))
                .send()
                .await
        }
    };

    // Applied, then a 500: the caller cannot tell, the profile exists. Reads drawn so fail plainly.
    assert_eq!(chaos(json!({"seed": 1, "error_after_apply": 1.0})).await.status(), 200);
    assert_eq!(create("after-apply").await.unwrap().status(), 500);
    assert_eq!(api.get("/service_profile").await.0, 500);
    assert_eq!(profiles("after-apply"), 1);

    // Stalled past the caller's timeout: applied on receipt, or never.
    chaos(json!({"stall": 1.0, "stall_ms": 600, "stall_applied": 1.0})).await;
    assert!(create("stalled-applied").await.unwrap_err().is_timeout());
    assert_eq!(profiles("stalled-applied"), 1);
    chaos(json!({"stall": 1.0, "stall_ms": 600, "stall_applied": 0.0})).await;
    assert!(create("stalled-lost").await.unwrap_err().is_timeout());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(profiles("stalled-lost"), 0);

    // A throttle burst, with the Retry-After the run asked for, then the next draw.
    chaos(json!({"throttle": 1.0, "burst": 2, "retry_after": 3})).await;
    let r = api.call(Method::GET, "/service_profile", None).await;
    assert_eq!(
        (r.status(), header(&r, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "3")
    );
    chaos(json!({"throttle": 1.0, "burst": 1})).await;
    let r = api.call(Method::GET, "/service_profile", None).await;
    assert_eq!(
        (r.status(), header(&r, "retry-after")),
        (StatusCode::TOO_MANY_REQUESTS, "")
    );

    // Off: everything passes; the counts of every stream so far add up.
    let off: Value = chaos(json!({})).await.json().await.unwrap();
    assert_eq!(off["config"], Value::Null);
    assert_eq!(api.get("/service_profile").await.0, 200);
    let report: Value = http
        .get(format!("{}/_sim/chaos", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let counts = &report["counts"];
    assert_eq!(counts["errors_after_apply"], 1, "{report}");
    assert_eq!(counts["server_errors"], 1, "{report}");
    assert_eq!(counts["stalls_applied"], 1, "{report}");
    assert_eq!(counts["stalls_not_applied"], 1, "{report}");
    assert_eq!(counts["throttled"], 2, "{report}");
    assert_eq!(counts["calls"], 6, "{report}");

    // A share outside [0, 1] is refused, naming it.
    let r = chaos(json!({"server_error": 2.0})).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("server_error"));
    let r = chaos(json!({"server_eror": 0.1})).await;
    assert_eq!(r.status(), 400);
}

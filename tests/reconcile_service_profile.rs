//! Reconcile tests: the real ServiceProfile pipeline (finalizer, observe, plan, act, status,
//! events) on the in-memory Kubernetes API and the emnify simulator over HTTP.

mod common;

use std::time::Duration;

use common::{Harness, NS, condition};
use connectivity_operator::controller::managed::Managed;
use connectivity_operator::crd::ConditionStatus;
use connectivity_operator::crd::conditions::{READY, SYNCED};
use serde_json::json;
use vendor_sim::emnify::Fault;

fn basic_spec() -> serde_json::Value {
    json!({"description": "sensors", "emnify": {"allowed3g": false}})
}

fn services_spec() -> serde_json::Value {
    json!({"name": "Fleet EU", "emnify": {"services": [
        {"service": "Data", "trafficLimits": [{"volume": 1024, "period": "1 Months"}]},
        {"service": 53, "trafficLimits": [{"id": 112}]}
    ]}})
}

#[tokio::test]
async fn first_pass_adds_finalizer_second_creates_and_reports() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    h.reconcile_sp("sensors").await.unwrap();
    let sp = h.sp("sensors").await;
    assert_eq!(
        sp.metadata.finalizers.as_deref(),
        Some(&["connectivity-operator.dev/finalizer".to_string()][..])
    );
    assert!(
        h.vendor_profiles_named("sensors").is_empty(),
        "nothing is created before the finalizer is in place"
    );

    h.reconcile_sp("sensors").await.unwrap();
    let sp = h.sp("sensors").await;
    let status = sp.status.clone().unwrap();
    let id = status.id.clone().expect("status.id");
    let vendor = h.vendor_profile(&id).expect("profile exists at emnify");
    assert_eq!(vendor["name"], "sensors");
    assert_eq!(vendor["description"], "sensors");
    assert_eq!(vendor["allowed_3g"], false);
    assert_eq!(vendor["allowed_4g"], true);
    assert_eq!(status.used_count, Some(0));
    assert_eq!(status.observed_generation, Some(1));
    assert!(status.last_sync_time.is_some());
    assert_eq!(status.observed.as_ref().unwrap().allowed_rats, vec!["4G", "NB-IoT"]);
    let ready = condition(&sp, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::True, "Available")
    );
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(condition(&sp, SYNCED).status, ConditionStatus::True);
    assert!(h.has_event("sensors", "Created"));
}

#[tokio::test]
async fn services_and_traffic_limits_are_created() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    let sp = h.sync_sp("fleet").await;
    let id = sp.status.as_ref().unwrap().id.clone().unwrap();
    let vendor = h.vendor_profile(&id).unwrap();
    assert_eq!(vendor["name"], "Fleet EU", "spec.name overrides metadata.name");
    let services: Vec<(i64, Vec<i64>)> = vendor["service"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_i64().unwrap(),
                s["traffic_limit"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["id"].as_i64().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(services, vec![(38, vec![102]), (53, vec![112])]);
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True);
    assert!(sp.status.unwrap().observed.unwrap().drift.is_empty());
}

#[tokio::test]
async fn spec_change_sends_only_what_changed() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    let sp = h.sync_sp("fleet").await;
    let id = sp.status.unwrap().id.unwrap();
    let before = h.vendor_requests().len();
    h.patch_spec(
        "fleet",
        json!({"emnify": {"allowed3g": false, "services": [
            {"service": "Data", "trafficLimits": [{"volume": 1024, "period": "1 Months"}]}
        ]}}),
    )
    .await;
    let sp = h.sync_sp("fleet").await;
    let writes: Vec<(String, String)> = h.vendor_requests()[before..]
        .iter()
        .filter(|(m, _, _)| m != "GET")
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(
        writes,
        vec![
            ("PATCH".to_string(), format!("/api/v1/service_profile/{id}")),
            (
                "DELETE".to_string(),
                format!("/api/v1/service_profile/{id}/service/53/traffic_limit/112")
            ),
            ("DELETE".to_string(), format!("/api/v1/service_profile/{id}/service/53")),
        ]
    );
    assert_eq!(h.vendor_profile(&id).unwrap()["allowed_3g"], false);
    assert_eq!(sp.status.as_ref().unwrap().observed_generation, Some(2));
    assert!(h.has_event("fleet", "Updated"));
}

#[tokio::test]
async fn in_sync_resync_makes_no_vendor_writes() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    h.sync_sp("fleet").await;
    // Right after a sync, our own status write's watch event costs no vendor call at all.
    let before = h.vendor_requests().len();
    h.advance(Duration::from_secs(1));
    let action = h.reconcile_sp("fleet").await.unwrap();
    assert_eq!(h.vendor_requests().len(), before, "nothing due: no vendor call");
    assert_eq!(
        action,
        kube::runtime::controller::Action::await_change(),
        "no timer per object: the resync driver wakes it"
    );
    let sp = h.sp("fleet").await;
    assert!(!sp.schedule(&h.ctx).resync_due(h.ctx.clock.now()), "not due after 1 s");
    h.advance(Duration::from_secs(599));
    assert!(
        sp.schedule(&h.ctx).resync_due(h.ctx.clock.now()),
        "due once the interval has passed"
    );
    // When the resync interval has passed, an in-sync profile is only read.
    h.resync_due("fleet").await;
    let before = h.vendor_requests().len();
    let action = h.reconcile_sp("fleet").await.unwrap();
    assert!(
        h.vendor_requests()[before..].iter().all(|(m, _, _)| m == "GET"),
        "a resync of an in-sync profile only reads"
    );
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let sp = h.sp("fleet").await;
    assert!(
        !sp.schedule(&h.ctx).resync_due(h.ctx.clock.now()),
        "the resync restarted the interval"
    );
}

#[tokio::test]
async fn resync_corrects_drift_and_refreshes_used_count() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    let sp = h.sync_sp("sensors").await;
    let id = sp.status.unwrap().id.unwrap();
    // Someone changes the profile in the emnify Portal and a device starts using it.
    h.sim.sim.patch_service_profile(
        id.parse().unwrap(),
        json!({"allowed_3g": true, "description": "edited"}),
    );
    h.sim.sim.assign_profile_to_new_endpoint(id.parse().unwrap());
    h.resync_due("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    let vendor = h.vendor_profile(&id).unwrap();
    assert_eq!(vendor["allowed_3g"], false, "drift corrected");
    assert_eq!(vendor["description"], "sensors");
    let sp = h.sp("sensors").await;
    assert_eq!(sp.status.as_ref().unwrap().used_count, Some(1));
    let updated = h
        .events_for("sensors")
        .into_iter()
        .find(|(_, r, _)| r == "Updated")
        .expect("Updated event");
    assert!(updated.2.contains("allowed_3g true -> false"), "{updated:?}");
}

#[tokio::test]
async fn resync_interval_comes_from_the_annotation() {
    let h = Harness::new().await;
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile",
        "metadata": {"name": "fast", "namespace": NS, "annotations": {"connectivity-operator.dev/resync-interval": "90s"}},
        "spec": {"providerConfigRef": {"name": "emnify"}, "emnify": {}}
    }));
    h.reconcile_sp("fast").await.unwrap();
    h.reconcile_sp("fast").await.unwrap();
    let sp = h.sp("fast").await;
    assert_eq!(sp.schedule(&h.ctx).every, Duration::from_secs(90));
    h.advance(Duration::from_secs(89));
    assert!(!sp.schedule(&h.ctx).resync_due(h.ctx.clock.now()));
    h.advance(Duration::from_secs(1));
    assert!(
        sp.schedule(&h.ctx).resync_due(h.ctx.clock.now()),
        "due after the annotation's 90 s"
    );
}

#[tokio::test]
async fn delete_policy_removes_the_vendor_profile() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    let id = h.sync_sp("sensors").await.status.unwrap().id.unwrap();
    h.delete_sp("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    assert!(h.vendor_profile(&id).is_none(), "vendor profile deleted");
    assert!(!h.sp_exists("sensors").await, "finalizer removed, object gone");
    assert!(h.has_event("sensors", "Deleted"));
}

#[tokio::test]
async fn orphan_policy_leaves_the_vendor_profile() {
    let h = Harness::new().await;
    h.add_sp("sensors", json!({"deletionPolicy": "Orphan", "emnify": {}}));
    let id = h.sync_sp("sensors").await.status.unwrap().id.unwrap();
    h.delete_sp("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    assert!(h.vendor_profile(&id).is_some(), "vendor profile kept");
    assert!(!h.sp_exists("sensors").await);
    assert!(h.has_event("sensors", "Orphaned"));
}

#[tokio::test]
async fn delete_while_in_use_keeps_the_finalizer_and_retries() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    let id = h.sync_sp("sensors").await.status.unwrap().id.unwrap();
    let endpoint = h.sim.sim.assign_profile_to_new_endpoint(id.parse().unwrap());
    h.delete_sp("sensors").await;
    let err = h.reconcile_sp("sensors").await.unwrap_err();
    assert_eq!(err.reason(), "InUse");
    let sp = h.sp("sensors").await;
    assert!(sp.metadata.deletion_timestamp.is_some());
    assert_eq!(sp.metadata.finalizers.as_ref().map(Vec::len), Some(1), "finalizer kept");
    let synced = condition(&sp, SYNCED);
    assert_eq!(
        (synced.status, synced.reason.as_str()),
        (ConditionStatus::False, "InUse")
    );
    assert!(synced.message.contains("still in use"), "{}", synced.message);
    assert!(h.vendor_profile(&id).is_some());
    let action = connectivity_operator::controller::managed::error_policy(std::sync::Arc::new(sp), &err, h.ctx.clone());
    assert_ne!(
        format!("{action:?}"),
        format!("{:?}", kube::runtime::controller::Action::await_change()),
        "retried with backoff"
    );

    // The device moves to another profile; the retry now succeeds.
    let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let auth: serde_json::Value = http
        .post(format!("{}/api/v1/authenticate", h.sim.url))
        .json(&json!({"application_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = http
        .delete(format!("{}/api/v1/endpoint/{endpoint}", h.sim.url))
        .bearer_auth(auth["auth_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    h.reconcile_sp("sensors").await.unwrap();
    assert!(h.vendor_profile(&id).is_none());
    assert!(!h.sp_exists("sensors").await);
}

#[tokio::test]
async fn adopts_an_existing_profile_by_external_id() {
    let h = Harness::new().await;
    let existing = h
        .sim
        .sim
        .create_service_profile(json!({"name": "Made in the portal", "allowed_4g": false}));
    let count = h.sim.sim.service_profiles().len();
    h.add_sp(
        "legacy",
        json!({"externalId": existing.to_string(), "name": "Made in the portal", "emnify": {}}),
    );
    let sp = h.sync_sp("legacy").await;
    assert_eq!(
        sp.status.as_ref().unwrap().id.as_deref(),
        Some(existing.to_string().as_str())
    );
    assert_eq!(h.sim.sim.service_profiles().len(), count, "nothing created");
    assert_eq!(
        h.vendor_profile(&existing.to_string()).unwrap()["allowed_4g"],
        true,
        "adopted profile brought in line"
    );
    assert!(h.has_event("legacy", "Adopted"));
}

#[tokio::test]
async fn missing_external_id_is_reported_not_created() {
    let h = Harness::new().await;
    let count = h.sim.sim.service_profiles().len();
    h.add_sp("ghost", json!({"externalId": "987654", "emnify": {}}));
    h.reconcile_sp("ghost").await.unwrap();
    let err = h.reconcile_sp("ghost").await.unwrap_err();
    assert_eq!(err.reason(), "ExternalIdNotFound");
    assert!(err.is_permanent());
    assert_eq!(h.sim.sim.service_profiles().len(), count);
    let sp = h.sp("ghost").await;
    assert_eq!(condition(&sp, READY).reason, "ExternalIdNotFound");
}

#[tokio::test]
async fn adopts_a_single_profile_with_the_same_name() {
    let h = Harness::new().await;
    let existing = h.sim.sim.create_service_profile(json!({"name": "shared-name"}));
    h.add_sp("shared-name", json!({"emnify": {}}));
    let sp = h.sync_sp("shared-name").await;
    assert_eq!(sp.status.unwrap().id, Some(existing.to_string()));
    assert_eq!(h.vendor_profiles_named("shared-name").len(), 1);
    assert!(h.has_event("shared-name", "Adopted"));
}

#[tokio::test]
async fn several_profiles_with_the_name_are_a_conflict() {
    let h = Harness::new().await;
    h.sim.sim.create_service_profile(json!({"name": "twin"}));
    h.sim.sim.create_service_profile(json!({"name": "twin"}));
    h.add_sp("twin", json!({"emnify": {}}));
    h.reconcile_sp("twin").await.unwrap();
    let err = h.reconcile_sp("twin").await.unwrap_err();
    assert_eq!(err.reason(), "Conflict");
    assert_eq!(h.vendor_profiles_named("twin").len(), 2, "no third one created");
    let sp = h.sp("twin").await;
    let synced = condition(&sp, SYNCED);
    assert_eq!(
        (synced.status, synced.reason.as_str()),
        (ConditionStatus::False, "Conflict")
    );
    assert!(synced.message.contains("set spec.externalId"), "{}", synced.message);
    assert!(
        h.events_for("twin")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "Conflict")
    );
}

#[tokio::test]
async fn crash_between_create_and_status_write_does_not_duplicate() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    h.reconcile_sp("fleet").await.unwrap(); // finalizer
    // Every status write after the vendor create fails (the id checkpoint and the failure
    // report), as if the operator died there.
    h.server.fail_next("PATCH", "serviceprofiles/fleet/status", 500);
    h.server.fail_next("PATCH", "serviceprofiles/fleet/status", 500);
    let err = h.reconcile_sp("fleet").await.unwrap_err();
    assert_eq!(err.reason(), "StatusWriteFailed", "{err}");
    assert_eq!(h.vendor_profiles_named("Fleet EU").len(), 1, "the create happened");
    assert!(
        h.sp("fleet").await.status.and_then(|s| s.id).is_none(),
        "but its id never reached status"
    );

    // The restarted operator finds the profile by name instead of creating another one.
    h.reconcile_sp("fleet").await.unwrap();
    let profiles = h.vendor_profiles_named("Fleet EU");
    assert_eq!(profiles.len(), 1, "exactly one profile at the vendor");
    let sp = h.sp("fleet").await;
    assert_eq!(sp.status.as_ref().unwrap().id, Some(profiles[0]["id"].to_string()));
    assert_eq!(
        condition(&sp, READY).status,
        ConditionStatus::True,
        "services were added on the second pass"
    );
}

/// The same crash, then the object is deleted before any reconcile recorded the id (found by
/// the chaos run: the profile outlived its object). Deletion finds it by name and deletes it.
#[tokio::test]
async fn deleted_after_a_crash_between_create_and_status_write_leaves_nothing_behind() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    h.reconcile_sp("fleet").await.unwrap(); // finalizer
    h.server.fail_next("PATCH", "serviceprofiles/fleet/status", 500);
    h.server.fail_next("PATCH", "serviceprofiles/fleet/status", 500);
    h.reconcile_sp("fleet").await.unwrap_err();
    assert_eq!(h.vendor_profiles_named("Fleet EU").len(), 1, "the create happened");
    assert!(h.sp("fleet").await.status.and_then(|s| s.id).is_none());

    h.delete_sp("fleet").await;
    h.reconcile_sp("fleet").await.unwrap();
    assert!(
        h.vendor_profiles_named("Fleet EU").is_empty(),
        "the vendor profile went with it"
    );
    assert!(!h.sp_exists("fleet").await, "finalizer removed, object gone");
    assert!(h.has_event("fleet", "Deleted"));

    // Orphan keeps it, and a profile never created is nothing to delete.
    h.add_sp("kept", json!({"deletionPolicy": "Orphan", "emnify": {}}));
    h.reconcile_sp("kept").await.unwrap();
    h.sim.sim.create_service_profile(json!({"name": "kept"}));
    h.delete_sp("kept").await;
    h.reconcile_sp("kept").await.unwrap();
    assert_eq!(h.vendor_profiles_named("kept").len(), 1);
    h.add_sp("never", json!({"emnify": {}}));
    h.reconcile_sp("never").await.unwrap();
    h.delete_sp("never").await;
    h.reconcile_sp("never").await.unwrap();
    assert!(!h.sp_exists("never").await);
}

/// Only the id checkpoint fails: the failure report that follows still records the id, so the
/// next reconcile need not even search by name.
#[tokio::test]
async fn a_failed_id_checkpoint_is_recorded_by_the_failure_report() {
    let h = Harness::new().await;
    h.add_sp("fleet", services_spec());
    h.reconcile_sp("fleet").await.unwrap(); // finalizer
    h.server.fail_next("PATCH", "serviceprofiles/fleet/status", 500);
    let err = h.reconcile_sp("fleet").await.unwrap_err();
    assert_eq!(err.reason(), "StatusWriteFailed", "{err}");
    let profiles = h.vendor_profiles_named("Fleet EU");
    assert_eq!(profiles.len(), 1);
    let sp = h.sp("fleet").await;
    assert_eq!(sp.status.as_ref().unwrap().id, Some(profiles[0]["id"].to_string()));
    let synced = condition(&sp, SYNCED);
    assert_eq!(
        (synced.status, synced.reason.as_str()),
        (ConditionStatus::False, "StatusWriteFailed")
    );
    h.reconcile_sp("fleet").await.unwrap();
    assert_eq!(h.vendor_profiles_named("Fleet EU").len(), 1, "still one profile");
    assert_eq!(condition(&h.sp("fleet").await, READY).status, ConditionStatus::True);
}

#[tokio::test]
async fn profile_deleted_in_the_portal_is_recreated() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    let id = h.sync_sp("sensors").await.status.unwrap().id.unwrap();
    let http = reqwest::Client::new();
    let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
    let auth: serde_json::Value = http
        .post(format!("{}/api/v1/authenticate", h.sim.url))
        .json(&json!({"application_token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.delete(format!("{}/api/v1/service_profile/{id}", h.sim.url))
        .bearer_auth(auth["auth_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    h.resync_due("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    let new_id = h.sp("sensors").await.status.unwrap().id.unwrap();
    assert_ne!(new_id, id);
    assert!(h.vendor_profile(&new_id).is_some());
}

#[tokio::test]
async fn expired_token_is_renewed_once() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    h.sync_sp("sensors").await;
    h.sim.sim.expire_tokens();
    h.patch_spec("sensors", json!({"emnify": {"allowed4g": false}})).await;
    let before = h.vendor_requests().len();
    let sp = h.sync_sp("sensors").await;
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True);
    let after = &h.vendor_requests()[before..];
    assert_eq!(
        after.iter().filter(|(_, _, s)| *s == 401).count(),
        1,
        "one 401: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|(_, p, _)| p == "/api/v1/authenticate").count(),
        1,
        "one re-authentication"
    );
}

#[tokio::test]
async fn rate_limited_reconcile_backs_off_and_recovers() {
    let h = Harness::new().await;
    h.add_sp("sensors", basic_spec());
    h.reconcile_sp("sensors").await.unwrap();
    h.sim.sim.inject_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v1/service_profile".into(),
        status: 429,
        count: 1,
        retry_after: Some(3),
        delay: None,
    });
    let err = h.reconcile_sp("sensors").await.unwrap_err();
    assert_eq!(err.reason(), "RateLimited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    let sp = h.sp("sensors").await;
    assert_eq!(condition(&sp, SYNCED).reason, "RateLimited");
    let action = connectivity_operator::controller::managed::error_policy(std::sync::Arc::new(sp), &err, h.ctx.clone());
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(3))
        )
    );
    // Without Retry-After: capped exponential backoff.
    h.sim.sim.inject_fault(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/v1/service_profile".into(),
        status: 429,
        count: 1,
        retry_after: None,
        delay: None,
    });
    let err = h.reconcile_sp("sensors").await.unwrap_err();
    assert_eq!(err.retry_after(), None);
    let sp = h.reconcile_sp("sensors").await.map(|_| ());
    assert!(sp.is_ok(), "recovers once the vendor stops throttling");
    assert_eq!(condition(&h.sp("sensors").await, SYNCED).status, ConditionStatus::True);
}

#[tokio::test]
async fn missing_secret_is_reported() {
    let h = Harness::new().await;
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "nosecret", "namespace": NS},
        "spec": {"vendor": "emnify", "endpoint": h.sim.url, "credentialsSecretRef": {"name": "absent"}}
    }));
    h.add_sp(
        "orphaned",
        json!({"providerConfigRef": {"name": "nosecret"}, "emnify": {}}),
    );
    h.reconcile_sp("orphaned").await.unwrap();
    let err = h.reconcile_sp("orphaned").await.unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
    let sp = h.sp("orphaned").await;
    let synced = condition(&sp, SYNCED);
    assert_eq!(synced.reason, "SecretNotFound");
    assert!(synced.message.contains("Secret default/absent"), "{}", synced.message);

    let err = h.reconcile_pc("nosecret").await;
    let err = match err {
        Ok(_) => h.reconcile_pc("nosecret").await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.reason(), "SecretNotFound");
    let pc = h.pcs().get("nosecret").await.unwrap();
    let ready = connectivity_operator::crd::conditions::find(&pc.status.as_ref().unwrap().conditions, READY).unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "SecretNotFound")
    );
}

#[tokio::test]
async fn missing_vendor_section_is_a_permanent_error() {
    let h = Harness::new().await;
    h.add_sp("novendor", json!({"description": "no emnify section"}));
    h.reconcile_sp("novendor").await.unwrap();
    let err = h.reconcile_sp("novendor").await.unwrap_err();
    assert_eq!(err.reason(), "VendorSectionMissing");
    assert!(err.is_permanent());
    let sp = h.sp("novendor").await;
    assert_eq!(condition(&sp, READY).reason, "VendorSectionMissing");
    assert_eq!(
        condition(&sp, SYNCED).message,
        "spec.emnify is required: ProviderConfig emnify is a emnify account"
    );
}

#[tokio::test]
async fn unknown_service_name_says_what_exists() {
    let h = Harness::new().await;
    h.add_sp("bad", json!({"emnify": {"services": [{"service": "Telepathy"}]}}));
    h.reconcile_sp("bad").await.unwrap();
    let err = h.reconcile_sp("bad").await.unwrap_err();
    assert_eq!(err.reason(), "InvalidRequest");
    assert!(err.to_string().contains("no service named \"Telepathy\""), "{err}");
    assert!(h.vendor_profiles_named("bad").is_empty());
}

#[tokio::test]
async fn observe_only_never_writes() {
    let h = Harness::new().await;
    let existing = h
        .sim
        .sim
        .create_service_profile(json!({"name": "watched", "allowed_3g": true}));
    h.add_sp(
        "watched",
        json!({"managementPolicy": "ObserveOnly", "emnify": {"allowed3g": false}}),
    );
    h.add_sp("absent", json!({"managementPolicy": "ObserveOnly", "emnify": {}}));
    let sp = h.sync_sp("watched").await;
    assert_eq!(sp.status.as_ref().unwrap().id, Some(existing.to_string()));
    let ready = condition(&sp, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "Drifted")
    );
    assert!(ready.message.contains("allowed_3g true -> false"));
    let sp = h.sync_sp("absent").await;
    assert_eq!(condition(&sp, READY).reason, "NotFound");
    h.delete_sp("watched").await;
    h.reconcile_sp("watched").await.unwrap();
    assert!(
        h.vendor_profile(&existing.to_string()).is_some(),
        "observe-only never deletes"
    );
    assert!(
        h.vendor_requests()
            .iter()
            .all(|(m, p, _)| m == "GET" || p == "/api/v1/authenticate")
    );
}

#[tokio::test]
async fn paused_makes_no_vendor_calls() {
    let h = Harness::new().await;
    let before = h.vendor_requests().len();
    h.add_sp("paused", json!({"managementPolicy": "Paused", "emnify": {}}));
    let sp = h.sync_sp("paused").await;
    assert_eq!(condition(&sp, SYNCED).reason, "Paused");
    assert_eq!(h.vendor_requests().len(), before, "no vendor calls");
}

#[tokio::test]
async fn provider_config_ready_and_rejected_credentials() {
    let h = Harness::new().await;
    h.reconcile_pc("emnify").await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    let pc = h.pcs().get("emnify").await.unwrap();
    let status = pc.status.unwrap();
    assert!(connectivity_operator::crd::conditions::is_true(
        &status.conditions,
        READY
    ));
    assert_eq!(status.account.as_deref(), Some("Demo Fleet GmbH"));

    h.add(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong", "namespace": NS},
                 "stringData": {"applicationToken": "not-the-token"}}),
    );
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "wrong", "namespace": NS},
        "spec": {"vendor": "emnify", "endpoint": h.sim.url, "credentialsSecretRef": {"name": "wrong"}}
    }));
    h.reconcile_pc("wrong").await.unwrap();
    let err = h.reconcile_pc("wrong").await.unwrap_err();
    assert_eq!(err.reason(), "CredentialsRejected");
    let pc = h.pcs().get("wrong").await.unwrap();
    let ready = connectivity_operator::crd::conditions::find(&pc.status.as_ref().unwrap().conditions, READY)
        .unwrap()
        .clone();
    assert_eq!(ready.status, ConditionStatus::False);
    assert!(ready.message.contains("not accepted"), "{}", ready.message);
    assert!(
        !ready.message.contains("not-the-token"),
        "secret value leaked: {}",
        ready.message
    );
}

#[tokio::test]
async fn provider_config_in_use_is_not_deleted() {
    let h = Harness::new().await;
    h.reconcile_pc("emnify").await.unwrap();
    h.add_sp("sensors", basic_spec());
    h.sync_sp("sensors").await;
    h.pcs().delete("emnify", &Default::default()).await.unwrap();
    let err = h.reconcile_pc("emnify").await.unwrap_err();
    assert_eq!(err.reason(), "InUse");
    assert!(err.to_string().contains("ServiceProfile sensors"), "{err}");
    // Once the profile is gone the ProviderConfig goes too.
    h.delete_sp("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    assert!(h.pcs().get_opt("emnify").await.unwrap().is_none());
}

#[tokio::test]
async fn secrets_never_reach_status_events_or_spec_writes() {
    let h = Harness::new().await;
    h.reconcile_pc("emnify").await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    h.add_sp("fleet", services_spec());
    h.sync_sp("fleet").await;
    h.add_sp("bad", json!({"emnify": {"services": [{"service": "Telepathy"}]}}));
    let _ = h.reconcile_sp("bad").await;
    let _ = h.reconcile_sp("bad").await;
    let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
    for kind in ["ServiceProfile", "ProviderConfig"] {
        for obj in h.server.list("connectivity-operator.dev/v1alpha1", kind) {
            assert!(!obj.to_string().contains(&token), "{kind} leaks the token");
        }
    }
    for ev in h.server.list("events.k8s.io/v1", "Event") {
        assert!(!ev.to_string().contains(&token), "event leaks the token");
    }
    // The operator writes status and finalizers, never spec.
    for req in h.server.requests() {
        let write = matches!(req.method.as_str(), "PUT" | "PATCH" | "POST");
        let ours = req.path.contains("serviceprofiles") || req.path.contains("providerconfigs");
        if write && ours && !req.path.ends_with("/status") {
            let body = req.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
            assert!(
                !body.contains("\"spec\"") && !body.contains("/spec"),
                "spec write: {} {} {body}",
                req.method,
                req.path
            );
        }
    }
}

#[tokio::test]
async fn resolutions_are_reused_and_a_changed_provider_config_is_picked_up_at_once() {
    use connectivity_operator::controller::{Context, Settings};
    use connectivity_operator::metrics::Metrics;
    use kube::api::{Patch, PatchParams};
    use std::sync::Arc;

    let h = Harness::new().await;
    let settings = Settings {
        provider_cache_ttl: Duration::from_secs(300),
        ..h.ctx.settings.clone()
    };
    let ctx = Arc::new(Context::new(h.client.clone(), Metrics::new(), settings));
    let reads = |h: &Harness| {
        h.server
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && (r.path.contains("/secrets/") || r.path.contains("/providerconfigs/")))
            .count()
    };
    h.server.clear_requests();
    let first = ctx.providers.resolve(&h.client, NS, "emnify").await.unwrap();
    for _ in 0..4 {
        let again = ctx.providers.resolve(&h.client, NS, "emnify").await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same connected backend is reused");
    }
    assert_eq!(
        reads(&h),
        2,
        "five resolves read the ProviderConfig and its Secret once"
    );

    // A spec change reaches the cache through the ProviderConfig's own reconcile.
    h.pcs()
        .patch(
            "emnify",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rateLimit": {"requestsPerSecond": 3.0, "burst": 2}}})),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let pc = h.pcs().get("emnify").await.unwrap();
        connectivity_operator::controller::managed::reconcile(Arc::new(pc), ctx.clone())
            .await
            .unwrap();
    }
    let changed = ctx.providers.resolve(&h.client, NS, "emnify").await.unwrap();
    assert!(!Arc::ptr_eq(&first, &changed), "the changed ProviderConfig is used");

    // Forgetting it (the ProviderConfig was deleted) reads both again.
    ctx.providers.forget(NS, "emnify");
    h.server.clear_requests();
    ctx.providers.resolve(&h.client, NS, "emnify").await.unwrap();
    assert_eq!(reads(&h), 2);
}

fn secret_finalizers(h: &Harness, name: &str) -> Option<Vec<String>> {
    h.server
        .list("v1", "Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == name)
        .map(|s| {
            s["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| f.as_str().unwrap().to_string())
                .collect()
        })
}

#[tokio::test]
async fn credentials_secret_is_kept_while_its_provider_config_exists() {
    use connectivity_operator::controller::credentials::CREDENTIALS_FINALIZER;
    use kube::api::{DeleteParams, Patch, PatchParams};

    let h = Harness::new().await;
    h.reconcile_pc("emnify").await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    assert_eq!(
        secret_finalizers(&h, "emnify-credentials").unwrap(),
        [CREDENTIALS_FINALIZER]
    );
    let pc = h.pcs().get("emnify").await.unwrap();
    assert_eq!(
        pc.status.unwrap().protected_secret.as_deref(),
        Some("emnify-credentials")
    );

    // Pointing at another Secret protects that one and lets go of the old one.
    let token = h.sim.credentials()["application_token"].as_str().unwrap().to_string();
    h.add(json!({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "rotated", "namespace": NS}, "stringData": {"applicationToken": token}}));
    h.pcs()
        .patch(
            "emnify",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentialsSecretRef": {"name": "rotated"}}})),
        )
        .await
        .unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    assert_eq!(secret_finalizers(&h, "rotated").unwrap(), [CREDENTIALS_FINALIZER]);
    assert!(
        secret_finalizers(&h, "emnify-credentials").unwrap().is_empty(),
        "the old Secret is released"
    );

    // Deleting the ProviderConfig (nothing uses it) releases the Secret and the ProviderConfig goes.
    h.pcs().delete("emnify", &DeleteParams::default()).await.unwrap();
    h.reconcile_pc("emnify").await.unwrap();
    assert!(h.pcs().get_opt("emnify").await.unwrap().is_none());
    assert!(secret_finalizers(&h, "rotated").unwrap().is_empty());
}

#[tokio::test]
async fn cleanup_without_credentials_waits_unless_the_account_is_being_deleted() {
    use kube::api::{DeleteParams, Patch, PatchParams};

    let h = Harness::new().await;
    h.add_sp("fleet", basic_spec());
    let id = h.sync_sp("fleet").await.status.unwrap().id.unwrap();
    // The Secret disappears behind the operator's back (no protection yet: never reconciled).
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(h.client.clone(), NS);
    secrets
        .patch(
            "emnify-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    secrets
        .delete("emnify-credentials", &DeleteParams::default())
        .await
        .unwrap();
    h.delete_sp("fleet").await;
    // The account still exists: the Secret may come back, so cleanup waits and says why.
    let err = h.reconcile_sp("fleet").await.unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
    assert!(h.sp_exists("fleet").await);
    // The account is being deleted too: nothing can reach the vendor any more; the profile is
    // left as it is, with a Warning that names it, and the deletion completes.
    h.pcs().delete("emnify", &DeleteParams::default()).await.unwrap();
    h.reconcile_sp("fleet").await.unwrap();
    assert!(!h.sp_exists("fleet").await);
    assert!(h.vendor_profile(&id).is_some(), "left at the vendor");
    assert!(
        h.events_for("fleet")
            .iter()
            .any(|(t, r, note)| t == "Warning" && r == "CredentialsGone" && note.contains(&id)),
        "{:?}",
        h.events_for("fleet")
    );
}

async fn data_limits_at_emnify(h: &Harness, id: &str) -> Vec<(bool, i64, Option<i64>)> {
    let list = common::emnify_get(&h.sim, &format!("/api/v1/service_profile/{id}/traffic_limit")).await;
    let mut out: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["satellite_only"].as_bool().unwrap_or(false),
                l["volume"].as_i64().unwrap(),
                l["warning_percent"].as_i64(),
            )
        })
        .collect();
    out.sort();
    out
}

/// emnify's data limits (`/service_profile/{id}/traffic_limit`): created with the profile, a
/// changed one deleted and added again (emnify has no update), one dropped from the spec deleted,
/// nothing written while in sync, and a volume that is no quantity of bytes refused by name.
#[tokio::test]
async fn data_limits_are_managed_like_the_rest() {
    let h = Harness::new().await;
    h.add_sp(
        "capped",
        json!({"emnify": {"dataLimits": [
            {"volume": "500Mi", "warningPercent": 80},
            {"volume": "1G", "satelliteOnly": true}
        ]}}),
    );
    let sp = h.sync_sp("capped").await;
    let id = sp.status.clone().unwrap().id.unwrap();
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True, "{:?}", sp.status);
    assert_eq!(
        data_limits_at_emnify(&h, &id).await,
        vec![(false, 500 << 20, Some(80)), (true, 1_000_000_000, None)]
    );
    let observed = sp.status.unwrap().observed.unwrap().data_limits;
    assert_eq!(observed.len(), 2, "{observed:?}");
    assert!(
        observed
            .iter()
            .any(|l| l.contains("500 MiB per month (all RATs, warning at 80%)")),
        "{observed:?}"
    );

    // In sync: a resync reads and writes nothing.
    let writes = |h: &Harness| {
        h.vendor_requests()
            .iter()
            .filter(|(m, p, _)| m != "GET" && !p.ends_with("/authenticate"))
            .count()
    };
    let before = writes(&h);
    h.resync_due("capped").await;
    h.reconcile_sp("capped").await.unwrap();
    assert_eq!(writes(&h), before);

    // A changed volume: deleted and added again; the satellite one is dropped.
    h.patch_spec(
        "capped",
        json!({"emnify": {"dataLimits": [{"volume": "2Gi", "warningPercent": 90}]}}),
    )
    .await;
    let sp = h.sync_sp("capped").await;
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True, "{:?}", sp.status);
    assert_eq!(data_limits_at_emnify(&h, &id).await, vec![(false, 2 << 30, Some(90))]);
    assert!(h.has_event("capped", "Updated"));

    // Empty list: none; absent: not managed (a limit added in the portal stays).
    h.patch_spec("capped", json!({"emnify": {"dataLimits": []}})).await;
    h.sync_sp("capped").await;
    assert!(data_limits_at_emnify(&h, &id).await.is_empty());

    h.patch_spec("capped", json!({"emnify": {"dataLimits": [{"volume": "1.5"}]}}))
        .await;
    h.reconcile_sp("capped").await.unwrap_err();
    let sp = h.sp("capped").await;
    let synced = condition(&sp, SYNCED);
    assert_eq!(synced.reason, "InvalidRequest");
    assert!(
        synced.message.contains("dataLimits[0].volume") && synced.message.contains("fractions of a byte"),
        "{}",
        synced.message
    );
}

/// A BICS account on BICS's REST API (`spec.bicsSft.api: rest`) is emnify's API: the emnify
/// backend serves it with the application token; ServiceProfiles carry `spec.emnify` and
/// subscriptions use `serviceProfileRef` as on emnify.
#[tokio::test]
async fn bics_accounts_on_the_rest_api_use_the_emnify_backend() {
    let h = Harness::new().await;
    h.add(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "bics-rest-credentials", "namespace": NS},
        "stringData": {"applicationToken": h.sim.credentials()["application_token"]}
    }));
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "bics-rest", "namespace": NS},
        "spec": {"vendor": "bicsSft", "endpoint": h.sim.url, "credentialsSecretRef": {"name": "bics-rest-credentials"},
                 "rateLimit": {"requestsPerSecond": 1000.0, "burst": 1000},
                 "bicsSft": {"api": "rest"}}
    }));
    h.reconcile_pc("bics-rest").await.unwrap();
    h.reconcile_pc("bics-rest").await.unwrap();
    let pc = h.pcs().get("bics-rest").await.unwrap();
    let ready = pc
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == READY)
        .unwrap();
    assert_eq!(ready.status, ConditionStatus::True, "{}", ready.message);

    h.add_sp(
        "rest-profile",
        json!({"providerConfigRef": {"name": "bics-rest"}, "emnify": {"allowed3g": false, "dataLimits": [{"volume": "50Mi"}]}}),
    );
    let sp = h.sync_sp("rest-profile").await;
    assert_eq!(condition(&sp, READY).status, ConditionStatus::True, "{:?}", sp.status);
    let id = sp.status.unwrap().id.unwrap();
    assert_eq!(h.vendor_profile(&id).unwrap()["allowed_3g"], false);

    // The RPC API's section is not what this account takes, and the error says which is.
    h.add_sp(
        "rpc-shaped",
        json!({"providerConfigRef": {"name": "bics-rest"}, "bicsSft": {"services": ["Data"], "accessType": "2G"}}),
    );
    h.reconcile_sp("rpc-shaped").await.unwrap();
    let err = h.reconcile_sp("rpc-shaped").await.unwrap_err();
    assert_eq!(err.reason(), "VendorSectionMissing");
    assert!(err.to_string().contains("spec.emnify is required"), "{err}");
}

//! Reconcile tests for ConnectivitySubscription: the real pipeline on the in-memory API server
//! against the emnify and Telenor IoT Connect simulators over HTTP.

mod common;

use std::time::Duration;

use common::{Harness, NS, emnify_get};
use connectivity_operator::crd::conditions::{self, READY, SYNCED};
use connectivity_operator::crd::{ConditionStatus, ConnectivitySubscription, PendingOutcome};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

fn cond(c: &ConnectivitySubscription, type_: &str) -> (ConditionStatus, String, String) {
    let status = c.status.as_ref().expect("status");
    let found = conditions::find(&status.conditions, type_).unwrap_or_else(|| panic!("no {type_} in {status:?}"));
    (found.status, found.reason.to_string(), found.message.clone())
}

/// Seeded emnify SIMs: (SIM with an Activated endpoint, Issued SIM without endpoint).
async fn emnify_sims(h: &Harness) -> (Value, Value) {
    let sims = emnify_get(&h.sim, "/api/v1/sim?per_page=1000").await;
    let list = sims.as_array().unwrap();
    let with = list.iter().find(|s| s["endpoint"]["id"].is_i64()).unwrap().clone();
    let without = list
        .iter()
        .find(|s| s["endpoint"].is_null() && s["status"]["id"] == 0)
        .unwrap()
        .clone();
    (with, without)
}

/// IMSI of a seeded Telenor subscription in mode ACTIVE.
fn active_telenor_imsi(h: &Harness) -> String {
    let subs = h.telenor().subscriptions();
    str_of(
        &subs
            .iter()
            .find(|s| s["mode"] == "ACTIVE")
            .expect("an ACTIVE subscription")["imsi"],
    )
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

#[tokio::test]
async fn emnify_sim_is_paused_and_moved_to_the_referenced_profile() {
    let h = Harness::new().await;
    h.add_sp("trackers", json!({"emnify": {"allowed3g": false}}));
    let profile = h.sync_sp("trackers").await.status.unwrap().id.unwrap();
    let (sim, _) = emnify_sims(&h).await;
    h.add_csub("t1", json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "mode": "Paused", "serviceProfileRef": {"name": "trackers"}}));
    let c = h.sync_csub("t1").await;
    let status = c.status.clone().unwrap();
    assert_eq!(status.mode.as_deref(), Some("Activated/Disabled"));
    assert_eq!(status.service_profile_id.as_deref(), Some(profile.as_str()));
    assert_eq!(status.imsi.as_deref(), sim["imsi"].as_str());
    assert!(status.iccid.is_some() && status.msisdn.is_some());
    assert_eq!(status.id.as_deref(), Some(sim["id"].to_string().as_str()));
    assert_eq!(
        status.endpoint_id.as_deref(),
        Some(sim["endpoint"]["id"].to_string().as_str())
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(cond(&c, READY).0, ConditionStatus::True);
    let endpoint = emnify_get(&h.sim, &format!("/api/v1/endpoint/{}", sim["endpoint"]["id"])).await;
    assert_eq!(endpoint["status"]["id"], 1, "endpoint Disabled");
    assert_eq!(endpoint["service_profile"]["id"].to_string(), profile);
    let sim_now = emnify_get(&h.sim, &format!("/api/v1/sim/{}", sim["id"])).await;
    assert_eq!(sim_now["status"]["id"], 1, "SIM stays Activated when paused");

    // Back to Active: only the endpoint changes.
    h.csubs()
        .patch(
            "t1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Active"}})),
        )
        .await
        .unwrap();
    let c = h.sync_csub("t1").await;
    assert_eq!(c.status.unwrap().mode.as_deref(), Some("Activated/Enabled"));
}

#[tokio::test]
async fn emnify_sim_without_endpoint_gets_one() {
    let h = Harness::new().await;
    h.add_sp("trackers", json!({"emnify": {}}));
    let profile = h.sync_sp("trackers").await.status.unwrap().id.unwrap();
    let (_, free) = emnify_sims(&h).await;
    h.add_csub("new-device", json!({"providerConfigRef": {"name": "emnify"}, "iccid": free["iccid"], "mode": "Active", "serviceProfileRef": {"name": "trackers"}}));
    let c = h.sync_csub("new-device").await;
    let status = c.status.clone().unwrap();
    assert_eq!(status.mode.as_deref(), Some("Activated/Enabled"));
    let endpoint = emnify_get(
        &h.sim,
        &format!("/api/v1/endpoint/{}", status.endpoint_id.clone().unwrap()),
    )
    .await;
    assert_eq!(endpoint["name"], "new-device", "named after the object");
    assert_eq!(endpoint["service_profile"]["id"].to_string(), profile);
    assert_eq!(endpoint["sim"]["id"], free["id"]);
    assert!(emnify_get(&h.sim, &format!("/api/v1/sim/{}", free["id"])).await["activation_date"].is_string());
}

#[tokio::test]
async fn emnify_sim_without_endpoint_and_profile_says_what_is_missing() {
    let h = Harness::new().await;
    let (_, free) = emnify_sims(&h).await;
    h.add_csub(
        "orphan",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": free["iccid"], "mode": "Active"}),
    );
    h.reconcile_csub("orphan").await.unwrap();
    let err = h.reconcile_csub("orphan").await.unwrap_err();
    assert_eq!(err.reason(), "InvalidRequest");
    assert!(err.to_string().contains("set spec.serviceProfileRef"), "{err}");
    // Refused before any call: the SIM was not activated for an endpoint that cannot be made.
    let sim = emnify_get(&h.sim, &format!("/api/v1/sim/{}", free["id"])).await;
    assert_eq!(sim["status"]["description"], "Issued", "{sim}");
    // A fresh SIM asked to stay Deactivated needs nothing.
    h.add_csub(
        "spare",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": free["iccid"], "mode": "Deactivated"}),
    );
    let c = h.sync_csub("spare").await;
    assert_eq!(c.status.unwrap().mode.as_deref(), Some("Issued/no endpoint"));
}

#[tokio::test]
async fn service_profile_reference_must_exist_and_be_ready() {
    let h = Harness::new().await;
    let (sim, _) = emnify_sims(&h).await;
    h.add_csub("t1", json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "mode": "Active", "serviceProfileRef": {"name": "later"}}));
    h.reconcile_csub("t1").await.unwrap();
    let err = h.reconcile_csub("t1").await.unwrap_err();
    assert_eq!(err.reason(), "ServiceProfileNotFound");
    assert_eq!(cond(&h.csub("t1").await, SYNCED).1, "ServiceProfileNotFound");
    h.add_sp("later", json!({"emnify": {}}));
    let err = h.reconcile_csub("t1").await.unwrap_err();
    assert_eq!(err.reason(), "ServiceProfileNotReady", "no vendor id yet");
    assert!(!err.is_permanent(), "retried until the profile is Ready");
    h.sync_sp("later").await;
    h.reconcile_csub("t1").await.unwrap();
    let c = h.csub("t1").await;
    assert_eq!(cond(&c, READY).0, ConditionStatus::True);
    assert_eq!(
        c.status.unwrap().service_profile_id.as_deref(),
        h.sp("later").await.status.unwrap().id.as_deref()
    );
}

#[tokio::test]
async fn termination_needs_the_confirmation_annotation_and_is_final() {
    let h = Harness::new().await;
    let (sim, _) = emnify_sims(&h).await;
    let iccid = str_of(&sim["iccid"]);
    h.add_csub(
        "retire",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": iccid, "mode": "Terminated"}),
    );
    h.reconcile_csub("retire").await.unwrap();
    let writes_before = h
        .vendor_requests()
        .iter()
        .filter(|(m, _, _)| m != "GET" && m != "POST")
        .count();
    let err = h.reconcile_csub("retire").await.unwrap_err();
    assert_eq!(err.reason(), "TerminationNotConfirmed");
    assert!(err.is_permanent());
    let writes_after = h
        .vendor_requests()
        .iter()
        .filter(|(m, _, _)| m != "GET" && m != "POST")
        .count();
    assert_eq!(writes_after, writes_before, "nothing sent");
    let c = h.csub("retire").await;
    assert_eq!(cond(&c, SYNCED).1, "TerminationNotConfirmed");
    assert!(
        h.events_for("retire")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "TerminationNotConfirmed")
    );

    // A wrong confirmation is no confirmation.
    h.csubs()
        .patch("retire", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"connectivity-operator.dev/confirm-termination": "8988303000000000000"}}})))
        .await
        .unwrap();
    assert_eq!(
        h.reconcile_csub("retire").await.unwrap_err().reason(),
        "TerminationNotConfirmed"
    );

    h.csubs()
        .patch(
            "retire",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"connectivity-operator.dev/confirm-termination": iccid}}}),
            ),
        )
        .await
        .unwrap();
    h.reconcile_csub("retire").await.unwrap();
    let c = h.csub("retire").await;
    assert_eq!(c.status.clone().unwrap().mode.as_deref(), Some("Deleted/no endpoint"));
    assert_eq!(cond(&c, READY).0, ConditionStatus::True);
    assert!(c.status.clone().unwrap().terminated_at.is_some());
    // The endpoint went with it (left behind it would keep its service profile in use), and
    // emnify no longer lists the SIM.
    let endpoint = sim["endpoint"]["id"].as_i64().unwrap();
    let gone = emnify_get(&h.sim, &format!("/api/v1/endpoint/{endpoint}")).await;
    assert!(gone.get("id").is_none(), "endpoint {endpoint} deleted: {gone}");
    let sims = emnify_get(&h.sim, "/api/v1/sim?per_page=1000").await;
    assert!(!sims.as_array().unwrap().iter().any(|s| s["iccid"] == sim["iccid"]));

    // Later resyncs, from a fresh sweep that no longer has the SIM: still Terminated, not
    // SimNotFound.
    for _ in 0..2 {
        h.ctx.inventories.forget("default/emnify");
        h.csub_resync_due("retire").await;
        h.reconcile_csub("retire").await.unwrap();
        let c = h.csub("retire").await;
        assert_eq!(cond(&c, READY).0, ConditionStatus::True, "{:?}", c.status);
        assert_eq!(cond(&c, SYNCED).0, ConditionStatus::True);
        assert_eq!(
            c.status.unwrap().mode.as_deref(),
            Some("terminated (no longer listed by the vendor)")
        );
    }

    // Terminated is irreversible: asking for Active again is a permanent error, nothing is sent.
    h.csubs()
        .patch(
            "retire",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Active"}})),
        )
        .await
        .unwrap();
    let err = h.reconcile_csub("retire").await.unwrap_err();
    assert_eq!(err.reason(), "Terminated");
    assert!(err.to_string().contains("irreversible"));
}

/// emnify allows Factory Test -> Activated only: a Factory Test SIM reaches Deactivated through
/// Activated (its endpoint disabled first), never by a refused Factory Test -> Suspended.
#[tokio::test]
async fn factory_test_sims_take_only_allowed_transitions() {
    let h = Harness::new().await;
    let (_, free) = emnify_sims(&h).await;
    let sim_id = free["id"].as_i64().unwrap();
    let iccid = str_of(&free["iccid"]);
    // Issued -> Factory Test (allowed), as a person would do in the portal.
    let token = common::emnify_token(&h.sim).await;
    let resp = reqwest::Client::new()
        .patch(format!("{}/api/v1/sim/{sim_id}", h.sim.url))
        .bearer_auth(token)
        .json(&json!({"status": {"id": 4}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let tariff = emnify_get(&h.sim, "/api/v1/tariff_profile").await[0]["id"]
        .as_i64()
        .unwrap();
    h.add_sp("p", json!({"providerConfigRef": {"name": "emnify"}, "emnify": {}}));
    h.sync_sp("p").await;
    h.add_csub(
        "ft",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": iccid, "mode": "Paused",
               "serviceProfileRef": {"name": "p"}, "emnify": {"tariffProfileId": tariff}}),
    );
    let c = h.sync_csub("ft").await;
    assert_eq!(c.status.unwrap().mode.as_deref(), Some("Activated/Disabled"));
    // Back to Factory Test is impossible; from a fresh Factory Test SIM, Deactivated:
    let (_, other) = emnify_sims(&h).await;
    let other_id = other["id"].as_i64().unwrap();
    let resp = reqwest::Client::new()
        .patch(format!("{}/api/v1/sim/{other_id}", h.sim.url))
        .bearer_auth(common::emnify_token(&h.sim).await)
        .json(&json!({"status": {"id": 4}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    // The portal change is newer than the account's last sweep.
    h.ctx.inventories.forget("default/emnify");
    h.add_csub(
        "ft2",
        json!({"providerConfigRef": {"name": "emnify"}, "iccid": str_of(&other["iccid"]), "mode": "Deactivated",
               "serviceProfileRef": {"name": "p"}, "emnify": {"tariffProfileId": tariff}}),
    );
    let c = h.sync_csub("ft2").await;
    let status = c.status.unwrap();
    assert_eq!(
        status.mode.as_deref(),
        Some("Suspended/Disabled"),
        "{:?}",
        status.conditions
    );
    let refused = h
        .vendor_requests()
        .iter()
        .filter(|(m, p, code)| m == "PATCH" && p.starts_with("/api/v1/sim/") && *code >= 400)
        .count();
    assert_eq!(refused, 0, "no transition emnify refuses was sent");
}

#[tokio::test]
async fn deleting_deactivates_or_orphans_and_never_terminates() {
    let h = Harness::new().await;
    let sims = emnify_get(&h.sim, "/api/v1/sim?per_page=1000").await;
    let with: Vec<&Value> = sims
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["endpoint"]["id"].is_i64())
        .take(2)
        .collect();
    h.add_csub("deactivate", json!({"providerConfigRef": {"name": "emnify"}, "imsi": with[0]["imsi"], "mode": "Active", "deletionPolicy": "Deactivate"}));
    h.add_csub(
        "orphan",
        json!({"providerConfigRef": {"name": "emnify"}, "imsi": with[1]["imsi"], "mode": "Active"}),
    );
    h.sync_csub("deactivate").await;
    h.sync_csub("orphan").await;
    for name in ["deactivate", "orphan"] {
        h.csubs().delete(name, &Default::default()).await.unwrap();
        h.reconcile_csub(name).await.unwrap();
        assert!(h.csubs().get_opt(name).await.unwrap().is_none(), "{name} gone");
    }
    let first = emnify_get(&h.sim, &format!("/api/v1/sim/{}", with[0]["id"])).await;
    assert_eq!(first["status"]["id"], 2, "Deactivate: SIM Suspended");
    let second = emnify_get(&h.sim, &format!("/api/v1/sim/{}", with[1]["id"])).await;
    assert_eq!(second["status"]["id"], 1, "Orphan: SIM untouched");
}

#[tokio::test]
async fn subscriptions_on_one_account_share_one_sweep() {
    let h = Harness::new().await;
    let sims = emnify_get(&h.sim, "/api/v1/sim?per_page=1000").await;
    let active: Vec<&Value> = sims
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["endpoint"]["id"].is_i64())
        .take(10)
        .collect();
    for (i, sim) in active.iter().enumerate() {
        h.add_csub(
            &format!("s{i}"),
            json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "mode": "Active"}),
        );
    }
    for i in 0..active.len() {
        h.sync_csub(&format!("s{i}")).await;
    }
    // A resync of all ten: one sweep (endpoint pages + SIM pages), no per-SIM reads.
    h.ctx.inventories.forget("default/emnify");
    let before = h.vendor_requests().len();
    for i in 0..active.len() {
        h.csub_resync_due(&format!("s{i}")).await;
        h.reconcile_csub(&format!("s{i}")).await.unwrap();
    }
    let calls: Vec<String> = h.vendor_requests()[before..]
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(
        calls.len(),
        2,
        "one page of endpoints and one of SIMs for ten subscriptions: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("GET /api/v1/endpoint?") || c.starts_with("GET /api/v1/sim?")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn telenor_mode_change_is_pending_until_applied() {
    let h = Harness::with_telenor().await;
    let imsi = active_telenor_imsi(&h);
    h.add_csub(
        "meter",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "mode": "Paused"}),
    );
    let c = h.sync_csub("meter").await;
    let status = c.status.clone().unwrap();
    assert_eq!(
        status.mode.as_deref(),
        Some("ACTIVE"),
        "the vendor's mode until it applies the change"
    );
    let pending = status.pending_change.expect("pending change in status");
    assert_eq!(pending.mode, Some(connectivity_operator::crd::SubscriptionMode::Paused));
    assert_eq!(pending.outcome, PendingOutcome::Accepted);
    assert_eq!(cond(&c, SYNCED).1, "Pending");
    assert_eq!(cond(&c, READY).0, ConditionStatus::False);
    assert!(h.has_event("meter", "ChangeRequested"));

    // Still pending: read again, not written again.
    h.reconcile_csub("meter").await.unwrap();
    assert_eq!(h.telenor().write_count(&imsi), 1);
    assert_eq!(cond(&h.csub("meter").await, SYNCED).1, "Pending");

    h.telenor().apply_pending_now();
    h.reconcile_csub("meter").await.unwrap();
    let c = h.csub("meter").await;
    let status = c.status.clone().unwrap();
    assert_eq!(status.mode.as_deref(), Some("PAUSED"));
    assert!(status.pending_change.is_none());
    assert_eq!(cond(&c, READY).0, ConditionStatus::True);
    assert_eq!(cond(&c, SYNCED).0, ConditionStatus::True);
    assert_eq!(h.telenor().write_count(&imsi), 1, "sent exactly once");
}

fn telenor_fault(status: u16, apply: bool) -> vendor_sim::telenor::Fault {
    vendor_sim::telenor::Fault {
        method: Some("PUT".into()),
        path_prefix: "/iot-connect/subscriptions/v1/connectivity-subscriptions".into(),
        status,
        count: 1,
        retry_after: None,
        delay: None,
        apply,
    }
}

#[tokio::test]
async fn telenor_504_that_was_applied_is_not_sent_twice() {
    let h = Harness::with_telenor().await;
    let imsi = active_telenor_imsi(&h);
    h.add_csub(
        "meter",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "mode": "Deactivated"}),
    );
    h.reconcile_csub("meter").await.unwrap();
    h.telenor().inject_fault(telenor_fault(504, true));
    h.reconcile_csub("meter").await.unwrap();
    let c = h.csub("meter").await;
    let pending = c
        .status
        .clone()
        .unwrap()
        .pending_change
        .expect("outcome unknown is recorded");
    assert_eq!(pending.outcome, PendingOutcome::Unknown);
    assert!(
        h.events_for("meter")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "OutcomeUnknown")
    );
    // Observed before any retry: not applied yet, so wait (no second write).
    h.reconcile_csub("meter").await.unwrap();
    h.telenor().apply_pending_now();
    h.reconcile_csub("meter").await.unwrap();
    let c = h.csub("meter").await;
    assert_eq!(c.status.clone().unwrap().mode.as_deref(), Some("DEACTIVATED"));
    assert!(c.status.unwrap().pending_change.is_none());
    assert_eq!(
        h.telenor().write_count(&imsi),
        1,
        "the timed-out write landed once and was never repeated"
    );
}

#[tokio::test]
async fn telenor_504_that_was_lost_is_sent_again_after_the_pending_timeout() {
    let h = Harness::with_telenor().await;
    let imsi = active_telenor_imsi(&h);
    h.add_csub(
        "meter",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "mode": "Paused"}),
    );
    h.reconcile_csub("meter").await.unwrap();
    h.telenor().inject_fault(telenor_fault(504, false));
    h.reconcile_csub("meter").await.unwrap();
    h.reconcile_csub("meter").await.unwrap();
    assert_eq!(
        h.telenor().write_count(&imsi),
        0,
        "the lost write is not resent while it may still land"
    );
    // Five minutes later (the pending timeout) it has not landed: send it again.
    h.csubs()
        .patch_status("meter", &PatchParams::default(), &Patch::Merge(json!({"status": {"pendingChange": {"requestedAt": "2020-01-01T00:00:00Z"}, "lastObservedTime": "2020-01-01T00:00:00Z"}})))
        .await
        .unwrap();
    h.reconcile_csub("meter").await.unwrap();
    assert_eq!(h.telenor().write_count(&imsi), 1);
    h.telenor().apply_pending_now();
    h.reconcile_csub("meter").await.unwrap();
    assert_eq!(h.csub("meter").await.status.unwrap().mode.as_deref(), Some("PAUSED"));
}

#[tokio::test]
async fn telenor_service_policy_comes_from_an_observed_service_profile() {
    let h = Harness::with_telenor().await;
    let sub = h
        .telenor()
        .subscriptions()
        .into_iter()
        .find(|s| s["mode"] == "ACTIVE" && s["servicePolicyId"] != "22NBT5MS")
        .unwrap();
    let imsi = str_of(&sub["imsi"]);
    h.add_sp(
        "sensors",
        json!({"providerConfigRef": {"name": "telenor"}, "name": "NB-IoT Sensors 10MB"}),
    );
    h.add_sp(
        "missing",
        json!({"providerConfigRef": {"name": "telenor"}, "name": "No such policy"}),
    );
    let sp = h.sync_sp("sensors").await;
    assert_eq!(sp.status.as_ref().unwrap().id.as_deref(), Some("22NBT5MS"));
    assert_eq!(common::condition(&sp, READY).status, ConditionStatus::True);
    let missing = h.sync_sp("missing").await;
    assert_eq!(
        common::condition(&missing, READY).reason,
        "NotFound",
        "observe-only: never created"
    );
    h.add_csub(
        "meter",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "serviceProfileRef": {"name": "sensors"}}),
    );
    let c = h.sync_csub("meter").await;
    assert_eq!(
        c.status
            .clone()
            .unwrap()
            .pending_change
            .unwrap()
            .service_profile_id
            .as_deref(),
        Some("22NBT5MS")
    );
    h.telenor().apply_pending_now();
    h.reconcile_csub("meter").await.unwrap();
    let c = h.csub("meter").await;
    assert_eq!(
        c.status.clone().unwrap().service_profile_id.as_deref(),
        Some("22NBT5MS")
    );
    assert_eq!(
        cond(&c, READY).1,
        "Observed",
        "no desired mode: observe the mode, manage the policy"
    );
    // Deleting the ServiceProfile never touches Telenor's read-only policy.
    h.delete_sp("sensors").await;
    h.reconcile_sp("sensors").await.unwrap();
    assert!(
        h.telenor()
            .service_policies()
            .iter()
            .any(|p| p["attributes"]["id"] == "22NBT5MS")
    );
}

#[tokio::test]
async fn telenor_sweep_sees_subscriptions_added_and_removed() {
    let h = Harness::with_telenor().await;
    let subs = h.telenor().subscriptions();
    let gone = str_of(&subs[0]["imsi"]);
    h.add_csub("gone", json!({"providerConfigRef": {"name": "telenor"}, "imsi": gone}));
    h.sync_csub("gone").await;
    let added = h.telenor().add_subscription("ACTIVE_NO_BILLING");
    let new_imsi = str_of(&added["imsi"]);
    assert!(h.telenor().remove_subscription(&gone));

    // Next resync: a fresh sweep.
    h.ctx.inventories.forget("default/telenor");
    h.add_csub(
        "new",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": new_imsi, "mode": "Active"}),
    );
    h.reconcile_csub("new").await.unwrap();
    let before = h.telenor().requests().len();
    h.reconcile_csub("new").await.unwrap();
    let c = h.csub("new").await;
    assert_eq!(
        c.status.clone().unwrap().pending_change.unwrap().mode,
        Some(connectivity_operator::crd::SubscriptionMode::Active)
    );
    let calls = h.telenor().requests()[before..].to_vec();
    assert!(
        calls.iter().any(|(m, p, _)| m == "POST" && p.contains("/search")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|(m, p, _)| m == "GET" && p.contains(&new_imsi)),
        "found by the sweep, not a single GET: {calls:?}"
    );

    h.csub_resync_due("gone").await;
    let err = h.reconcile_csub("gone").await.unwrap_err();
    assert_eq!(err.reason(), "SimNotFound");
    assert!(err.to_string().contains(&gone));
    let _ = NS;
}

#[tokio::test]
async fn emnify_drift_is_corrected_at_resync() {
    let h = Harness::new().await;
    let (sim, _) = emnify_sims(&h).await;
    h.add_csub(
        "t1",
        json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "mode": "Active"}),
    );
    let c = h.sync_csub("t1").await;
    assert_eq!(c.status.unwrap().mode.as_deref(), Some("Activated/Enabled"));
    // Someone disables the device in the emnify Portal.
    let token = common::emnify_token(&h.sim).await;
    let resp = reqwest::Client::new()
        .patch(format!("{}/api/v1/endpoint/{}", h.sim.url, sim["endpoint"]["id"]))
        .bearer_auth(token)
        .json(&json!({"status": {"id": 1}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    // The next resync sweeps again and puts it back.
    h.ctx.inventories.forget("default/emnify");
    h.csub_resync_due("t1").await;
    h.reconcile_csub("t1").await.unwrap();
    let endpoint = emnify_get(&h.sim, &format!("/api/v1/endpoint/{}", sim["endpoint"]["id"])).await;
    assert_eq!(endpoint["status"]["id"], 0, "Enabled again");
    assert!(h.has_event("t1", "Updated"));
}

#[tokio::test]
async fn telenor_429_backs_off_with_retry_after_and_recovers() {
    let h = Harness::with_telenor().await;
    let imsi = active_telenor_imsi(&h);
    h.add_csub(
        "meter",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "mode": "Active"}),
    );
    h.reconcile_csub("meter").await.unwrap();
    h.telenor().inject_fault(vendor_sim::telenor::Fault {
        method: Some("POST".into()),
        path_prefix: "/iot-connect/subscription-inventory".into(),
        status: 429,
        count: 1,
        retry_after: Some(4),
        delay: None,
        apply: false,
    });
    let err = h.reconcile_csub("meter").await.unwrap_err();
    assert_eq!(err.reason(), "RateLimited");
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(4)));
    let action = connectivity_operator::controller::managed::error_policy(
        std::sync::Arc::new(h.csub("meter").await),
        &err,
        h.ctx.clone(),
    );
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(4))
        )
    );
    h.reconcile_csub("meter").await.unwrap();
    assert_eq!(cond(&h.csub("meter").await, SYNCED).0, ConditionStatus::True);
}

#[tokio::test]
async fn missing_credentials_and_missing_sim_are_reported() {
    let h = Harness::with_telenor().await;
    h.add_csub(
        "ghost",
        json!({"providerConfigRef": {"name": "telenor"}, "imsi": "242019999999999", "mode": "Active"}),
    );
    h.reconcile_csub("ghost").await.unwrap();
    let err = h.reconcile_csub("ghost").await.unwrap_err();
    assert_eq!(err.reason(), "SimNotFound");
    assert!(err.to_string().contains("IMSI 242019999999999"), "{err}");
    h.add(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig",
        "metadata": {"name": "nocreds", "namespace": NS},
        "spec": {"vendor": "telenorIotConnect", "credentialsSecretRef": {"name": "absent"}}
    }));
    h.add_csub(
        "nocreds",
        json!({"providerConfigRef": {"name": "nocreds"}, "imsi": "242019999999999"}),
    );
    h.reconcile_csub("nocreds").await.unwrap();
    let err = h.reconcile_csub("nocreds").await.unwrap_err();
    assert_eq!(err.reason(), "SecretNotFound");
    assert_eq!(cond(&h.csub("nocreds").await, READY).1, "SecretNotFound");
}

#[tokio::test]
async fn many_pending_changes_are_verified_by_one_shared_sweep_per_poll() {
    let h = Harness::with_telenor().await;
    let imsis: Vec<String> = h
        .telenor()
        .subscriptions()
        .iter()
        .filter(|s| s["mode"] == "ACTIVE")
        .take(3)
        .map(|s| str_of(&s["imsi"]))
        .collect();
    assert_eq!(imsis.len(), 3);
    for (i, imsi) in imsis.iter().enumerate() {
        h.add_csub(
            &format!("m{i}"),
            json!({"providerConfigRef": {"name": "telenor"}, "imsi": imsi, "mode": "Paused"}),
        );
    }
    for i in 0..3 {
        h.sync_csub(&format!("m{i}")).await;
    }
    let searches = |h: &Harness| {
        h.telenor()
            .requests()
            .iter()
            .filter(|(_, path, _)| path.ends_with("/subscription-inventory/v2/search"))
            .count()
    };
    // Three SIMs waiting, more than one sweep page: each poll round is one sweep that started
    // after the SIMs were last looked at, shared by all three; no single reads.
    for round in 0..2 {
        // A poll interval after the last look.
        h.advance(Duration::from_secs(10));
        let before = searches(&h);
        let reads_before = h.telenor().request_count();
        for i in 0..3 {
            h.reconcile_csub(&format!("m{i}")).await.unwrap();
        }
        assert_eq!(searches(&h) - before, 1, "round {round}: one sweep for three polls");
        assert_eq!(
            h.telenor().request_count() - reads_before,
            1,
            "round {round}: nothing but the sweep"
        );
        assert_eq!(cond(&h.csub("m0").await, SYNCED).1, "Pending");
    }
    h.telenor().apply_pending_now();
    h.advance(Duration::from_secs(10));
    let before = searches(&h);
    for i in 0..3 {
        h.reconcile_csub(&format!("m{i}")).await.unwrap();
        let c = h.csub(&format!("m{i}")).await;
        assert_eq!(c.status.as_ref().unwrap().mode.as_deref(), Some("PAUSED"));
        assert!(c.status.as_ref().unwrap().pending_change.is_none());
    }
    assert_eq!(searches(&h) - before, 1);
    for imsi in &imsis {
        assert_eq!(h.telenor().write_count(imsi), 1, "sent once");
    }
}

#[tokio::test]
async fn a_provider_config_used_by_a_subscription_is_kept_until_the_subscription_is_gone() {
    use kube::api::DeleteParams;

    let h = Harness::new().await;
    let (sim, _) = emnify_sims(&h).await;
    h.add_csub(
        "t1",
        json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "deletionPolicy": "Deactivate"}),
    );
    h.sync_csub("t1").await;
    h.reconcile_pc("emnify").await.unwrap();
    h.pcs().delete("emnify", &DeleteParams::default()).await.unwrap();
    let err = h.reconcile_pc("emnify").await.unwrap_err();
    assert_eq!(err.reason(), "InUse");
    assert!(err.to_string().contains("ConnectivitySubscription t1"), "{err}");
    // Once the subscription is gone (its Deactivate cleanup needed the account), the account goes.
    h.csubs().delete("t1", &DeleteParams::default()).await.unwrap();
    h.reconcile_csub("t1").await.unwrap();
    assert!(h.csubs().get_opt("t1").await.unwrap().is_none());
    h.reconcile_pc("emnify").await.unwrap();
    assert!(h.pcs().get_opt("emnify").await.unwrap().is_none());
}

/// Steady state writes nothing: resyncs that find the spec, the SIM, its profile and the account
/// as they were make no Kubernetes write at all (no heartbeat in status; the resync clock lives
/// in memory). What changes is written, and only then does `lastObservedTime` move.
#[tokio::test]
async fn resyncs_that_find_nothing_new_write_nothing() {
    let h = Harness::new().await;
    h.add_sp("trackers", json!({"emnify": {"allowed3g": false}}));
    h.sync_sp("trackers").await;
    let (sim, _) = emnify_sims(&h).await;
    h.add_csub(
        "quiet",
        json!({"providerConfigRef": {"name": "emnify"}, "imsi": sim["imsi"], "mode": "Active", "serviceProfileRef": {"name": "trackers"}}),
    );
    let before = h.sync_csub("quiet").await;
    for _ in 0..2 {
        h.reconcile_pc("emnify").await.unwrap();
    }
    // One due resync takes in what the subscription changed elsewhere (the profile's usedCount).
    h.advance(Duration::from_secs(3600));
    h.reconcile_sp("trackers").await.unwrap();
    let profile = h.sp("trackers").await;
    for round in 0..3 {
        // Past every resync interval (and the inventory sweep's age).
        h.advance(Duration::from_secs(3600));
        h.server.clear_requests();
        let calls = h.ctx.metrics.vendor_request_total();
        h.reconcile_pc("emnify").await.unwrap();
        h.reconcile_sp("trackers").await.unwrap();
        h.reconcile_csub("quiet").await.unwrap();
        assert!(
            h.ctx.metrics.vendor_request_total() > calls,
            "round {round}: the resync read the vendor"
        );
        let writes: Vec<String> = h
            .server
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "round {round}: {writes:?}");
    }
    assert_eq!(h.csub("quiet").await.status, before.status);
    assert_eq!(h.sp("trackers").await.status, profile.status);

    // A change is written, and moves lastObservedTime.
    h.csubs()
        .patch(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Paused"}})),
        )
        .await
        .unwrap();
    let after = h.sync_csub("quiet").await;
    let (was, now) = (before.status.unwrap(), after.status.unwrap());
    assert_eq!(now.mode.as_deref(), Some("Activated/Disabled"));
    assert!(
        now.last_observed_time > was.last_observed_time,
        "{:?} -> {:?}",
        was.last_observed_time,
        now.last_observed_time
    );
}

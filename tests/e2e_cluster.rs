//! Cluster end-to-end test, for any kubeconfig (kind, k3d, a dev cluster):
//! `cargo test --test e2e_cluster -- --ignored`. It installs the CRDs (server-side apply), runs the
//! controllers in this process against the cluster and a local emnify simulator, and works in a
//! random labelled namespace that it deletes at the end.

use std::time::Duration;

use connectivity_operator::controller::Settings;
use connectivity_operator::crd::conditions::{self, READY};
use connectivity_operator::crd::{ServiceProfile, all_crds};
use connectivity_operator::metrics::Metrics;
use connectivity_operator::run::{RunOptions, run_until};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vendor_sim::emnify::{EmnifyConfig, EmnifySim};

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..240 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs cluster"]
async fn service_profile_lifecycle_on_a_real_cluster() {
    connectivity_operator::install_crypto_provider();
    let client = kube::Client::try_default().await.expect("kubeconfig");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("connectivity-operator-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // let the CRDs become established

    let ns = format!("co-e2e-{}", rand::random::<u32>());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": ns, "labels": {"connectivity-operator.dev/e2e": "true"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let sim = EmnifySim::new(EmnifyConfig::default())
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "creds"},
                "stringData": {"applicationToken": sim.credentials()["application_token"]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let pp = PatchParams::apply("e2e-user");
    let pcs: Api<connectivity_operator::crd::ProviderConfig> = Api::namespaced(client.clone(), &ns);
    pcs.patch(
        "acct",
        &pp,
        &Patch::Apply(json!({
            "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "acct"},
            "spec": {"vendor": "emnify", "endpoint": sim.url, "credentialsSecretRef": {"name": "creds"}}
        })),
    )
    .await
    .unwrap();
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), &ns);
    sps.patch("e2e", &pp, &Patch::Apply(json!({
        "apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile", "metadata": {"name": "e2e"},
        "spec": {"providerConfigRef": {"name": "acct"}, "emnify": {"allowed3g": false, "services": [{"service": "Data"}]}}
    }))).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        settings: Settings::default(),
        listen: listener.local_addr().unwrap(),
        namespaces: vec![ns.clone()],
        leader_election: None,
    };
    let operator = tokio::spawn(run_until(client.clone(), listener, options, Metrics::new(), async {
        let _ = stop_rx.await;
    }));

    eventually("ServiceProfile Ready", || async {
        sps.get("e2e")
            .await
            .ok()
            .and_then(|s| s.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let id = sps.get("e2e").await.unwrap().status.unwrap().id.unwrap();
    assert_eq!(
        sim.sim.service_profile(id.parse().unwrap()).unwrap()["allowed_3g"],
        false
    );

    sps.delete("e2e", &DeleteParams::default()).await.unwrap();
    eventually("ServiceProfile gone (finalizer removed)", || async {
        sps.get_opt("e2e").await.unwrap().is_none()
    })
    .await;
    assert!(sim.sim.service_profile(id.parse().unwrap()).is_none());
    pcs.delete("acct", &DeleteParams::default()).await.unwrap();
    eventually("ProviderConfig gone", || async {
        pcs.get_opt("acct").await.unwrap().is_none()
    })
    .await;

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), operator).await;
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}

//! The cluster tier: the CRDs, the Helm chart, the RBAC and the operator binary against a real
//! kube-apiserver. CI runs it on every build against the control plane of
//! `scripts/control-plane.sh` (etcd, kube-apiserver, kube-controller-manager on 127.0.0.1):
//!
//! ```sh
//! bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1
//! ```
//!
//! It runs against any kubeconfig a user points it at (`KUBECONFIG`, admin rights), kind or a dev
//! cluster, and works in random namespaces labelled `connectivity-operator.dev/e2e` that it deletes
//! at the end. Tests run one at a time (`--test-threads=1`): a cluster-wide operator started by one
//! test would otherwise also reconcile another test's objects.
//!
//! The operator runs as users run it: the `connectivity-operator` binary as its own process,
//! authenticated with a token of the chart's ServiceAccount (TokenRequest API) and holding only the
//! chart's rendered RBAC. The vendor simulators run in this process on 127.0.0.1. kubectl and helm
//! are the real tools from `scripts/tools.sh` (target/tools/bin).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Once;
use std::time::{Duration, Instant};

use connectivity_operator::crd::conditions::{self, READY, SYNCED};
use connectivity_operator::crd::{ConnectivitySubscription, ProviderConfig, ServiceProfile};
use connectivity_operator::offline::{Manifest, OfflineCluster, OfflineOptions};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const LABEL: &str = "connectivity-operator.dev/e2e";
/// Field manager of the "Git side" in these tests (what Argo CD or `kubectl apply --server-side` is).
const GITOPS: &str = "e2e-gitops";

// --- tools ----------------------------------------------------------------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool from target/tools/bin (scripts/tools.sh), else from PATH.
fn tool(name: &str) -> Command {
    let local = repo().join("target/tools/bin").join(name);
    let mut cmd = Command::new(if local.exists() { local } else { PathBuf::from(name) });
    cmd.current_dir(repo());
    cmd
}

/// Runs a command to its end. The simulators serve from this test's runtime, so the wait happens
/// off the runtime's workers (`block_in_place`): a blocking `kubectl delete` whose completion needs
/// a simulator's answer would otherwise wait for itself.
fn output(cmd: &mut Command) -> Output {
    let mut run = || cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(run),
        Err(_) => run(),
    }
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl(args: &[&str]) -> Command {
    let mut cmd = tool("kubectl");
    cmd.args(args);
    cmd
}

fn helm(args: &[&str]) -> Command {
    let mut cmd = tool("helm");
    cmd.args(args);
    cmd
}

/// Waits (polling every 250 ms, up to `limit`) until `check` holds; panics naming `what`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// --- cluster ---------------------------------------------------------------------------------------

async fn admin() -> Client {
    connectivity_operator::install_crypto_provider();
    Client::try_default()
        .await
        .expect("a kubeconfig with admin rights (KUBECONFIG); see the module docs")
}

/// `kubectl apply --server-side -f crds/` once per run, then waits on `Established` (no sleeps).
fn install_crds() {
    static CRDS: Once = Once::new();
    CRDS.call_once(|| {
        ok(&mut kubectl(&[
            "apply",
            "--server-side",
            "--field-manager",
            GITOPS,
            "-f",
            "crds/",
        ]));
        ok(&mut kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "crds/",
        ]));
    });
}

/// A random namespace labelled for these tests; deleted (without waiting) when dropped.
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name, "labels": {LABEL: "true"}}})).unwrap(),
            )
            .await
            .unwrap();
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = output(&mut kubectl(&["delete", "namespace", &self.name, "--wait=false"]));
    }
}

/// The admin kubeconfig's cluster (server and CA) with another user's token.
fn kubeconfig_with_token(token: &str, dir: &Path) -> PathBuf {
    let admin = kube::config::Kubeconfig::read().expect("admin kubeconfig");
    let context = admin
        .current_context
        .as_deref()
        .and_then(|c| admin.contexts.iter().find(|n| n.name == c))
        .and_then(|n| n.context.clone())
        .expect("current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("cluster of the current context");
    let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => format!("certificate-authority-data: {data}"),
        (None, Some(file)) => format!("certificate-authority: {file}"),
        (None, None) => "insecure-skip-tls-verify: true".to_string(),
    };
    let path = dir.join(format!("kubeconfig-{:08x}", rand::random::<u32>()));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            cluster.server.expect("server")
        ),
    )
    .unwrap();
    path
}

/// A token for a ServiceAccount from the TokenRequest API.
async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .expect("token")
        .token
}

/// The chart installed with `values`; `helm uninstall` on drop.
struct Release {
    name: String,
    namespace: String,
}

impl Release {
    fn install(name: &str, namespace: &str, values: &[&str]) -> (Self, String) {
        let mut args = vec![
            "install",
            name,
            "charts/connectivity-operator",
            "--namespace",
            namespace,
            "--wait=false",
        ];
        for v in values {
            args.extend(["--set", v]);
        }
        let out = ok(&mut helm(&args));
        (
            Release {
                name: name.to_string(),
                namespace: namespace.to_string(),
            },
            out,
        )
    }

    /// The objects the chart rendered, as `kind/name` (namespace-less).
    fn objects(&self) -> Vec<(String, Option<String>, String)> {
        let manifest = ok(&mut helm(&[
            "get",
            "manifest",
            &self.name,
            "--namespace",
            &self.namespace,
        ]));
        serde_yaml::Deserializer::from_str(&manifest)
            .filter_map(|d| {
                let v: Value = serde::Deserialize::deserialize(d).ok()?;
                let kind = v["kind"].as_str()?.to_string();
                Some((
                    kind,
                    v["metadata"]["namespace"].as_str().map(str::to_string),
                    v["metadata"]["name"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    fn service_account(&self) -> String {
        self.objects()
            .into_iter()
            .find(|(kind, _, _)| kind == "ServiceAccount")
            .map(|(_, _, name)| name)
            .expect("the chart renders a ServiceAccount")
    }

    fn uninstall(self) {
        ok(&mut helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait",
        ]));
        std::mem::forget(self);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = output(&mut helm(&["uninstall", &self.name, "--namespace", &self.namespace]));
    }
}

/// The operator binary as its own process.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &Path, args: &[&str], identity: &str, dir: &Path) -> Self {
        let log = dir.join(format!("operator-{identity}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_connectivity-operator"))
            .arg("run")
            .args(["--metrics-addr", "127.0.0.1:0", "--pending-poll-interval", "1s"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the operator binary starts");
        Operator { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no Lease release.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- operator log {} ---\n{}", self.log.display(), self.log());
            let objects = output(&mut kubectl(&["get", "cpc,sp,csub", "-A", "-o", "wide"]));
            eprintln!("--- objects ---\n{}", String::from_utf8_lossy(&objects.stdout));
        }
    }
}

/// The chart installed with `values` in a fresh system namespace, and a kubeconfig holding a
/// token of its ServiceAccount: what an operator process of these tests runs as.
struct Installed {
    release: Release,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    system: TestNamespace,
}

impl Installed {
    async fn new(client: &Client, values: &[&str]) -> Self {
        let system = TestNamespace::new(client, "co-e2e-system").await;
        let dir = tempfile::tempdir().unwrap();
        let release_name = format!("co-{:06x}", rand::random::<u32>() & 0xffffff);
        let (release, _) = Release::install(&release_name, &system.name, values);
        let token = service_account_token(client, &system.name, &release.service_account()).await;
        let kubeconfig = kubeconfig_with_token(&token, dir.path());
        Installed {
            release,
            kubeconfig,
            dir,
            system,
        }
    }

    /// The operator binary with this installation's identity.
    fn operator(&self, args: &[&str], identity: &str) -> Operator {
        Operator::start(&self.kubeconfig, args, identity, self.dir.path())
    }
}

/// The example manifests of `dirs`, pointed at simulators in this process (as `apply --simulate`
/// does), moved into `namespace`.
async fn examples(dirs: &[&str], namespace: &str) -> (OfflineCluster, Vec<Value>) {
    let options = OfflineOptions {
        paths: dirs.iter().map(|d| repo().join(d)).collect(),
        simulate: true,
        emnify_sim: None,
        telenor_sim: Some(vendor_sim::telenor::TelenorConfig {
            async_delay: Duration::from_secs(1),
            ..Default::default()
        }),
        bics_sim: None,
    };
    let (cluster, manifests) = connectivity_operator::offline::prepare(&options).await.unwrap();
    let objects = manifests
        .into_iter()
        .map(|Manifest { object, .. }| {
            let mut o = json!({"apiVersion": object["apiVersion"], "kind": object["kind"], "metadata": {"name": object["metadata"]["name"], "namespace": namespace}});
            for key in ["spec", "data", "type"] {
                if !object[key].is_null() {
                    o[key] = object[key].clone();
                }
            }
            for key in ["annotations", "labels"] {
                if !object["metadata"][key].is_null() {
                    o["metadata"][key] = object["metadata"][key].clone();
                }
            }
            o
        })
        .collect();
    (cluster, objects)
}

/// Server-side apply of manifests as the Git side would.
async fn apply_all(client: &Client, objects: &[Value]) {
    for o in objects {
        let ns = o["metadata"]["namespace"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let pp = PatchParams::apply(GITOPS);
        let result = match o["kind"].as_str().unwrap() {
            "Secret" => Api::<Secret>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(o))
                .await
                .map(drop),
            "ProviderConfig" => Api::<ProviderConfig>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(o))
                .await
                .map(drop),
            "ServiceProfile" => Api::<ServiceProfile>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(o))
                .await
                .map(drop),
            "ConnectivitySubscription" => Api::<ConnectivitySubscription>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(o))
                .await
                .map(drop),
            other => panic!("unexpected kind {other}"),
        };
        result.unwrap_or_else(|e| panic!("apply {} {ns}/{name}: {e}", o["kind"]));
    }
}

fn ready(conds: &[connectivity_operator::crd::Condition]) -> bool {
    conditions::is_true(conds, READY)
}

async fn all_ready(client: &Client, ns: &str) -> bool {
    let pcs = Api::<ProviderConfig>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let sps = Api::<ServiceProfile>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let csubs = Api::<ConnectivitySubscription>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    pcs.items
        .iter()
        .all(|o| o.status.as_ref().is_some_and(|s| ready(&s.conditions)))
        && sps
            .items
            .iter()
            .all(|o| o.status.as_ref().is_some_and(|s| ready(&s.conditions)))
        && csubs
            .items
            .iter()
            .all(|o| o.status.as_ref().is_some_and(|s| ready(&s.conditions)))
}

// --- tests -----------------------------------------------------------------------------------------

/// Every CRD is accepted and Established; every example passes server-side dry run; one invalid
/// manifest per schema or CEL rule is rejected with a message naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn crds_are_accepted_examples_pass_and_invalid_manifests_name_the_field() {
    let client = admin().await;
    install_crds();
    let ns = TestNamespace::new(&client, "co-e2e-crds").await;
    // The examples name namespace `default`; a server-side dry run changes nothing there.
    for dir in [
        "examples/quickstart",
        "examples/subscriptions",
        "examples/bics",
        "examples/bics-rest",
    ] {
        ok(&mut kubectl(&["apply", "--dry-run=server", "-f", dir]));
    }
    // What `import` writes passes admission as it is, through its kustomization.yaml: every
    // vendor, from the embedded simulators (names, identities, settings, the CEL rules).
    let imported = tempfile::tempdir().unwrap();
    for (vendor, files) in [
        (
            "emnify",
            vec![
                "examples/quickstart/00-secret.yaml",
                "examples/quickstart/01-providerconfig.yaml",
            ],
        ),
        ("bics", vec!["examples/bics/bics.yaml"]),
        ("telenor", vec!["examples/subscriptions/telenor.yaml"]),
    ] {
        let out = imported.path().join(vendor);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_connectivity-operator"));
        cmd.arg("import").arg("--simulate").arg("--provider-config").arg(vendor);
        for f in files {
            cmd.arg("-f").arg(repo().join(f));
        }
        cmd.arg("-o").arg(&out).current_dir(repo());
        ok(&mut cmd);
        let applied = ok(&mut kubectl(&[
            "apply",
            "--dry-run=server",
            "-k",
            out.to_str().unwrap(),
        ]));
        assert!(applied.contains("created (server dry run)"), "{vendor}: {applied}");
    }
    // tests/bad-input/admission/*.yaml: each starts with `# expect: <text the error must contain>`.
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/bad-input/admission"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 100,
        "the admission corpus is there ({} cases)",
        cases.len()
    );
    for case in &cases {
        let text = std::fs::read_to_string(case).unwrap();
        let expected: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expected.is_empty(), "{} has no `# expect:` line", case.display());
        let out = output(&mut kubectl(&[
            "apply",
            "--dry-run=server",
            "-n",
            &ns.name,
            "-f",
            case.to_str().unwrap(),
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", case.display());
        for e in expected {
            assert!(
                stderr.contains(e),
                "{}: the error does not name `{e}`:\n{stderr}",
                case.display()
            );
        }
    }
    // Transition rules: IMSI and ICCID cannot change once set.
    let csub = |imsi: &str| {
        json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ConnectivitySubscription",
               "metadata": {"name": "immutable", "namespace": ns.name},
               "spec": {"providerConfigRef": {"name": "x"}, "imsi": imsi}})
    };
    let csubs: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), &ns.name);
    let pp = PatchParams::apply(GITOPS);
    csubs
        .patch("immutable", &pp, &Patch::Apply(csub("295050903090853")))
        .await
        .unwrap();
    let err = csubs
        .patch("immutable", &pp, &Patch::Apply(csub("295050903090854")))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.imsi") && err.contains("immutable"), "{err}");
}

/// `helm install` with default values, with `watchNamespaces` and with leader election: every
/// rendered object is accepted by the apiserver and exists; `helm uninstall` removes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn chart_installs_with_each_mode_and_uninstalls_cleanly() {
    let client = admin().await;
    install_crds();
    let ns = TestNamespace::new(&client, "co-e2e-chart").await;
    let watched = TestNamespace::new(&client, "co-e2e-watched").await;
    let watch = format!("watchNamespaces={{{}}}", watched.name);
    let variants: [(&str, Vec<&str>); 3] = [
        ("default", vec![]),
        ("namespaced", vec![watch.as_str()]),
        ("ha", vec!["leaderElection.enabled=true", "replicaCount=2"]),
    ];
    for (suffix, values) in variants {
        let release_name = format!("co-{suffix}-{:06x}", rand::random::<u32>() & 0xffffff);
        let (release, _) = Release::install(&release_name, &ns.name, &values);
        let objects = release.objects();
        assert!(!objects.is_empty());
        for (kind, namespace, name) in &objects {
            let mut args = vec!["get", kind.as_str(), name.as_str()];
            if let Some(n) = namespace {
                args.extend(["-n", n.as_str()]);
            } else if kind != "ClusterRole" && kind != "ClusterRoleBinding" {
                args.extend(["-n", ns.name.as_str()]);
            }
            ok(&mut kubectl(&args));
        }
        let kinds: Vec<&str> = objects.iter().map(|(k, _, _)| k.as_str()).collect();
        match suffix {
            "namespaced" => {
                assert!(
                    !kinds.contains(&"ClusterRole"),
                    "namespaced mode has no cluster-wide rules"
                );
                assert!(kinds.contains(&"Role") && kinds.contains(&"RoleBinding"));
            }
            "ha" => assert!(kinds.contains(&"Role"), "leader election has its Lease Role"),
            _ => assert!(kinds.contains(&"ClusterRole")),
        }
        release.uninstall();
        for (kind, namespace, name) in &objects {
            let n = namespace.as_deref().unwrap_or(&ns.name);
            let out = ok(&mut kubectl(&[
                "get",
                kind,
                name,
                "-n",
                n,
                "--ignore-not-found",
                "-o",
                "name",
            ]));
            assert!(out.trim().is_empty(), "{kind} {name} is left after helm uninstall");
        }
    }
}

/// The operator as users run it, on every vendor: examples reach Ready=True; status, conditions,
/// Events and printer columns are right; the operator's status writes and the Git side's spec
/// writes have separate field managers; both deletion policies release their finalizers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn operator_with_the_chart_rbac_reconciles_every_vendor() {
    let client = admin().await;
    install_crds();
    let installed = Installed::new(&client, &[]).await;
    let ns = TestNamespace::new(&client, "co-e2e-apps").await;
    let operator = installed.operator(&[], "cluster-wide");

    let (sims, objects) = examples(
        &[
            "examples/quickstart",
            "examples/subscriptions",
            "examples/bics",
            "examples/bics-rest",
        ],
        &ns.name,
    )
    .await;
    apply_all(&client, &objects).await;
    eventually("every example Ready=True", Duration::from_secs(120), || {
        all_ready(&client, &ns.name)
    })
    .await;

    check_status_and_events(&client, &ns.name, &operator).await;
    check_printer_columns(&ns.name);
    check_field_managers(&client, &ns.name).await;
    check_deletion_policies(&client, &ns.name, &sims).await;
    drop(operator);
    installed.release.uninstall();
}

/// The same with the chart in namespaced mode: Roles only, the operator watching one namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn namespaced_operator_with_roles_only() {
    let client = admin().await;
    install_crds();
    let ns = TestNamespace::new(&client, "co-e2e-apps").await;
    let other = TestNamespace::new(&client, "co-e2e-other").await;
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let installed = Installed::new(&client, &[watch.as_str()]).await;
    let operator = installed.operator(&["--namespace", &ns.name], "namespaced");

    let (_sims, objects) = examples(&["examples/quickstart"], &ns.name).await;
    apply_all(&client, &objects).await;
    let (_other_sims, others) = examples(&["examples/quickstart"], &other.name).await;
    apply_all(&client, &others).await;
    eventually("the watched namespace Ready=True", Duration::from_secs(60), || {
        all_ready(&client, &ns.name)
    })
    .await;
    // The namespace it does not watch stays untouched (and it has no rights there anyway).
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), &other.name);
    for sp in sps.list(&ListParams::default()).await.unwrap() {
        assert!(
            sp.status.is_none(),
            "{} in an unwatched namespace got a status",
            sp.name_any()
        );
        assert!(sp.finalizers().is_empty());
    }
    let log = operator.log();
    assert!(
        !log.contains("Forbidden") && !log.contains("forbidden"),
        "RBAC denials:\n{log}"
    );
    // Deleting releases the finalizers.
    ok(&mut kubectl(&[
        "delete",
        "sp,cpc",
        "--all",
        "-n",
        &ns.name,
        "--timeout=60s",
    ]));
    drop(operator);
    installed.release.uninstall();
}

async fn check_status_and_events(client: &Client, ns: &str, operator: &Operator) {
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), ns);
    for sp in sps.list(&ListParams::default()).await.unwrap() {
        let status = sp.status.clone().unwrap();
        assert!(status.id.is_some(), "{}: status.id", sp.name_any());
        assert_eq!(status.observed_generation, sp.metadata.generation, "{}", sp.name_any());
        for t in [READY, SYNCED] {
            let c = conditions::find(&status.conditions, t).unwrap_or_else(|| panic!("{} has {t}", sp.name_any()));
            assert_eq!(c.observed_generation, sp.metadata.generation);
            assert!(!c.reason.is_empty());
        }
        assert!(
            sp.finalizers()
                .iter()
                .any(|f| f == connectivity_operator::crd::FINALIZER)
        );
    }
    let csubs: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), ns);
    for c in csubs.list(&ListParams::default()).await.unwrap() {
        let status = c.status.clone().unwrap();
        assert!(status.mode.is_some(), "{}: status.mode", c.name_any());
    }
    // Events through events.k8s.io/v1, accepted by the real validation, about our objects.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items.iter().any(
            |e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ServiceProfile")
                && e.reporting_controller.as_deref() == Some("connectivity-operator")
        ),
        "Events about ServiceProfiles from connectivity-operator:\n{:?}\nlog:\n{}",
        list.items.iter().map(|e| (&e.reason, &e.note)).collect::<Vec<_>>(),
        operator.log()
    );
    assert!(
        !operator.log().contains("failed to publish event"),
        "{}",
        operator.log()
    );
}

fn check_printer_columns(ns: &str) {
    let out = ok(&mut kubectl(&["get", "sp,csub,cpc", "-n", ns]));
    let sp_header = out
        .lines()
        .find(|l| l.starts_with("NAME") && l.contains("USED"))
        .unwrap_or_else(|| panic!("{out}"));
    for col in ["ID", "USED", "READY", "SYNCED", "AGE"] {
        assert!(sp_header.contains(col), "sp columns: {sp_header}");
    }
    let csub_header = out
        .lines()
        .find(|l| l.starts_with("NAME") && l.contains("ICCID"))
        .unwrap_or_else(|| panic!("{out}"));
    for col in ["ICCID", "MODE", "DESIRED", "PROFILE", "READY"] {
        assert!(csub_header.contains(col), "csub columns: {csub_header}");
    }
    let lpwa = out
        .lines()
        .find(|l| l.contains("serviceprofile.connectivity-operator.dev/lpwa-sensors"))
        .unwrap();
    let cells: Vec<&str> = lpwa.split_whitespace().collect();
    assert!(cells[1].chars().all(|c| c.is_ascii_digit()), "ID column: {lpwa}");
    assert!(cells.contains(&"True"), "Ready column: {lpwa}");
}

/// Status is written by the operator's field manager on the status subresource, spec by the Git
/// side; a second apply of the spec changes it without conflicts and without touching status.
async fn check_field_managers(client: &Client, ns: &str) {
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), ns);
    let sp = sps.get("lpwa-sensors").await.unwrap();
    let managers = sp.metadata.managed_fields.clone().unwrap();
    let operator = managers
        .iter()
        .find(|m| {
            m.manager.as_deref() == Some(connectivity_operator::controller::FIELD_MANAGER)
                && m.subresource.as_deref() == Some("status")
        })
        .expect("the operator's status manager");
    let fields = serde_json::to_string(&operator.fields_v1).unwrap();
    assert!(fields.contains("f:status") && !fields.contains("f:spec"), "{fields}");
    let git = managers
        .iter()
        .find(|m| m.manager.as_deref() == Some(GITOPS))
        .expect("the Git side's manager");
    let fields = serde_json::to_string(&git.fields_v1).unwrap();
    assert!(fields.contains("f:spec") && !fields.contains("f:status"), "{fields}");
    // The Git side changes the spec with `kubectl apply --server-side`, as a user or Argo CD
    // would: no conflict with the operator's fields, and the operator follows.
    let mut spec = serde_json::to_value(&sp.spec).unwrap();
    spec["description"] = json!("changed in Git");
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        manifest.path(),
        serde_json::to_string(
            &json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile",
                                       "metadata": {"name": "lpwa-sensors", "namespace": ns}, "spec": spec}),
        )
        .unwrap(),
    )
    .unwrap();
    ok(&mut kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        GITOPS,
        "-f",
        manifest.path().to_str().unwrap(),
    ]));
    eventually("the change reconciled", Duration::from_secs(60), || async {
        let sp = sps.get("lpwa-sensors").await.unwrap();
        sp.status.as_ref().is_some_and(|s| {
            s.observed_generation == sp.metadata.generation
                && ready(&s.conditions)
                && s.observed.as_ref().and_then(|o| o.description.as_deref()) == Some("changed in Git")
        })
    })
    .await;
}

async fn check_deletion_policies(client: &Client, ns: &str, sims: &OfflineCluster) {
    let emnify = &sims.simulators.emnify.as_ref().unwrap().sim;
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), ns);
    let id = |name: &str| {
        let sps = sps.clone();
        let name = name.to_string();
        async move {
            sps.get(&name)
                .await
                .unwrap()
                .status
                .unwrap()
                .id
                .unwrap()
                .parse::<i64>()
                .unwrap()
        }
    };
    // Orphan: the vendor profile stays; Delete: it goes.
    sps.patch(
        "lpwa-sensors",
        &PatchParams::apply("e2e-policy"),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
    )
    .await
    .unwrap();
    let orphan = id("lpwa-sensors").await;
    let deleted = id("fleet-trackers").await;
    // Subscriptions first (they use the profiles), then the profiles. meter-0001 with
    // `Deactivate`: Telenor deactivates the SIM; the others (default `Orphan`) stay as they are.
    let csubs: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), ns);
    let telenor = &sims.simulators.telenor.as_ref().unwrap().sim;
    let imsi = |name: &str| {
        let csubs = csubs.clone();
        let name = name.to_string();
        async move { csubs.get(&name).await.unwrap().spec.imsi.unwrap() }
    };
    let (deactivated, orphaned) = (imsi("meter-0001").await, imsi("meter-0002").await);
    csubs
        .patch(
            "meter-0001",
            &PatchParams::apply("e2e-policy"),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Deactivate"}})),
        )
        .await
        .unwrap();
    eventually("Deactivate policy reconciled", Duration::from_secs(30), || async {
        let c = csubs.get("meter-0001").await.unwrap();
        c.status.is_some_and(|s| s.observed_generation == c.metadata.generation)
    })
    .await;
    csubs
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    eventually("subscriptions gone", Duration::from_secs(60), || async {
        csubs.list(&ListParams::default()).await.unwrap().items.is_empty()
    })
    .await;
    eventually(
        "the Deactivate policy deactivated the SIM",
        Duration::from_secs(30),
        || async {
            telenor
                .subscription(&deactivated)
                .is_some_and(|s| s["mode"] == "DEACTIVATED")
        },
    )
    .await;
    assert_eq!(
        telenor.subscription(&orphaned).unwrap()["mode"],
        "PAUSED",
        "Orphan leaves the SIM"
    );
    // Wait until the Orphan policy is observed (generation) before deleting.
    eventually("Orphan policy reconciled", Duration::from_secs(30), || async {
        let sp = sps.get("lpwa-sensors").await.unwrap();
        sp.status
            .is_some_and(|s| s.observed_generation == sp.metadata.generation)
    })
    .await;
    for name in ["lpwa-sensors", "fleet-trackers"] {
        sps.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually(
        "profiles gone (finalizers released)",
        Duration::from_secs(60),
        || async {
            sps.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .all(|s| s.name_any() != "lpwa-sensors" && s.name_any() != "fleet-trackers")
        },
    )
    .await;
    assert!(
        emnify.service_profile(orphan).is_some(),
        "Orphan leaves the vendor profile"
    );
    assert!(
        emnify.service_profile(deleted).is_none(),
        "Delete removes the vendor profile"
    );
    // `trackers` is still used by the SIMs' endpoints at emnify (their subscriptions were
    // orphaned): its Delete waits and says why; switched to Orphan, it goes.
    sps.delete("trackers", &DeleteParams::default()).await.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    eventually("an InUse event for trackers", Duration::from_secs(30), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InUse")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("trackers")
            })
    })
    .await;
    assert!(sps.get_opt("trackers").await.unwrap().is_some(), "kept while in use");
    // `bics-meters` (BICS REST account) is in use the same way.
    for name in ["trackers", "bics-meters"] {
        sps.patch(
            name,
            &PatchParams::apply("e2e-policy"),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
        )
        .await
        .unwrap();
    }
    // Everything else goes too, finalizers released (the credentials Secrets' included).
    ok(&mut kubectl(&["delete", "sp,cpc", "--all", "-n", ns, "--timeout=60s"]));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for secret in secrets.list(&ListParams::default()).await.unwrap() {
        assert!(
            secret.finalizers().is_empty(),
            "{} keeps {:?}",
            secret.name_any(),
            secret.finalizers()
        );
    }
}

/// Deleting a namespace with a ProviderConfig, its Secret and ServiceProfiles completes within a
/// minute, and the deletion policy decides what happens at the vendor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn namespace_deletion_completes_and_the_deletion_policy_holds() {
    let client = admin().await;
    install_crds();
    let installed = Installed::new(&client, &[]).await;
    let ns = TestNamespace::new(&client, "co-e2e-doomed").await;
    let operator = installed.operator(&[], "ns-deletion");
    let (sims, mut objects) = examples(&["examples/quickstart"], &ns.name).await;
    for o in &mut objects {
        if o["metadata"]["name"] == "lpwa-sensors" {
            o["spec"]["deletionPolicy"] = json!("Orphan");
        }
    }
    apply_all(&client, &objects).await;
    eventually("Ready=True", Duration::from_secs(60), || all_ready(&client, &ns.name)).await;
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), &ns.name);
    let id = |sp: ServiceProfile| sp.status.unwrap().id.unwrap().parse::<i64>().unwrap();
    let orphan = id(sps.get("lpwa-sensors").await.unwrap());
    let deleted = id(sps.get("fleet-trackers").await.unwrap());

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns.name, &DeleteParams::default()).await.unwrap();
    eventually("the namespace is gone", Duration::from_secs(60), || async {
        namespaces.get_opt(&ns.name).await.unwrap().is_none()
    })
    .await;
    let emnify = &sims.simulators.emnify.as_ref().unwrap().sim;
    assert!(
        emnify.service_profile(orphan).is_some(),
        "Orphan leaves the vendor profile"
    );
    assert!(
        emnify.service_profile(deleted).is_none(),
        "Delete removes the vendor profile"
    );
    drop(operator);
    installed.release.uninstall();
}

/// Two operator processes on one Lease: one reconciles; SIGKILL it and the other takes over
/// within the lease duration; a second taker of a held Lease is refused by the apiserver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: bash scripts/control-plane.sh run -- cargo test --test e2e_cluster -- --ignored --test-threads=1"]
async fn leader_election_one_leader_takeover_and_a_second_taker_refused() {
    let client = admin().await;
    install_crds();
    let installed = Installed::new(&client, &["leaderElection.enabled=true"]).await;
    let system = &installed.system;
    let ns = TestNamespace::new(&client, "co-e2e-ha").await;
    let lease_name = "connectivity-operator";
    let args = [
        "--leader-election",
        "--leader-election-namespace",
        system.name.as_str(),
        "--leader-election-lease",
        lease_name,
    ];
    let mut a = installed.operator(&args, "replica-a");
    let mut b = installed.operator(&args, "replica-b");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &system.name);
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt(lease_name)
                .await
                .unwrap()
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity)
        }
    };
    eventually("a leader", Duration::from_secs(30), || async {
        holder().await.is_some()
    })
    .await;
    let first = holder().await.unwrap();

    let (_sims, objects) = examples(&["examples/quickstart"], &ns.name).await;
    apply_all(&client, &objects).await;
    eventually("Ready=True under the leader", Duration::from_secs(60), || {
        all_ready(&client, &ns.name)
    })
    .await;
    let (leader, standby) = if first == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leader.log().contains("acquired leadership"));
    assert!(
        !standby.log().contains("acquired leadership"),
        "two leaders:\n{}",
        standby.log()
    );
    assert!(
        !standby.log().contains("reconcil"),
        "the standby reconciled:\n{}",
        standby.log()
    );
    // Every Event so far was recorded by the leader (the reporting instance is the replica's
    // identity): the standby made no reconcile that reached the API.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let reporters: std::collections::BTreeSet<Option<String>> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.reporting_instance)
        .collect();
    assert_eq!(reporters, [Some(first.clone())].into(), "only the leader reconciled");

    // Each replica holds the Lease under its own field manager: a second taker that applies
    // holderIdentity without force is refused while the holder owns it.
    let lease = leases.get(lease_name).await.unwrap();
    let managers: Vec<String> = lease
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m.ends_with(&first)),
        "per-replica field manager: {managers:?}"
    );
    let taken = leases
        .patch(
            lease_name,
            &PatchParams::apply("connectivity-operator-intruder"),
            &Patch::Apply(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "spec": {"holderIdentity": "intruder"}})),
        )
        .await;
    match taken {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        other => panic!("a second taker was not refused: {other:?}"),
    }

    // SIGKILL the leader: the standby takes over within the lease duration (15 s) and reconciles.
    leader.kill();
    let killed_at = Instant::now();
    eventually("the standby takes over", Duration::from_secs(30), || async {
        holder().await.is_some_and(|h| h != first)
    })
    .await;
    let takeover = killed_at.elapsed();
    assert!(takeover <= Duration::from_secs(20), "took over after {takeover:?}");
    let sps: Api<ServiceProfile> = Api::namespaced(client.clone(), &ns.name);
    let mut spec = serde_json::to_value(sps.get("lpwa-sensors").await.unwrap().spec).unwrap();
    spec["description"] = json!("after the takeover");
    sps.patch(
        "lpwa-sensors",
        &PatchParams::apply(GITOPS),
        &Patch::Apply(
            json!({"apiVersion": "connectivity-operator.dev/v1alpha1", "kind": "ServiceProfile",
                             "metadata": {"name": "lpwa-sensors"}, "spec": spec}),
        ),
    )
    .await
    .unwrap();
    eventually("the new leader reconciles", Duration::from_secs(60), || async {
        sps.get("lpwa-sensors")
            .await
            .unwrap()
            .status
            .and_then(|s| s.observed)
            .and_then(|o| o.description)
            .as_deref()
            == Some("after the takeover")
    })
    .await;
    assert!(standby.log().contains("acquired leadership"));
    ok(&mut kubectl(&[
        "delete",
        "sp,cpc",
        "--all",
        "-n",
        &ns.name,
        "--timeout=60s",
    ]));
    installed.release.uninstall();
}

//! Offline mode: `apply -f` and `plan -f` run the same reconcile pipeline on manifest files,
//! without a cluster. The manifests are loaded into an in-memory Kubernetes API server
//! ([`memory_apiserver`]) and a real `kube::Client` talks to it, so every step (finalizer, status
//! apply, events) takes the code path it takes in a cluster. `--simulate` starts the embedded
//! vendor simulators and points the ProviderConfigs (and their Secrets) at them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kube::api::Api;
use kube::{Client, ResourceExt};
use memory_apiserver::{MemoryApiServer, ResourceType};
use serde_json::{Value, json};

use crate::controller::{Context, Settings, managed, provider_config, service_profile, subscription};
use crate::crd::conditions::{self, READY, SYNCED};
use crate::crd::{ConnectivitySubscription, ProviderConfig, ServiceProfile, VendorApi};
use crate::metrics::Metrics;
use serde::Deserialize as _;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to parse {path}: {source}")]
    Parse { path: PathBuf, source: serde_yaml::Error },
    #[error("failed to parse {path} as JSON: {source}")]
    ParseJson { path: PathBuf, source: serde_json::Error },
    #[error("{path}: document {index} is not a Kubernetes object (no apiVersion/kind)")]
    NotAnObject { path: PathBuf, index: usize },
    #[error("{path}: document {index} is a List without an `items` list")]
    ListWithoutItems { path: PathBuf, index: usize },
    #[error("{path}: document {index}, item {item} of its List, is not a Kubernetes object (no apiVersion/kind)")]
    ListItemNotAnObject { path: PathBuf, index: usize, item: usize },
    #[error("{what} {name} is invalid: {field}: {source}")]
    Invalid {
        what: String,
        name: String,
        /// Where in the object, e.g. `spec.imsi` (`.` for the object itself).
        field: String,
        source: serde_json::Error,
    },
    #[error("{what} {name} is invalid: {message}")]
    Rejected {
        what: String,
        name: String,
        message: String,
    },
    #[error("failed to load {what} {name} into the in-memory API server: {message}")]
    Load {
        what: String,
        name: String,
        message: String,
    },
    #[error("failed to start the {vendor} simulator: {source}")]
    Simulator { vendor: String, source: std::io::Error },
    #[error("failed to read back {what} {name}: {source}")]
    ReadBack {
        what: String,
        name: String,
        source: kube::Error,
    },
    /// `import`: which ProviderConfig to import from is not clear from the files.
    #[error("{0}")]
    Choose(String),
    #[error("failed to resolve ProviderConfig {name}: {source}")]
    Resolve {
        name: String,
        source: Box<crate::controller::resolve::ResolveError>,
    },
    #[error("{0}")]
    Vendor(Box<crate::backend::BackendError>),
    #[error("failed to write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("failed to render YAML: {0}")]
    Render(#[from] serde_yaml::Error),
}

impl OfflineError {
    /// The exit code of `apply` / `plan` for this error (README, "Offline mode"): 3 when the
    /// input cannot be used as it is (unreadable, not YAML or JSON, not a Kubernetes object, or an
    /// object the API server would refuse), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Read { .. }
            | Self::Parse { .. }
            | Self::ParseJson { .. }
            | Self::NotAnObject { .. }
            | Self::ListWithoutItems { .. }
            | Self::ListItemNotAnObject { .. }
            | Self::Invalid { .. }
            | Self::Rejected { .. }
            | Self::Load { .. }
            | Self::Choose(_)
            | Self::Resolve { .. } => EXIT_BAD_INPUT,
            Self::Simulator { .. } | Self::ReadBack { .. } | Self::Vendor(_) | Self::Output(_) | Self::Render(_) => 1,
        }
    }
}

/// `apply` / `plan` exit code for input that cannot be used (see [`OfflineError::exit_code`]).
pub const EXIT_BAD_INPUT: i32 = 3;

/// A manifest with the file it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: PathBuf,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> String {
        self.object["metadata"]["name"].as_str().unwrap_or("").to_string()
    }
    /// `default` when the manifest names none.
    pub fn namespace(&self) -> String {
        self.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    }
}

/// Read every `.yaml`, `.yml` and `.json` file under the paths (folders recursively, in name
/// order), splitting multi-document files and `List` objects.
pub fn load_manifests(paths: &[PathBuf]) -> Result<Vec<Manifest>, OfflineError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| OfflineError::Read {
            path: file.clone(),
            source,
        })?;
        out.extend(parse_manifests(&file, &text)?);
    }
    Ok(out)
}

/// The manifests in one file's text (`file` names it in errors and decides JSON or YAML by its
/// extension): every document, `List` items unpacked; empty documents skipped.
pub fn parse_manifests(file: &Path, text: &str) -> Result<Vec<Manifest>, OfflineError> {
    let mut out = Vec::new();
    // JSON files strictly as JSON (as kubectl reads them); YAML otherwise. Both refuse a key
    // twice in one mapping rather than keep either value.
    let json = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents: Vec<Value> = if json {
        serde_json::Deserializer::from_str(text)
            .into_iter::<StrictValue>()
            .map(|d| d.map(|d| d.0))
            .collect::<Result<_, _>>()
            .map_err(|source| OfflineError::ParseJson {
                path: file.to_path_buf(),
                source,
            })?
    } else {
        serde_yaml::Deserializer::from_str(text)
            .map(|doc| StrictValue::deserialize(doc).map(|d| d.0))
            .collect::<Result<_, _>>()
            .map_err(|source| OfflineError::Parse {
                path: file.to_path_buf(),
                source,
            })?
    };
    for (index, value) in documents.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        if !is_object(&value) {
            return Err(OfflineError::NotAnObject {
                path: file.to_path_buf(),
                index: index + 1,
            });
        }
        if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
            let Some(items) = value.get("items").and_then(Value::as_array) else {
                return Err(OfflineError::ListWithoutItems {
                    path: file.to_path_buf(),
                    index: index + 1,
                });
            };
            for (item, object) in items.iter().enumerate() {
                if !is_object(object) {
                    return Err(OfflineError::ListItemNotAnObject {
                        path: file.to_path_buf(),
                        index: index + 1,
                        item: item + 1,
                    });
                }
                out.push(Manifest {
                    source: file.to_path_buf(),
                    object: object.clone(),
                });
            }
            continue;
        }
        out.push(Manifest {
            source: file.to_path_buf(),
            object: value,
        });
    }
    Ok(out)
}

/// A JSON value deserialized from YAML or JSON that refuses a key twice in one mapping (serde's
/// maps keep the last value silently; kubectl refuses such a file as ambiguous).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON form: null, as serde_json does.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(StrictValue(key)) = map.next_key()? {
            let key = match key {
                Value::String(s) => s,
                // A list or mapping as a key: no Kubernetes object has one, and rendering nested
                // ones as text doubled in length with every level (found by the manifests fuzz
                // target: 70 levels of `{{{...}}}` kept a parse busy for minutes).
                Value::Array(_) | Value::Object(_) => {
                    return Err(serde::de::Error::custom(
                        "a mapping key is itself a list or mapping (keys of Kubernetes objects are text)",
                    ));
                }
                other => other.to_string(),
            };
            let StrictValue(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "key `{key}` appears twice in one mapping"
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// A mapping with string `apiVersion` and `kind`.
fn is_object(value: &Value) -> bool {
    value.get("apiVersion").is_some_and(Value::is_string) && value.get("kind").is_some_and(Value::is_string)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), OfflineError> {
    let meta = std::fs::metadata(path).map_err(|source| OfflineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| OfflineError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// An in-memory cluster holding the manifests, with a client on it.
pub struct OfflineCluster {
    pub server: MemoryApiServer,
    pub client: Client,
    /// Simulators started for `--simulate` (kept alive for the run).
    pub simulators: Simulators,
}

/// The embedded simulators an offline run started.
#[derive(Default)]
pub struct Simulators {
    pub emnify: Option<vendor_sim::emnify::RunningSim>,
    pub telenor: Option<vendor_sim::telenor::RunningSim>,
    pub bics: Option<vendor_sim::bics::RunningSim>,
}

/// Register our kinds on a fresh in-memory API server.
pub fn memory_server() -> MemoryApiServer {
    let server = MemoryApiServer::new();
    for crd in crate::crd::all_crds() {
        let names = &crd.spec.names;
        server.register(ResourceType::new(
            crd.spec.group.clone(),
            crd.spec.versions[0].name.clone(),
            names.kind.clone(),
            names.plural.clone(),
            crd.spec.scope == "Namespaced",
            true,
        ));
    }
    server
}

/// Options of `apply` and `plan`.
#[derive(Debug, Clone, Default)]
pub struct OfflineOptions {
    pub paths: Vec<PathBuf>,
    /// Start the embedded simulators and point every ProviderConfig at them.
    pub simulate: bool,
    /// Simulator settings for `--simulate`.
    pub emnify_sim: Option<vendor_sim::emnify::EmnifyConfig>,
    pub telenor_sim: Option<vendor_sim::telenor::TelenorConfig>,
    pub bics_sim: Option<vendor_sim::bics::BicsConfig>,
}

/// Load the manifests into an in-memory cluster (with simulators when asked).
pub async fn prepare(options: &OfflineOptions) -> Result<(OfflineCluster, Vec<Manifest>), OfflineError> {
    let mut manifests = load_manifests(&options.paths)?;
    let mut kept = Vec::new();
    for m in manifests.drain(..) {
        let ours = m.api_version() == crate::crd::API_VERSION
            && matches!(
                m.kind(),
                "ProviderConfig" | "ServiceProfile" | "ConnectivitySubscription"
            );
        let secret = m.api_version() == "v1" && m.kind() == "Secret";
        if ours || secret {
            kept.push(m);
        } else {
            eprintln!(
                "# skipping {} {} from {} (not handled offline)",
                m.kind(),
                m.name(),
                m.source.display()
            );
        }
    }
    for m in &mut kept {
        prepare_object(m)?;
    }
    let mut simulators = Simulators::default();
    if options.simulate {
        let uses = |kept: &[Manifest], api: VendorApi| kept.iter().any(|m| api_of(m) == Some(api));
        let (emnify, telenor, bics) = (
            uses(&kept, VendorApi::EmnifyRest),
            uses(&kept, VendorApi::Telenor),
            uses(&kept, VendorApi::BicsRpc),
        );
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        if emnify {
            let config = options.emnify_sim.clone().unwrap_or_default();
            let sim = vendor_sim::emnify::EmnifySim::new(config)
                .serve(local)
                .await
                .map_err(|source| OfflineError::Simulator {
                    vendor: "emnify".into(),
                    source,
                })?;
            let token = sim.credentials()["application_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            point_at(&mut kept, VendorApi::EmnifyRest, &sim.url, json!({}), |key| {
                vec![(key.unwrap_or("applicationToken").to_string(), token.clone())]
            });
            eprintln!("# --simulate: emnify simulator at {}", sim.url);
            simulators.emnify = Some(sim);
        }
        if bics {
            let config = options.bics_sim.clone().unwrap_or_default();
            let sim = vendor_sim::bics::BicsSim::new(config)
                .serve(local)
                .await
                .map_err(|source| OfflineError::Simulator {
                    vendor: "bicsSft".into(),
                    source,
                })?;
            let creds = sim.credentials();
            let user = creds["username"].as_str().unwrap_or_default().to_string();
            let password = creds["password"].as_str().unwrap_or_default().to_string();
            point_at(&mut kept, VendorApi::BicsRpc, &sim.url, json!({}), |key| {
                vec![
                    ("username".to_string(), user.clone()),
                    (key.unwrap_or("password").to_string(), password.clone()),
                ]
            });
            eprintln!("# --simulate: BICS SIM for Things simulator at {}", sim.url);
            simulators.bics = Some(sim);
        }
        if telenor {
            let config = options.telenor_sim.clone().unwrap_or_default();
            let sim = vendor_sim::telenor::TelenorSim::new(config)
                .serve(local)
                .await
                .map_err(|source| OfflineError::Simulator {
                    vendor: "telenorIotConnect".into(),
                    source,
                })?;
            let creds = sim.credentials();
            let id = creds["client_id"].as_str().unwrap_or_default().to_string();
            let secret = creds["client_secret"].as_str().unwrap_or_default().to_string();
            let extra = json!({"telenorIotConnect": {"tokenUrl": sim.token_url}});
            point_at(&mut kept, VendorApi::Telenor, &sim.url, extra, |key| {
                vec![
                    ("clientId".to_string(), id.clone()),
                    (key.unwrap_or("clientSecret").to_string(), secret.clone()),
                ]
            });
            eprintln!("# --simulate: Telenor IoT Connect simulator at {}", sim.url);
            simulators.telenor = Some(sim);
        }
    }
    let server = memory_server();
    for m in &kept {
        server.insert(m.object.clone()).map_err(|e| OfflineError::Load {
            what: m.kind().to_string(),
            name: m.name(),
            message: e.to_string(),
        })?;
    }
    crate::install_crypto_provider();
    let client = Client::new(server.clone(), "default");
    Ok((
        OfflineCluster {
            server,
            client,
            simulators,
        },
        kept,
    ))
}

/// The API a ProviderConfig manifest's account uses (BICS accounts on the REST API are served by
/// the emnify simulator: it is the same API).
fn api_of(m: &Manifest) -> Option<VendorApi> {
    if m.kind() != "ProviderConfig" {
        return None;
    }
    serde_json::from_value::<crate::crd::ProviderConfigSpec>(m.object["spec"].clone())
        .ok()
        .map(|spec| spec.api())
}

/// Point every ProviderConfig on `api` at a simulator: its endpoint (and `extra` spec fields),
/// and the credentials in its Secret (`credentials` gets the ProviderConfig's `key`).
fn point_at(
    kept: &mut [Manifest],
    api: VendorApi,
    url: &str,
    extra: Value,
    credentials: impl Fn(Option<&str>) -> Vec<(String, String)>,
) {
    let targets: Vec<(String, String, Option<String>)> = kept
        .iter_mut()
        .filter(|m| api_of(m) == Some(api))
        .map(|pc| {
            pc.object["spec"]["endpoint"] = json!(url);
            if let (Some(spec), Some(extra)) = (pc.object["spec"].as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            let r = &pc.object["spec"]["credentialsSecretRef"];
            (
                pc.namespace(),
                r["name"].as_str().unwrap_or_default().to_string(),
                r["key"].as_str().map(str::to_string),
            )
        })
        .collect();
    for (ns, secret_name, key) in targets {
        if let Some(secret) = kept
            .iter_mut()
            .find(|m| m.kind() == "Secret" && m.name() == secret_name && m.namespace() == ns)
        {
            let data: serde_json::Map<String, Value> = credentials(key.as_deref())
                .into_iter()
                .map(|(k, v)| (k, json!(base64::engine::general_purpose::STANDARD.encode(v))))
                .collect();
            secret.object["data"] = Value::Object(data);
        }
    }
}

/// Make a manifest look as the API server would store it: namespace filled, `stringData` folded
/// into `data`, our kinds checked against their types with schema defaults applied.
pub fn prepare_object(m: &mut Manifest) -> Result<(), OfflineError> {
    if !m.object["metadata"].is_object() || !m.object["metadata"]["name"].is_string() {
        return Err(OfflineError::Rejected {
            what: m.kind().to_string(),
            name: m.name(),
            message: format!("metadata must be a mapping with a name (in {})", m.source.display()),
        });
    }
    normalise(&mut m.object);
    validate(m)
}

/// Fill the namespace and fold `stringData` into `data`, as the API server does.
fn normalise(obj: &mut Value) {
    if obj["metadata"]["namespace"].is_null() {
        obj["metadata"]["namespace"] = json!("default");
    }
    if obj["kind"] == "Secret"
        && let Some(string_data) = obj.get("stringData").and_then(Value::as_object).cloned()
    {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data: BTreeMap<String, Value> = data.into_iter().collect();
        for (k, v) in string_data {
            let text = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
            data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
        }
        obj["data"] = json!(data);
        if let Some(map) = obj.as_object_mut() {
            map.remove("stringData");
        }
    }
}

/// Check our objects deserialize into the Rust types (the schema the API server would enforce)
/// and apply the schema defaults the API server would fill in.
fn validate(m: &mut Manifest) -> Result<(), OfflineError> {
    let invalid = |field: String, source| OfflineError::Invalid {
        what: m.kind().to_string(),
        name: m.name(),
        field,
        source,
    };
    // Into the Rust type, naming the field that does not fit.
    fn typed<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T, (String, serde_json::Error)> {
        serde_path_to_error::deserialize(object.clone()).map_err(|e| (e.path().to_string(), e.into_inner()))
    }
    match m.kind() {
        "ProviderConfig" if m.api_version() == crate::crd::API_VERSION => {
            let pc: ProviderConfig = typed(&m.object).map_err(|(f, e)| invalid(f, e))?;
            m.object["spec"] = serde_json::to_value(&pc.spec).map_err(|e| invalid("spec".into(), e))?;
        }
        "ServiceProfile" => {
            let sp: ServiceProfile = typed(&m.object).map_err(|(f, e)| invalid(f, e))?;
            m.object["spec"] = serde_json::to_value(&sp.spec).map_err(|e| invalid("spec".into(), e))?;
        }
        "ConnectivitySubscription" => {
            let c: ConnectivitySubscription = typed(&m.object).map_err(|(f, e)| invalid(f, e))?;
            if c.spec.imsi.is_none() && c.spec.iccid.is_none() {
                return Err(OfflineError::Rejected {
                    what: m.kind().to_string(),
                    name: m.name(),
                    message: "set spec.imsi or spec.iccid (or both)".into(),
                });
            }
            m.object["spec"] = serde_json::to_value(&c.spec).map_err(|e| invalid("spec".into(), e))?;
        }
        _ => {}
    }
    Ok(())
}

/// The pipeline's context on the in-memory API server, with the subscriptions as a controller's
/// cache would hold them, so that two naming one SIM are found here as in a cluster (the specs do
/// not change during a run).
async fn offline_context(client: &Client) -> Result<Context, OfflineError> {
    let ctx = Context::new(client.clone(), Metrics::new(), offline_settings());
    let listed = Api::<ConnectivitySubscription>::all(client.clone())
        .list(&Default::default())
        .await
        .map_err(|source| OfflineError::ReadBack {
            what: "ConnectivitySubscription".into(),
            name: "(all)".into(),
            source,
        })?;
    let (store, mut writer) = kube::runtime::reflector::store();
    for csub in listed.items {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(csub));
    }
    ctx.claims.add_scope(store, tokio::sync::watch::channel(true).1);
    Ok(ctx)
}

fn offline_settings() -> Settings {
    Settings {
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        pending_poll_interval: Duration::from_millis(500),
        // Objects are driven one at a time here: nothing to batch, and a queued write's answer
        // would arrive after `drive` has moved on.
        bulk_writes: false,
        ..Settings::default()
    }
}

/// How many times one object is reconciled at most in an offline run (the first pass adds the
/// finalizer; retryable errors get a few more, with backoff).
const MAX_PASSES: usize = 6;

/// How long an offline run waits for asynchronous vendor changes (e.g. Telenor mode changes).
const MAX_PENDING_WAIT: Duration = Duration::from_secs(60);

/// `apply`: reconcile every object, print each with its status as YAML. Returns the exit code:
/// 0 when every object is Synced, 1 otherwise.
pub async fn apply(options: &OfflineOptions, out: &mut impl Write) -> Result<i32, OfflineError> {
    let run = OfflineRun::start(options).await?;
    run.reconcile(|_| true).await?;
    run.report(out)
}

/// An offline run: the manifests loaded into the in-memory cluster, and the operator's context.
/// `apply` is `start`, `reconcile` of everything, `report`; tests reconcile in steps (e.g. to
/// count the vendor calls one object costs: `ctx.metrics.vendor_request_total()`).
pub struct OfflineRun {
    pub cluster: OfflineCluster,
    pub manifests: Vec<Manifest>,
    pub ctx: Arc<Context>,
}

impl OfflineRun {
    pub async fn start(options: &OfflineOptions) -> Result<OfflineRun, OfflineError> {
        let (cluster, manifests) = prepare(options).await?;
        let ctx = Arc::new(offline_context(&cluster.client).await?);
        Ok(OfflineRun {
            cluster,
            manifests,
            ctx,
        })
    }

    /// Reconcile the objects `which` selects, ProviderConfigs first, then ServiceProfiles, then
    /// ConnectivitySubscriptions, each until its status reflects its generation or it fails for good.
    pub async fn reconcile(&self, which: impl Fn(&Manifest) -> bool) -> Result<(), OfflineError> {
        let (client, ctx) = (&self.cluster.client, &self.ctx);
        let of = |kind: &'static str| {
            self.manifests
                .iter()
                .filter(move |m| m.kind() == kind)
                .filter(|m| which(m))
        };
        for m in of("ProviderConfig") {
            let api: Api<ProviderConfig> = Api::namespaced(client.clone(), &m.namespace());
            drive(
                &api,
                &m.name(),
                ctx,
                managed::reconcile,
                |pc: &ProviderConfig| {
                    pc.status
                        .as_ref()
                        .map(|s| (s.observed_generation, s.conditions.clone()))
                },
                |e: &managed::Error<provider_config::Error>| !e.is_permanent(),
            )
            .await?;
        }
        for m in of("ServiceProfile") {
            let api: Api<ServiceProfile> = Api::namespaced(client.clone(), &m.namespace());
            drive(
                &api,
                &m.name(),
                ctx,
                managed::reconcile,
                |sp: &ServiceProfile| {
                    sp.status
                        .as_ref()
                        .map(|s| (s.observed_generation, s.conditions.clone()))
                },
                |e: &managed::Error<service_profile::Error>| !e.is_permanent(),
            )
            .await?;
        }
        for m in of("ConnectivitySubscription") {
            let api: Api<ConnectivitySubscription> = Api::namespaced(client.clone(), &m.namespace());
            drive(
                &api,
                &m.name(),
                ctx,
                managed::reconcile,
                |c: &ConnectivitySubscription| c.status.as_ref().map(|s| (s.observed_generation, s.conditions.clone())),
                |e: &managed::Error<subscription::Error>| !e.is_permanent(),
            )
            .await?;
        }
        Ok(())
    }

    /// Every object (but Secrets) as it is now, with its status; Events on stderr. The exit code
    /// of `apply`: 0 when every object is Synced, 1 otherwise.
    pub fn report(&self, out: &mut impl Write) -> Result<i32, OfflineError> {
        let mut all_synced = true;
        for m in self.manifests.iter().filter(|m| m.kind() != "Secret") {
            let Some(mut obj) = self.object(m) else {
                continue;
            };
            let conditions: Vec<conditions::Condition> =
                serde_json::from_value(obj["status"]["conditions"].clone()).unwrap_or_default();
            all_synced &= conditions::is_true(&conditions, SYNCED);
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("managedFields");
            }
            writeln!(out, "---")?;
            write!(out, "{}", serde_yaml::to_string(&obj)?)?;
        }
        print_events(&self.cluster.server);
        Ok(if all_synced { 0 } else { 1 })
    }

    /// The object of manifest `m` as the in-memory API server holds it now.
    pub fn object(&self, m: &Manifest) -> Option<serde_json::Value> {
        self.cluster
            .server
            .get(m.api_version(), m.kind(), Some(&m.namespace()), &m.name())
    }

    /// Every Event recorded so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.cluster.server.list("events.k8s.io/v1", "Event")
    }
}

/// Reconcile one object until its status reflects its generation or it fails for good.
async fn drive<K, F, Fut, E>(
    api: &Api<K>,
    name: &str,
    ctx: &Arc<Context>,
    reconcile: F,
    status_of: impl Fn(&K) -> Option<(Option<i64>, Vec<conditions::Condition>)>,
    retryable: impl Fn(&E) -> bool,
) -> Result<(), OfflineError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
    E: std::error::Error,
{
    let started = std::time::Instant::now();
    let mut pass = 0;
    while pass < MAX_PASSES {
        let obj = api.get(name).await.map_err(|source| OfflineError::ReadBack {
            what: K::kind(&()).to_string(),
            name: name.to_string(),
            source,
        })?;
        let has_finalizer = obj.finalizers().iter().any(|f| f == crate::crd::FINALIZER);
        if has_finalizer
            && let Some((observed, conds)) = status_of(&obj)
            && observed == obj.meta().generation
            && conditions::find(&conds, SYNCED)
                .or_else(|| conditions::find(&conds, READY))
                .is_some()
            && pass > 0
        {
            let pending =
                conditions::find(&conds, SYNCED).is_some_and(|c| c.reason == crate::reason::Reason::Pending.as_str());
            if !pending || started.elapsed() > MAX_PENDING_WAIT {
                return Ok(());
            }
            // An asynchronous vendor change is in flight: come back when the next read is due.
            tokio::time::sleep(ctx.settings.pending_poll_interval).await;
        } else {
            pass += 1;
        }
        match reconcile(Arc::new(obj), ctx.clone()).await {
            Ok(_) => {}
            Err(e) if retryable(&e) && pass + 1 < MAX_PASSES => {
                let delay = ctx.retry_delay(&format!("offline/{name}"), None, false);
                tracing::info!(object = name, error = %e, "retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                tracing::warn!(object = name, error = %e, "giving up");
                return Ok(());
            }
        }
    }
    Ok(())
}

fn print_events(server: &MemoryApiServer) {
    let mut events = server.list("events.k8s.io/v1", "Event");
    events.sort_by(|a, b| a["eventTime"].as_str().cmp(&b["eventTime"].as_str()));
    for ev in events {
        eprintln!(
            "# event {} {}/{}: {} {}",
            ev["type"].as_str().unwrap_or(""),
            ev["regarding"]["kind"].as_str().unwrap_or(""),
            ev["regarding"]["name"].as_str().unwrap_or(""),
            ev["reason"].as_str().unwrap_or(""),
            ev["note"].as_str().unwrap_or("")
        );
    }
}

/// `plan`: print the vendor changes `apply` would make. Returns the exit code: 0 no changes,
/// 2 changes, 1 when a plan could not be made.
pub async fn plan(options: &OfflineOptions, out: &mut impl Write) -> Result<i32, OfflineError> {
    let (cluster, manifests) = prepare(options).await?;
    let ctx = offline_context(&cluster.client).await?;
    let mut changes = false;
    let mut failed = false;
    for m in manifests.iter().filter(|m| m.kind() == "ServiceProfile") {
        let api: Api<ServiceProfile> = Api::namespaced(cluster.client.clone(), &m.namespace());
        let sp = api.get(&m.name()).await.map_err(|source| OfflineError::ReadBack {
            what: "ServiceProfile".into(),
            name: m.name(),
            source,
        })?;
        let label = format!("ServiceProfile {}/{}", m.namespace(), m.name());
        match patiently(
            &ctx,
            &label,
            || managed::plan(&sp, &ctx),
            |e: &service_profile::Error| managed::StepError::backend(e).map(|b| &b.kind),
        )
        .await
        {
            Ok((resolved, decision)) => {
                let vendor = resolved.provider.vendor;
                let lines = describe(&decision, vendor, &resolved.vendor_name, sp.spec.external_id.as_deref());
                if lines.is_empty() {
                    writeln!(out, "{label} ({vendor}): up to date")?;
                } else {
                    writeln!(out, "{label} ({vendor}):")?;
                    for line in &lines {
                        writeln!(out, "  {line}")?;
                    }
                }
                changes |= decision.changes_vendor();
                // The vendor id apply would record first, so that subscriptions referring to this
                // profile plan against it (in memory only; nothing is sent).
                if let service_profile::Decision::Update(o)
                | service_profile::Decision::UpToDate(o)
                | service_profile::Decision::ReportDrift(o) = &decision
                {
                    let patch = json!({"status": {"id": o.id}});
                    api.patch_status(&m.name(), &Default::default(), &kube::api::Patch::Merge(&patch))
                        .await
                        .map_err(|source| OfflineError::ReadBack {
                            what: "ServiceProfile".into(),
                            name: m.name(),
                            source,
                        })?;
                }
                failed |= matches!(
                    decision,
                    service_profile::Decision::Conflict { .. } | service_profile::Decision::ExternalIdNotFound
                );
            }
            Err(e) => {
                writeln!(out, "{label}: cannot plan: {e}")?;
                failed = true;
            }
        }
    }
    for m in manifests.iter().filter(|m| m.kind() == "ConnectivitySubscription") {
        let api: Api<ConnectivitySubscription> = Api::namespaced(cluster.client.clone(), &m.namespace());
        let csub = api.get(&m.name()).await.map_err(|source| OfflineError::ReadBack {
            what: "ConnectivitySubscription".into(),
            name: m.name(),
            source,
        })?;
        let label = format!("ConnectivitySubscription {}/{}", m.namespace(), m.name());
        match patiently(
            &ctx,
            &label,
            || managed::plan(&csub, &ctx),
            |e: &subscription::Error| managed::StepError::backend(e).map(|b| &b.kind),
        )
        .await
        {
            Ok((resolved, planned)) => {
                use subscription::Decision;
                let vendor = resolved.provider.vendor;
                let now = &planned.observed.vendor_mode;
                match &planned.decision {
                    Decision::InSync => writeln!(out, "{label} ({vendor}): up to date ({now})")?,
                    Decision::Apply(c) | Decision::AwaitPending(c) => {
                        changes = true;
                        writeln!(out, "{label} ({vendor}, now {now}):")?;
                        for change in c {
                            writeln!(out, "  ~ {change}")?;
                        }
                    }
                    Decision::Report(c) => {
                        writeln!(out, "{label} ({vendor}, now {now}):")?;
                        for change in c {
                            writeln!(out, "  ? observe-only drift: {change}")?;
                        }
                    }
                    Decision::TerminationNotConfirmed => {
                        failed = true;
                        writeln!(out, "{label}: ! {}", subscription::Error::TerminationNotConfirmed)?;
                    }
                    Decision::Irreversible(mode) => {
                        failed = true;
                        writeln!(out, "{label}: ! the SIM is terminated; it cannot become {mode} again")?;
                    }
                }
            }
            Err(e) => {
                writeln!(out, "{label}: cannot plan: {e}")?;
                failed = true;
            }
        }
    }
    Ok(if failed {
        1
    } else if changes {
        2
    } else {
        0
    })
}

/// Vendor reads of a one-shot command (`plan`, `import`) that fail for a while only (rate limited,
/// transient) are tried again this many times, after the vendor's `Retry-After` or the operator's
/// backoff (`Context::retry_delay` under the offline settings: 0.2 s doubling, at most 5 s); the
/// operator requeues instead. A `plan` right after an `import` finds BICS's rate limit spent
/// (found by the import round trip).
pub const READ_ATTEMPTS: u32 = 6;

/// Run `read` until it succeeds, fails for good, or [`READ_ATTEMPTS`] are spent; `kind` tells
/// the vendor failure behind an error, if any; `key` names the read in `ctx`'s backoff.
pub async fn patiently<T, E, Fut>(
    ctx: &Context,
    key: &str,
    mut read: impl FnMut() -> Fut,
    kind: impl Fn(&E) -> Option<&crate::backend::ErrorKind>,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    use crate::backend::ErrorKind;
    let key = format!("offline-read/{key}");
    for attempt in 1.. {
        let error = match read().await {
            Ok(value) => {
                ctx.reset_backoff(&key);
                return Ok(value);
            }
            Err(e) => e,
        };
        let retry_after = match kind(&error) {
            Some(ErrorKind::RateLimited { retry_after }) => *retry_after,
            Some(ErrorKind::Transient) => None,
            _ => return Err(error),
        };
        if attempt >= READ_ATTEMPTS {
            return Err(error);
        }
        let wait = ctx.retry_delay(&key, retry_after, false);
        tracing::info!(attempt, "vendor read failed for now; trying again in {wait:?}");
        tokio::time::sleep(wait).await;
    }
    unreachable!("the attempts end the loop")
}

fn describe(
    decision: &service_profile::Decision,
    vendor: crate::crd::Vendor,
    name: &str,
    external_id: Option<&str>,
) -> Vec<String> {
    use service_profile::Decision;
    match decision {
        Decision::Create => {
            vec![format!(
                "+ create {vendor} service profile {name:?} (then add its services and limits)"
            )]
        }
        Decision::Update(o) => o
            .changes
            .iter()
            .map(|c| format!("~ {} (profile {})", c.description, o.id))
            .collect(),
        Decision::UpToDate(_) => vec![],
        Decision::Conflict { ids } => vec![format!("! several profiles are named {name:?}: {}", ids.join(", "))],
        Decision::ExternalIdNotFound => {
            vec![format!(
                "! externalId {} does not exist",
                external_id.unwrap_or_default()
            )]
        }
        Decision::ReportMissing => vec![format!("? observe-only: no profile named {name:?}")],
        Decision::ReportDrift(o) => o
            .changes
            .iter()
            .map(|c| format!("? observe-only drift: {} (profile {})", c.description, o.id))
            .collect(),
    }
}

//! `import`: manifests for what a vendor account holds, so an existing account comes under Git in
//! one command. It reads a ProviderConfig and its Secret from files (as `apply` / `plan` do,
//! `--simulate` included), lists the account's service profiles and sweeps its SIMs (the same
//! paged sweep the operator resyncs with: the calls do not grow with one per SIM), and writes a
//! ServiceProfile per profile (`externalId`, the vendor's name and every setting) and a
//! ConnectivitySubscription per SIM (its identity, its current mode as the desired one, its
//! profile by object name). The generated objects are `ObserveOnly` unless asked otherwise, so a
//! first `kubectl apply` changes nothing at the vendor; `plan` of the result against the same
//! account shows no change.
//!
//! Output is deterministic: objects and files in a fixed order, names derived from vendor names
//! and identities (the lower vendor id keeps a contested name), no timestamps; an unchanged
//! account imports to byte-identical files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend::subscription::counting_sims;
use crate::backend::{Capabilities, ListedProfile, ObservedSubscription, ProfileSettings, SimKey, SubscriptionProfile};
use crate::controller::resolve::Provider;
use crate::crd::{
    API_VERSION, ConnectivitySubscriptionSpec, DeletionPolicy, LocalObjectReference, ManagementPolicy,
    ServiceProfileSpec, SubscriptionMode, Vendor,
};
use crate::offline::{OfflineError, OfflineOptions, OfflineRun, patiently};

fn vendor_kind(e: &crate::backend::BackendError) -> Option<&crate::backend::ErrorKind> {
    Some(&e.kind)
}

/// What `import` writes and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The files with the ProviderConfig and its Secret, and `--simulate`.
    pub offline: OfflineOptions,
    /// The ProviderConfig to import from, when the files hold several.
    pub provider_config: Option<String>,
    pub profiles: bool,
    pub subscriptions: bool,
    pub selector: Selector,
    /// `managementPolicy` of every generated object.
    pub policy: ManagementPolicy,
    /// Namespace of the generated objects (default: the ProviderConfig's).
    pub namespace: Option<String>,
    pub output: Output,
}

/// Where the manifests go.
#[derive(Debug, Clone)]
pub enum Output {
    /// One multi-document YAML stream.
    Stdout,
    /// A folder with a `kustomization.yaml`.
    Directory { path: PathBuf, layout: Layout },
}

/// Files in an output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// `service-profiles/<name>.yaml`, `subscriptions/<name>.yaml`.
    PerObject,
    /// `service-profiles.yaml`, `subscriptions.yaml`.
    PerKind,
}

/// Which SIMs are imported (every given criterion must hold; within one, any value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The SIM's mode (as imported); `None` in the list selects SIMs in a vendor state that is
    /// none of ours.
    pub modes: Vec<Option<SubscriptionMode>>,
    pub iccid_prefixes: Vec<String>,
    pub imsi_prefixes: Vec<String>,
    /// Service profiles by vendor name or id: only SIMs on one of them.
    pub service_profiles: Vec<String>,
}

impl Selector {
    fn selects(&self, sim: &ObservedSubscription, profile: Option<&ListedProfile>) -> bool {
        let prefixed = |have: &Option<String>, prefixes: &[String]| {
            prefixes.is_empty()
                || have
                    .as_deref()
                    .is_some_and(|h| prefixes.iter().any(|p| h.starts_with(p.as_str())))
        };
        (self.modes.is_empty() || self.modes.contains(&imported_mode(sim)))
            && prefixed(&sim.iccid, &self.iccid_prefixes)
            && prefixed(&sim.imsi, &self.imsi_prefixes)
            && (self.service_profiles.is_empty()
                || profile.is_some_and(|p| self.service_profiles.iter().any(|s| *s == p.id || *s == p.name)))
    }
}

/// What an import found and wrote.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// `vendor account` as the ProviderConfig names it, for messages.
    pub account: String,
    pub profiles: usize,
    pub subscriptions: usize,
    /// SIMs the account holds (before the selector).
    pub sims: usize,
    /// Objects not written, each with the reason.
    pub skipped: Vec<String>,
    /// Settings left out of written objects (unmanaged), each with the reason.
    pub notes: Vec<String>,
    /// Files written, changed or removed (folder output).
    pub files: FileCounts,
    pub vendor_requests: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileCounts {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

/// The first line of every file `import` writes: a new import rewrites such files, and removes
/// those it no longer produces; files without it are left alone.
pub const MARKER: &str = "# Generated by `connectivity-operator import`";

/// `import`: list the account and write its manifests to `out` (stdout) or the folder.
pub async fn import(options: &ImportOptions, out: &mut impl Write) -> Result<ImportReport, OfflineError> {
    let started = Instant::now();
    let run = OfflineRun::start(&options.offline).await?;
    let pcs: Vec<_> = run.manifests.iter().filter(|m| m.kind() == "ProviderConfig").collect();
    let pc = match (&options.provider_config, pcs.as_slice()) {
        (Some(name), _) => pcs.iter().find(|m| m.name() == *name).copied().ok_or_else(|| {
            OfflineError::Choose(format!(
                "no ProviderConfig named {name:?} in the files (found: {})",
                names(&pcs)
            ))
        })?,
        (None, [one]) => *one,
        (None, []) => {
            return Err(OfflineError::Choose(
                "no ProviderConfig in the files: import needs one, with its credentials Secret".into(),
            ));
        }
        (None, _) => {
            return Err(OfflineError::Choose(format!(
                "{} ProviderConfigs in the files ({}): choose one with --provider-config",
                pcs.len(),
                names(&pcs)
            )));
        }
    };
    let (pc_namespace, pc_name) = (pc.namespace(), pc.name());
    let ctx = &run.ctx;
    let provider = ctx
        .providers
        .resolve(&run.cluster.client, &pc_namespace, &pc_name)
        .await
        .map_err(|source| OfflineError::Resolve {
            name: format!("{pc_namespace}/{pc_name}"),
            source: Box::new(source),
        })?;
    let vendor = provider.vendor;
    let account = patiently(ctx, "verify", || provider.account.verify(), vendor_kind)
        .await
        .map_err(|e| OfflineError::Vendor(Box::new(e)))?;
    let mut report = ImportReport {
        account: match &account.account {
            Some(a) => format!("{vendor} account {a:?} (ProviderConfig {pc_namespace}/{pc_name})"),
            None => format!("{vendor} account of ProviderConfig {pc_namespace}/{pc_name}"),
        },
        ..Default::default()
    };
    let needs_profiles = options.profiles
        || (options.subscriptions
            && (provider.capabilities.subscription_profile == SubscriptionProfile::ServiceProfileRef
                || !options.selector.service_profiles.is_empty()));
    let profiles = if needs_profiles {
        patiently(ctx, "profiles", || provider.service_profiles.list(), vendor_kind)
            .await
            .map_err(|e| OfflineError::Vendor(Box::new(e)))?
    } else {
        Vec::new()
    };
    let names = profile_names(&profiles);
    let namespace = options.namespace.clone().unwrap_or(pc_namespace);
    let mut documents: Vec<Document> = Vec::new();
    if options.profiles {
        for p in &profiles {
            match profile_document(
                p,
                &names,
                &pc_name,
                &namespace,
                options.policy,
                vendor,
                &provider.capabilities,
            ) {
                Ok((doc, notes)) => {
                    report
                        .notes
                        .extend(notes.into_iter().map(|n| format!("ServiceProfile {}: {n}", doc.name)));
                    documents.push(doc);
                    report.profiles += 1;
                }
                Err(why) => report
                    .skipped
                    .push(format!("{vendor} service profile {:?} ({}): {why}", p.name, p.id)),
            }
        }
    }
    if options.subscriptions {
        let inventory = sweep(&provider, ctx).await?;
        report.sims = inventory.len();
        let by_id: BTreeMap<&str, &ListedProfile> = profiles.iter().map(|p| (p.id.as_str(), p)).collect();
        let mut sims: Vec<ObservedSubscription> = inventory
            .iter()
            .filter(|sim| {
                let profile = sim.service_profile_id.as_deref().and_then(|id| by_id.get(id).copied());
                options.selector.selects(sim, profile)
            })
            .collect();
        drop(inventory);
        sims.sort_by_key(sim_name_key);
        let mut taken = BTreeSet::new();
        for sim in &sims {
            match subscription_document(
                sim,
                &names,
                &pc_name,
                &namespace,
                options.policy,
                &provider.capabilities,
                &mut taken,
            ) {
                Ok((doc, notes)) => {
                    report.notes.extend(
                        notes
                            .into_iter()
                            .map(|n| format!("ConnectivitySubscription {}: {n}", doc.name)),
                    );
                    documents.push(doc);
                    report.subscriptions += 1;
                }
                Err(why) => report.skipped.push(format!("SIM {}: {why}", describe_sim(sim))),
            }
        }
    }
    report.vendor_requests = ctx.metrics.vendor_request_total();
    match &options.output {
        Output::Stdout => {
            for doc in &documents {
                write!(out, "---\n{}", doc.text)?;
            }
        }
        Output::Directory { path, layout } => {
            let mut kinds = Vec::new();
            if options.profiles {
                kinds.push("ServiceProfile");
            }
            if options.subscriptions {
                kinds.push("ConnectivitySubscription");
            }
            report.files = write_folder(path, *layout, &kinds, &documents)?;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What `import` prints on stderr when done: the counts, the cost, every skipped object and
/// every setting left unmanaged (each as a `#` line).
pub fn summary(report: &ImportReport) -> String {
    let mut out = String::new();
    for skipped in &report.skipped {
        out.push_str(&format!("# skipped {skipped}\n"));
    }
    for note in &report.notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    out.push_str(&format!(
        "# imported {} ServiceProfiles and {} ConnectivitySubscriptions (of {} SIMs) from the {} with {} vendor requests in {:.1} s",
        report.profiles,
        report.subscriptions,
        report.sims,
        report.account,
        report.vendor_requests,
        report.elapsed.as_secs_f64()
    ));
    if !report.skipped.is_empty() {
        out.push_str(&format!("; {} skipped", report.skipped.len()));
    }
    let f = report.files;
    if f != FileCounts::default() {
        out.push_str(&format!(
            "; files: {} written, {} unchanged, {} removed",
            f.written, f.unchanged, f.removed
        ));
    }
    out.push('\n');
    out
}

fn names(manifests: &[&crate::offline::Manifest]) -> String {
    manifests
        .iter()
        .map(|m| format!("{}/{}", m.namespace(), m.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account's SIMs through one inventory sweep, with progress on stderr: a spinner with counts
/// and rate when stderr is a terminal, a plain line every few seconds otherwise.
async fn sweep(
    provider: &Provider,
    ctx: &crate::controller::Context,
) -> Result<crate::backend::Inventory, OfflineError> {
    let listed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(listed.clone(), ctx.metrics.clone());
    let result = counting_sims(listed.clone(), async {
        patiently(
            ctx,
            "sweep",
            || {
                // A sweep tried again counts from zero.
                listed.store(0, Ordering::Relaxed);
                provider.subscriptions.inventory()
            },
            vendor_kind,
        )
        .await
    })
    .await;
    progress.finish().await;
    result.map_err(|e| OfflineError::Vendor(Box::new(e)))
}

/// The progress display of a sweep.
struct Progress {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(listed: Arc<AtomicU64>, metrics: crate::metrics::Metrics) -> Progress {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let terminal = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let line = |sims: u64| {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                format!(
                    "{sims} SIMs listed, {} vendor requests, {:.0} SIMs/s",
                    metrics.vendor_request_total(),
                    sims as f64 / secs
                )
            };
            let bar = terminal.then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar
            });
            let every = if terminal {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(2)
            };
            let mut shown = u64::MAX;
            loop {
                let done = tokio::time::timeout(every, &mut stopped).await.is_ok();
                let sims = listed.load(Ordering::Relaxed);
                match &bar {
                    Some(bar) => {
                        bar.set_message(line(sims));
                        bar.tick();
                    }
                    None if sims != shown || done => eprintln!("# {}", line(sims)),
                    None => {}
                }
                shown = sims;
                if done {
                    if let Some(bar) = bar {
                        bar.finish();
                    }
                    return;
                }
            }
        });
        Progress { stop, task }
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// One generated object: its name, kind and YAML text (with its comment lines).
#[derive(Debug, Clone)]
struct Document {
    kind: &'static str,
    name: String,
    text: String,
}

/// The mode a SIM is imported with: its own, or the first vendor state it also satisfies (a BICS
/// SIM without endpoint is as good as `Deactivated`); `None` when it is in none of our modes.
pub fn imported_mode(sim: &ObservedSubscription) -> Option<SubscriptionMode> {
    sim.mode.or_else(|| sim.equivalent.first().copied())
}

/// Object names for the profiles (vendor id -> name): RFC 1123 from the vendor name, `profile`
/// when nothing of it is left. Names are handed out in vendor-id order, so the profile with the
/// lower id keeps a contested name and the other gets its id appended: a profile added later
/// (a higher id) never renames an imported one.
pub fn profile_names(profiles: &[ListedProfile]) -> BTreeMap<String, String> {
    let mut order: Vec<&ListedProfile> = profiles.iter().collect();
    order.sort_by(|a, b| id_order(&a.id, &b.id));
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for p in order {
        let base = Some(slug(&p.name, 50))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "profile".into());
        let name = unique(&base, &slug(&p.id, 40), &mut taken);
        out.insert(p.id.clone(), name);
    }
    out
}

/// `base`, else `base-<suffix>`, else `base-<suffix>-2`, ... (the first not taken; then taken).
fn unique(base: &str, suffix: &str, taken: &mut BTreeSet<String>) -> String {
    let mut candidates = vec![base.to_string()];
    if !suffix.is_empty() {
        candidates.push(format!("{base}-{suffix}"));
    }
    let last = candidates.last().cloned().unwrap_or_default();
    let name = candidates
        .into_iter()
        .chain((2..).map(|n| format!("{last}-{n}")))
        .find(|c| !taken.contains(c))
        .unwrap_or_default();
    taken.insert(name.clone());
    name
}

/// Vendor ids in numeric order where both are numbers, else as text (numbers first).
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// An RFC 1123 label from any text: lower-case ASCII letters and digits, every other run as one
/// `-`, no `-` at either end, at most `max` characters.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_string()
}

/// The order SIMs are named and written in: by ICCID, then IMSI.
fn sim_name_key(sim: &ObservedSubscription) -> (Option<String>, Option<String>) {
    (sim.iccid.clone(), sim.imsi.clone())
}

fn describe_sim(sim: &ObservedSubscription) -> String {
    match (&sim.iccid, &sim.imsi) {
        (Some(iccid), _) => format!("ICCID {iccid}"),
        (None, Some(imsi)) => format!("IMSI {imsi}"),
        (None, None) => "without ICCID or IMSI".to_string(),
    }
}

fn valid_iccid(iccid: &str) -> bool {
    iccid.starts_with("89") && (18..=20).contains(&iccid.len()) && iccid.bytes().all(|b| b.is_ascii_digit())
}

fn valid_imsi(imsi: &str) -> bool {
    (6..=15).contains(&imsi.len()) && imsi.bytes().all(|b| b.is_ascii_digit())
}

/// A ServiceProfile for a listed profile, or why there is none.
fn profile_document(
    p: &ListedProfile,
    names: &BTreeMap<String, String>,
    pc_name: &str,
    namespace: &str,
    policy: ManagementPolicy,
    vendor: Vendor,
    capabilities: &Capabilities,
) -> Result<(Document, Vec<String>), String> {
    let settings: &ProfileSettings = p.settings.as_ref().map_err(Clone::clone)?;
    let length = p.name.chars().count();
    if !(1..=128).contains(&length) {
        return Err(format!("its name has {length} characters; spec.name takes 1 to 128"));
    }
    let name = names.get(&p.id).cloned().unwrap_or_else(|| slug(&p.id, 63));
    // Read-only profiles (Telenor's policies) are observed whatever the policy says; write that.
    let policy = if capabilities.read_only_profiles && policy == ManagementPolicy::Full {
        ManagementPolicy::ObserveOnly
    } else {
        policy
    };
    let spec = ServiceProfileSpec {
        provider_config_ref: LocalObjectReference {
            name: pc_name.to_string(),
        },
        name: Some(p.name.clone()),
        description: settings.description.clone(),
        emnify: settings.emnify.clone(),
        bics_sft: settings.bics_sft.clone(),
        // Removing an imported object from Git never deletes what the account had before.
        deletion_policy: DeletionPolicy::Orphan,
        external_id: Some(p.id.clone()),
        management_policy: policy,
    };
    let comment = format!("# {vendor} service profile {:?}, id {}", p.name, p.id);
    let doc = render("ServiceProfile", name, namespace, serde_json::to_value(&spec), &comment)?;
    Ok((doc, settings.unmanaged.clone()))
}

/// A ConnectivitySubscription for a SIM, or why there is none. `taken` holds the names handed
/// out so far (SIMs come in ICCID order, so the same account gives the same names).
fn subscription_document(
    sim: &ObservedSubscription,
    profile_names: &BTreeMap<String, String>,
    pc_name: &str,
    namespace: &str,
    policy: ManagementPolicy,
    capabilities: &Capabilities,
    taken: &mut BTreeSet<String>,
) -> Result<(Document, Vec<String>), String> {
    let iccid = sim.iccid.clone().filter(|i| valid_iccid(i));
    let imsi = sim.imsi.clone().filter(|i| valid_imsi(i));
    let base = match (&iccid, &imsi) {
        (Some(iccid), _) => format!("sim-{iccid}"),
        (None, Some(imsi)) => format!("sim-imsi-{imsi}"),
        (None, None) => {
            return Err(format!(
                "neither its ICCID ({}) nor its IMSI ({}) is one the spec accepts",
                sim.iccid.as_deref().unwrap_or("none"),
                sim.imsi.as_deref().unwrap_or("none")
            ));
        }
    };
    // The key identifier alone where the SIM has it (a second one could change under it).
    let (imsi, iccid) = match (capabilities.sim_key, iccid, imsi) {
        (SimKey::Iccid, Some(iccid), _) => (None, Some(iccid)),
        (SimKey::Imsi, _, Some(imsi)) => (Some(imsi), None),
        (_, iccid, imsi) => (imsi, iccid),
    };
    let name = unique(&base, "", taken);
    let mut notes = Vec::new();
    let mode = imported_mode(sim);
    if mode.is_none() {
        notes.push(format!(
            "vendor state {:?} is none of Active, Paused, Deactivated, Terminated: spec.mode left out (observed only)",
            sim.vendor_mode
        ));
    }
    let service_profile_ref = match (capabilities.subscription_profile, &sim.service_profile_id) {
        (SubscriptionProfile::ServiceProfileRef, Some(id)) => match profile_names.get(id) {
            Some(name) => Some(LocalObjectReference { name: name.clone() }),
            None => {
                notes.push(format!(
                    "service profile {id} is not among the account's listed profiles: spec.serviceProfileRef left out"
                ));
                None
            }
        },
        _ => None,
    };
    let spec = ConnectivitySubscriptionSpec {
        provider_config_ref: LocalObjectReference {
            name: pc_name.to_string(),
        },
        imsi,
        iccid,
        mode,
        service_profile_ref,
        deletion_policy: Default::default(),
        management_policy: policy,
        emnify: None,
        bics_sft: None,
    };
    let mut ids = Vec::new();
    for (what, value) in [("ICCID", &sim.iccid), ("IMSI", &sim.imsi), ("MSISDN", &sim.msisdn)] {
        if let Some(v) = value {
            ids.push(format!("{what} {v}"));
        }
    }
    let comment = format!("# SIM {}; vendor state {}", ids.join(", "), sim.vendor_mode);
    let doc = render(
        "ConnectivitySubscription",
        name,
        namespace,
        serde_json::to_value(&spec),
        &comment,
    )?;
    Ok((doc, notes))
}

/// One object as YAML, after its comment line.
fn render(
    kind: &'static str,
    name: String,
    namespace: &str,
    spec: Result<Value, serde_json::Error>,
    comment: &str,
) -> Result<Document, String> {
    let spec = spec.map_err(|e| format!("cannot render its spec: {e}"))?;
    let object = json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    let yaml = serde_yaml::to_string(&object).map_err(|e| format!("cannot render YAML: {e}"))?;
    // One line: vendor text never breaks out of the comment.
    let text = format!("{}\n{yaml}", comment.replace(['\n', '\r'], " "));
    Ok(Document { kind, name, text })
}

/// Folder of a kind in the per-object layout, and its file in the per-kind layout.
fn kind_folder(kind: &str) -> &'static str {
    match kind {
        "ServiceProfile" => "service-profiles",
        _ => "subscriptions",
    }
}

/// Write the documents into `dir` (creating it), then remove the files of the `kinds` imported
/// that an earlier import wrote (they start with [`MARKER`]) and this one did not, and write
/// `kustomization.yaml` listing every generated file there. Files whose text is unchanged are not
/// touched.
fn write_folder(
    dir: &Path,
    layout: Layout,
    kinds: &[&str],
    documents: &[Document],
) -> Result<FileCounts, OfflineError> {
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    for doc in documents {
        let folder = kind_folder(doc.kind);
        match layout {
            Layout::PerObject => {
                let path = PathBuf::from(folder).join(format!("{}.yaml", doc.name));
                files.insert(path, format!("{MARKER} ({}).\n{}", doc.kind, doc.text));
            }
            Layout::PerKind => {
                let text = files
                    .entry(PathBuf::from(format!("{folder}.yaml")))
                    .or_insert_with(|| format!("{MARKER} ({}s).\n", doc.kind));
                text.push_str("---\n");
                text.push_str(&doc.text);
            }
        }
    }
    let mut counts = FileCounts::default();
    for (relative, text) in &files {
        let path = dir.join(relative);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == *text) {
            counts.unchanged += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        counts.written += 1;
    }
    // Earlier imports' files of the kinds imported now that this one did not write.
    let mut present = Vec::new();
    generated_files(dir, dir, &mut present)?;
    let mut listed = Vec::new();
    for (relative, kind) in present {
        let stale = !files.contains_key(&relative) && kinds.iter().any(|k| kind.starts_with(k));
        if stale {
            std::fs::remove_file(dir.join(&relative))?;
            counts.removed += 1;
        } else if relative != Path::new("kustomization.yaml") {
            listed.push(relative);
        }
    }
    for folder in ["service-profiles", "subscriptions"] {
        let path = dir.join(folder);
        if std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
            std::fs::remove_dir(&path)?;
        }
    }
    listed.sort();
    let mut kustomization = format!(
        "{MARKER} (Kustomization).\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    );
    for relative in &listed {
        kustomization.push_str(&format!("- {}\n", relative.to_string_lossy().replace('\\', "/")));
    }
    let path = dir.join("kustomization.yaml");
    if std::fs::read_to_string(&path).is_ok_and(|old| old == kustomization) {
        counts.unchanged += 1;
    } else {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&path, kustomization)?;
        counts.written += 1;
    }
    Ok(counts)
}

/// The `.yaml` files under `dir` that an import wrote, relative to `root`, with the kind their
/// marker line names.
fn generated_files(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) -> Result<(), OfflineError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            // Only our own folders: a user's folder next to them is not ours to clean.
            if dir == root
                && matches!(
                    path.file_name().and_then(|n| n.to_str()),
                    Some("service-profiles" | "subscriptions")
                )
            {
                generated_files(root, &path, out)?;
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(rest) = text.lines().next().and_then(|l| l.strip_prefix(MARKER)) else {
            continue;
        };
        let kind = rest
            .trim_start_matches(" (")
            .split(')')
            .next()
            .unwrap_or_default()
            .to_string();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        out.push((relative, kind));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, name: &str) -> ListedProfile {
        ListedProfile {
            id: id.into(),
            name: name.into(),
            settings: Ok(ProfileSettings::default()),
        }
    }

    #[test]
    fn slugs_are_rfc1123_labels() {
        assert_eq!(slug("IoT EU (4G only)", 63), "iot-eu-4g-only");
        assert_eq!(slug("--Ünïcode__name--", 63), "n-code-name");
        assert_eq!(slug("日本", 63), "");
        assert_eq!(slug(&"a-".repeat(40), 10), "a-a-a-a-a");
    }

    #[test]
    fn the_lower_id_keeps_a_contested_name() {
        let profiles = [
            listed("12", "IoT"),
            listed("5", "iot"),
            listed("1", "iot-12"),
            listed("7", "日本"),
        ];
        let names = profile_names(&profiles);
        assert_eq!(names["1"], "iot-12");
        assert_eq!(names["5"], "iot");
        assert_eq!(names["12"], "iot-12-2");
        assert_eq!(names["7"], "profile");
        // The same set in another order: the same names.
        let mut reversed = profiles.to_vec();
        reversed.reverse();
        assert_eq!(profile_names(&reversed), names);
        // A profile added later does not rename the others.
        let mut more = profiles.to_vec();
        more.push(listed("99", "IoT"));
        let again = profile_names(&more);
        assert!(names.iter().all(|(id, name)| again[id] == *name));
        assert_eq!(again["99"], "iot-99");
    }

    #[test]
    fn modes_fall_back_to_an_equivalent_state() {
        let mut sim = ObservedSubscription {
            mode: None,
            equivalent: vec![SubscriptionMode::Deactivated, SubscriptionMode::Terminated],
            ..Default::default()
        };
        assert_eq!(imported_mode(&sim), Some(SubscriptionMode::Deactivated));
        sim.equivalent.clear();
        assert_eq!(imported_mode(&sim), None);
    }
}

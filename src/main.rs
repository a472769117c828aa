//! `connectivity-operator` command line: `run` (the operator), `crd` (print the CRDs), `generate`
//! (the files generated from the sources), `sim` (a vendor simulator), `apply` / `plan` (the
//! reconcile pipeline on manifest files, offline).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use connectivity_operator::controller::Settings;
use connectivity_operator::crd::{self, ManagementPolicy, SubscriptionMode};
use connectivity_operator::import::Layout;
use connectivity_operator::metrics::Metrics;
use connectivity_operator::offline::{self, OfflineOptions};
use connectivity_operator::run::{LeaderElection, RunOptions, run};

/// jemalloc rather than the system allocator: at 100,000 SIMs (`cargo bench --bench subscriptions
/// -- --n 100000 --vendor emnify --api memory --way ours`) the operator's peak RSS while the
/// objects go Ready was 352.6 MiB with glibc (one arena) and 253.1 MiB with jemalloc: glibc's
/// per-chunk headers and the holes left by replaced cache objects cost more than jemalloc's size
/// classes. Its settings are built in (`.cargo/config.toml`; the background thread that returns
/// freed pages from the `background_threads` feature); `_RJEM_MALLOC_CONF` overrides them.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's live and resident bytes for `/metrics` (its statistics are a snapshot refreshed by
/// advancing the epoch).
#[cfg(not(target_env = "msvc"))]
fn heap_stats() -> Option<connectivity_operator::metrics::HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(connectivity_operator::metrics::HeapStats {
        allocated: stats::allocated::read().ok()? as u64,
        resident: stats::resident::read().ok()? as u64,
    })
}

#[cfg(target_env = "msvc")]
fn heap_stats() -> Option<connectivity_operator::metrics::HeapStats> {
    None
}

#[derive(Parser)]
#[command(
    name = "connectivity-operator",
    version,
    about = "Keep IoT SIM connectivity in Git: a Kubernetes operator for emnify and other connectivity vendors"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster of the current kubeconfig or service account.
    Run {
        /// Default interval between two reconciles of an unchanged object (drift correction,
        /// usedCount refresh); the annotation connectivity-operator.dev/resync-interval overrides it.
        #[arg(long, default_value = "10m", value_parser = parse_duration, env = "RESYNC_INTERVAL")]
        resync_interval: Duration,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDR")]
        metrics_addr: SocketAddr,
        /// Watch only this namespace; repeat for several (default: all namespaces).
        #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Reconcile only while holding a Lease, so that only one replica works at a time.
        #[arg(long, env = "LEADER_ELECTION")]
        leader_election: bool,
        /// Namespace of the leader-election Lease (default: the pod's namespace).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        leader_election_namespace: String,
        /// Name of the leader-election Lease.
        #[arg(long, default_value = "connectivity-operator")]
        leader_election_lease: String,
        /// Timeout of one vendor API request.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        vendor_timeout: Duration,
        /// Timeout of the vendor requests documented as slow (BICS: CreateEndPoint, LinkSim,
        /// DeLinkSim, EndPointActivation and EndPointLifeCycleChange may take 180 s).
        #[arg(long, default_value = "190s", value_parser = parse_duration)]
        slow_vendor_timeout: Duration,
        /// How often a subscription with a pending (asynchronous) vendor change is read again.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        pending_poll_interval: Duration,
        /// Reconciles of one kind running at once.
        #[arg(long, default_value_t = 64, env = "MAX_CONCURRENT_RECONCILES")]
        max_concurrent_reconciles: u16,
        /// How long a resolved ProviderConfig and its credentials Secret are reused before both
        /// are read again (a ProviderConfig change is seen at once, a rotated Secret within this).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        provider_cache_ttl: Duration,
        /// Send the changes a vendor documents a bulk write for (emnify: endpoint status and
        /// service profile) in bulk, batched per account; `false`: one request per SIM.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        bulk_writes: bool,
        /// A bulk write goes out once no further change arrived for this long (or at the
        /// vendor's maximum per call, or after --bulk-write-max-delay).
        #[arg(long, default_value = "500ms", value_parser = parse_duration)]
        bulk_write_window: Duration,
        /// The longest the first change of a bulk write waits while more keep arriving.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        bulk_write_max_delay: Duration,
        /// Observe subscriptions through one inventory sweep per account; `false`: one read per
        /// SIM (the way the peers work; for comparisons).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        bulk_observation: bool,
    },
    /// Print every CRD as YAML (or write them into a folder).
    Crd {
        /// Write one file per CRD into this folder instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Rewrite the files generated from the sources (the README's reasons table and the Argo CD
    /// health checks' reason tables, from src/reason.rs); `--check` only reports drift.
    Generate {
        /// Exit 1 when a generated file differs instead of writing it.
        #[arg(long)]
        check: bool,
        /// The repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Run a vendor simulator; prints one JSON line with its URL and credentials.
    Sim {
        /// Which vendor to simulate.
        #[arg(long, value_enum, default_value_t = SimVendor::Emnify)]
        vendor: SimVendor,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Seeded endpoints (each with an activated SIM).
        #[arg(long, default_value_t = 25)]
        endpoints: usize,
        /// Seeded free SIMs.
        #[arg(long, default_value_t = 10)]
        free_sims: usize,
        /// Latency added to every request, e.g. 20ms.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        latency: Duration,
        /// Disable the vendor's per-path rate limits.
        #[arg(long)]
        no_rate_limits: bool,
        /// Multiply every documented rate limit (and burst) by this factor.
        #[arg(long, default_value_t = 1.0)]
        rate_limit_scale: f64,
        /// Lifetime of issued auth tokens.
        #[arg(long, default_value = "4h", value_parser = parse_duration)]
        token_ttl: Duration,
        /// Seeded subscriptions (Telenor).
        #[arg(long, default_value_t = 25)]
        subscriptions: usize,
        /// Delay before an accepted asynchronous change is applied (Telenor).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        async_delay: Duration,
        /// Also behave as the simulator infers where the vendor's documentation is silent (BICS:
        /// raw codes, totals and extra fields in reads; Telenor: `match` search filters). Off by
        /// default: answers carry what the vendor documents.
        #[arg(long)]
        inferred: bool,
        /// Seeded random faults on every API call, as JSON, e.g. '{"seed": 1, "server_error":
        /// 0.1, "stall": 0.05, "stall_ms": 15000, "stall_applied": 0.5}' (fields: crates/vendor-sim/README.md,
        /// "Chaos"); `POST /_sim/chaos` changes them while the simulator runs.
        #[arg(long, value_parser = parse_chaos)]
        chaos: Option<vendor_sim::chaos::ChaosConfig>,
    },
    /// Reconcile manifests (ProviderConfig, Secret, ServiceProfile) without a cluster and print
    /// every object with its resulting status. Exit 0 when all are synced, 1 otherwise.
    Apply {
        /// Files or folders of manifests.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Start the embedded vendor simulators and point the ProviderConfigs at them.
        #[arg(long)]
        simulate: bool,
    },
    /// Print the vendor changes `apply` would make. Exit 0 without changes, 2 with changes,
    /// 1 when a plan could not be made.
    Plan {
        /// Files or folders of manifests.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Start the embedded vendor simulators and point the ProviderConfigs at them.
        #[arg(long)]
        simulate: bool,
    },
    /// Write manifests for what a vendor account holds: a ServiceProfile per service profile
    /// (externalId and every setting) and a ConnectivitySubscription per SIM (identity, current
    /// mode, profile). Reads the ProviderConfig and its Secret from files, as `plan` does. Exit 0
    /// when written (skipped objects are listed on stderr), 1 when the vendor failed, 3 for
    /// unusable input.
    Import {
        /// Files or folders with the ProviderConfig and its credentials Secret.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Start the embedded vendor simulators and point the ProviderConfigs at them.
        #[arg(long)]
        simulate: bool,
        /// The ProviderConfig to import from, when the files hold several.
        #[arg(long)]
        provider_config: Option<String>,
        /// Which kinds to write.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ImportKind::ServiceProfiles, ImportKind::Subscriptions])]
        kinds: Vec<ImportKind>,
        /// Only SIMs in these modes (`Unknown`: a vendor state that is none of ours); repeat or
        /// separate with commas.
        #[arg(long = "mode", value_delimiter = ',', value_parser = parse_mode_filter)]
        modes: Vec<Option<SubscriptionMode>>,
        /// Only SIMs whose ICCID starts with this; repeat for several.
        #[arg(long = "iccid-prefix")]
        iccid_prefixes: Vec<String>,
        /// Only SIMs whose IMSI starts with this; repeat for several.
        #[arg(long = "imsi-prefix")]
        imsi_prefixes: Vec<String>,
        /// Only SIMs on this service profile (vendor name or id); repeat for several.
        #[arg(long = "service-profile")]
        service_profiles: Vec<String>,
        /// `managementPolicy` of the generated objects: Full, ObserveOnly or Paused.
        #[arg(long, default_value = "ObserveOnly", value_parser = parse_policy)]
        management_policy: ManagementPolicy,
        /// Namespace of the generated objects (default: the ProviderConfig's); the ProviderConfig
        /// must be there too.
        #[arg(long)]
        namespace: Option<String>,
        /// Write into this folder (with a kustomization.yaml) instead of printing.
        #[arg(short = 'o', long)]
        output_dir: Option<PathBuf>,
        /// Files in the output folder: one per object, or one per kind.
        #[arg(long, value_enum, default_value_t = Layout::PerObject, requires = "output_dir")]
        layout: Layout,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportKind {
    ServiceProfiles,
    Subscriptions,
}

/// `--mode`: one of our modes (spelled as in the spec), or `Unknown` for a vendor state that is
/// none of them.
fn parse_mode_filter(text: &str) -> Result<Option<SubscriptionMode>, String> {
    if text == "Unknown" {
        return Ok(None);
    }
    serde_json::from_value(serde_json::json!(text))
        .map(Some)
        .map_err(|_| format!("{text:?} is not a mode: Active, Paused, Deactivated, Terminated or Unknown"))
}

/// `--management-policy`, spelled as in the spec.
fn parse_policy(text: &str) -> Result<ManagementPolicy, String> {
    serde_json::from_value(serde_json::json!(text))
        .map_err(|_| format!("{text:?} is not a management policy: Full, ObserveOnly or Paused"))
}

#[derive(Clone, Copy, ValueEnum)]
enum SimVendor {
    Emnify,
    Telenor,
    #[value(name = "bics-sft")]
    BicsSft,
}

/// `--chaos`: a [`vendor_sim::chaos::ChaosConfig`] as JSON, checked.
fn parse_chaos(text: &str) -> Result<vendor_sim::chaos::ChaosConfig, String> {
    let config: vendor_sim::chaos::ChaosConfig =
        serde_json::from_str(text).map_err(|e| format!("not a chaos config: {e}"))?;
    config.check()?;
    Ok(config)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crd::parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration (e.g. 90s, 10m, 1h, 250ms)"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The exit code of `apply` / `plan`: theirs, or the error's (printed first, with its causes).
fn offline_exit(result: Result<i32, offline::OfflineError>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            // The message carries its cause's text already; the chain would repeat it.
            eprintln!("Error: {e}");
            e.exit_code()
        }
    }
}

/// A simulator's shutdown, whichever vendor it plays.
type SimShutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(cli_main())
}

/// Exit code of a command line that cannot be parsed (sysexits' EX_USAGE), distinct from every
/// code `apply` and `plan` give (0-3).
const EXIT_USAGE: i32 = 64;

async fn cli_main() -> anyhow::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    connectivity_operator::install_crypto_provider();
    match cli.command {
        Command::Generate { check, root } => {
            if check {
                let drifted = connectivity_operator::generate::drifted(&root).map_err(anyhow::Error::msg)?;
                if !drifted.is_empty() {
                    for p in &drifted {
                        eprintln!("{} is not what `connectivity-operator generate` writes", p.display());
                    }
                    bail!("{} generated files drifted", drifted.len());
                }
            } else {
                for p in connectivity_operator::generate::write(&root).map_err(anyhow::Error::msg)? {
                    println!("wrote {}", p.display());
                }
            }
            Ok(())
        }
        Command::Crd { output_dir } => {
            let crds = crd::all_crds();
            match output_dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
                    for c in &crds {
                        let path = dir.join(crd::crd_file_name(c));
                        std::fs::write(&path, crd::crd_yaml(c)?)
                            .with_context(|| format!("failed to write {}", path.display()))?;
                    }
                }
                None => {
                    for c in &crds {
                        print!("{}", crd::crd_yaml(c)?);
                    }
                }
            }
            Ok(())
        }
        Command::Run {
            resync_interval,
            metrics_addr,
            namespaces,
            vendor_timeout,
            slow_vendor_timeout,
            pending_poll_interval,
            max_concurrent_reconciles,
            provider_cache_ttl,
            bulk_writes,
            bulk_write_window,
            bulk_write_max_delay,
            bulk_observation,
            leader_election,
            leader_election_namespace,
            leader_election_lease,
        } => {
            init_logging(cli.log_format);
            let client = kube::Client::try_default()
                .await
                .context("failed to build a Kubernetes client (kubeconfig or in-cluster config)")?;
            let settings = Settings {
                resync_interval,
                vendor_timeout,
                slow_vendor_timeout,
                pending_poll_interval,
                max_concurrent_reconciles,
                provider_cache_ttl,
                bulk_writes,
                bulk_write_window,
                bulk_write_max_delay,
                bulk_observation,
                ..Settings::default()
            };
            let leader_election = leader_election.then(|| LeaderElection {
                namespace: leader_election_namespace,
                lease: leader_election_lease,
                identity: std::env::var("POD_NAME")
                    .unwrap_or_else(|_| format!("connectivity-operator-{}", std::process::id())),
                duration_seconds: 15,
            });
            let options = RunOptions {
                settings,
                listen: metrics_addr,
                namespaces,
                leader_election,
            };
            run(client, options, Metrics::with_heap_stats(heap_stats)).await?;
            Ok(())
        }
        Command::Sim {
            vendor,
            listen,
            endpoints,
            free_sims,
            latency,
            no_rate_limits,
            rate_limit_scale,
            token_ttl,
            subscriptions,
            async_delay,
            inferred,
            chaos,
        } => {
            init_logging(cli.log_format);
            let chaos = chaos.unwrap_or_default();
            // The vendor's documented limit scaled (or none), for the BICS and Telenor simulators.
            let scaled = |limit: Option<(f64, u32)>| {
                limit.filter(|_| !no_rate_limits).map(|(rate, burst)| {
                    (
                        rate * rate_limit_scale,
                        (f64::from(burst) * rate_limit_scale).ceil() as u32,
                    )
                })
            };
            // Start the simulator, print one JSON line describing it, serve until a signal.
            let (line, stop): (serde_json::Value, SimShutdown) = match vendor {
                SimVendor::Emnify => {
                    let config = vendor_sim::emnify::EmnifyConfig {
                        token_ttl,
                        rate_limits: !no_rate_limits,
                        rate_limit_scale,
                        latency,
                        seed: vendor_sim::emnify::SeedConfig {
                            endpoints,
                            free_sims,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let sim = vendor_sim::emnify::EmnifySim::new(config);
                    sim.set_chaos(chaos.clone()).map_err(anyhow::Error::msg)?;
                    let sim = sim
                        .serve(listen)
                        .await
                        .context("failed to start the emnify simulator")?;
                    let line =
                        serde_json::json!({"vendor": "emnify", "url": sim.url, "credentials": sim.credentials()});
                    (line, Box::pin(sim.shutdown()))
                }
                SimVendor::BicsSft => {
                    let defaults = vendor_sim::bics::BicsConfig::default();
                    let config = vendor_sim::bics::BicsConfig {
                        latency,
                        rate_limit: scaled(defaults.rate_limit),
                        seed: vendor_sim::bics::BicsSeed {
                            endpoints,
                            free_sims,
                            ..Default::default()
                        },
                        inferred: if inferred {
                            vendor_sim::bics::BicsInferred::all()
                        } else {
                            vendor_sim::bics::BicsInferred::default()
                        },
                        ..defaults
                    };
                    let sim = vendor_sim::bics::BicsSim::new(config);
                    sim.set_chaos(chaos.clone()).map_err(anyhow::Error::msg)?;
                    let sim = sim
                        .serve(listen)
                        .await
                        .context("failed to start the BICS SIM for Things simulator")?;
                    let line =
                        serde_json::json!({"vendor": "bics-sft", "url": sim.url, "credentials": sim.credentials()});
                    (line, Box::pin(sim.shutdown()))
                }
                SimVendor::Telenor => {
                    let defaults = vendor_sim::telenor::TelenorConfig::default();
                    let config = vendor_sim::telenor::TelenorConfig {
                        async_delay,
                        latency,
                        rate_limit: scaled(defaults.rate_limit),
                        seed: vendor_sim::telenor::TelenorSeed {
                            subscriptions,
                            ..Default::default()
                        },
                        inferred: if inferred {
                            vendor_sim::telenor::TelenorInferred::all()
                        } else {
                            vendor_sim::telenor::TelenorInferred::default()
                        },
                        ..defaults
                    };
                    let sim = vendor_sim::telenor::TelenorSim::new(config);
                    sim.set_chaos(chaos.clone()).map_err(anyhow::Error::msg)?;
                    let sim = sim
                        .serve(listen)
                        .await
                        .context("failed to start the Telenor IoT Connect simulator")?;
                    let line = serde_json::json!({"vendor": "telenor", "url": sim.url, "token_url": sim.token_url, "credentials": sim.credentials()});
                    (line, Box::pin(sim.shutdown()))
                }
            };
            println!("{line}");
            connectivity_operator::run::shutdown_signal().await;
            stop.await;
            Ok(())
        }
        Command::Apply { paths, simulate } => {
            init_logging(cli.log_format);
            let result = offline::apply(
                &OfflineOptions {
                    paths,
                    simulate,
                    ..Default::default()
                },
                &mut std::io::stdout(),
            )
            .await;
            std::process::exit(offline_exit(result));
        }
        Command::Plan { paths, simulate } => {
            init_logging(cli.log_format);
            let result = offline::plan(
                &OfflineOptions {
                    paths,
                    simulate,
                    ..Default::default()
                },
                &mut std::io::stdout(),
            )
            .await;
            if matches!(result, Ok(1)) {
                eprintln!("Error: some objects could not be planned");
            }
            std::process::exit(offline_exit(result));
        }
        Command::Import {
            paths,
            simulate,
            provider_config,
            kinds,
            modes,
            iccid_prefixes,
            imsi_prefixes,
            service_profiles,
            management_policy,
            namespace,
            output_dir,
            layout,
        } => {
            use connectivity_operator::import::{self, ImportOptions, Output, Selector};
            init_logging(cli.log_format);
            let options = ImportOptions {
                offline: OfflineOptions {
                    paths,
                    simulate,
                    ..Default::default()
                },
                provider_config,
                profiles: kinds.contains(&ImportKind::ServiceProfiles),
                subscriptions: kinds.contains(&ImportKind::Subscriptions),
                selector: Selector {
                    modes,
                    iccid_prefixes,
                    imsi_prefixes,
                    service_profiles,
                },
                policy: management_policy,
                namespace,
                output: match output_dir {
                    Some(path) => Output::Directory { path, layout },
                    None => Output::Stdout,
                },
            };
            let result = import::import(&options, &mut std::io::stdout().lock()).await;
            let result = result.map(|report| {
                eprint!("{}", import::summary(&report));
                0
            });
            std::process::exit(offline_exit(result));
        }
    }
}

//! `secpipe`: every role of the pipeline as a subcommand.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secpipe::{
    logging, roles,
    runtime::{Shutdown, ShutdownTrigger},
    Settings,
};

#[derive(Parser)]
#[command(
    name = "secpipe",
    version,
    about = "Event-streaming pipeline for security data"
)]
struct Cli {
    /// TOML configuration file (see secpipe.example.toml); SECPIPE__SECTION__KEY variables
    /// override it.
    #[arg(long, global = true, env = "SECPIPE_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ingest gateway (HTTP -> Kafka).
    Gateway,
    /// Run a stream processor (a consumer group member; start more to share partitions).
    Process {
        #[arg(value_enum)]
        processor: secpipe::roles::Proc,
    },
    /// Run a sink.
    Sink {
        #[command(subcommand)]
        sink: SinkCommand,
    },
    /// Run every role in one process.
    Run,
    /// Send a notification by hand, outside the alert stream.
    Notify {
        #[command(subcommand)]
        notify: NotifyCommand,
    },
    /// Create or upgrade ClickHouse tables (safe to rerun).
    Migrate {
        /// Only list every migration as applied (with when) or pending; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Check the configuration and print it in effect, secrets masked.
    Config {
        #[command(subcommand)]
        config: ConfigCommand,
    },
    /// Read the dead-letter topic, or replay selected records to their original topic.
    Dlq {
        #[command(subcommand)]
        dlq: DlqCommand,
    },
    /// Drop expired partitions now (the loader also does it every retention.interval_secs).
    Retention,
    /// Manage Kafka topics.
    Topics {
        #[command(subcommand)]
        topics: TopicsCommand,
    },
    /// Send events from a file (or `-` for stdin) straight to Kafka.
    Produce {
        /// What the input holds.
        #[arg(value_enum)]
        kind: secpipe::produce::Kind,
        /// Input file; `-` reads standard input.
        #[arg(default_value = "-")]
        input: String,
        /// Scan context of a SARIF upload, as `POST /v1/sarif` takes it: repository_uri,
        /// repository, commit_sha, ref, category, checkout_uri, invoked_by, scan_id.
        #[arg(long = "context", value_name = "NAME=VALUE")]
        context: Vec<String>,
    },
    /// Measure throughput on the running local stack.
    Bench {
        #[command(subcommand)]
        bench: BenchCommand,
    },
    /// Manage gateway bearer tokens.
    Token {
        #[command(subcommand)]
        token: TokenCommand,
    },
    /// Run the pipeline on the local stack, feed it sample events, print what landed.
    Demo,
    /// Inspect and check the Avro schemas compiled into this build.
    Schemas {
        #[command(subcommand)]
        schemas: SchemasCommand,
    },
    /// Settings for the deploy/local scripts.
    Stack {
        #[command(subcommand)]
        stack: StackCommand,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a payload already in the integration's own format (JSON) to one endpoint, or to
    /// every endpoint of the integration when --endpoint is not given.
    Raw {
        /// The integration's name in [notify.integrations].
        integration: String,
        /// The endpoint (URL, routing key, recipient, topic ARN) instead of the configured ones.
        #[arg(long)]
        endpoint: Option<String>,
        /// File holding the JSON payload; `-` reads standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Send a test alert to every endpoint of an integration.
    Test {
        /// The integration's name in [notify.integrations].
        integration: String,
    },
}

#[derive(Subcommand)]
enum SinkCommand {
    /// Load processed topics into ClickHouse.
    Clickhouse,
    /// Deliver alerts to the notification integrations.
    Notify,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration (file and environment); print it as JSON with every
    /// secret masked. Exits non-zero with the key's name when a value is bad.
    Check,
}

#[derive(clap::Args, Debug, Clone)]
struct DlqSelection {
    /// Only records that came from this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only records dead-lettered by this stage (e.g. process.telemetry).
    #[arg(long)]
    stage: Option<String>,
    /// Only records whose cause contains this text.
    #[arg(long)]
    cause: Option<String>,
    /// Only these records, as PARTITION@OFFSET of the dead-letter topic (as `dlq tail` prints).
    #[arg(long = "id")]
    ids: Vec<String>,
}

impl From<DlqSelection> for secpipe::operate::Selection {
    fn from(d: DlqSelection) -> Self {
        Self {
            topic: d.topic,
            stage: d.stage,
            cause: d.cause,
            ids: d.ids,
        }
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print dead letters, oldest first: id, time, stage, origin, size, cause.
    Tail {
        #[command(flatten)]
        select: DlqSelection,
        /// Print only the last N.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Produce the original key and payload of the selected dead letters to their original
    /// topic (after fixing what made them fail). Truncated copies are skipped.
    Replay {
        #[command(flatten)]
        select: DlqSelection,
    },
}

/// Roles a gateway token can have.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TokenRole {
    Producer,
    Analyst,
    Admin,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every topic the pipeline needs (idempotent).
    Create,
}

#[derive(Subcommand)]
enum SchemasCommand {
    /// Fail if a schema change breaks backward compatibility or edits a released version.
    Check {
        #[arg(long, default_value = "schemas/avro/fingerprints.lock")]
        lock: PathBuf,
    },
    /// Pin the fingerprints of every schema version (after adding a new version file).
    Lock {
        #[arg(long, default_value = "schemas/avro/fingerprints.lock")]
        lock: PathBuf,
    },
    /// List every record and version with its fingerprint.
    List,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// NDJSON telemetry batches (reference mix) through the gateway to the broker.
    Gateway {
        /// Events to send (after one warm-up batch).
        #[arg(long, default_value_t = 500_000)]
        events: usize,
        /// Events per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Runs (the summary gives median, min and max).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The whole pipeline, each role its own process, with the limits it runs against.
    Pipeline {
        /// Telemetry events to send through the gateway in the throughput phase.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events per second of the latency phase; 0 = half the throughput phase's rate.
        #[arg(long, default_value_t = 0.0)]
        paced_rate: f64,
        /// Seconds of the latency phase.
        #[arg(long, default_value_t = 10)]
        paced_secs: u64,
        /// Runs (the summary gives median, min and max).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The notifier (`secpipe sink notify`) delivering alerts to four local integrations, one of
    /// them hung: deliveries per second to the others.
    Notify {
        /// Alerts per run (each goes to all four integrations).
        #[arg(long, default_value_t = 2_000)]
        alerts: usize,
        /// Runs; the figure is their median.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Let the fourth integration answer too (the comparison without a hung endpoint).
        #[arg(long)]
        no_hung: bool,
    },
    /// The ClickHouse loader against clickhouse-client inserting the same rows.
    Loader {
        /// Processed telemetry events to load.
        #[arg(long, default_value_t = 300_000)]
        events: usize,
        /// Runs, each the loader then clickhouse-client (A B A B ...).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Redaction on one core over the reference mix (no broker or ClickHouse needed): events/s,
    /// median of 3 runs with min and max, and what it costs the gateway's CPU path per event.
    Redact {
        /// Events of each mix.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// The telemetry processor, as its own process, on a backlog and then at a steady rate.
    Processor {
        /// Backlog of reference-mix events to process.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per second of the latency phase.
        #[arg(long, default_value_t = 20_000)]
        rate: usize,
        /// Seconds of the latency phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Runs (the summary gives median, min and max).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random token and print it with the config entry that stores its hash.
    New {
        /// Name of the caller (e.g. ci-scanner).
        #[arg(long)]
        name: String,
        /// What the holder may do.
        #[arg(long, value_enum, default_value_t = TokenRole::Producer)]
        role: TokenRole,
    },
}

#[derive(Subcommand)]
enum StackCommand {
    /// Print shell assignments of the stack's ports and paths.
    Env,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    if let Command::Stack {
        stack: StackCommand::Env,
    } = cli.command
    {
        for (k, v) in settings.stack_env() {
            println!("{k}='{}'", v.replace('\'', "'\\''"));
        }
        return Ok(());
    }
    if let Command::Schemas { schemas } = &cli.command {
        return schemas_command(schemas);
    }
    if let Command::Token {
        token: TokenCommand::New { name, role },
    } = &cli.command
    {
        let token = format!(
            "sp_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        println!("token (give it to the caller; it is not stored): {token}");
        println!();
        println!("[[gateway.tokens]]");
        println!("name = {name:?}");
        println!("sha256 = {:?}", secpipe_gateway::hash_token(&token));
        println!("role = {:?}", format!("{role:?}").to_lowercase());
        return Ok(());
    }
    if let Command::Config {
        config: ConfigCommand::Check,
    } = &cli.command
    {
        let effective = secpipe::operate::effective_config(&settings)?;
        println!("{}", serde_json::to_string_pretty(&effective)?);
        eprintln!("configuration is valid");
        return Ok(());
    }
    logging::init(&settings.log, cli.log_json);
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async move {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(stop_on_signal(trigger));
        secpipe::ops::metrics();
        if !settings.schemas.registry_url.is_empty() {
            let client = secpipe_schemas::registry::SchemaRegistryClient::new(&settings.schemas.registry_url)?;
            let catalog = secpipe_schemas::catalog().map_err(|e| anyhow::anyhow!("{e}"))?;
            let ids = client.register_catalog(catalog).await.context("registering schemas")?;
            tracing::info!(url = %settings.schemas.registry_url, schemas = ids.len(), "schemas registered; writing the Confluent wire format");
            secpipe_schemas::registry::install(ids);
        }
        let with_ops = |name: &'static str, role: futures::future::BoxFuture<'static, anyhow::Result<()>>| {
            use futures::FutureExt;
            let ops = secpipe::ops::serve(settings.clone(), shutdown.clone()).boxed();
            roles::run_roles(vec![(name, role), ("ops", ops)])
        };
        use futures::FutureExt;
        match cli.command {
            Command::Gateway => with_ops("gateway", roles::gateway(settings.clone(), shutdown.clone()).boxed()).await,
            Command::Sink {
                sink: SinkCommand::Clickhouse,
            } => with_ops("sink clickhouse", roles::clickhouse_loader(settings.clone(), shutdown.clone()).boxed()).await,
            Command::Sink {
                sink: SinkCommand::Notify,
            } => with_ops("sink notify", roles::notifier(settings.clone(), shutdown.clone()).boxed()).await,
            Command::Run => with_ops("run", roles::run_all(settings.clone(), shutdown.clone()).boxed()).await,
            Command::Notify { notify } => {
                use secpipe_sinks::notify::manual;
                let report = match notify {
                    NotifyCommand::Raw { integration, endpoint, file } => {
                        let text = if file == "-" {
                            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                        } else {
                            std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
                        };
                        let payload: serde_json::Value = serde_json::from_str(&text)
                            .with_context(|| format!("{file} is not JSON"))?;
                        manual::raw(&settings.notify, &integration, endpoint.as_deref(), payload).await?
                    }
                    NotifyCommand::Test { integration } => manual::test(&settings.notify, &integration).await?,
                };
                secpipe::operate::print_delivery(&report)
            }
            Command::Process { processor } => {
                with_ops("process", roles::processor(settings.clone(), processor, shutdown.clone()).boxed()).await
            }
            Command::Retention => {
                let r = secpipe_sinks::clickhouse::retention::run(&settings.clickhouse, &settings.retention, settings.processors.admin_events.retention_secs).await?;
                println!("dropped {} partition(s): {}; TTL set on {} table(s); {} expired admin-event row(s) deleted", r.dropped.len(), r.dropped.join(", "), r.ttl_set.len(), r.admin_event_rows_deleted);
                Ok(())
            }
            Command::Migrate { status: true } => {
                for m in secpipe_sinks::clickhouse::migration_status(&settings.clickhouse).await? {
                    match m.applied_at {
                        Some(at) => println!("{:>4}  {:<28} applied at {at} (unix seconds)", m.version, m.name),
                        None => println!("{:>4}  {:<28} pending", m.version, m.name),
                    }
                }
                Ok(())
            }
            Command::Dlq { dlq: DlqCommand::Tail { select, limit } } => {
                let letters = tokio::task::spawn_blocking({
                    let settings = settings.clone();
                    move || secpipe::operate::read_dead_letters(&settings)
                })
                .await??;
                let select: secpipe::operate::Selection = select.into();
                let chosen: Vec<_> = letters.iter().filter(|l| select.matches(l)).collect();
                for l in &chosen[chosen.len().saturating_sub(limit)..] {
                    println!("{}", secpipe::operate::describe(l));
                }
                eprintln!("{} dead letter(s) match, of {} in {}", chosen.len(), letters.len(), settings.kafka.topics.dead_letter);
                Ok(())
            }
            Command::Dlq { dlq: DlqCommand::Replay { select } } => {
                let letters = tokio::task::spawn_blocking({
                    let settings = settings.clone();
                    move || secpipe::operate::read_dead_letters(&settings)
                })
                .await??;
                let (replayed, skipped) = secpipe::operate::replay(&settings, &letters, &select.into()).await?;
                println!("replayed {replayed} record(s) to their original topics; {skipped} skipped");
                Ok(())
            }
            Command::Migrate { status: false } => {
                let applied = secpipe_sinks::clickhouse::migrate(&settings.clickhouse).await?;
                println!("{} migration(s) applied", applied.len());
                Ok(())
            }
            Command::Topics {
                topics: TopicsCommand::Create,
            } => {
                let created = secpipe::topics::create_all(&settings).await?;
                println!("{} topic(s) created: {}", created.len(), created.join(", "));
                Ok(())
            }
            Command::Demo => secpipe::demo::run(&settings).await,
            Command::Bench {
                bench: BenchCommand::Gateway { events, batch, concurrency, runs },
            } => {
                let title = format!("bench gateway ({events} events, batches of {batch}, {concurrency} in flight, broker {})", settings.kafka.brokers);
                secpipe::bench::repeat(&title, runs, |_| secpipe::bench::gateway(&settings, events, batch, concurrency)).await?;
                Ok(())
            }
            Command::Bench {
                bench: BenchCommand::Processor { events, rate, seconds, runs },
            } => {
                let title = format!("bench processor ({events}-event backlog, latency at {rate} events/s for {seconds} s, broker {})", settings.kafka.brokers);
                secpipe::bench::repeat(&title, runs, |_| secpipe::bench::processor(&settings, events, rate, seconds)).await?;
                Ok(())
            }
            Command::Bench {
bench: BenchCommand::Notify { alerts, runs, no_hung },
            } => {
                let f = secpipe::bench::notify(&settings, alerts, runs, !no_hung).await?;
                let opsgenie = if no_hung { "an answering" } else { "a hung" };
                println!(
                    "notify: {} alerts per run to webhook, Slack, PagerDuty and {opsgenie} Opsgenie: {:.0} deliveries/s to the first three (median of {} runs; min {:.0}, max {:.0}); Opsgenie took {} requests (broker {})",
                    f.alerts, f.median, f.runs.len(), f.min, f.max, f.hung_requests, settings.kafka.brokers
                );
                Ok(())
            }
            Command::Bench {
                bench: BenchCommand::Loader { events, runs },
            } => {
                let title = format!("bench loader ({events} processed telemetry events, broker {})", settings.kafka.brokers);
                secpipe::bench::repeat(&title, runs, |_| secpipe::bench::loader(&settings, events)).await?;
                Ok(())
            }
            Command::Bench {
                bench: BenchCommand::Redact { events },
            } => {
                let f = secpipe::bench::redact(&settings, events)?;
                let show = |r: &secpipe::bench::Runs| {
                    format!(
                        "median {:.0} events/s (min {:.0}, max {:.0})",
                        r.median(),
                        r.min(),
                        r.max()
                    )
                };
                println!(
                    "redact, one core, {} events, 3 runs: reference mix {} with {} secrets replaced; full mix {} with {} replaced",
                    f.events, show(&f.reference), f.reference_redactions, show(&f.full), f.full_redactions
                );
                println!(
                    "gateway CPU path per core (NDJSON parse + checks + Avro encode): without redaction {}; with it {}: {:.1}% fewer events/s",
                    show(&f.gateway_without),
                    show(&f.gateway_with),
                    f.gateway_drop_percent()
                );
                Ok(())
            }
            Command::Bench {
                bench: BenchCommand::Pipeline { events, paced_rate, paced_secs, runs },
            } => {
                let title = format!("bench pipeline ({events} events, then {paced_secs} s paced, broker {})", settings.kafka.brokers);
                let all = secpipe::bench::repeat(&title, runs, |_| secpipe::bench::pipeline(&settings, events, paced_rate, paced_secs)).await?;
                if let Some(f) = all.last() {
                    let rows: Vec<String> = f.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
                    println!("  rows the last run wrote in its throughput phase: {}", rows.join(", "));
                    println!(
                        "  records it produced to the broker then: {} ({:.1} MB); consumed: {}",
                        f.records_produced, f.bytes_produced as f64 / 1e6, f.records_consumed
                    );
                }
                Ok(())
            }
            Command::Produce {
                kind,
                input,
                context,
            } => {
                let ctx = secpipe::produce::upload_context(&context)?;
                let summary = secpipe::produce::run_with(&settings, kind, &input, &ctx).await?;
                anyhow::ensure!(summary.rejected == 0, "{} input(s) rejected", summary.rejected);
                Ok(())
            }
            Command::Stack { .. } | Command::Schemas { .. } | Command::Token { .. } | Command::Config { .. } => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    // A failed role must end the process now: blocking calls still running (a restore, a
    // commit) are abandoned, and their work is read again after the restart.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn schemas_command(cmd: &SchemasCommand) -> anyhow::Result<()> {
    use secpipe_schemas::compat;
    let catalog = secpipe_schemas::catalog().map_err(|e| anyhow::anyhow!("{e}"))?;
    match cmd {
        SchemasCommand::Check { lock } => {
            let text = std::fs::read_to_string(lock)
                .with_context(|| format!("reading {}", lock.display()))?;
            let report = compat::check(catalog.versions(), &text);
            for p in &report.unpinned {
                println!("new (not pinned yet): {p}");
            }
            for p in &report.problems {
                println!("BREAKING: {p}");
            }
            anyhow::ensure!(
                report.passed(),
                "{} breaking schema change(s)",
                report.problems.len()
            );
            println!(
                "schemas check passed: {} records, {} versions",
                catalog.record_names().len(),
                catalog.versions().len()
            );
            Ok(())
        }
        SchemasCommand::Lock { lock } => {
            let existing = std::fs::read_to_string(lock).unwrap_or_default();
            let report = compat::check(catalog.versions(), &existing);
            anyhow::ensure!(
                report.passed(),
                "refusing to pin a breaking change:\n{}",
                report.problems.join("\n")
            );
            std::fs::write(lock, compat::lock_file(catalog.versions()))?;
            println!(
                "pinned {} schema versions in {}",
                catalog.versions().len(),
                lock.display()
            );
            Ok(())
        }
        SchemasCommand::List => {
            for v in catalog.versions() {
                println!(
                    "{:<45} v{:<3} {:016x}  {}",
                    v.full_name, v.version, v.fingerprint, v.path
                );
            }
            Ok(())
        }
    }
}

async fn stop_on_signal(trigger: ShutdownTrigger) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: finishing the work in hand (at most 30 s)");
    trigger.trigger();
    // Whatever still runs after 30 s is abandoned: uncommitted input is read again on restart.
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    tracing::error!("still stopping after 30 s: exiting; uncommitted records will be read again");
    std::process::exit(2);
}

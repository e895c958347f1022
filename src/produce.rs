//! `secpipe produce scan-report|sarif|scan-failure|telemetry [FILE|-]`: send files or stdin
//! straight to Kafka from a CI job, through the same [`Ingestor`] as the gateway, with a
//! progress bar for large inputs and a summary at the end.
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    time::Instant,
};

use anyhow::Context;
use futures::{stream::FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use secpipe_producers::{
    sarif::UploadContext, scan_settings::ScanSettings, EventProducer, IngestError, Ingestor,
    Prepared,
};

use crate::Settings;

/// What `secpipe produce` sends.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    ScanReport,
    Sarif,
    ScanFailure,
    Telemetry,
}

/// Totals of one `secpipe produce` run.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub records: usize,
    pub rejected: usize,
    pub bytes_read: u64,
}

const TELEMETRY_BATCH_LINES: usize = 500;
const IN_FLIGHT_BATCHES: usize = 8;

fn open(input: &str) -> anyhow::Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    if input == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let path = Path::new(input);
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 20, file)), len))
}

fn progress(len: Option<u64>) -> ProgressBar {
    let bar = match len {
        Some(n) if n > 1 << 20 => ProgressBar::new(n),
        _ => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs one `secpipe produce`; prints rejected lines to stderr and the summary to stdout.
pub async fn run(settings: &Settings, kind: Kind, input: &str) -> anyhow::Result<Summary> {
    run_with(settings, kind, input, &UploadContext::default()).await
}

/// The scan context of `secpipe produce sarif --context NAME=VALUE ...` (the parameters of
/// `POST /v1/sarif`); an unknown name is an error naming the ones there are.
pub fn upload_context(pairs: &[String]) -> anyhow::Result<UploadContext> {
    let mut ctx = UploadContext::default();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--context {pair}: expected NAME=VALUE"))?;
        anyhow::ensure!(
            ctx.set(name.trim(), value),
            "--context {name}: unknown; the upload takes {}",
            UploadContext::PARAMETERS.join(", ")
        );
    }
    Ok(ctx)
}

/// [`run`] with the scan context of a SARIF upload.
pub async fn run_with(
    settings: &Settings,
    kind: Kind,
    input: &str,
    ctx: &UploadContext,
) -> anyhow::Result<Summary> {
    let producer = EventProducer::new(&settings.kafka, "produce")?;
    let ingestor = Ingestor::new(producer, settings.kafka.topics.clone(), &settings.gateway)?
        .with_scan_settings(ScanSettings::new(&settings.scans));
    let (mut reader, len) = open(input)?;
    let bar = progress(len);
    let started = Instant::now();
    let mut summary = Summary::default();
    match kind {
        Kind::Telemetry => telemetry(&ingestor, &mut reader, &bar, &mut summary).await?,
        Kind::Sarif => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            summary.bytes_read = body.len() as u64;
            let prepared = ingestor.sarif_with(&body, ctx).map_err(describe)?;
            ingestor.send(&prepared).await?;
            summary.records += prepared.len();
        }
        Kind::ScanReport | Kind::ScanFailure => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            summary.bytes_read = body.len() as u64;
            // One JSON document, or NDJSON of many.
            let docs: Vec<&[u8]> = if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                vec![&body]
            } else {
                body.split(|&b| b == b'\n')
                    .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                    .collect()
            };
            for (i, doc) in docs.iter().enumerate() {
                let prepared = match kind {
                    Kind::ScanReport => ingestor.scan_report(doc),
                    _ => ingestor.scan_failure(doc),
                };
                match prepared {
                    Ok(p) => {
                        ingestor.send(&p).await?;
                        summary.records += p.len();
                    }
                    Err(e) => {
                        summary.rejected += 1;
                        eprintln!("document {}: {}", i + 1, describe(e));
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {} records ({} rejected) from {} bytes in {:.2} s ({:.0} records/s)",
        summary.records,
        summary.rejected,
        summary.bytes_read,
        secs,
        summary.records as f64 / secs.max(1e-9)
    );
    ingestor
        .producer()
        .flush(std::time::Duration::from_secs(30))?;
    Ok(summary)
}

fn describe(e: IngestError) -> anyhow::Error {
    match e {
        IngestError::NoValidLine(lines) => anyhow::anyhow!(
            "no valid line: {}",
            lines
                .iter()
                .map(|l| format!("line {}: {}", l.line, l.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!(other),
    }
}

/// NDJSON telemetry in batches of 500 lines, up to 8 batches in flight.
async fn telemetry(
    ingestor: &Ingestor,
    reader: &mut Box<dyn BufRead + Send>,
    bar: &ProgressBar,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut in_flight = FuturesUnordered::new();
    let mut first_line = 1usize;
    loop {
        let mut chunk = Vec::with_capacity(TELEMETRY_BATCH_LINES * 600);
        let mut lines = 0;
        while lines < TELEMETRY_BATCH_LINES {
            let n = reader.read_until(b'\n', &mut chunk)?;
            if n == 0 {
                break;
            }
            lines += 1;
        }
        if lines == 0 {
            break;
        }
        summary.bytes_read += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
        match ingestor.telemetry(&chunk) {
            Ok(prepared) => {
                let rejected = prepared.summary["rejected"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for r in &rejected {
                    eprintln!(
                        "line {}: {}",
                        first_line - 1 + r["line"].as_u64().unwrap_or(0) as usize,
                        r["reason"].as_str().unwrap_or_default()
                    );
                }
                summary.rejected += rejected.len();
                summary.records += prepared.len();
                in_flight.push(send_owned(ingestor, prepared));
            }
            Err(IngestError::NoValidLine(rejected)) => {
                for r in &rejected {
                    eprintln!("line {}: {}", first_line - 1 + r.line, r.reason);
                }
                summary.rejected += rejected.len();
            }
            Err(e) => return Err(e.into()),
        }
        first_line += lines;
        while in_flight.len() >= IN_FLIGHT_BATCHES {
            in_flight.next().await.transpose()?;
        }
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    Ok(())
}

async fn send_owned(ingestor: &Ingestor, prepared: Prepared) -> anyhow::Result<()> {
    ingestor.send(&prepared).await.map_err(Into::into)
}

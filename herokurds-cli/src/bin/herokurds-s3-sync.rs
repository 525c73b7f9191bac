//! `herokurds-s3-sync s3://SRC[/prefix] s3://DST[/prefix]`: server-side
//! bucket sync, like `aws s3 sync` but faster and keeping every header,
//! metadata and tag. Glue only: see `herokurds_core::s3`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use herokurds_cli::s3_input::ordered_filters;
use herokurds_cli::s3_render::{exit_code, stopped, summary, SyncRenderer};
use herokurds_cli::{init_tracing_verbose, print_json, report_error, EXIT_ERROR};
use herokurds_core::aws::ClientOptions;
use herokurds_core::s3::{sync, ClientSource, S3Location, Sse, StorageClass, SyncOptions};
use tokio_util::sync::CancellationToken;

/// Copy the objects of one S3 location to another, server-side.
///
/// A key is copied when the destination lacks it, when sizes differ, or when
/// the source is newer (like `aws s3 sync`). Credentials come from the
/// standard AWS chain (environment, profiles, SSO); AWS_ENDPOINT_URL is
/// honoured.
#[derive(Parser)]
#[command(
    name = "herokurds-s3-sync",
    version,
    after_help = "Examples:
  herokurds-s3-sync s3://old-bucket s3://new-bucket --dryrun     # what would be copied
  herokurds-s3-sync s3://old-bucket s3://new-bucket --delete --verify
  herokurds-s3-sync s3://old/media s3://new/media --source-profile heroku --dest-profile aws \\
      --source-region us-east-1 --dest-region us-east-1

Exit status: 0 everything synced (and verified); 1 --verify found a \
                  difference, or the --delete guard refused (nothing was copied or \
                  deleted; with --dryrun: would refuse); 2 an error (a key failed to copy or delete, a listing \
                  failed, bad arguments, Ctrl-C, SIGTERM or SIGHUP).\n\
                  The --delete guard: a sync with --delete stops before changing anything \
                  when the source lists no keys while the destination has some (a \
                  mistyped bucket or prefix), or when more than half of the destination's \
                  keys, and at least 100, would be deleted; --force-delete overrides it.\n\
                  --json prints {\"copied\":N,\"skipped\":N,\"deleted\":N,\"failed\":N,\"bytes\":N,...} on stdout."
)]
struct Args {
    /// Source, s3://bucket[/prefix].
    source: S3Location,
    /// Destination, s3://bucket[/prefix].
    destination: S3Location,
    /// Compare sizes only, not modification times.
    #[arg(long)]
    size_only: bool,
    /// Delete destination objects the source does not have (never after a failed copy).
    #[arg(long)]
    delete: bool,
    /// With --delete: delete even when the source lists no keys, or when
    /// more than half of the destination's keys (and at least 100) would go.
    #[arg(long, requires = "delete")]
    force_delete: bool,
    /// Skip keys matching this glob (`*` matches `/` too); repeatable, order matters.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Keep keys matching this glob even if excluded before; repeatable.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Print what would be copied and deleted; change nothing.
    #[arg(long, alias = "dry-run")]
    dryrun: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    concurrency: usize,
    /// Copy objects larger than this in parts (max 5GiB).
    #[arg(long, default_value = "5GiB", value_parser = herokurds_core::size::parse_size, value_name = "SIZE")]
    multipart_threshold: u64,
    /// Part size of multipart copies (5MiB to 5GiB).
    #[arg(long, alias = "multipart-chunksize", default_value = "64MiB", value_parser = herokurds_core::size::parse_size, value_name = "SIZE")]
    part_size: u64,
    /// Storage class of the copies (STANDARD, STANDARD_IA, ...).
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<StorageClass>,
    /// Server-side encryption of the copies: AES256 (default when given alone) or aws:kms.
    #[arg(long, num_args = 0..=1, default_missing_value = "AES256", value_name = "ALGORITHM")]
    sse: Option<Sse>,
    /// KMS key for --sse aws:kms (implies it).
    #[arg(long, value_name = "KEY_ID")]
    sse_kms_key_id: Option<String>,
    /// AWS profile for listing the source and reading its tags (the copies
    /// themselves are requests made with the destination's credentials).
    #[arg(long, value_name = "PROFILE")]
    source_profile: Option<String>,
    /// AWS profile for the destination; it needs s3:GetObject and
    /// s3:GetObjectTagging on the source bucket when the accounts differ.
    #[arg(long, value_name = "PROFILE")]
    dest_profile: Option<String>,
    /// Region of the source bucket.
    #[arg(long, value_name = "REGION")]
    source_region: Option<String>,
    /// Region of the destination bucket.
    #[arg(long, value_name = "REGION")]
    dest_region: Option<String>,
    /// S3-compatible endpoint for both sides (default: AWS_ENDPOINT_URL, else AWS).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Attempts per request (throttling, 5xx and network errors are retried with backoff).
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_attempts: u32,
    /// After syncing, check every source key at the destination (size, ETag).
    #[arg(long)]
    verify: bool,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Log more: -v the AWS SDK's warnings too, -vv everything (RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn side(profile: Option<String>, region: Option<String>, endpoint: Option<String>) -> ClientSource {
    let mut options = ClientOptions::new();
    if let Some(p) = profile {
        options = options.profile(p);
    }
    if let Some(r) = region {
        options = options.region(r);
    }
    if let Some(e) = endpoint {
        options = options.endpoint_url(e);
    }
    ClientSource::Options(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    init_tracing_verbose(args.verbose);
    let filters = match ordered_filters(&matches) {
        Ok(f) => f,
        Err(e) => return report_error(&e.into()),
    };
    let sse = match (args.sse, args.sse_kms_key_id) {
        (Some(Sse::Aes256), Some(_)) => {
            return report_error(&anyhow::anyhow!("--sse-kms-key-id needs --sse aws:kms"))
        }
        (_, Some(key)) => Some(Sse::Kms { key_id: Some(key) }),
        (sse, None) => sse,
    };
    let options = SyncOptions::new()
        .size_only(args.size_only)
        .delete(args.delete)
        .force_delete(args.force_delete)
        .dry_run(args.dryrun)
        .verify(args.verify)
        .filters(filters)
        .concurrency(args.concurrency)
        .multipart_threshold(args.multipart_threshold)
        .part_size(args.part_size)
        .storage_class(args.storage_class)
        .sse(sse)
        .max_attempts(args.max_attempts)
        .source(side(
            args.source_profile,
            args.source_region,
            args.endpoint_url.clone(),
        ))
        .destination(side(args.dest_profile, args.dest_region, args.endpoint_url));

    // Ctrl-C, SIGTERM or SIGHUP: finish the copies in flight, delete
    // nothing more, report. A second Ctrl-C quits at once.
    let cancel = CancellationToken::new();
    herokurds_cli::cancel_on_signals(
        cancel.clone(),
        "interrupted: finishing the copies in flight (Ctrl-C again to quit now)",
    );
    let cancelled = cancel.clone();
    tokio::spawn(async move {
        cancelled.cancelled().await;
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(EXIT_ERROR));
        }
    });

    let renderer = SyncRenderer::new(args.destination.clone(), !args.no_progress, !args.json);
    let result = sync(&args.source, &args.destination, &options, &renderer, cancel).await;
    renderer.finish();
    let report = match result {
        Ok(report) => report,
        Err(e) => return stopped(e),
    };
    if args.json {
        if let Err(e) = print_json(&report) {
            return report_error(&e);
        }
    } else {
        eprintln!("{}", summary(&report));
    }
    ExitCode::from(exit_code(&report))
}

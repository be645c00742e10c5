//! A full rebuild of a generated ip2asn feed (100,000 lines to parse,
//! a 500,000-line feed's artifacts to publish), beside a floor measured in
//! the same run (these machines are noisy; compare the ratio, not seconds).
//!
//! - `feed_build/parse_aggregate_render`: [`parse`] the generated feed from
//!   memory, then [`build_artifacts`] (aggregate and render every entity).
//! - `feed_build/split_floor`: merely split the same input into lines and
//!   tab-separated fields, touching every field: the least any parser must do.
//!
//! - `feed_publish/through_entity_writer`: every 50th of the 500,000-line
//!   feed's ~76k artifacts (all of them took a minute per sample) published through the `EntityWriter` into an `FsSink` with the manifest
//!   in SQLite (synchronous=FULL): temp files, batched syncs, renames,
//!   directory syncs, manifest commits, as many publications in flight as
//!   the `artifact` kind's full rebuild keeps (`ARTIFACT_IN_FLIGHT`).
//! - `feed_publish/write_bytes_sync_once`: the floor: the same contents
//!   written straight to their final files, then one `syncfs`.
//!
//! The roadmap's target is the writer within 1.25x of that floor.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use groundcrew::feed::{build_artifacts, generate_ip2asn, parse, FeedFormat};
use groundcrew::store::SqliteStore;
use groundcrew_actors::{EntityName, EntityWriter, FsSink, Metrics, Publish};

/// Lines of the feed `feed_build` parses; `feed_publish` takes its artifacts
/// from a [`PUBLISH_LINES`] feed. 100,000 keep the criterion suite under
/// 3 minutes (issue 19); benches/feed_daemon builds the full 500,000 end to
/// end.
const LINES: usize = 100_000;
/// Lines of the feed whose artifacts `feed_publish` publishes.
const PUBLISH_LINES: usize = 500_000;
/// `feed_publish` takes every this many-th artifact, so that the criterion
/// benches finish in under 3 minutes together (issue 19).
const PUBLISH_EVERY: usize = 50;

/// Sums field lengths so the split cannot be optimized away.
fn split_floor(feed: &[u8]) -> usize {
    let mut total = 0;
    for line in feed.split(|&b| b == b'\n') {
        for field in line.split(|&b| b == b'\t') {
            total += field.len();
        }
    }
    total
}

fn feed_build(c: &mut Criterion) {
    let feed = generate_ip2asn(LINES, 1);
    let parsed = parse(FeedFormat::Ip2asn, feed.as_bytes()).unwrap();
    assert_eq!(parsed.bad_line_count, 0);
    eprintln!(
        "feed: {LINES} lines, {} bytes, {} entities",
        feed.len(),
        parsed.ranges_by_entity.len()
    );

    let mut group = c.benchmark_group("feed_build");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("parse_aggregate_render", |b| {
        b.iter(|| {
            let parsed = parse(FeedFormat::Ip2asn, black_box(feed.as_bytes())).unwrap();
            build_artifacts(&parsed)
        })
    });
    group.bench_function("split_floor", |b| {
        b.iter(|| split_floor(black_box(feed.as_bytes())))
    });
    group.finish();
}

/// Writes every artifact straight to its file, then syncs the filesystem
/// once: the least a durable publication of these bytes can cost.
fn write_bytes_sync_once(root: &std::path::Path, artifacts: &[(EntityName, Vec<u8>)]) {
    for (entity, content) in artifacts {
        let dir = root.join(entity.class());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{}.txt", entity.id())), content).unwrap();
    }
    let dir = std::fs::File::open(root).unwrap();
    // SAFETY: syncfs on a valid, open file descriptor.
    assert_eq!(
        unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) },
        0
    );
}

/// Publishes every artifact through a fresh writer in a fresh directory.
async fn through_writer(artifacts: &[(EntityName, Vec<u8>)]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("manifest.db")).unwrap());
    let sink = Arc::new(
        FsSink::open(dir.path().join("artifacts"))
            .unwrap()
            .with_extension("txt"),
    );
    let writer = EntityWriter::start(sink, store, Metrics::unregistered().unwrap());
    let start = Instant::now();
    futures::stream::iter(artifacts.iter().cloned())
        .map(|(entity, content)| {
            writer.send(Publish::new(entity, content).with_source_version("bench"))
        })
        .buffer_unordered(groundcrew::entities::ARTIFACT_IN_FLIGHT)
        .for_each(|r| async move {
            r.unwrap().unwrap();
        })
        .await;
    start.elapsed()
}

fn feed_publish(c: &mut Criterion) {
    let feed = generate_ip2asn(PUBLISH_LINES, 1);
    let artifacts: Vec<(EntityName, Vec<u8>)> =
        build_artifacts(&parse(FeedFormat::Ip2asn, feed.as_bytes()).unwrap())
            .into_iter()
            .step_by(PUBLISH_EVERY)
            .collect();
    let bytes: usize = artifacts.iter().map(|(_, c)| c.len()).sum();
    eprintln!("publishing {} artifacts, {bytes} bytes", artifacts.len());
    let mut group = c.benchmark_group("feed_publish");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(artifacts.len() as u64));
    group.bench_function("through_entity_writer", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| actix::System::new().block_on(through_writer(&artifacts)))
                .sum()
        })
    });
    group.bench_function("write_bytes_sync_once", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let dir = tempfile::tempdir().unwrap();
                    let start = Instant::now();
                    write_bytes_sync_once(dir.path(), &artifacts);
                    start.elapsed()
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, feed_build, feed_publish);
criterion_main!(benches);

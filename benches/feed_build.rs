//! A full rebuild of a 500,000-line ip2asn feed, beside a floor measured in
//! the same run (these machines are noisy; compare the ratio, not seconds).
//!
//! - `feed_build/parse_aggregate_render`: [`parse`] the generated feed from
//!   memory, then [`build_artifacts`] (aggregate and render every entity).
//! - `feed_build/split_floor`: merely split the same input into lines and
//!   tab-separated fields, touching every field: the least any parser must do.
//!
//! Writing and fsyncing the artifacts is not measured yet: it belongs to the
//! daemon's entity writer, and joins this bench when the feed task is wired
//! to it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use groundcrew::feed::{build_artifacts, generate_ip2asn, parse, FeedFormat};

const LINES: usize = 500_000;

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
    group.sample_size(10);
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

criterion_group!(benches, feed_build);
criterion_main!(benches);

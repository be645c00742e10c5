//! The runtime's Prometheus collectors move as tasks are submitted,
//! coalesced, run and ended, with bounded labels only.

mod common;

use std::sync::Arc;

use common::*;
use groundcrew_actors::{Metrics, Registry, Submit, Supervisor, TestKind};

fn value(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let family = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    let metric = family
        .get_metric()
        .iter()
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .unwrap_or_else(|| panic!("{name}{labels:?} missing"));
    match family.get_field_type() {
        prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
        prometheus::proto::MetricType::HISTOGRAM => {
            metric.get_histogram().get_sample_count() as f64
        }
        _ => metric.get_gauge().get_value(),
    }
}

#[actix_rt::test]
async fn collectors_follow_submits_coalescing_and_outcomes() {
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let mut kinds = Registry::new();
    kinds.register("test", TestKind).unwrap();
    let store = groundcrew_actors::MemoryStore::new();
    let sup = Supervisor::builder()
        .registry(kinds)
        .store(Arc::new(store.clone()))
        .metrics(metrics)
        .pool("background", 1)
        .start()
        .await
        .unwrap();
    let params = serde_json::json!({"times": 1, "round_ms": 30});
    let first = sup
        .send(Submit(spec("test", "asn:1").with_params(params.clone())))
        .await
        .unwrap()
        .unwrap();
    sup.send(Submit(spec("test", "asn:2").with_params(params.clone())))
        .await
        .unwrap()
        .unwrap();
    sup.send(Submit(spec("test", "asn:2").with_params(params)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        value(
            &registry,
            "groundcrew_workers_limit",
            &[("pool", "background")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_workers_active",
            &[("pool", "background")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_tasks_pending",
            &[("pool", "background")]
        ),
        1.0
    );
    wait_ended(&store, first.id).await;
    wait_panel(&sup, "idle", |p| {
        p.state == groundcrew_actors::Activity::Idle
    })
    .await;
    assert_eq!(
        value(
            &registry,
            "groundcrew_tasks_submitted_total",
            &[("kind", "test"), ("trigger", "feed_update")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_tasks_coalesced_total",
            &[("kind", "test"), ("outcome", "merged")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_tasks_finished_total",
            &[("kind", "test"), ("outcome", "succeeded")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_task_duration_seconds",
            &[("kind", "test")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_task_queue_wait_seconds",
            &[("kind", "test")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &registry,
            "groundcrew_tasks_pending",
            &[("pool", "background")]
        ),
        0.0
    );
    // No label carries a target or an id.
    for family in registry.gather() {
        for m in family.get_metric() {
            for l in m.get_label() {
                assert!(
                    !l.value().contains("asn:"),
                    "{} has an unbounded label {}={}",
                    family.name(),
                    l.name(),
                    l.value()
                );
            }
        }
    }
}

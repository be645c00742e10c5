//! Issue 19: `SubmitMany`, many requests in one mailbox message and one
//! durable batch, answered per request.

mod common;

use actix::Addr;
use common::failing_store::FailingStore;
use common::*;
use groundcrew_actors::{
    HistoryCategory, Registry, SubmitError, SubmitMany, SubmitOutcome, Supervisor, TaskFilter,
    TaskSpec, TaskStore, Trigger,
};

async fn start_paused() -> (Addr<Supervisor>, FailingStore) {
    let gate = Gate::new();
    let mut registry = Registry::new();
    gate.register(&mut registry, "refresh");
    // Limit 0: nothing starts, so the only writes are the requests'.
    start_on(registry, 0, FailingStore::new()).await
}

fn specs(targets: impl IntoIterator<Item = String>) -> Vec<TaskSpec> {
    targets
        .into_iter()
        .map(|t| TaskSpec::new("refresh", t.parse().unwrap(), Trigger::Api))
        .collect()
}

#[actix_rt::test]
async fn many_requests_share_one_store_write_and_are_answered_in_order() {
    let (sup, store) = start_paused().await;
    let mut targets: Vec<String> = (0..300).map(|i| format!("asn:{i}")).collect();
    targets.push("asn:7".into());
    let before = store.written();
    let replies = sup.send(SubmitMany(specs(targets))).await.unwrap();
    assert_eq!(store.written() - before, 1, "one durable batch");
    assert_eq!(replies.len(), 301);
    let ids: Vec<_> = replies[..300]
        .iter()
        .map(|r| {
            let r = r.as_ref().unwrap();
            assert_eq!(r.outcome, SubmitOutcome::Queued);
            r.id
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "answered in order");
    // The repeat merges into the request earlier in the same batch.
    let last = replies[300].as_ref().unwrap();
    assert_eq!((last.id, last.outcome), (ids[7], SubmitOutcome::Merged));
    let page = store
        .list(HistoryCategory::Pending, TaskFilter::default(), 1000, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 300);
    assert_eq!(panel(&sup).await.pending_total, 300);
}

#[actix_rt::test]
async fn a_failed_batch_refuses_every_request_and_stores_none() {
    let (sup, store) = start_paused().await;
    store.set_failing(true);
    let replies = sup
        .send(SubmitMany(specs((0..50).map(|i| format!("asn:{i}")))))
        .await
        .unwrap();
    assert_eq!(store.refused(), 1, "one write, refused");
    assert!(
        replies
            .iter()
            .all(|r| matches!(r, Err(SubmitError::Store(_)))),
        "{replies:?}"
    );
    store.set_failing(false);
    let page = store
        .list(HistoryCategory::Pending, TaskFilter::default(), 100, 0)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    assert_eq!(panel(&sup).await.pending_total, 0);
}

#[actix_rt::test]
async fn a_refused_request_does_not_refuse_the_rest() {
    let (sup, _store) = start_paused().await;
    let mut batch = specs(["asn:1".to_owned()]);
    batch.push(TaskSpec::new(
        "nope",
        "asn:2".parse().unwrap(),
        Trigger::Api,
    ));
    batch.extend(specs(["asn:3".to_owned()]));
    let replies = sup.send(SubmitMany(batch)).await.unwrap();
    assert!(replies[0].is_ok() && replies[2].is_ok(), "{replies:?}");
    assert!(matches!(&replies[1], Err(SubmitError::UnknownKind(k)) if k == "nope"));
}

#[actix_rt::test]
async fn a_rebuild_follows_the_operator_rules() {
    use groundcrew_actors::{Priority, Rebuild, Target, FULL_REBUILD_ABOVE};
    let (sup, store) = start_paused().await;
    let few: Vec<_> = ["asn:1", "asn:2"].map(|e| e.parse().unwrap()).to_vec();
    let replies = sup.send(Rebuild::new("refresh", few)).await.unwrap();
    let targets: Vec<String> = replies.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(targets, ["asn:1", "asn:2"]);
    let id = replies[0].1.as_ref().unwrap().id;
    let r = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (r.trigger, r.priority),
        (Trigger::Operator, Priority::INTERACTIVE)
    );

    let many = (0..=FULL_REBUILD_ABOVE)
        .map(|i| format!("asn:{}", i + 10).parse().unwrap())
        .collect();
    let replies = sup.send(Rebuild::new("refresh", many)).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, Target::All);
    assert!(replies[0].1.is_ok(), "{replies:?}");
}

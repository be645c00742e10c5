//! The integrity check: every expected artifact against the manifest and
//! the file on disk. `missing` (no record or no file), `corrupt` (the file's
//! hash differs from the record: changed or damaged outside the writer),
//! `stale` (the record's content is not what the feeds now give), `orphaned`
//! (an artifact for an entity no feed has any more), else `ok`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use groundcrew_actors::{ArtifactRecord, EntityName, RunToken, TaskId, Timestamp};
use serde::{Deserialize, Serialize};

use super::catalog::Expected;
use super::file_hashes::FileHashes;

/// The state of one entity's artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityState {
    /// No artifact, or no manifest record of it.
    Missing,
    /// The file differs from what the writer recorded.
    Corrupt,
    /// Built from older feed content.
    Stale,
    /// No feed has the entity any more; the artifact should go.
    Orphaned,
    /// As expected.
    Ok,
}

impl EntityState {
    /// Whether a repair task is due.
    pub fn needs_repair(self) -> bool {
        self != EntityState::Ok
    }

    /// Parses the API's name of a state.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One entity in the integrity list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntityReport {
    /// The entity.
    pub entity: EntityName,
    /// Its state.
    pub state: EntityState,
    /// Hash the manifest records.
    pub hash: Option<String>,
    /// Hash the feeds call for.
    pub expected_hash: Option<String>,
    /// Size the manifest records.
    pub size: Option<u64>,
    /// When it was written.
    pub written_at: Option<Timestamp>,
    /// Feed version it was built from.
    pub source_version: Option<String>,
    /// The task whose execution wrote it.
    pub task: Option<TaskId>,
    /// That execution's run token (its fencing token).
    pub run: Option<RunToken>,
}

/// Checks every entity. `path_of` gives an entity's artifact file; its
/// hash comes from `hashes`, which reads only files that changed since it
/// last hashed them (the first check reads every one): run it off the async
/// threads. Checks run one at a time (a second waits for the first and then
/// finds its files hashed). The result lists entities needing repair first
/// (missing, corrupt, stale, orphaned), then by name.
pub fn check(
    expected: Vec<(EntityName, Arc<Expected>)>,
    records: Vec<ArtifactRecord>,
    path_of: impl Fn(&EntityName) -> PathBuf,
    hashes: &FileHashes,
) -> Vec<EntityReport> {
    let mut pass = hashes.pass();
    check_hashes(expected, records, |entity| pass.hash(&path_of(entity)))
}

/// Like [`check`], with each stored artifact's hash from `hash_of` (an
/// error of kind `NotFound` for none): for artifacts stored elsewhere than
/// in files (`artifacts.sink: postgres`).
pub(crate) fn check_hashes(
    expected: Vec<(EntityName, Arc<Expected>)>,
    records: Vec<ArtifactRecord>,
    mut hash_of: impl FnMut(&EntityName) -> std::io::Result<String>,
) -> Vec<EntityReport> {
    let mut records: HashMap<EntityName, ArtifactRecord> =
        records.into_iter().map(|r| (r.entity.clone(), r)).collect();
    let mut reports = Vec::with_capacity(expected.len());
    for (entity, want) in expected {
        let record = records.remove(&entity);
        let state = match &record {
            None => EntityState::Missing,
            Some(r) => match hash_of(&entity) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => EntityState::Missing,
                Err(_) => EntityState::Corrupt,
                Ok(hash) if hash != r.hash => EntityState::Corrupt,
                Ok(_) if r.hash != want.hash => EntityState::Stale,
                Ok(_) => EntityState::Ok,
            },
        };
        reports.push(report(entity, state, record, Some(want.hash.clone())));
    }
    for (entity, record) in records {
        reports.push(report(entity, EntityState::Orphaned, Some(record), None));
    }
    reports.sort_by(|a, b| (a.state, &a.entity).cmp(&(b.state, &b.entity)));
    reports
}

fn report(
    entity: EntityName,
    state: EntityState,
    r: Option<ArtifactRecord>,
    expected_hash: Option<String>,
) -> EntityReport {
    let mut report = EntityReport {
        entity,
        state,
        expected_hash,
        hash: None,
        size: None,
        written_at: None,
        task: None,
        run: None,
        source_version: None,
    };
    if let Some(r) = r {
        // Moved, not cloned: a check builds one report per artifact.
        report.hash = Some(r.hash);
        report.size = Some(r.size);
        report.written_at = Some(r.written_at);
        report.task = r.task;
        report.run = r.run;
        report.source_version = r.source_version;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundcrew_actors::content_hash;

    fn expected(content: &[u8]) -> Arc<Expected> {
        Arc::new(Expected::of(content))
    }

    fn record(entity: &EntityName, content: &[u8]) -> ArtifactRecord {
        ArtifactRecord {
            entity: entity.clone(),
            hash: content_hash(content),
            size: content.len() as u64,
            written_at: Timestamp(0),
            source_version: Some("geo@1".into()),
            task: None,
            run: None,
        }
    }

    #[test]
    fn every_state_is_told_apart_and_repairs_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let e = |s: &str| -> EntityName { s.parse().unwrap() };
        let path_of = |x: &EntityName| dir.path().join(x.as_str());
        let (ok, missing, gone, stale, corrupt, orphan) = (
            e("asn:1"),
            e("asn:2"),
            e("asn:3"),
            e("asn:4"),
            e("asn:5"),
            e("asn:6"),
        );
        std::fs::write(path_of(&ok), b"a\n").unwrap();
        std::fs::write(path_of(&stale), b"old\n").unwrap();
        std::fs::write(path_of(&corrupt), b"tampered\n").unwrap();
        let reports = check(
            vec![
                (ok.clone(), expected(b"a\n")),
                (missing.clone(), expected(b"b\n")),
                (gone.clone(), expected(b"c\n")),
                (stale.clone(), expected(b"new\n")),
                (corrupt.clone(), expected(b"d\n")),
            ],
            vec![
                record(&ok, b"a\n"),
                record(&gone, b"c\n"),
                record(&stale, b"old\n"),
                record(&corrupt, b"d\n"),
                record(&orphan, b"x\n"),
            ],
            path_of,
            &FileHashes::default(),
        );
        let got: Vec<(String, EntityState)> = reports
            .iter()
            .map(|r| (r.entity.to_string(), r.state))
            .collect();
        assert_eq!(
            got,
            [
                ("asn:2".into(), EntityState::Missing),
                ("asn:3".into(), EntityState::Missing),
                ("asn:5".into(), EntityState::Corrupt),
                ("asn:4".into(), EntityState::Stale),
                ("asn:6".into(), EntityState::Orphaned),
                ("asn:1".into(), EntityState::Ok),
            ]
        );
        assert_eq!(EntityState::parse("stale"), Some(EntityState::Stale));
        assert_eq!(EntityState::parse("nope"), None);
    }
}

//! [`Manifest`] on PostgreSQL: the entity writer's records, written in the
//! same batches as the task journal.

use futures::future::BoxFuture;
use groundcrew_actors::{
    ArtifactRecord, Durable, EntityName, Manifest, ManifestChange, StoreError,
};

use super::rows;
use super::writer::Op;
use super::PostgresStore;

impl Manifest for PostgresStore {
    fn write(&self, changes: Vec<ManifestChange>) -> Durable {
        self.durable(Op::Manifest(changes))
    }

    fn artifact(
        &self,
        entity: &EntityName,
    ) -> BoxFuture<'static, Result<Option<ArtifactRecord>, StoreError>> {
        let entity = entity.as_str().to_owned();
        self.read("manifest lookup", move |client| async move {
            let sql = format!(
                "SELECT {} FROM groundcrew.manifest WHERE entity = $1",
                rows::ARTIFACT_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let found = client.query_opt(&statement, &[&entity]).await?;
            found.as_ref().map(rows::artifact_from_row).transpose()
        })
    }

    fn artifacts_of(
        &self,
        entities: &[EntityName],
    ) -> BoxFuture<'static, Result<Vec<Option<ArtifactRecord>>, StoreError>> {
        let names: Vec<String> = entities.iter().map(|e| e.as_str().to_owned()).collect();
        // One query for the lot, answered back in the order asked.
        self.read("manifest lookup", move |client| async move {
            let sql = format!(
                "SELECT {} FROM groundcrew.manifest WHERE entity = ANY($1)",
                rows::ARTIFACT_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let mut found = std::collections::HashMap::new();
            for row in client.query(&statement, &[&names]).await? {
                let record = rows::artifact_from_row(&row)?;
                found.insert(record.entity.as_str().to_owned(), record);
            }
            Ok(names.iter().map(|n| found.get(n).cloned()).collect())
        })
    }

    fn artifacts(&self) -> BoxFuture<'static, Result<Vec<ArtifactRecord>, StoreError>> {
        self.read("manifest listing", |client| async move {
            // Byte order, as SQLite sorts: a collation would order
            // `asn:2` and `ASN:1` by locale.
            let sql = format!(
                "SELECT {} FROM groundcrew.manifest ORDER BY entity COLLATE \"C\"",
                rows::ARTIFACT_COLUMNS
            );
            let statement = client.prepare_cached(&sql).await?;
            let found = client.query(&statement, &[]).await?;
            found.iter().map(rows::artifact_from_row).collect()
        })
    }
}

//! `GET /api/v1/panel`: the supervisor's live [`Panel`], as is.
//!
//! The panel's JSON is the actors crate's serde form of [`Panel`]; every
//! task field is always present (`null` when empty) so that a client can
//! rely on the key set whether the runtime is idle or busy.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{Panel, PanelSnapshot};

use super::auth::Reader;
use super::{ApiError, ApiState};

pub(super) async fn show(_: Reader, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let panel: Panel = state.supervisor.send(PanelSnapshot::default()).await?;
    Ok(HttpResponse::Ok().json(panel))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use groundcrew_actors::{PanelTask, Priority, Target, TaskId, TaskState, Timestamp, Trigger};

    #[test]
    fn panel_tasks_serialize_every_field_even_when_empty() {
        let task = PanelTask {
            id: TaskId(1),
            name: "test country:DE".into(),
            kind: "test".into(),
            target: Target::parse("country:DE").unwrap(),
            trigger: Trigger::Api,
            triggers: vec![Trigger::Api],
            state: TaskState::Queued,
            pool: "background".into(),
            priority: Priority::INTERACTIVE,
            stage: None,
            started_at: None,
            created_at: Timestamp::now(),
            progress: None,
            waiting_behind: None,
            merged: 0,
            attempts: 0,
            run_after: None,
        };
        let json = serde_json::to_value(&task).unwrap();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = [
            "id",
            "name",
            "kind",
            "target",
            "trigger",
            "triggers",
            "state",
            "pool",
            "priority",
            "stage",
            "started_at",
            "created_at",
            "progress",
            "waiting_behind",
            "merged",
            "attempts",
            "run_after",
        ]
        .into();
        assert_eq!(keys, expected);
        for key in ["stage", "started_at", "progress", "waiting_behind"] {
            assert!(json[key].is_null(), "{key} should be null, not absent");
        }
    }
}

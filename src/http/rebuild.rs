//! `POST /api/v1/rebuild`: an operator asks for a full rebuild (`all`) or
//! for a list of entities, with trigger `operator`.
//!
//! The request goes to the supervisor as one [`Rebuild`]: one mailbox
//! message and one durable batch, with the rebuild rules of the actors
//! crate (more than 1,000 entities become one `all`). A refusal that concerns the whole call
//! (unknown kind, bad params, shutting down, a failed store write) refuses
//! every target alike, so when the first is refused the call fails with its
//! error; anything else is reported per target.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{EntityName, Rebuild, Target};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Operator;
use super::json::non_null;
use super::submit::BatchItem;
use super::{ApiError, ApiState};

/// Most targets one rebuild may name.
pub(super) const MAX_TARGETS: usize = 10_000;

/// The body: exactly one of `all` and `targets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RebuildBody {
    #[serde(default, deserialize_with = "non_null")]
    all: Option<bool>,
    #[serde(default, deserialize_with = "non_null")]
    targets: Option<Vec<String>>,
    kind: Option<String>,
    #[serde(default)]
    params: serde_json::Value,
}

/// What one target became.
#[derive(Debug, Serialize)]
struct RebuildTask {
    target: Target,
    #[serde(flatten)]
    result: BatchItem,
}

impl RebuildBody {
    /// The entities named; empty for `all`.
    fn entities(self) -> Result<Vec<EntityName>, ApiError> {
        let bad = |m: &str| Err(ApiError::InvalidRequest(m.to_owned()));
        match (self.all, self.targets) {
            (Some(true), None) => Ok(Vec::new()),
            (Some(false), None) => {
                bad("\"all\" must be true; to rebuild some entities, name them in \"targets\"")
            }
            (Some(_), Some(_)) => bad("give either \"all\" or \"targets\", not both"),
            (None, None) => bad("give either \"all\": true or \"targets\": [...]"),
            (None, Some(t)) if t.is_empty() => bad("\"targets\" is empty"),
            (None, Some(t)) if t.len() > MAX_TARGETS => Err(ApiError::InvalidRequest(format!(
                "{} targets given, at most {MAX_TARGETS} allowed",
                t.len()
            ))),
            // Entity names only: `all` in a list would silently widen an
            // explicit request into a full rebuild.
            (None, Some(t)) => t
                .iter()
                .map(|s| EntityName::new(s).map_err(ApiError::from))
                .collect(),
        }
    }
}

pub(super) async fn rebuild(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    body: web::Json<RebuildBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let kind = body
        .kind
        .clone()
        .unwrap_or_else(|| state.rebuild_kind.clone());
    let params = body.params.clone();
    let rebuild = Rebuild {
        params,
        ..Rebuild::new(kind.clone(), body.entities()?)
    };
    let mut replies = state.supervisor.send(rebuild).await?;
    if let Some((_, Err(_))) = replies.first() {
        let (_, first) = replies.swap_remove(0);
        return Err(first.expect_err("matched an error").into());
    }
    let tasks: Vec<RebuildTask> = replies
        .into_iter()
        .map(|(target, reply)| RebuildTask {
            target,
            result: reply.into(),
        })
        .collect();
    tracing::info!(caller = %caller.name, kind = %kind, targets = tasks.len(), "rebuild requested");
    Ok(HttpResponse::Accepted().json(json!({ "tasks": tasks })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> RebuildBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exactly_one_of_all_and_targets_is_required() {
        assert_eq!(body(json!({"all": true})).entities().unwrap(), vec![]);
        for bad in [
            json!({}),
            json!({"all": false}),
            json!({"all": true, "targets": ["country:DE"]}),
            json!({"targets": []}),
        ] {
            assert_eq!(body(bad).entities().unwrap_err().code(), "invalid_request");
        }
    }

    #[test]
    fn explicit_nulls_are_refused_not_read_as_absent() {
        for bad in [
            json!({"all": true, "targets": null}),
            json!({"all": null, "targets": ["asn:1"]}),
        ] {
            assert!(serde_json::from_value::<RebuildBody>(bad).is_err());
        }
    }

    #[test]
    fn targets_must_be_entity_names_and_bounded() {
        let e = body(json!({"targets": ["country:DE", "../etc"]}))
            .entities()
            .unwrap_err();
        assert_eq!(e.code(), "invalid_target");
        assert!(e.to_string().contains("../etc"));
        assert!(body(json!({"targets": ["all"]})).entities().is_err());
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("asn:{i}")).collect();
        assert!(body(json!({ "targets": many })).entities().is_err());
    }
}

//! `POST /api/v1/rebuild`: an operator asks for a full rebuild (`all`) or
//! for a list of entities, with trigger `operator`.
//!
//! Every target goes to the supervisor in one [`SubmitMany`]: one mailbox
//! message and one durable batch. A refusal that concerns the whole call
//! (unknown kind, bad params, shutting down, a failed store write) refuses
//! every target alike, so when the first is refused the call fails with its
//! error; anything else is reported per target.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{EntityName, SubmitMany, SubmitReply, Target, TaskSpec, Trigger};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Operator;
use super::json::non_null;
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
    result: TargetResult,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TargetResult {
    Accepted(SubmitReply),
    Refused { error: serde_json::Value },
}

impl RebuildBody {
    fn targets(self) -> Result<Vec<Target>, ApiError> {
        let bad = |m: &str| Err(ApiError::InvalidRequest(m.to_owned()));
        match (self.all, self.targets) {
            (Some(true), None) => Ok(vec![Target::All]),
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
                .map(|s| {
                    EntityName::new(s)
                        .map(Target::Entity)
                        .map_err(ApiError::from)
                })
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
    let targets = body.targets()?;
    let specs = targets
        .iter()
        .map(|target| {
            TaskSpec::new(kind.clone(), target.clone(), Trigger::Operator)
                .with_params(params.clone())
        })
        .collect();
    let mut replies = state.supervisor.send(SubmitMany(specs)).await?;
    if let Some(Err(_)) = replies.first() {
        return Err(replies.swap_remove(0).expect_err("matched an error").into());
    }
    let tasks: Vec<RebuildTask> = targets
        .into_iter()
        .zip(replies)
        .map(|(target, reply)| RebuildTask {
            target,
            result: match reply {
                Ok(reply) => TargetResult::Accepted(reply),
                Err(e) => refused(e.into()),
            },
        })
        .collect();
    tracing::info!(caller = %caller.name, kind = %kind, targets = tasks.len(), "rebuild requested");
    Ok(HttpResponse::Accepted().json(json!({ "tasks": tasks })))
}

fn refused(e: ApiError) -> TargetResult {
    TargetResult::Refused {
        error: json!({ "code": e.code(), "message": e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> RebuildBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn exactly_one_of_all_and_targets_is_required() {
        assert_eq!(
            body(json!({"all": true})).targets().unwrap(),
            vec![Target::All]
        );
        for bad in [
            json!({}),
            json!({"all": false}),
            json!({"all": true, "targets": ["country:DE"]}),
            json!({"targets": []}),
        ] {
            assert_eq!(body(bad).targets().unwrap_err().code(), "invalid_request");
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
            .targets()
            .unwrap_err();
        assert_eq!(e.code(), "invalid_target");
        assert!(e.to_string().contains("../etc"));
        assert!(body(json!({"targets": ["all"]})).targets().is_err());
        let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("asn:{i}")).collect();
        assert!(body(json!({ "targets": many })).targets().is_err());
    }
}

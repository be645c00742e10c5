//! `PUT /api/v1/pools/{pool}/limit`: changes a pool's worker limit at
//! runtime. Raising it admits waiting work at once; lowering it never stops
//! a running task.

use actix_web::{web, HttpResponse};
use groundcrew_actors::{PanelSnapshot, SetLimit};
use serde::Deserialize;

use super::auth::Operator;
use super::{ApiError, ApiState};

/// The body: the new limit; 0 pauses the pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitBody {
    #[serde(deserialize_with = "whole_number")]
    limit: usize,
}

/// A non-negative whole number, also when written as `4.0`: JSON has one
/// number type, and the document's `integer` allows both spellings.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(u) = n.as_u64() {
        return usize::try_from(u).map_err(D::Error::custom);
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64 => Ok(f as usize),
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected a non-negative integer"
        ))),
    }
}

/// Answers the pool's status after the change, read back from the panel so
/// that `active` and `pending` reflect any work the new limit admitted.
pub(super) async fn set_limit(
    Operator(caller): Operator,
    state: web::Data<ApiState>,
    pool: web::Path<String>,
    body: web::Json<LimitBody>,
) -> Result<HttpResponse, ApiError> {
    let pool = pool.into_inner();
    let limit = body.limit;
    state
        .supervisor
        .send(SetLimit {
            pool: pool.clone(),
            limit,
        })
        .await??;
    tracing::info!(caller = %caller.name, pool = %pool, limit, "worker limit set");
    let panel = state
        .supervisor
        .send(PanelSnapshot { pending_limit: 0 })
        .await?;
    let status = panel
        .pools
        .into_iter()
        .find(|p| p.name == pool)
        .ok_or(ApiError::PoolNotFound(pool))?;
    Ok(HttpResponse::Ok().json(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_in_either_spelling() {
        let limit = |v: serde_json::Value| serde_json::from_value::<LimitBody>(v).map(|b| b.limit);
        assert_eq!(limit(serde_json::json!({"limit": 4})).unwrap(), 4);
        assert_eq!(limit(serde_json::json!({"limit": 4.0})).unwrap(), 4);
        for bad in [
            serde_json::json!({"limit": 4.5}),
            serde_json::json!({"limit": -1}),
            serde_json::json!({"limit": null}),
        ] {
            assert!(limit(bad).is_err());
        }
    }
}

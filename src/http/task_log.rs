//! `GET /api/v1/tasks/{id}/log`: a task's last log lines, oldest first
//! (see [`groundcrew_actors::TaskLog`]).

use actix_web::{web, HttpResponse};
use groundcrew_actors::LogLine;
use serde::Serialize;

use super::auth::Reader;
use super::tasks::task_id;
use super::{ApiError, ApiState};

#[derive(Debug, Serialize)]
struct LogReply {
    lines: Vec<LogLine>,
}

/// The task's lines; an unknown task is a 404, not an empty log.
pub(super) async fn show(
    _: Reader,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = task_id(&id)?;
    let (record, lines) = futures::try_join!(state.store.get(id), state.task_log.log(id))?;
    record.ok_or(ApiError::TaskNotFound(id))?;
    Ok(HttpResponse::Ok().json(LogReply { lines }))
}

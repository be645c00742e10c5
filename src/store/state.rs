//! How task states and history categories are named in every backend's
//! rows: the API's names, so that a database reads like the API.

use groundcrew_actors::{HistoryCategory, TaskState};

/// Every state, for decoding by name.
const STATES: [TaskState; 7] = [
    TaskState::Queued,
    TaskState::Running,
    TaskState::Canceling,
    TaskState::Succeeded,
    TaskState::Failed,
    TaskState::Canceled,
    TaskState::Merged,
];

/// A state name this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub(crate) struct UnknownState(String);

/// The state named `name`.
pub(crate) fn parse_state(name: &str) -> Result<TaskState, UnknownState> {
    STATES
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| UnknownState(name.to_owned()))
}

/// The value of the schemas' generated `category` column for a category.
pub(crate) fn category_name(category: HistoryCategory) -> &'static str {
    match category {
        HistoryCategory::Pending => "pending",
        HistoryCategory::Failed => "failed",
        HistoryCategory::Finished => "finished",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_decodes_from_its_name() {
        for state in STATES {
            assert_eq!(parse_state(state.as_str()).unwrap(), state);
        }
        assert!(parse_state("paused").is_err());
    }
}

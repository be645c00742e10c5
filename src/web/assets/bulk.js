// groundcrew operator page: "Retry all shown" and "Delete all shown" on
// the failed list. Both act on the tasks the list shows (the newest
// LIST_LIMIT failed and canceled tasks) through the bulk routes,
// `POST /api/v1/tasks/retry` and `DELETE /api/v1/tasks?status=failed`.
//
// Served appended to app.js (see src/web/mod.rs) and built on its helpers
// (api, act, describeReply, $, LIST_LIMIT).
'use strict';

function retryShown(ev) {
  act(ev.currentTarget, async () => {
    const r = await api('POST', `/api/v1/tasks/retry?status=failed&limit=${LIST_LIMIT}`);
    const accepted = r.tasks.filter((t) => !t.error);
    const refused = r.tasks.filter((t) => t.error);
    let text = `Retried ${accepted.length} of ${r.tasks.length} failed task${r.tasks.length === 1 ? '' : 's'}`;
    if (accepted.length) text += ': ' + accepted.map((t) => `#${t.retry_of} as ${describeReply(t)}`).join(', ');
    if (refused.length) text += `. Refused: ${refused.map((t) => `#${t.retry_of} (${t.error.message})`).join(', ')}`;
    return text + '.';
  });
}

function deleteShown(ev) {
  if (!window.confirm('Delete every failed task shown from the history?')) return;
  act(ev.currentTarget, async () => {
    const r = await api('DELETE', `/api/v1/tasks?status=failed&limit=${LIST_LIMIT}`);
    return `Deleted ${r.deleted.length} failed task${r.deleted.length === 1 ? '' : 's'} from the history.`;
  });
}

document.addEventListener('DOMContentLoaded', () => {
  $('retry-failed').addEventListener('click', retryShown);
  $('delete-failed').addEventListener('click', deleteShown);
});

//! The admin HTTP API end to end, in process: a real `Supervisor` on a
//! `MemoryStore` with the built-in `test` kind, behind `http::configure`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::Addr;
use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use futures::future::BoxFuture;
use groundcrew::auth::{Role, Secret, Token, TokenSet};
use groundcrew::http::{configure, ApiState, Control, ReloadError, ROUTES};
use groundcrew_actors::{Drain, MemoryStore, Metrics, Registry, Supervisor, TestKind};
use serde_json::{json, Value};

const READ: &str = "read-secret";
const OPERATE: &str = "operate-secret";
const MAX_BODY: usize = 4096;
/// Params of a test task that runs far longer than any test.
const LONG: &str = r#"{"times": 1000, "round_ms": 100}"#;

/// A daemon stand-in whose reload fails while `fail` is set.
#[derive(Default)]
struct FakeControl {
    fail: AtomicBool,
}

impl Control for FakeControl {
    fn reload(&self) -> BoxFuture<'static, Result<(), ReloadError>> {
        let fail = self.fail.load(Ordering::SeqCst);
        Box::pin(async move {
            if fail {
                Err(ReloadError {
                    message: "invalid type: string \"two\", expected usize".into(),
                    file: Some("/etc/groundcrew.toml".into()),
                    line: Some(7),
                    column: Some(14),
                    key: Some("pools.background".into()),
                })
            } else {
                Ok(())
            }
        })
    }
}

struct Harness {
    supervisor: Addr<Supervisor>,
    control: Arc<FakeControl>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn start(
    limit: usize,
    metrics_require_token: bool,
) -> (
    impl Service<Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error>,
    Harness,
) {
    let (state, harness) = state(limit, metrics_require_token).await;
    let app = test::init_service(
        App::new().configure(move |cfg| configure(cfg, state.clone(), MAX_BODY)),
    )
    .await;
    (app, harness)
}

async fn state(limit: usize, metrics_require_token: bool) -> (web::Data<ApiState>, Harness) {
    let mut kinds = Registry::new();
    kinds.register("test", TestKind).unwrap();
    let registry = prometheus::Registry::new();
    // One store for the supervisor's journal and the API's history reads,
    // as in the daemon.
    let store = Arc::new(MemoryStore::new());
    let store_for_feeds = store.clone();
    let supervisor = Supervisor::builder()
        .registry(kinds)
        .store(store.clone())
        .metrics(Metrics::register(&registry).unwrap())
        .pool("background", limit)
        .worker_threads(0)
        .start()
        .await
        .unwrap();
    let control = Arc::new(FakeControl::default());
    let tokens = TokenSet::new(vec![
        Token {
            name: "viewer".into(),
            token: Secret::new(READ),
            role: Role::Read,
        },
        Token {
            name: "ops".into(),
            token: Secret::new(OPERATE),
            role: Role::Operate,
        },
    ]);
    let state = web::Data::new(ApiState {
        supervisor: supervisor.clone(),
        task_log: store.clone(),
        store,
        metrics: registry,
        tokens: Arc::new(RwLock::new(tokens)),
        metrics_require_token,
        control: control.clone(),
        rebuild_kind: "test".into(),
        feeds: {
            // No feeds: these tests drive the generic routes; the feed
            // routes are driven against the real daemon in tests/entities.rs.
            let dir = tempfile::tempdir().unwrap().keep();
            let sink = Arc::new(groundcrew_actors::FsSink::open(dir).unwrap());
            let feeds = groundcrew::entities::Feeds::new(Vec::new(), store_for_feeds, sink);
            feeds.attach(supervisor.clone());
            Arc::new(feeds)
        },
        panel_feed: Default::default(),
    });
    (
        state,
        Harness {
            supervisor,
            control,
        },
    )
}

/// A request with a bearer token (none when `token` is empty).
fn request(method: Method, path: &str, token: &str) -> TestRequest {
    let req = TestRequest::default().method(method).uri(path);
    if token.is_empty() {
        req
    } else {
        req.insert_header(("Authorization", format!("Bearer {token}")))
    }
}

fn get(path: &str) -> TestRequest {
    request(Method::GET, path, READ)
}

fn post(path: &str, body: Value) -> TestRequest {
    request(Method::POST, path, OPERATE).set_json(body)
}

async fn call<S, B>(app: &S, req: TestRequest) -> Reply
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = test::read_body(response).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Asserts the error body shape and returns its `error` object.
fn error_of(reply: &Reply, status: StatusCode, code: &str) -> Value {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    let error = &reply.body["error"];
    assert_eq!(error["code"], code, "body: {}", reply.text);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    error.clone()
}

fn long_task(target: &str) -> Value {
    json!({"kind": "test", "target": target, "params": serde_json::from_str::<Value>(LONG).unwrap()})
}

fn quick_task(target: &str) -> Value {
    json!({"kind": "test", "target": target, "params": {"times": 1, "round_ms": 1}})
}

/// Polls the panel until `done` holds, for at most five seconds.
async fn panel_until<S, B>(app: &S, done: impl Fn(&Value) -> bool) -> Value
where
    S: Service<Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    for _ in 0..500 {
        let panel = call(app, get("/api/v1/panel")).await.body;
        if done(&panel) {
            return panel;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("panel never reached the expected state");
}

fn ids(tasks: &Value) -> Vec<u64> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect()
}

const TASK_KEYS: &[&str] = &[
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
];

fn assert_panel_task_keys(task: &Value) {
    let keys: BTreeSet<&str> = task
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, TASK_KEYS.iter().copied().collect::<BTreeSet<_>>());
}

#[actix_web::test]
async fn healthz_answers_ok_without_a_token() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, request(Method::GET, "/healthz", "")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok", "store": "ok"}));
}

#[actix_web::test]
async fn metrics_are_prometheus_text_that_promtool_accepts() {
    let (app, _h) = start(1, false).await;
    assert_eq!(
        call(&app, post("/api/v1/tasks", quick_task("country:DE")))
            .await
            .status,
        202
    );
    let reply = call(&app, request(Method::GET, "/metrics", "")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers.get("content-type").unwrap(),
        "text/plain; version=0.0.4"
    );
    assert!(reply
        .text
        .contains("groundcrew_tasks_submitted_total{kind=\"test\",trigger=\"api\"} 1"));
    for line in reply
        .text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (_, value) = line
            .rsplit_once(' ')
            .expect("sample lines are `name value`");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("promtool not installed: skipping `promtool check metrics`");
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(reply.text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn metrics_need_a_read_token_when_configured_to() {
    let (app, _h) = start(1, true).await;
    let reply = call(&app, request(Method::GET, "/metrics", "")).await;
    error_of(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(call(&app, get("/metrics")).await.status, StatusCode::OK);
}

#[actix_web::test]
async fn missing_or_wrong_tokens_get_401_with_a_bearer_challenge() {
    let (app, _h) = start(1, false).await;
    for token in ["", "not-a-token", "read-secre"] {
        let reply = call(&app, request(Method::GET, "/api/v1/panel", token)).await;
        error_of(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    let basic = TestRequest::get()
        .uri("/api/v1/panel")
        .insert_header(("Authorization", format!("Basic {READ}")));
    error_of(
        &call(&app, basic).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[actix_web::test]
async fn whoami_names_the_token_and_its_role() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, get("/api/v1/whoami")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body, json!({"name": "viewer", "role": "read"}));
    let reply = call(&app, request(Method::GET, "/api/v1/whoami", OPERATE)).await;
    assert_eq!(reply.body, json!({"name": "ops", "role": "operate"}));
    let reply = call(&app, request(Method::GET, "/api/v1/whoami", "")).await;
    error_of(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
}

/// `?token=` exists for `EventSource`, which cannot send headers; every
/// other route keeps refusing it.
#[actix_web::test]
async fn query_token_is_accepted_only_by_the_panel_event_stream() {
    let (app, _h) = start(1, false).await;
    let reply = call(
        &app,
        request(Method::GET, &format!("/api/v1/panel?token={READ}"), ""),
    )
    .await;
    error_of(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    for path in [
        "/api/v1/panel/events".to_owned(),
        "/api/v1/panel/events?token=".to_owned(),
        "/api/v1/panel/events?token=wrong-secret".to_owned(),
    ] {
        let reply = call(&app, request(Method::GET, &path, "")).await;
        error_of(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(
            !reply.text.contains("wrong-secret"),
            "token echoed: {}",
            reply.text
        );
    }
    let uri = format!("/api/v1/panel/events?token={READ}");
    let response = test::call_service(&app, request(Method::GET, &uri, "").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
}

#[actix_web::test]
async fn panel_event_stream_sends_the_panel_at_once_and_again_on_change() {
    let (app, _h) = start(1, false).await;
    let response = test::call_service(&app, get("/api/v1/panel/events").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = std::pin::pin!(response.into_body());
    let first = next_chunk(body.as_mut()).await;
    assert!(first.starts_with("retry: "), "{first}");
    let data = panel_data(&first);
    assert_eq!(data["state"], "idle");
    call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    let changed = panel_data(&next_chunk(body.as_mut()).await);
    assert_eq!(changed["state"], "active");
}

/// Issue 19: every stream shares one snapshot, and streams are capped:
/// the one beyond the cap gets 503 `too_many_streams`, and a place freed
/// by a closed stream can be taken again. Streams opened together all see
/// the same change.
#[actix_web::test]
async fn panel_event_streams_share_one_snapshot_and_are_capped() {
    const CAP: usize = 256;
    let (app, _h) = start(1, false).await;
    let mut open = Vec::new();
    for _ in 0..CAP {
        let response = test::call_service(&app, get("/api/v1/panel/events").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(Box::pin(response.into_body()));
    }
    let refused = call(&app, get("/api/v1/panel/events")).await;
    error_of(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
    );
    for body in open.iter_mut().take(3) {
        assert_eq!(
            panel_data(&next_chunk(body.as_mut()).await)["state"],
            "idle"
        );
    }
    call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    for body in open.iter_mut().take(3) {
        assert_eq!(
            panel_data(&next_chunk(body.as_mut()).await)["state"],
            "active"
        );
    }
    open.pop();
    let again = test::call_service(&app, get("/api/v1/panel/events").to_request()).await;
    assert_eq!(again.status(), StatusCode::OK);
}

/// The next chunk of a streamed body, waiting at most five seconds.
async fn next_chunk<B: MessageBody>(mut body: std::pin::Pin<&mut B>) -> String {
    let chunk = futures::future::poll_fn(|cx| body.as_mut().poll_next(cx));
    let chunk = tokio::time::timeout(Duration::from_secs(5), chunk)
        .await
        .expect("a chunk within 5 s");
    let Some(Ok(bytes)) = chunk else {
        panic!("the stream ended or failed")
    };
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The panel of one `event: panel` chunk.
fn panel_data(chunk: &str) -> Value {
    assert!(chunk.contains("event: panel\n"), "{chunk}");
    let data = chunk
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    serde_json::from_str(data).unwrap()
}

#[actix_web::test]
async fn read_token_cannot_change_anything() {
    let (app, _h) = start(1, false).await;
    let submit = request(Method::POST, "/api/v1/tasks", READ).set_json(quick_task("country:DE"));
    let error = error_of(
        &call(&app, submit).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(error["required_role"], "operate");
    let reload = request(Method::POST, "/api/v1/reload", READ);
    error_of(
        &call(&app, reload).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let panel = call(&app, get("/api/v1/panel")).await;
    assert_eq!(panel.body["pending_total"], 0, "nothing was submitted");
}

#[actix_web::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let (app, _h) = start(1, false).await;
    let req = request(Method::POST, "/api/v1/tasks", OPERATE)
        .insert_header(("content-type", "application/json"))
        .set_payload("{\"kind\": \"test\",");
    error_of(
        &call(&app, req).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let missing = post("/api/v1/tasks", json!({"kind": "test"}));
    let error = error_of(
        &call(&app, missing).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert!(error["message"].as_str().unwrap().contains("target"));
    let unknown = post(
        "/api/v1/tasks",
        json!({"kind": "test", "target": "country:DE", "colour": 1}),
    );
    let error = error_of(
        &call(&app, unknown).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert!(error["message"].as_str().unwrap().contains("colour"));
}

#[actix_web::test]
async fn oversized_body_is_a_413_json_error() {
    let (app, _h) = start(1, false).await;
    let big = "x".repeat(MAX_BODY);
    let req = post(
        "/api/v1/tasks",
        json!({"kind": "test", "target": "country:DE", "params": {"pad": big}}),
    );
    let error = error_of(
        &call(&app, req).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    assert_eq!(error["limit"], MAX_BODY);
}

#[actix_web::test]
async fn bad_submissions_are_400_with_the_offending_value() {
    let (app, _h) = start(1, false).await;
    let reply = call(
        &app,
        post(
            "/api/v1/tasks",
            json!({"kind": "nope", "target": "country:DE"}),
        ),
    )
    .await;
    assert_eq!(
        error_of(&reply, StatusCode::BAD_REQUEST, "unknown_kind")["kind"],
        "nope"
    );
    let reply = call(
        &app,
        post(
            "/api/v1/tasks",
            json!({"kind": "test", "target": "country:DE", "params": {"times": 0}}),
        ),
    )
    .await;
    error_of(&reply, StatusCode::BAD_REQUEST, "invalid_params");
    let reply = call(
        &app,
        post(
            "/api/v1/tasks",
            json!({"kind": "test", "target": "../etc/passwd"}),
        ),
    )
    .await;
    let error = error_of(&reply, StatusCode::BAD_REQUEST, "invalid_target");
    assert_eq!(error["target"], "../etc/passwd");
    let text = request(Method::POST, "/api/v1/tasks", OPERATE)
        .insert_header(("content-type", "text/plain"))
        .set_payload("hello");
    error_of(
        &call(&app, text).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[actix_web::test]
async fn unknown_ids_are_404_and_non_numeric_ids_are_400() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, get("/api/v1/tasks/999")).await;
    assert_eq!(
        error_of(&reply, StatusCode::NOT_FOUND, "task_not_found")["id"],
        999
    );
    let delete = request(Method::DELETE, "/api/v1/tasks/999", OPERATE);
    error_of(
        &call(&app, delete).await,
        StatusCode::NOT_FOUND,
        "task_not_found",
    );
    let reply = call(&app, get("/api/v1/tasks/abc")).await;
    assert_eq!(
        error_of(&reply, StatusCode::BAD_REQUEST, "invalid_parameter")["parameter"],
        "id"
    );
}

/// Stores keep ids and offsets as signed 64-bit integers: anything beyond
/// is the client's mistake (400), not a server error or an empty page.
#[actix_web::test]
async fn ids_and_offsets_beyond_the_store_range_are_400() {
    let (app, _h) = start(1, false).await;
    for method in [Method::GET, Method::DELETE] {
        let req = request(method.clone(), "/api/v1/tasks/9223372036854775808", OPERATE);
        let error = error_of(
            &call(&app, req).await,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        );
        assert_eq!(error["parameter"], "id", "{method}");
    }
    let reply = call(&app, get("/api/v1/tasks/9223372036854775807")).await;
    error_of(&reply, StatusCode::NOT_FOUND, "task_not_found");
    for path in [
        "/api/v1/tasks?offset=9223372036854775808",
        "/api/v1/entities?offset=9223372036854775808",
    ] {
        let error = error_of(
            &call(&app, get(path)).await,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        );
        assert_eq!(error["parameter"], "offset", "{path}");
    }
}

#[actix_web::test]
async fn unknown_api_paths_and_methods_get_json_errors() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, get("/api/v1/nothing-here")).await;
    error_of(&reply, StatusCode::NOT_FOUND, "route_not_found");
    let reply = call(&app, request(Method::PATCH, "/api/v1/tasks", OPERATE)).await;
    error_of(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.headers.get("allow").unwrap(), "GET, POST, DELETE");
}

#[actix_web::test]
async fn bad_list_parameters_are_400_naming_the_parameter() {
    let (app, _h) = start(1, false).await;
    for (query, parameter) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ] {
        let reply = call(&app, get(&format!("/api/v1/tasks?{query}"))).await;
        let error = error_of(&reply, StatusCode::BAD_REQUEST, "invalid_parameter");
        assert_eq!(error["parameter"], parameter, "{query}");
    }
    let reply = call(&app, get("/api/v1/tasks?stauts=failed")).await;
    let error = error_of(&reply, StatusCode::BAD_REQUEST, "invalid_parameter");
    assert!(error["message"].as_str().unwrap().contains("stauts"));
}

#[actix_web::test]
async fn idle_panel_has_the_full_shape() {
    let (app, _h) = start(2, false).await;
    let reply = call(&app, get("/api/v1/panel")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let keys: BTreeSet<&str> = reply
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "state",
            "workers",
            "pools",
            "running",
            "pending",
            "pending_total",
            "store",
            "nodes"
        ]
        .into()
    );
    assert_eq!(reply.body["state"], "idle");
    // One node on SQLite: no cluster.
    assert_eq!(reply.body["nodes"], serde_json::json!([]));
    assert_eq!(
        reply.body["store"],
        json!({"ok": true, "error": null, "failing_since": null, "unwritten": 0, "recorded_ends": 0})
    );
    assert_eq!(reply.body["workers"], json!({"active": 0, "limit": 2}));
    assert_eq!(
        reply.body["pools"],
        json!([{"name": "background", "active": 0, "limit": 2, "pending": 0}])
    );
    assert_eq!(reply.body["running"], json!([]));
    assert_eq!(reply.body["pending"], json!([]));
    assert_eq!(reply.body["pending_total"], 0);
}

#[actix_web::test]
async fn running_task_shows_in_the_panel_with_progress_and_every_field() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    let id = reply.body["id"].clone();
    let queued = call(&app, post("/api/v1/tasks", long_task("country:FR"))).await;
    let panel = panel_until(&app, |p| p["running"][0]["progress"].is_object()).await;
    assert_eq!(panel["state"], "active");
    let running = &panel["running"][0];
    assert_panel_task_keys(running);
    assert_eq!(running["id"], id);
    assert_eq!(running["name"], "test country:DE");
    assert_eq!(running["state"], "running");
    assert_eq!(running["stage"], "counting");
    assert_eq!(running["progress"]["total"], 1000);
    assert!(running["started_at"].is_string());
    assert!(running["waiting_behind"].is_null());
    let pending = &panel["pending"][0];
    assert_panel_task_keys(pending);
    assert_eq!(pending["id"], queued.body["id"]);
    assert!(pending["stage"].is_null() && pending["progress"].is_null());
}

#[actix_web::test]
async fn submitted_task_is_accepted_at_once_and_appears_in_the_panel() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["outcome"], "queued");
    let id = reply.body["id"].as_u64().expect("ids are JSON numbers");
    let panel = call(&app, get("/api/v1/panel")).await.body;
    let listed: Vec<u64> = [ids(&panel["running"]), ids(&panel["pending"])].concat();
    assert!(listed.contains(&id), "task {id} not in {panel}");
    let task = call(&app, get(&format!("/api/v1/tasks/{id}"))).await;
    assert_eq!(task.status, StatusCode::OK);
    assert_eq!(task.body["name"], "test country:DE");
    assert_eq!(task.body["trigger"], "api");
}

#[actix_web::test]
async fn duplicate_submit_of_a_queued_task_is_merged_into_it() {
    let (app, _h) = start(1, false).await;
    call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    let first = call(&app, post("/api/v1/tasks", long_task("country:FR"))).await;
    assert_eq!(first.body["outcome"], "queued");
    let second = call(&app, post("/api/v1/tasks", long_task("country:FR"))).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.body["outcome"], "merged");
    assert_eq!(second.body["id"], first.body["id"]);
    let panel = call(&app, get("/api/v1/panel")).await.body;
    assert_eq!(panel["pending"][0]["merged"], 1);
}

#[actix_web::test]
async fn submit_for_a_running_target_is_a_follow_up_behind_it() {
    let (app, _h) = start(1, false).await;
    let running = call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    panel_until(&app, |p| p["running"][0]["id"] == running.body["id"]).await;
    let follow_up = call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    assert_eq!(follow_up.status, StatusCode::ACCEPTED);
    assert_eq!(follow_up.body["outcome"], "follow_up");
    assert_eq!(follow_up.body["behind"], running.body["id"]);
    let panel = call(&app, get("/api/v1/panel")).await.body;
    assert_eq!(panel["pending"][0]["waiting_behind"], running.body["id"]);
}

#[actix_web::test]
async fn rebuild_queues_operator_tasks_for_all_or_named_targets() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, post("/api/v1/rebuild", json!({"targets": ["country:DE", "asn:13335"], "params": {"times": 1000, "round_ms": 100}}))).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let tasks = reply.body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["target"], "country:DE");
    assert_eq!(tasks[1]["target"], "asn:13335");
    assert!(tasks
        .iter()
        .all(|t| t["outcome"] == "queued" && t["id"].is_u64()));
    let all = call(&app, post("/api/v1/rebuild", json!({"all": true}))).await;
    assert_eq!(all.status, StatusCode::ACCEPTED);
    assert_eq!(all.body["tasks"][0]["target"], "all");
    let id = all.body["tasks"][0]["id"].as_u64().unwrap();
    let task = call(&app, get(&format!("/api/v1/tasks/{id}"))).await.body;
    assert_eq!(task["trigger"], "operator");
    assert_eq!(task["kind"], "test");
}

#[actix_web::test]
async fn rebuild_refuses_ambiguous_or_empty_requests() {
    let (app, _h) = start(1, false).await;
    for body in [
        json!({}),
        json!({"targets": []}),
        json!({"all": true, "targets": ["country:DE"]}),
    ] {
        let reply = call(&app, post("/api/v1/rebuild", body)).await;
        error_of(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let reply = call(
        &app,
        post(
            "/api/v1/rebuild",
            json!({"targets": ["country:DE", "no/slash"]}),
        ),
    )
    .await;
    assert_eq!(
        error_of(&reply, StatusCode::BAD_REQUEST, "invalid_target")["target"],
        "no/slash"
    );
    let reply = call(
        &app,
        post("/api/v1/rebuild", json!({"all": true, "kind": "nope"})),
    )
    .await;
    error_of(&reply, StatusCode::BAD_REQUEST, "unknown_kind");
    let panel = call(&app, get("/api/v1/panel")).await.body;
    assert_eq!(panel["state"], "idle", "a refused rebuild submits nothing");
}

#[actix_web::test]
async fn limit_change_is_answered_and_reflected_in_the_panel() {
    let (app, _h) = start(1, false).await;
    let put = |pool: &str, body: Value| {
        request(Method::PUT, &format!("/api/v1/pools/{pool}/limit"), OPERATE).set_json(body)
    };
    let reply = call(&app, put("background", json!({"limit": 3}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"name": "background", "active": 0, "limit": 3, "pending": 0})
    );
    let panel = call(&app, get("/api/v1/panel")).await.body;
    assert_eq!(panel["pools"][0]["limit"], 3);
    assert_eq!(panel["workers"]["limit"], 3);
    let reply = call(&app, put("nope", json!({"limit": 3}))).await;
    assert_eq!(
        error_of(&reply, StatusCode::NOT_FOUND, "pool_not_found")["pool"],
        "nope"
    );
    let reply = call(&app, put("background", json!({"limit": 1_000_000}))).await;
    error_of(&reply, StatusCode::BAD_REQUEST, "limit_too_large");
    let reply = call(&app, put("background", json!({"limit": -1}))).await;
    error_of(&reply, StatusCode::BAD_REQUEST, "invalid_json");
}

#[actix_web::test]
async fn delete_of_a_pending_task_cancels_it() {
    let (app, _h) = start(1, false).await;
    let running = call(&app, post("/api/v1/tasks", long_task("country:DE")))
        .await
        .body;
    let queued = call(&app, post("/api/v1/tasks", long_task("country:FR")))
        .await
        .body;
    panel_until(&app, |p| p["running"][0]["id"] == running["id"]).await;

    let path = format!("/api/v1/tasks/{}", queued["id"]);
    let reply = call(&app, request(Method::DELETE, &path, OPERATE)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["state"], "canceled");
    assert_eq!(reply.body["canceled_follow_ups"], json!([]));
    assert_eq!(call(&app, get(&path)).await.body["state"], "canceled");

    let path = format!("/api/v1/tasks/{}", running["id"]);
    let reply = call(&app, request(Method::DELETE, &path, OPERATE)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(
        reply.body["state"], "canceling",
        "cancel of a running task is signaled"
    );
    panel_until(&app, |p| p["state"] == "idle").await;
    assert_eq!(call(&app, get(&path)).await.body["state"], "canceled");
}

#[actix_web::test]
async fn delete_of_a_finished_task_removes_it_from_the_history() {
    let (app, _h) = start(1, false).await;
    let id = call(&app, post("/api/v1/tasks", quick_task("country:DE")))
        .await
        .body["id"]
        .clone();
    panel_until(&app, |p| p["state"] == "idle").await;
    let path = format!("/api/v1/tasks/{id}");
    assert_eq!(call(&app, get(&path)).await.body["state"], "succeeded");
    let reply = call(&app, request(Method::DELETE, &path, OPERATE)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    error_of(
        &call(&app, get(&path)).await,
        StatusCode::NOT_FOUND,
        "task_not_found",
    );
    let again = call(&app, request(Method::DELETE, &path, OPERATE)).await;
    error_of(&again, StatusCode::NOT_FOUND, "task_not_found");
}

#[actix_web::test]
async fn task_list_pages_each_status_newest_first() {
    let (app, _h) = start(2, false).await;
    for target in ["country:DE", "country:FR", "country:IT"] {
        call(&app, post("/api/v1/tasks", quick_task(target))).await;
    }
    panel_until(&app, |p| p["state"] == "idle").await;
    let reply = call(&app, get("/api/v1/tasks?status=finished&limit=2")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["total"], 3);
    let page = ids(&reply.body["tasks"]);
    assert_eq!(page.len(), 2);
    assert!(page[0] > page[1], "newest first: {page:?}");
    assert_eq!(reply.body["tasks"][0]["name"], "test country:IT");
    let rest = call(&app, get("/api/v1/tasks?status=finished&limit=2&offset=2")).await;
    assert_eq!(ids(&rest.body["tasks"]).len(), 1);
    let pending = call(&app, get("/api/v1/tasks")).await;
    assert_eq!(
        pending.body,
        json!({"tasks": [], "total": 0}),
        "default status is pending"
    );
}

#[actix_web::test]
async fn reload_answers_200_or_400_with_the_config_position() {
    let (app, h) = start(1, false).await;
    let reply = call(&app, request(Method::POST, "/api/v1/reload", OPERATE)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "reloaded"}));
    h.control.fail.store(true, Ordering::SeqCst);
    let reply = call(&app, request(Method::POST, "/api/v1/reload", OPERATE)).await;
    let error = error_of(&reply, StatusCode::BAD_REQUEST, "invalid_config");
    assert_eq!(error["file"], "/etc/groundcrew.toml");
    assert_eq!(error["line"], 7);
    assert_eq!(error["column"], 14);
    assert_eq!(error["key"], "pools.background");
}

#[actix_web::test]
async fn submit_while_shutting_down_is_503() {
    let (app, h) = start(1, false).await;
    h.supervisor
        .send(Drain {
            timeout: Duration::ZERO,
            grace: Duration::ZERO,
        })
        .await
        .unwrap();
    let reply = call(&app, post("/api/v1/tasks", quick_task("country:DE"))).await;
    error_of(&reply, StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
}

/// Every documented path and method is a route, every route is documented,
/// and each documented route answers something other than "no such route".
#[actix_web::test]
async fn openapi_document_matches_the_routes() {
    let (app, _h) = start(1, false).await;
    let reply = call(&app, request(Method::GET, "/api/v1/openapi.json", "")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in reply.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mounted: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, mounted);
    for (method, path) in &documented {
        let path = path
            .replace("{id}", "424242")
            .replace("{pool}", "background");
        let req = request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            &path,
            OPERATE,
        )
        .set_json(json!({}));
        if path.ends_with("/events") {
            // An event stream never ends, so only its head is checked.
            let response = test::call_service(&app, req.to_request()).await;
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
            continue;
        }
        let reply = call(&app, req).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(
            reply.body["error"]["code"], "route_not_found",
            "{method} {path}"
        );
    }
}

#[actix_web::test]
async fn daemon_routes_beside_the_api_keep_their_own_limits() {
    let (state, _h) = state(1, false).await;
    let app = test::init_service(
        App::new()
            .configure(move |cfg| configure(cfg, state.clone(), MAX_BODY))
            .route(
                "/page",
                web::post().to(|body: web::Json<Value>| async move {
                    actix_web::HttpResponse::Ok().json(body.into_inner())
                }),
            ),
    )
    .await;
    let big = json!({"pad": "x".repeat(2 * MAX_BODY)});
    let reply = call(&app, TestRequest::post().uri("/page").set_json(&big)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = call(&app, post("/api/v1/tasks", big)).await;
    error_of(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

/// Issue 19: `POST /api/v1/tasks` takes an array as one durable batch,
/// answered per request in order.
#[actix_web::test]
async fn a_batch_submit_is_answered_per_request() {
    let (app, _h) = start(1, false).await;
    let batch = json!([
        long_task("country:DE"),
        long_task("country:FR"),
        long_task("country:FR"),
        {"kind": "nope", "target": "asn:1"},
    ]);
    let reply = call(&app, post("/api/v1/tasks", batch)).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let tasks = reply.body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    assert_eq!(tasks[0]["outcome"], "queued");
    assert_eq!(tasks[1]["outcome"], "queued");
    assert_eq!(
        (&tasks[2]["outcome"], &tasks[2]["id"]),
        (&json!("merged"), &tasks[1]["id"])
    );
    assert_eq!(tasks[3]["error"]["code"], "unknown_kind");
    let id = tasks[1]["id"].as_u64().unwrap();
    let task = call(&app, get(&format!("/api/v1/tasks/{id}"))).await;
    assert_eq!(task.body["merged"], 1);
}

#[actix_web::test]
async fn a_batch_with_a_malformed_item_accepts_nothing() {
    let (app, _h) = start(0, false).await;
    let batch = json!([long_task("country:DE"), long_task("../etc")]);
    let reply = call(&app, post("/api/v1/tasks", batch)).await;
    let error = error_of(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("request [1]: "),
        "{error}"
    );
    let bad_field = json!([{"kind": "test", "target": "asn:1", "colour": "red"}]);
    let reply = call(&app, post("/api/v1/tasks", bad_field)).await;
    error_of(&reply, StatusCode::BAD_REQUEST, "invalid_json");
    let reply = call(&app, post("/api/v1/tasks", json!([]))).await;
    error_of(&reply, StatusCode::BAD_REQUEST, "invalid_request");
    let panel = call(&app, get("/api/v1/panel")).await.body;
    assert_eq!(panel["pending_total"], 0, "{panel}");
    // Every item refused: the call fails with the first refusal.
    let all_unknown = json!([{"kind": "nope", "target": "asn:1"}]);
    let reply = call(&app, post("/api/v1/tasks", all_unknown)).await;
    error_of(&reply, StatusCode::BAD_REQUEST, "unknown_kind");
}

/// Issue 20: a failed or canceled task is requested again with its kind,
/// target and params, trigger `operator` and `retry_of`; anything else is
/// a 409.
#[actix_web::test]
async fn a_canceled_task_is_retried_as_a_new_task() {
    let (app, _h) = start(0, false).await;
    let first = call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    let id = first.body["id"].as_u64().unwrap();
    let path = format!("/api/v1/tasks/{id}/retry");
    let early = call(&app, post(&path, json!(null))).await;
    error_of(&early, StatusCode::CONFLICT, "conflict");
    let canceled = call(
        &app,
        request(Method::DELETE, &format!("/api/v1/tasks/{id}"), OPERATE),
    )
    .await;
    assert_eq!(canceled.body["state"], "canceled", "{}", canceled.text);

    let retry = call(&app, post(&path, json!(null))).await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
    assert_eq!(retry.body["outcome"], "queued");
    let new = retry.body["id"].as_u64().unwrap();
    assert_ne!(new, id);
    let task = call(&app, get(&format!("/api/v1/tasks/{new}"))).await.body;
    assert_eq!(
        (&task["retry_of"], &task["trigger"], &task["target"]),
        (&json!(id), &json!("operator"), &json!("country:DE"))
    );
    assert_eq!(task["params"], long_task("country:DE")["params"]);
    // A second retry merges into the pending one.
    let again = call(&app, post(&path, json!(null))).await;
    assert_eq!(
        (&again.body["outcome"], &again.body["id"]),
        (&json!("merged"), &json!(new))
    );
    let missing = call(&app, post("/api/v1/tasks/999/retry", json!(null))).await;
    error_of(&missing, StatusCode::NOT_FOUND, "task_not_found");
}

/// Issue 20: task lists filter by kind, trigger, target prefix and time.
#[actix_web::test]
async fn task_lists_filter_by_kind_trigger_target_and_time() {
    let (app, _h) = start(0, false).await;
    call(&app, post("/api/v1/tasks", long_task("country:DE"))).await;
    let mut op = long_task("asn:1");
    op["trigger"] = json!("operator");
    call(&app, post("/api/v1/tasks", op)).await;
    let names = |r: &Reply| -> Vec<String> {
        r.body["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = call(&app, get("/api/v1/tasks?trigger=operator")).await;
    assert_eq!(
        (names(&r), &r.body["total"]),
        (vec!["test asn:1".to_owned()], &json!(1)),
        "{}",
        r.text
    );
    let r = call(&app, get("/api/v1/tasks?target=country:&kind=test")).await;
    assert_eq!(names(&r), ["test country:DE"], "{}", r.text);
    let r = call(&app, get("/api/v1/tasks?since=2999-01-01T00:00:00Z")).await;
    assert_eq!(r.body["total"], 0, "{}", r.text);
    for (query, parameter) in [
        ("since=yesterday", "since"),
        ("kind=", "kind"),
        ("target=", "target"),
    ] {
        let r = call(&app, get(&format!("/api/v1/tasks?{query}"))).await;
        let error = error_of(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
        assert_eq!(error["parameter"], parameter, "{query}");
    }
}

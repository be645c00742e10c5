//! Loading, precedence and error placement, end to end through files.

use std::collections::BTreeMap;
use std::fs;

use tempfile::TempDir;

use super::*;
use crate::auth::{Role, Secret};

/// Writes `text` to `name` in a fresh directory; keep the directory alive.
fn file(name: &str, text: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(name: &str, text: &str) -> Result<Config, ConfigError> {
    let (_dir, path) = file(name, text);
    Config::load(Some(&path), no_env())
}

fn load_err(name: &str, text: &str) -> ConfigError {
    load(name, text).expect_err("the file should be refused")
}

/// The line and column of an error, and its key.
fn place(e: &ConfigError) -> (Option<usize>, Option<usize>, Option<&str>) {
    let loc = e.location();
    (
        loc.as_ref().map(|l| l.1),
        loc.as_ref().map(|l| l.2),
        e.key(),
    )
}

const TOKEN_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn defaults_when_no_file() {
    let c = Config::load(None, no_env()).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./groundcrew-data"));
    assert_eq!(c.http.bind, "127.0.0.1:7878".parse().unwrap());
    assert!(!c.http.metrics_require_token);
    assert_eq!(c.http.max_body_bytes, 65536);
    assert_eq!(
        c.store_location(),
        StoreLocation::Sqlite("./groundcrew-data/groundcrew.db".into())
    );
    assert_eq!(c.pool_limits().collect::<Vec<_>>(), [("background", 2)]);
    assert!(c.tokens.is_empty());
    assert_eq!(
        c.retention(),
        Retention {
            max_age_s: Some(604_800),
            max_count: Some(10_000)
        }
    );
    assert_eq!(c.retention.prune_interval_s, 300);
    assert_eq!(
        c.artifacts_dir(),
        PathBuf::from("./groundcrew-data/artifacts")
    );
    assert_eq!(c.artifacts.extension.as_deref(), Some("txt"));
    assert_eq!(c.log.format, LogFormat::Pretty);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.shutdown.drain_timeout_s, 30);
    assert_eq!(c.shutdown.cancel_grace_s, 5);
    assert_eq!(c, Config::default());
}

#[test]
fn empty_yaml_file_is_all_defaults() {
    assert_eq!(
        load("g.yaml", "# nothing set\n").unwrap(),
        Config::default()
    );
    assert_eq!(load("g.toml", "").unwrap(), Config::default());
}

const YAML: &str = "\
data_dir: /var/lib/groundcrew
http:
  bind: 127.0.0.1:9000
  metrics_require_token: true
store: jobs.sqlite3
pools:
  reports: 3
tokens:
  - name: ops
    token: aaaaaaaaaaaaaaaaaaaaaaaa
    role: operate
  - name: viewer
    token: bbbbbbbbbbbbbbbbbbbbbbbb
    role: read
retention:
  max_age_s: none
  max_count: 500
artifacts:
  dir: /srv/artifacts
  extension: ''
log:
  format: json
  level: warn,groundcrew=debug
shutdown:
  drain_timeout_s: 60
";

const TOML: &str = r#"
data_dir = "/var/lib/groundcrew"
store = "jobs.sqlite3"

[http]
bind = "127.0.0.1:9000"
metrics_require_token = true

[pools]
reports = 3

[[tokens]]
name = "ops"
token = "aaaaaaaaaaaaaaaaaaaaaaaa"
role = "operate"

[[tokens]]
name = "viewer"
token = "bbbbbbbbbbbbbbbbbbbbbbbb"
role = "read"

[retention]
max_age_s = "none"
max_count = 500

[artifacts]
dir = "/srv/artifacts"
extension = ""

[log]
format = "json"
level = "warn,groundcrew=debug"

[shutdown]
drain_timeout_s = 60
"#;

#[test]
fn yaml_and_toml_equivalents_load_to_the_same_config() {
    let yaml = load("g.yaml", YAML).unwrap();
    let toml = load("g.toml", TOML).unwrap();
    assert_eq!(yaml, toml);
    assert_eq!(
        yaml.store_location(),
        StoreLocation::Sqlite("/var/lib/groundcrew/jobs.sqlite3".into())
    );
    // A pools map adds to the default pool rather than replacing it.
    assert_eq!(
        yaml.pool_limits().collect::<Vec<_>>(),
        [("background", 2), ("reports", 3)]
    );
    assert_eq!(yaml.tokens[1].role, Role::Read);
    assert_eq!(yaml.retention.max_age_s, None);
    assert_eq!(yaml.artifacts.extension, None);
    assert_eq!(yaml.log.format, LogFormat::Json);
    assert_eq!(yaml.shutdown.cancel_grace_s, 5);
}

#[test]
fn yml_extension_is_yaml() {
    assert_eq!(load("g.yml", YAML).unwrap(), load("g.yaml", YAML).unwrap());
}

#[test]
fn env_overrides_file() {
    let (_dir, path) = file("g.yaml", YAML);
    let vars = env(&[
        ("GROUNDCREW_HTTP__BIND", "127.0.0.1:9100"),
        ("GROUNDCREW_POOLS__BACKGROUND", "4"),
        ("GROUNDCREW_DATA_DIR", "/data"),
        ("GROUNDCREW_STORE", "postgres://gc:pw@db/gc"),
        ("GROUNDCREW_RETENTION__MAX_COUNT", "none"),
        ("GROUNDCREW_LOG__FORMAT", "pretty"),
        ("GROUNDCREW_TOKEN", "read by the CLI, not here"),
        ("GROUNDCREW_URL", "http://127.0.0.1:7878"),
        ("PATH", "/usr/bin"),
    ]);
    let c = Config::load(Some(&path), vars).unwrap();
    assert_eq!(c.http.bind, "127.0.0.1:9100".parse().unwrap());
    assert_eq!(c.pools["background"].limit, 4);
    assert_eq!(c.pools["reports"].limit, 3);
    assert_eq!(c.data_dir, PathBuf::from("/data"));
    assert!(
        matches!(c.store_location(), StoreLocation::Postgres(url) if url.expose() == "postgres://gc:pw@db/gc")
    );
    assert_eq!(c.retention.max_count, None);
    assert_eq!(c.log.format, LogFormat::Pretty);
    // Untouched by the environment.
    assert!(c.http.metrics_require_token);
}

#[test]
fn env_sets_tokens_as_a_flow_list() {
    let list = format!("[{{name: ci, token: {TOKEN_A}, role: read}}]");
    let c = Config::load(None, env(&[("GROUNDCREW_TOKENS", &list)])).unwrap();
    assert_eq!(c.tokens[0].token, Secret::new(TOKEN_A));
    let e = Config::load(
        None,
        env(&[("GROUNDCREW_TOKENS", "[{name: ci, token: hunter2}]")]),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn bad_env_value_names_the_variable() {
    let e = Config::load(None, env(&[("GROUNDCREW_HTTP__BIND", "x")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"GROUNDCREW_HTTP__BIND: invalid socket address "x""#
    );
    assert_eq!(e.key(), Some("http.bind"));
    assert_eq!(e.location(), None);
}

#[test]
fn unknown_env_key_names_the_variable() {
    let e = Config::load(None, env(&[("GROUNDCREW_HTTP__BINDD", "x")])).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            r#"GROUNDCREW_HTTP__BINDD: unknown key "http.bindd"; expected one of data_dir"#
        ),
        "{shown}"
    );
    assert!(matches!(e, ConfigError::UnknownKey { .. }));
}

#[test]
fn env_validation_errors_name_the_variable() {
    let e = Config::load(None, env(&[("GROUNDCREW_POOLS__BACKGROUND", "5000")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "GROUNDCREW_POOLS__BACKGROUND: worker limit 5000 is too large (at most 4096)"
    );
    assert_eq!(e.key(), Some("pools.background"));
}

#[test]
fn flags_override_env() {
    let vars = env(&[
        ("GROUNDCREW_HTTP__BIND", "127.0.0.1:9100"),
        ("GROUNDCREW_DATA_DIR", "/from-env"),
    ]);
    let mut c = Config::load(None, vars).unwrap();
    c.apply_overrides(&Overrides {
        bind: Some("127.0.0.1:9200".parse().unwrap()),
        data_dir: Some("/from-flag".into()),
    });
    c.validate_bind().unwrap();
    assert_eq!(c.http.bind, "127.0.0.1:9200".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/from-flag"));
}

#[test]
fn data_dir_flag_moves_derived_paths_but_not_explicit_ones() {
    let mut c = Config::load(None, no_env()).unwrap();
    c.apply_overrides(&Overrides {
        bind: None,
        data_dir: Some("/d".into()),
    });
    assert_eq!(
        c.store_location(),
        StoreLocation::Sqlite("/d/groundcrew.db".into())
    );
    assert_eq!(c.artifacts_dir(), PathBuf::from("/d/artifacts"));

    let mut c = load(
        "g.yaml",
        "store: /srv/db.sqlite\nartifacts:\n  dir: /srv/a\n",
    )
    .unwrap();
    c.apply_overrides(&Overrides {
        bind: None,
        data_dir: Some("/d".into()),
    });
    assert_eq!(
        c.store_location(),
        StoreLocation::Sqlite("/srv/db.sqlite".into())
    );
    assert_eq!(c.artifacts_dir(), PathBuf::from("/srv/a"));
}

#[test]
fn non_loopback_bind_flag_without_tokens_names_the_flag() {
    let mut c = Config::load(None, no_env()).unwrap();
    c.apply_overrides(&Overrides {
        bind: Some("0.0.0.0:7878".parse().unwrap()),
        data_dir: None,
    });
    let e = c.validate_bind().unwrap_err();
    assert!(
        e.to_string().starts_with(
            "--bind: http.bind: refusing to listen on non-loopback address 0.0.0.0:7878"
        ),
        "{e}"
    );
}

#[test]
fn unknown_key_names_key_and_line() {
    let e = load_err("g.yaml", "data_dir: /x\ntokenz: []\n");
    assert_eq!(place(&e), (Some(2), Some(1), Some("tokenz")));
    let shown = e.to_string();
    assert!(
        shown
            .contains(r#"g.yaml:2:1: unknown key "tokenz"; expected one of data_dir, http, store"#),
        "{shown}"
    );

    let e = load_err("g.yaml", "http:\n  bind: 127.0.0.1:1\n  bnd: 1\n");
    assert_eq!(place(&e), (Some(3), Some(3), Some("http.bnd")));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");

    let e = load_err("g.toml", "[http]\nbind = \"127.0.0.1:1\"\nbnd = 1\n");
    assert_eq!(place(&e), (Some(3), Some(1), Some("http.bnd")));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    let e = load_err("g.yaml", "tokens:\n  - name: a\n    nmae: b\n");
    assert_eq!(place(&e), (Some(3), Some(5), Some("tokens[0].nmae")));
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e:?}");
    let e = load_err("g.toml", "tokenz = []\n");
    assert_eq!(place(&e), (Some(1), Some(1), Some("tokenz")));
}

#[test]
fn wrong_type_names_key_and_line() {
    let e = load_err("g.yaml", "http:\n  max_body_bytes: lots\n");
    assert_eq!(place(&e), (Some(2), Some(3), Some("http.max_body_bytes")));
    assert!(
        e.to_string().ends_with(
            "g.yaml:2:3: http.max_body_bytes: invalid type: string \"lots\", expected usize"
        ),
        "{e}"
    );
    assert!(!e.to_string().contains("at line"), "{e}");

    let e = load_err("g.toml", "[http]\nmax_body_bytes = \"lots\"\n");
    assert_eq!(place(&e), (Some(2), Some(1), Some("http.max_body_bytes")));

    let e = load_err(
        "g.yaml",
        "tokens:\n  - name: a\n    token: 5\n    role: boss\n",
    );
    assert_eq!(e.key(), Some("tokens[0].role"));
    assert_eq!(place(&e).0, Some(4));
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = load_err("g.yaml", "http:\n  bind: [1, 2\nstore: sqlite\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    let (line, column, key) = place(&e);
    assert!(line.is_some() && column.is_some() && key.is_none());
    assert!(!e.to_string().contains(" at line "), "{e}");

    let e = load_err("g.toml", "[http]\nbind = \n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e:?}");
    assert_eq!(place(&e).0, Some(2));
}

const POOLS_YAML: &str = "\
data_dir: /x
pools:
    reports: 2
    background: 5000
";

#[test]
fn pool_limit_too_large_names_nested_key_and_line() {
    let e = load_err("groundcrew.yaml", POOLS_YAML);
    assert_eq!(place(&e), (Some(4), Some(5), Some("pools.background")));
    assert!(
        e.to_string().ends_with(
            "groundcrew.yaml:4:5: pools.background: worker limit 5000 is too large (at most 4096)"
        ),
        "{e}"
    );
    let e = load_err("g.toml", "[pools]\nreports = 2\nbackground = 5000\n");
    assert_eq!(place(&e), (Some(3), Some(1), Some("pools.background")));
    // Flow style and inline tables are located as well.
    let e = load_err("g.yaml", "pools: {reports: 2, background: 5000}\n");
    assert_eq!(place(&e), (Some(1), Some(21), Some("pools.background")));
    let e = load_err("g.toml", "pools = { reports = 2, background = 5000 }\n");
    assert_eq!(place(&e), (Some(1), Some(24), Some("pools.background")));
}

/// Issue 16: a pool is a limit, or a map with the limit and the pool's
/// cancel grace period (default 10 s).
#[test]
fn a_pool_takes_a_cancel_grace_in_its_long_form() {
    let c = load(
        "g.yaml",
        "pools:\n  background: 3\n  slow: {limit: 1, cancel_grace_s: 60}\n  quick:\n    limit: 2\n",
    )
    .unwrap();
    let pool = |name: &str| (c.pools[name].limit, c.pools[name].cancel_grace_s);
    assert_eq!(pool("background"), (3, 10));
    assert_eq!(pool("slow"), (1, 60));
    assert_eq!(pool("quick"), (2, 10));
    let t = load(
        "g.toml",
        "[pools]\nbackground = 3\nslow = { limit = 1, cancel_grace_s = 60 }\nquick = { limit = 2 }\n",
    )
    .unwrap();
    assert_eq!(t.pools, c.pools);

    let e = load_err("g.yaml", "pools:\n  slow:\n    limit: 5000\n");
    assert_eq!(place(&e), (Some(3), Some(5), Some("pools.slow.limit")));
    let e = load_err("g.yaml", "pools:\n  slow: {limit: 1, grace: 3}\n");
    assert!(e.to_string().contains("grace"), "{e}");
    let e = load_err("g.yaml", "pools:\n  slow: {cancel_grace_s: 3}\n");
    assert!(e.to_string().contains("limit"), "{e}");
    let e = load_err("g.yaml", "pools:\n  slow: fast\n");
    assert!(
        e.to_string()
            .contains("a worker limit, or a map with limit, cancel_grace_s and cluster_limit"),
        "{e}"
    );
}

#[test]
fn builtin_kind_timeouts_default_to_none_and_zero_is_refused() {
    let c = load(
        "g.yaml",
        "builtin_kinds:\n  artifact:\n    timeout_s: 600\n",
    )
    .unwrap();
    assert_eq!(c.builtin_kinds.artifact.timeout_s, Some(600));
    assert_eq!(c.builtin_kinds.test.timeout_s, None);
    let e = load_err("g.yaml", "builtin_kinds:\n  test:\n    timeout_s: 0\n");
    assert_eq!(
        place(&e),
        (Some(3), Some(5), Some("builtin_kinds.test.timeout_s"))
    );
    let e = load_err("g.yaml", "builtin_kinds:\n  refresh:\n    timeout_s: 5\n");
    assert!(e.to_string().contains("refresh"), "{e}");
}

/// Issue 17: a pool's cluster-wide limit is a key of its long form, only
/// with a PostgreSQL store.
#[test]
fn a_pool_takes_a_cluster_limit_on_postgres_only() {
    let pg = "store: postgres://gc@localhost/gc\n";
    let c = load(
        "g.yaml",
        &format!("{pg}pools:\n  reports: {{limit: 4, cluster_limit: 6}}\n  slow: 1\n"),
    )
    .unwrap();
    assert_eq!(
        (c.pools["reports"].limit, c.pools["reports"].cluster_limit),
        (4, Some(6))
    );
    assert_eq!(c.pools["slow"].cluster_limit, None);
    let t = load(
        "g.toml",
        "store = \"postgres://gc@localhost/gc\"\n[pools]\nreports = { limit = 4, cluster_limit = 6 }\n",
    )
    .unwrap();
    assert_eq!(t.pools["reports"], c.pools["reports"]);

    let e = load_err(
        "g.yaml",
        "pools:\n  reports: 2\n  slow:\n    limit: 1\n    cluster_limit: 3\n",
    );
    assert_eq!(
        place(&e),
        (Some(5), Some(5), Some("pools.slow.cluster_limit"))
    );
    assert!(e.to_string().contains("needs a PostgreSQL store"), "{e}");
    let e = load_err(
        "g.yaml",
        &format!("{pg}pools:\n  slow: {{limit: 1, cluster_limit: -1}}\n"),
    );
    assert!(e.to_string().contains("-1"), "{e}");

    let vars = env(&[
        ("GROUNDCREW_STORE", "postgres://gc@localhost/gc"),
        ("GROUNDCREW_POOLS__SLOW", "1"),
        ("GROUNDCREW_POOLS__SLOW__CLUSTER_LIMIT", "5"),
    ]);
    let c = Config::load(None, vars).unwrap();
    assert_eq!(c.pools["slow"].cluster_limit, Some(5));
    let e = Config::load(
        None,
        env(&[
            ("GROUNDCREW_POOLS__SLOW", "1"),
            ("GROUNDCREW_POOLS__SLOW__CLUSTER_LIMIT", "5"),
        ]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cluster_limit needs a PostgreSQL store"),
        "{e}"
    );
}

#[test]
fn a_pool_grace_is_set_from_the_environment() {
    let vars = env(&[
        ("GROUNDCREW_POOLS__SLOW", "1"),
        ("GROUNDCREW_POOLS__SLOW__CANCEL_GRACE_S", "45"),
    ]);
    let c = Config::load(None, vars).unwrap();
    assert_eq!(
        (c.pools["slow"].limit, c.pools["slow"].cancel_grace_s),
        (1, 45)
    );
    let e = Config::load(
        None,
        env(&[("GROUNDCREW_POOLS__NOPE__CANCEL_GRACE_S", "4")]),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("GROUNDCREW_POOLS__NOPE__CANCEL_GRACE_S"),
        "{e}"
    );
}

#[test]
fn bad_pool_name_names_the_key_and_line() {
    let e = load_err("g.yaml", "pools:\n  background: 1\n  Bad: 1\n");
    assert_eq!(place(&e), (Some(3), Some(3), Some("pools.Bad")));
    assert!(e.to_string().contains(r#"invalid pool name "Bad""#), "{e}");
}

fn tokens_yaml(second_name: &str, second_token: &str) -> String {
    format!(
        "tokens:\n  - name: ops\n    token: {TOKEN_A}\n    role: operate\n  \
         - name: {second_name}\n    role: read\n    token: {second_token}\n"
    )
}

#[test]
fn duplicate_token_names_the_list_item() {
    let e = load_err("g.yaml", &tokens_yaml("viewer", TOKEN_A));
    assert_eq!(place(&e), (Some(7), Some(5), Some("tokens[1].token")));
    assert!(!e.to_string().contains(TOKEN_A), "{e}");
    assert!(
        e.to_string().contains("same value as tokens[0].token"),
        "{e}"
    );

    let e = load_err("g.yaml", &tokens_yaml("ops", TOKEN_B));
    assert_eq!(place(&e), (Some(5), Some(5), Some("tokens[1].name")));

    let toml = format!(
        "[[tokens]]\nname = \"ops\"\ntoken = \"{TOKEN_A}\"\nrole = \"read\"\n\n\
         [[tokens]]\nname = \"ci\"\ntoken = \"{TOKEN_A}\"\nrole = \"read\"\n"
    );
    let e = load_err("g.toml", &toml);
    assert_eq!(place(&e), (Some(8), Some(1), Some("tokens[1].token")));
}

#[test]
fn short_token_names_the_list_item() {
    let e = load_err("g.yaml", &tokens_yaml("viewer", "short"));
    assert_eq!(place(&e), (Some(7), Some(5), Some("tokens[1].token")));
    assert!(!e.to_string().contains("short\""), "{e}");
    assert!(
        e.to_string().contains("5 characters long (at least 16)"),
        "{e}"
    );
}

#[test]
fn non_loopback_bind_without_tokens_names_the_key_and_line() {
    let e = load_err("g.yaml", "data_dir: /x\nhttp:\n  bind: 0.0.0.0:7878\n");
    assert_eq!(place(&e), (Some(3), Some(3), Some("http.bind")));
    let yaml = format!(
        "http:\n  bind: 0.0.0.0:7878\n{}",
        &tokens_yaml("viewer", TOKEN_B)
    );
    assert_eq!(load("g.yaml", &yaml).unwrap().tokens.len(), 2);
}

#[test]
fn other_validation_errors_name_their_keys() {
    for (text, key) in [
        (
            "retention:\n  prune_interval_s: 0\n",
            "retention.prune_interval_s",
        ),
        ("artifacts:\n  extension: TXT\n", "artifacts.extension"),
        ("log:\n  level: loud\n", "log.level"),
        ("http:\n  max_body_bytes: 0\n", "http.max_body_bytes"),
        ("data_dir: /x\n\nstore: notes.txt\n", "store"),
        ("log:\n  format: xml\n", "log.format"),
        ("pools:\n  a: 1\nkinds_isolation: jail\n", "kinds_isolation"),
    ] {
        let e = load_err("g.yaml", text);
        assert_eq!(e.key(), Some(key), "{e}");
        assert_eq!(e.location().map(|l| l.1), Some(text.lines().count()), "{e}");
    }
}

#[test]
fn postgres_url_never_printed() {
    let secret = "postgres://groundcrew:hunter2@db.internal/gc";
    let c = load("g.yaml", &format!("store: {secret}\n")).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!format!("{:?}", c.store_location()).contains("hunter2"));

    // An error elsewhere in the same file does not quote it either.
    let e = load_err("g.yaml", &format!("store: {secret}\npools:\n  x: 9999\n"));
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    // Nor does a misspelled scheme.
    let e = load_err("g.yaml", "store: postgress://gc:hunter2@db/gc\n");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    let e = Config::load(None, env(&[("GROUNDCREW_STORE", "pg://gc:hunter2@db")])).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
}

#[test]
fn unsupported_extension_names_the_file() {
    let e = load_err("groundcrew.json", "{}");
    assert!(matches!(e, ConfigError::UnsupportedFormat { .. }));
    assert!(e.to_string().contains("groundcrew.json"), "{e}");
    assert!(e
        .to_string()
        .contains("expected a .yaml, .yml or .toml extension"));
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let e = Config::load(Some(Path::new("/nonexistent/g.yaml")), no_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/g.yaml"));
}

#[test]
fn env_keys_cover_every_field() {
    // serde lists a level's fields in its unknown-key error.
    for section in ["", "http", "retention", "artifacts", "log", "shutdown"] {
        let text = if section.is_empty() {
            "zzz: 1\n".to_owned()
        } else {
            format!("{section}:\n  zzz: 1\n")
        };
        let ConfigError::UnknownKey { expected, .. } = load_err("g.yaml", &text) else {
            panic!(
                "{section}: expected an unknown key, got {:?}",
                load_err("g.yaml", &text)
            );
        };
        for field in expected {
            let key = if section.is_empty() {
                field
            } else {
                format!("{section}.{field}")
            };
            assert!(
                env::KEYS
                    .iter()
                    .any(|k| *k == key || k.starts_with(&format!("{key}."))),
                "{key} cannot be set from the environment"
            );
        }
    }
}

#[test]
fn command_kinds_load_with_defaults() {
    let c = load(
        "g.yaml",
        "pools:\n  slow: 1\nkinds:\n  - name: refresh-geo\n    command: [/bin/refresh, --fast]\n  \
         - name: dump\n    command: [dump]\n    pool: slow\n    timeout_s: 5\n    max_attempts: 1\n    \
         env: {A: b}\n",
    )
    .unwrap();
    assert_eq!(c.kinds.len(), 2);
    let geo = &c.kinds[0];
    assert_eq!(geo.command, ["/bin/refresh", "--fast"]);
    assert_eq!(
        (geo.pool.as_str(), geo.timeout_s, geo.max_attempts),
        ("background", 600, 3)
    );
    assert!(geo.env.is_empty());
    let dump = &c.kinds[1];
    assert_eq!(
        (dump.pool.as_str(), dump.timeout_s, dump.max_attempts),
        ("slow", 5, 1)
    );
    assert_eq!(dump.env, BTreeMap::from([("A".into(), "b".into())]));
}

#[test]
fn bad_command_kinds_name_the_list_item_and_line() {
    let kinds = |item: &str| format!("kinds:\n  - name: ok\n    command: [x]\n{item}");
    let cases = [
        (
            "  - name: Bad\n    command: [x]\n",
            4,
            "kinds[1].name",
            r#"invalid kind name "Bad""#,
        ),
        (
            "  - name: test\n    command: [x]\n",
            4,
            "kinds[1].name",
            r#"kind name "test" is taken by a built-in kind"#,
        ),
        (
            "  - name: artifact\n    command: [x]\n",
            4,
            "kinds[1].name",
            "built-in",
        ),
        (
            "  - name: ok\n    command: [y]\n",
            4,
            "kinds[1].name",
            r#"duplicate kind name "ok" (also at kinds[0].name)"#,
        ),
        (
            "  - name: b\n    command: []\n",
            5,
            "kinds[1].command",
            "command must not be empty",
        ),
        (
            "  - name: b\n    command: [x]\n    pool: nope\n",
            6,
            "kinds[1].pool",
            r#"unknown pool "nope"; configured pools: background"#,
        ),
        (
            "  - name: b\n    command: [x]\n    timeout_s: 0\n",
            6,
            "kinds[1].timeout_s",
            "must be greater than 0",
        ),
        (
            "  - name: b\n    command: [x]\n    max_attempts: 0\n",
            6,
            "kinds[1].max_attempts",
            "must be greater than 0",
        ),
        (
            "  - name: b\n    command: [x]\n    env: {\"A=B\": c}\n",
            6,
            "kinds[1].env.A=B",
            "invalid environment variable name",
        ),
    ];
    for (item, line, key, message) in cases {
        let e = load_err("g.yaml", &kinds(item));
        assert_eq!(
            (place(&e).0, place(&e).2),
            (Some(line), Some(key)),
            "{item}: {e}"
        );
        assert!(e.to_string().contains(message), "{item}: {e}");
    }
    let e = load_err(
        "g.yaml",
        "kinds:\n  - name: a\n    command: [x]\n    shell: true\n",
    );
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
}

#[test]
fn env_sets_kinds_as_a_flow_list() {
    let c = Config::load(
        None,
        env(&[(
            "GROUNDCREW_KINDS",
            "[{name: geo, command: [/bin/geo, -v], timeout_s: 9}]",
        )]),
    )
    .unwrap();
    assert_eq!(c.kinds[0].name, "geo");
    assert_eq!(c.kinds[0].command, ["/bin/geo", "-v"]);
    assert_eq!(c.kinds[0].timeout_s, 9);
    let e = Config::load(
        None,
        env(&[("GROUNDCREW_KINDS", "[{name: test, command: [x]}]")]),
    )
    .unwrap_err();
    assert_eq!(e.origin(), Some(&Origin::Env("GROUNDCREW_KINDS".into())));
    assert!(e.to_string().contains("built-in"), "{e}");
}

/// Issue 16: the drain stops what is left hard at the end of its grace,
/// killing command groups, so a grace shorter than the command kinds'
/// SIGTERM-to-SIGKILL step is fine (issue 15 had to refuse it).
#[test]
fn a_short_shutdown_grace_is_accepted() {
    let c = load("g.yaml", "shutdown:\n  cancel_grace_s: 0\n").unwrap();
    assert_eq!(c.shutdown.cancel_grace_s, 0);
}

#[test]
fn feed_guard_ratios_are_read_and_checked_naming_the_key_and_line() {
    let text = "feeds:\n  - name: geo\n    path: geo.tsv\n    format: ip2asn\n    max_bad_line_ratio: 0.2\n";
    let c = load("g.yaml", text).unwrap();
    let guard = c.feed_sources()[0].guard;
    assert_eq!(guard.max_bad_line_ratio, 0.2);
    assert_eq!(guard.max_entity_drop_ratio, 0.5, "the default");

    let text = "feeds:\n  - name: geo\n    path: geo.tsv\n    format: ip2asn\n    max_entity_drop_ratio: 1.5\n";
    let e = load_err("g.yaml", text);
    let message = e.to_string();
    assert!(
        message.contains("feeds[0].max_entity_drop_ratio") && message.contains("1.5"),
        "{message}"
    );
    assert_eq!(place(&e).0, Some(5), "{message}");
}

#[test]
fn kinds_isolation_from_file_and_environment() {
    assert_eq!(Config::default().kinds_isolation, KindsIsolation::Auto);
    let c = load("g.yaml", "kinds_isolation: subreaper\n").unwrap();
    assert_eq!(c.kinds_isolation, KindsIsolation::Subreaper);
    let c = load("g.toml", "kinds_isolation = \"cgroup\"\n").unwrap();
    assert_eq!(c.kinds_isolation, KindsIsolation::Cgroup);
    let c = Config::load(None, env(&[("GROUNDCREW_KINDS_ISOLATION", "cgroup")])).unwrap();
    assert_eq!(c.kinds_isolation, KindsIsolation::Cgroup);
    let e = Config::load(None, env(&[("GROUNDCREW_KINDS_ISOLATION", "jail")])).unwrap_err();
    assert!(e.to_string().contains("GROUNDCREW_KINDS_ISOLATION"), "{e}");
    assert!(e.to_string().contains("jail"), "{e}");
}

#[test]
fn postgres_artifact_sink_needs_a_postgres_store() {
    let e = load_err("g.yaml", "artifacts:\n  sink: postgres\n");
    assert_eq!(place(&e).2, Some("artifacts.sink"), "{e}");
    assert!(e.to_string().contains("needs a PostgreSQL store"), "{e}");
    let c = load(
        "g.yaml",
        "store: postgres://gc@db/gc\nartifacts:\n  sink: postgres\n",
    )
    .unwrap();
    assert_eq!(c.artifacts.sink, ArtifactSinkKind::Postgres);
    assert_eq!(Config::default().artifacts.sink, ArtifactSinkKind::File);
    let e = Config::load(None, env(&[("GROUNDCREW_ARTIFACTS__SINK", "s3")])).unwrap_err();
    assert!(
        e.to_string().contains("artifact sink (file or postgres)"),
        "{e}"
    );
}

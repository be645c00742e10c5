//! A small blocking client for the admin API, used by the CLI commands.
//! Error bodies (`{"error": {"code", "message"}}`) become one readable line.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

use super::ClientArgs;
use crate::auth;

/// Talks to one daemon with one token.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    /// The token comes from `--token`/`GROUNDCREW_TOKEN`, else from the
    /// generated token file in the data directory, if there is one.
    pub(crate) fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        Self::with_timeout(args, Duration::from_secs(30))
    }

    /// Like [`Client::new`], for requests the daemon may hold longer than
    /// the usual 30 s (it bounds them itself).
    pub(crate) fn with_timeout(args: &ClientArgs, timeout: Duration) -> anyhow::Result<Self> {
        let token = match &args.token {
            Some(t) => Some(t.clone()),
            None => {
                let path = auth::token_file(&args.data_dir);
                match std::fs::read_to_string(&path) {
                    Ok(t) => Some(t.trim().to_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot read token file {}", path.display()))
                    }
                }
            }
        };
        let tls = super::tls::config(&args.url, args.ca_cert.as_deref())?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Self {
            agent,
            base: args.url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call("POST", path, Some(body))
    }

    pub(crate) fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call("PUT", path, Some(body))
    }

    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call("DELETE", path, None)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let response = match body {
            Some(b) => {
                let request = request
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(b)?)?;
                self.agent.run(request)
            }
            None => self.agent.run(request.body(())?),
        }
        .with_context(|| format!("cannot reach groundcrew at {}", self.base))?;
        let status = response.status();
        let text = response
            .into_body()
            .read_to_string()
            .with_context(|| format!("{method} {path}: unreadable response"))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: response is not JSON (HTTP {status})"))?
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]["message"].as_str().map(str::to_owned);
        let code = value["error"]["code"].as_str().unwrap_or("error");
        match message {
            Some(m) if status == 401 && self.token.is_none() => {
                bail!("{m} (HTTP 401): pass --token, set GROUNDCREW_TOKEN, or point --data-dir at the daemon's data directory")
            }
            Some(m) => Err(anyhow!("{m} ({code}, HTTP {status})")),
            None => Err(anyhow!("{method} {path} failed with HTTP {status}")),
        }
    }
}

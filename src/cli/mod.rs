//! The command line: `serve` runs the daemon; every other command talks to
//! a running daemon's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

mod bulk;
mod client;
mod commands;
mod completions;
mod show;
mod tls;
mod watch;

/// Background maintenance work for long-running daemons.
#[derive(Debug, Parser)]
#[command(name = "groundcrew", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which tasks `tasks` lists, as `GET /api/v1/tasks` filters them.
#[derive(Debug, Args, Default)]
pub(crate) struct TaskFilterArgs {
    /// Only tasks of this kind.
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Only tasks with this trigger (merged requests' included).
    #[arg(long)]
    pub(crate) trigger: Option<String>,
    /// Only tasks whose target starts with this, e.g. `country:`.
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Only tasks requested at or after this RFC 3339 time.
    #[arg(long)]
    pub(crate) since: Option<String>,
}

impl TaskFilterArgs {
    /// Whether no filter is given.
    fn is_empty(&self) -> bool {
        [&self.kind, &self.trigger, &self.target, &self.since]
            .iter()
            .all(|v| v.is_none())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the daemon (embedded defaults without --config).
    Serve(ServeArgs),
    /// Shows the panel once: state, workers, running and pending tasks.
    Status(ClientArgs),
    /// Lists task history.
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        /// Which part of the history: pending, failed or finished.
        #[arg(long, default_value = "pending")]
        status: String,
        /// How many tasks.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[command(flatten)]
        filter: TaskFilterArgs,
    },
    /// Shows one task, whole: request, coalescing, attempts, outcome.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// Task id.
        id: u64,
    },
    /// Requests a failed or canceled task again (trigger operator), or with
    /// --failed every one the filters show (at most --limit, newest first).
    Retry {
        #[command(flatten)]
        client: ClientArgs,
        /// Task id.
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        id: Option<u64>,
        /// Retry the failed list (failed and canceled tasks).
        #[arg(long)]
        failed: bool,
        #[command(flatten)]
        filter: TaskFilterArgs,
        /// With --failed: at most this many tasks (default 100, at most 1000).
        #[arg(long, requires = "failed")]
        limit: Option<u64>,
    },
    /// Removes the failed or finished tasks the filters show from the
    /// history (at most --limit, newest first).
    Delete {
        #[command(flatten)]
        client: ClientArgs,
        /// The failed list: failed and canceled tasks.
        #[arg(
            long,
            required_unless_present = "finished",
            conflicts_with = "finished"
        )]
        failed: bool,
        /// The finished list: succeeded and merged tasks.
        #[arg(long)]
        finished: bool,
        #[command(flatten)]
        filter: TaskFilterArgs,
        /// At most this many tasks (default 100, at most 1000).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Submits a task.
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        /// Task kind, e.g. `test`.
        kind: String,
        /// Entity (`country:DE`, `asn:13335`) or `all`.
        target: String,
        /// Parameters as JSON, e.g. '{"times": 3}'.
        #[arg(long)]
        params: Option<String>,
    },
    /// Cancels a pending or running task.
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
        /// Task id.
        id: u64,
        /// Seconds a running task gets to stop before it is stopped hard
        /// (default: its pool's cancel_grace_s).
        #[arg(long, value_name = "SECONDS")]
        grace: Option<u64>,
        /// Return only once the task has ended; fails if it is still
        /// running after the grace period and 5 s more.
        #[arg(long)]
        wait: bool,
    },
    /// Rebuilds every entity (--all) or the named ones.
    Rebuild {
        #[command(flatten)]
        client: ClientArgs,
        /// Rebuild everything.
        #[arg(long, conflicts_with = "targets")]
        all: bool,
        /// Kind to rebuild with (the daemon's default when absent).
        #[arg(long)]
        kind: Option<String>,
        /// Entities to rebuild.
        #[arg(required_unless_present = "all")]
        targets: Vec<String>,
    },
    /// Changes a pool's worker limit.
    Limit {
        #[command(flatten)]
        client: ClientArgs,
        /// Pool name.
        pool: String,
        /// New worker limit.
        limit: usize,
    },
    /// Asks the daemon to re-read its configuration file.
    Reload(ClientArgs),
    /// Shows the live panel with progress bars until interrupted.
    Watch(ClientArgs),
    /// Prints a shell completion script, e.g.
    /// `groundcrew completions bash > /etc/bash_completion.d/groundcrew`.
    Completions {
        /// Shell to complete in.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file (YAML or TOML).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address for the admin API, e.g. 127.0.0.1:7878.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Directory for the store, artifacts and the generated admin token.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// How a client command reaches the daemon.
#[derive(Debug, Args, Clone)]
pub(crate) struct ClientArgs {
    /// Admin API base URL (`https://` for a daemon behind a TLS proxy).
    #[arg(long, env = "GROUNDCREW_URL", default_value = "http://127.0.0.1:7878")]
    pub(crate) url: String,
    /// Bearer token (default: the generated token in the data directory).
    #[arg(long, env = "GROUNDCREW_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Data directory holding the generated admin token.
    #[arg(long, default_value = "./groundcrew-data")]
    pub(crate) data_dir: PathBuf,
    /// Print the API's JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// PEM file of the CA certificates to trust for an https:// URL,
    /// instead of the built-in Mozilla roots (a proxy's own CA).
    #[arg(long, env = "GROUNDCREW_CA_CERT", value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Status(c) => commands::status(&c),
        Command::Tasks {
            client,
            status,
            limit,
            filter,
        } => commands::tasks(&client, &status, limit, &filter),
        Command::Show { client, id } => show::show(&client, id),
        Command::Retry {
            client,
            id,
            failed: _,
            filter,
            limit,
        } => match id {
            Some(id) if filter.is_empty() => commands::retry(&client, id),
            Some(_) => anyhow::bail!("--kind, --trigger, --target and --since go with --failed"),
            None => bulk::retry_failed(&client, &filter, limit),
        },
        Command::Delete {
            client,
            failed,
            finished: _,
            filter,
            limit,
        } => {
            let status = if failed { "failed" } else { "finished" };
            bulk::delete(&client, status, &filter, limit)
        }
        Command::Submit {
            client,
            kind,
            target,
            params,
        } => commands::submit(&client, &kind, &target, params.as_deref()),
        Command::Cancel {
            client,
            id,
            grace,
            wait,
        } => commands::cancel(&client, id, grace, wait),
        Command::Rebuild {
            client,
            all,
            kind,
            targets,
        } => commands::rebuild(&client, all, kind.as_deref(), &targets),
        Command::Limit {
            client,
            pool,
            limit,
        } => commands::limit(&client, &pool, limit),
        Command::Reload(c) => commands::reload(&c),
        Command::Watch(c) => watch::watch(&c),
        Command::Completions { shell } => completions::print(shell),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        bind: args.bind,
        data_dir: args.data_dir,
    };
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    config.apply_overrides(&overrides);
    config.validate_bind()?;
    let captured = crate::logging::init(&config.log)
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    actix_web::rt::System::new()
        .block_on(crate::daemon::serve(
            config,
            args.config,
            overrides,
            captured,
        ))
        .context("daemon failed")
}

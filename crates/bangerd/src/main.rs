//! The `bangerd` binary: parse arguments, set up logging, resolve and create banger's
//! directories, bind the socket, and serve until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use banger_model::dirs::Dirs;
use bangerd::instance_lock::{self, InstanceLock};
use bangerd::{DaemonContext, layout, server, socket};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// The banger daemon.
#[derive(Debug, Parser)]
#[command(
    name = "bangerd",
    version,
    about = "The banger daemon: owns VM state and serves the banger CLI over a Unix socket.",
    long_about = "The banger daemon: owns VM state and serves the banger CLI over a Unix socket.\n\n\
        bangerd runs as your user. It keeps its database under the state directory \
        ($BANGER_STATE_DIR, else $XDG_STATE_HOME/banger, else ~/.local/state/banger) and \
        listens on <runtime dir>/bangerd.sock ($BANGER_SOCKET overrides it; the runtime \
        dir is $BANGER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/banger, else /tmp/banger-<uid>). \
        Only your uid may connect. Logs go to stderr and to <state dir>/bangerd.log \
        (`banger logs --op ID` prints one operation's lines from it).\n\n\
        SIGTERM or SIGINT stops it: it stops accepting connections, lets requests in \
        flight finish (up to 5 seconds), and removes its socket.\n\n\
        One daemon serves a state directory at a time (it holds <state dir>/bangerd.lock): \
        a second one exits at once, naming the first one's pid, and one started while \
        the previous daemon finishes its requests waits for it to exit.",
    after_help = "Examples:\n  \
        bangerd                               # serve on the default socket\n  \
        bangerd --log-format json             # structured logs for a supervisor\n  \
        bangerd --socket /tmp/b.sock --log-level debug"
)]
struct Args {
    /// Socket to listen on (default: $BANGER_SOCKET, else <runtime dir>/bangerd.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or tracing
    /// directives such as `bangerd=debug,info`.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let log_file = open_log_file();
    if let Err(error) = init_logging(args.log_format, &args.log_level, log_file) {
        report_early_error(&error);
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "logging is not set up when this runs, and the user must see why"
)]
fn report_early_error(error: &anyhow::Error) {
    eprintln!("bangerd: {error:#}");
}

/// The log file is cut to one previous generation when it passes this size.
const LOG_FILE_LIMIT: u64 = 16 * 1024 * 1024;

/// `<state>/bangerd.log`, opened for appending (0600), where every log line goes
/// besides stderr: the CLI points at it next to an error's op id and `banger logs --op`
/// reads it, whether the daemon runs by hand, supervised or under systemd. A file past
/// [`LOG_FILE_LIMIT`] becomes `bangerd.log.1` first. None when the state directory
/// cannot be resolved or written: stderr alone still works.
fn open_log_file() -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let uid = nix::unistd::geteuid().as_raw();
    let dirs = Dirs::resolve(|key| std::env::var(key).ok(), uid).ok()?;
    layout::create_private_dir(&dirs.state).ok()?;
    let path = banger_model::dirs::daemon_log(&dirs.state);
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > LOG_FILE_LIMIT) {
        let _ = std::fs::rename(&path, path.with_extension("log.1"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .ok()
}

fn init_logging(
    format: LogFormat,
    filter: &str,
    file: Option<std::fs::File>,
) -> anyhow::Result<()> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    type Boxed = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid --log-level filter `{filter}`"))?;
    // Colour only for a person watching a terminal, never into a log file or journal.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let mut layers: Vec<Boxed> = vec![match format {
        LogFormat::Text => stderr.boxed(),
        LogFormat::Json => stderr.json().boxed(),
    }];
    if let Some(file) = file {
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    let mut dirs = Dirs::resolve(|key| std::env::var(key).ok(), uid)?;
    if let Some(path) = args.socket {
        dirs.socket = path;
    }
    for dir in [&dirs.state, &dirs.cache, &dirs.config] {
        layout::create_private_dir(dir)?;
    }
    // Before the socket, the store or any VM is touched: this is the only daemon of this
    // state directory until it exits.
    let lock = InstanceLock::acquire(&dirs.state, instance_lock::DRAIN_WAIT, |pid| {
        tracing::info!(
            pid,
            "waiting for the previous bangerd to finish its requests and exit"
        )
    })?;
    layout::ensure_private_dir(&dirs.runtime, uid)?;
    // Signal handlers first: a signal arriving right after bind must not kill us before
    // the socket can be cleaned up.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let listener = socket::bind(&dirs.socket, uid).await?;
    let shutdown = async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        // A daemon started from now on waits for this one instead of refusing.
        lock.mark_draining();
    };
    let net_settings = bangerd::networking::NetSettings::from_lookup(|k| std::env::var(k).ok())?;
    // banger's ssh keypair: its public key goes into every new guest.
    let keys = match banger_ssh::Keypair::ensure(&dirs.config, &banger_exec::SystemRunner).await {
        Ok(keypair) => Some(keypair.public_key()),
        Err(error) => {
            tracing::warn!(error = %banger_vm::chain(&error), "no ssh keypair; `vm ssh` will not work");
            None
        }
    };
    let ctx = Arc::new(DaemonContext::with_authorized_keys(uid, dirs, keys));
    let pass_tap_fd = ctx.services.vms.driver().kind() == banger_vmm::DriverKind::Qemu;
    match bangerd::networking::start(&net_settings, &ctx.services.vms, pass_tap_fd).await {
        bangerd::networking::NetStatus::Off { reason } => tracing::warn!(
            %reason,
            "guest networking is off: VMs boot without a network (start banger-helper as root)"
        ),
        bangerd::networking::NetStatus::On {
            gateway,
            dns,
            dns_manual_step,
        } => {
            tracing::info!(bridge = %net_settings.bridge, %gateway, dns = ?dns, "guest networking is on");
            if let Some(step) = dns_manual_step {
                tracing::warn!("to resolve <name>.vm on this host, {step}");
            }
        }
    }
    // A store that cannot be opened is not fatal: `health` reports it, and the next
    // request retries the open.
    match ctx.fail_interrupted_operations().await {
        Ok(0) => {}
        Ok(count) => tracing::warn!(
            count,
            "marked operations interrupted by the last shutdown as failed"
        ),
        Err(error) => {
            tracing::warn!(message = %error.message, "state database unavailable at startup")
        }
    }
    match ctx.services.vms.reconcile().await {
        Ok(report) => tracing::info!(
            reattached = ?report.reattached,
            resumed_stops = ?report.resumed_stops,
            marked_stopped = ?report.marked_stopped,
            removed = ?report.removed,
            finished_deletes = ?report.finished_deletes,
            orphan_dirs = ?report.orphan_dirs,
            snapshots = ?report.snapshots,
            removed_taps = ?report.network.taps,
            removed_nat = ?report.network.nat_guests,
            "reconciled VMs with the host"
        ),
        Err(error) => tracing::warn!(error = %banger_vm::chain(&error), "reconcile failed"),
    }
    // Image builds and imports a previous daemon was killed in the middle of left
    // staging directories (never a published image: publication is a rename).
    let images = std::sync::Arc::clone(&ctx.services.images);
    match tokio::task::spawn_blocking(move || images.clean_leftovers()).await {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            removed = ?removed.iter().map(|p| p.path.display().to_string()).collect::<Vec<_>>(),
            "removed what interrupted image builds left"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cleaning image build leftovers failed"),
    }
    let served = server::run(listener, shutdown, ctx).await;
    // Released only now, after the socket is gone, so the next daemon binds a fresh one.
    drop(lock);
    served
}

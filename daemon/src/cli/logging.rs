//! Logging: `tracing` to stderr, human lines on a terminal and JSON lines otherwise (under
//! PostgreSQL's archiver, systemd or CI), filtered by `LIFEBOAT_LOG`, else `RUST_LOG`, else
//! `info`. A JSON line keeps an event's fields under `fields`, apart from its `target` and
//! `span`. Example: `LIFEBOAT_LOG=lifeboat=debug lifeboat wal-push pg_wal/0000…03`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a bad filter falls back to `info` with a warning.
pub fn init() {
    let spec = std::env::var("LIFEBOAT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let parsed = spec.as_deref().map(EnvFilter::try_new);
    let (filter, bad) = match parsed {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new("info"), Some(e)),
        None => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if std::io::stderr().is_terminal() {
        builder.with_target(false).try_init()
    } else {
        builder.json().with_span_list(false).try_init()
    };
    if let (Ok(()), Some(e)) = (installed, bad) {
        let filter = spec.as_deref().unwrap_or("");
        tracing::warn!(filter, error = %e, "log filter ignored; using info");
    }
}

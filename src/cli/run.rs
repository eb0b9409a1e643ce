//! `pqwatch run`: the daemon, with its SIGINT/SIGTERM and SIGHUP handlers.

use pqwatch::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&config)?;
    // Before anything else: one daemon per state directory.
    let lock = std::sync::Arc::new(pqwatch::state::lock_dir(&cfg.daemon.state_dir)?);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let opts = pqwatch::app::Options {
        grace: cfg.daemon.shutdown_grace,
        lock: Some(lock),
        ..Default::default()
    };
    let reloads = spawn_reload_handler(config.clone());
    pqwatch::app::run_with_reload(cfg, shutdown, opts, Default::default(), reloads).await?;
    Ok(ExitCode::SUCCESS)
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
pub(crate) fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install SIGTERM handler");
                    return;
                }
            };
        for n in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            if n == 0 {
                tracing::info!("signal received: shutting down (send again to exit immediately)");
                token.cancel();
            } else {
                tracing::warn!("second signal: exiting immediately");
                std::process::exit(130);
            }
        }
    });
}

/// SIGHUP: read and validate the config file again. A valid config is
/// handed to the daemon; an invalid one is rejected with every problem
/// logged, and the running config stays.
fn spawn_reload_handler(path: PathBuf) -> tokio::sync::mpsc::Receiver<Config> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler: no live reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!(path = %path.display(), "SIGHUP: reloading the config");
            match config::load(&path) {
                Ok(cfg) => {
                    if tx.send(cfg).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    for p in &e.problems {
                        tracing::error!(problem = %p, "config reload rejected");
                    }
                    tracing::error!(
                        problems = e.problems.len(),
                        "config reload rejected: the running config stays"
                    );
                }
            }
        }
    });
    rx
}

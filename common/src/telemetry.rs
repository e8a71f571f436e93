//! Tracing set-up and the daemons' panic policy.

/// Logs to stderr; the filter comes from `CAIRN_LOG` (or `RUST_LOG`), default `info`.
pub fn init_tracing() {
    let filter = std::env::var("CAIRN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A daemon that panicked is in an unknown state: log the panic and abort rather than
/// limp on with a half-dead task.
pub fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("panic: {info}; aborting");
        default_hook(info);
        std::process::abort();
    }));
}

#[derive(Debug, thiserror::Error)]
#[error("serve Prometheus metrics on {listen}: {message}")]
pub struct MetricsError {
    pub listen: std::net::SocketAddr,
    pub message: String,
}

/// Serves every `metrics` counter, gauge and histogram of this process in the Prometheus
/// text format at `http://LISTEN/metrics`. Must be called inside a tokio runtime.
pub fn serve_metrics(listen: std::net::SocketAddr) -> Result<(), MetricsError> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|e| MetricsError {
            listen,
            message: e.to_string(),
        })
}

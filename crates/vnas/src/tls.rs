//! Serving the API: plain HTTP on loopback, HTTPS (rustls) wherever a
//! certificate is given, and never plain HTTP off loopback, where the
//! token would cross the network in clear.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// Certificate and key (PEM files) for the API.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Refuses a plain-HTTP API off loopback.
pub fn check(addr: SocketAddr, tls: Option<&TlsFiles>) -> anyhow::Result<()> {
    if tls.is_none() && !addr.ip().is_loopback() {
        bail!(
            "the API at {addr} would listen off loopback in plain HTTP: give --tls-cert and --tls-key \
             (the admin token must not cross the network in clear)"
        );
    }
    Ok(())
}

/// The one crypto provider of the process (ring): rustls needs it chosen
/// before any TLS configuration is built.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves `app` on `listener` until `stop` is cancelled; calls in flight
/// finish first.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<TlsFiles>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
        }
        Some(files) => {
            install_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .with_context(|| {
                    format!(
                        "loading the API certificate {} and key {}",
                        files.cert.display(),
                        files.key.display()
                    )
                })?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(20)));
            });
            listener.set_nonblocking(true)?;
            axum_server::from_tcp_rustls(listener, config).handle(handle).serve(app).await?;
        }
    }
    Ok(())
}

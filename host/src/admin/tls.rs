//! TLS on the admin listener (`admin.tls`), so the token never crosses a network in
//! clear: a certificate chain and a private key read from PEM files, and read again
//! when either file changes, so a renewed certificate takes effect without a restart.
//! A renewal that cannot be read keeps the certificate in use and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often the files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The server side of TLS, swapped when the files change.
pub struct ReloadingTls {
    certificate_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<TlsAcceptor>,
    loaded_stamps: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for ReloadingTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ReloadingTls").field("certificate_file", &self.certificate_file).finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

/// A server configuration from the PEM files, or what is wrong with them.
fn server_config(certificate_file: &Path, key_file: &Path) -> Result<ServerConfig, String> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate_file)
        .and_then(|certificates| certificates.collect::<Result<_, _>>())
        .map_err(|error| format!("cannot read the certificates in {} (admin.tls.cert_file): {error}", certificate_file.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} (admin.tls.cert_file) holds no PEM certificate", certificate_file.display()));
    }
    // The error names the file, never its content.
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| format!("cannot read a private key in {} (admin.tls.key_file): {error}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS cannot be set up: {error}"))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| format!("the certificate and key of admin.tls do not make a usable pair: {error}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl ReloadingTls {
    /// Reads the files; refuses (at start) when they are not a usable pair.
    pub fn load(certificate_file: &Path, key_file: &Path) -> Result<Arc<Self>, String> {
        let stamps = (modified(certificate_file), modified(key_file));
        let config = server_config(certificate_file, key_file)?;
        Ok(Arc::new(Self {
            certificate_file: certificate_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(TlsAcceptor::from(Arc::new(config))),
            loaded_stamps: Mutex::new(stamps),
        }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the files again if either changed since they were last read.
    pub fn reload_if_changed(&self) {
        let stamps = (modified(&self.certificate_file), modified(&self.key_file));
        let mut loaded = self.loaded_stamps.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *loaded == stamps {
            return;
        }
        *loaded = stamps;
        match server_config(&self.certificate_file, &self.key_file) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = TlsAcceptor::from(Arc::new(config));
                tracing::info!(cert_file = %self.certificate_file.display(), "Loaded the admin API's renewed TLS certificate.");
            }
            Err(reason) => {
                tracing::warn!(%reason, "The admin API's TLS files changed but cannot be used; the certificate in use stays.");
            }
        }
    }

    /// Checks the files for a change every few seconds until `shutdown`.
    pub fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RELOAD_CHECK) => {}
                }
                let tls = self.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }
}

//! TLS termination: the PEM files named in the snapshot, loaded, watched and
//! swapped in place. Each listener's rustls config resolves its certificate
//! through a shared slot, so a renewed certificate serves the next
//! handshake with no restart, and a bad file keeps the last good one.

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;
use tokio_rustls::TlsAcceptor;

/// Why a certificate pair could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// The PEM does not hold what it should.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The certificate of one (cert, key) pair, swappable under live listeners.
#[derive(Debug, Default)]
pub struct Slot {
    current: ArcSwapOption<CertifiedKey>,
}

impl ResolvesServerCert for Slot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

struct Entry {
    slot: Arc<Slot>,
    acceptor: TlsAcceptor,
    seen: Option<(SystemTime, SystemTime)>,
    error: Option<String>,
}

/// A CA bundle's client config, with the file's mtime when it was built.
type Connector = (
    Option<SystemTime>,
    Result<tokio_rustls::TlsConnector, TlsError>,
);

/// Every certificate pair meshd serves, by (cert path, key path), and the
/// client configs for `upstream_tls`, by CA bundle path.
#[derive(Default)]
pub struct CertStore {
    entries: Mutex<HashMap<(String, String), Entry>>,
    connectors: Mutex<HashMap<String, Connector>>,
}

impl std::fmt::Debug for CertStore {
    // TlsConnector and TlsAcceptor have no Debug; the count says enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.len());
        write!(f, "CertStore({n} pairs)")
    }
}

fn load(cert: &str, key: &str) -> Result<CertifiedKey, TlsError> {
    let read = |path: &str| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.into(),
            error: e.to_string(),
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.into(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| TlsError::Pem {
        path: key.into(),
        message: format!("no usable private key: {e}"),
    })?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::Pem {
            path: key.into(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Pem {
        path: key.into(),
        message: format!("the key does not match {cert}: {e}"),
    })?;
    Ok(certified)
}

/// A TLS client trusting only the CAs in the PEM file `ca` (upstream TLS, and `--config-ca`).
pub fn client_config(ca: &str) -> Result<rustls::ClientConfig, TlsError> {
    let pem = std::fs::read(ca).map_err(|e| TlsError::Read {
        path: ca.into(),
        error: e.to_string(),
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::Pem {
            path: ca.into(),
            message: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: ca.into(),
            message: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            path: ca.into(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let mut config = rustls::ClientConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn mtimes(cert: &str, key: &str) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// A TLS acceptor whose certificate `resolver` picks (TLS 1.2 and 1.3, ALPN h2 and http/1.1).
pub fn acceptor_with(resolver: Arc<dyn ResolvesServerCert>) -> TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

fn acceptor(slot: Arc<Slot>) -> TlsAcceptor {
    acceptor_with(slot)
}

impl CertStore {
    /// The acceptor for a pair, loading it the first time it is named.
    pub fn acceptor(&self, cert: &str, key: &str) -> TlsAcceptor {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries
            .entry((cert.to_owned(), key.to_owned()))
            .or_insert_with(|| {
                let slot = Arc::new(Slot::default());
                Entry {
                    acceptor: acceptor(Arc::clone(&slot)),
                    slot,
                    seen: None,
                    error: None,
                }
            });
        if entry.seen.is_none() && entry.error.is_none() {
            refresh_entry(cert, key, entry);
        }
        entry.acceptor.clone()
    }

    /// The current certificate of a pair (loading it the first time), for SNI resolvers.
    pub fn certified(&self, cert: &str, key: &str) -> Option<Arc<CertifiedKey>> {
        let _ = self.acceptor(cert, key);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&(cert.to_owned(), key.to_owned()))
            .and_then(|e| e.slot.current.load_full())
    }

    /// A TLS client for backends whose certificates chain to the CA bundle
    /// at `ca`; reloaded when the file changes.
    pub fn connector(&self, ca: &str) -> Result<tokio_rustls::TlsConnector, TlsError> {
        let mtime = std::fs::metadata(ca).and_then(|m| m.modified()).ok();
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match connectors.get(ca) {
            Some((seen, result)) if *seen == mtime && mtime.is_some() => result.clone(),
            _ => {
                let result =
                    client_config(ca).map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)));
                connectors.insert(ca.to_owned(), (mtime, result.clone()));
                result
            }
        }
    }

    /// Reloads every pair whose files changed; keeps the last good
    /// certificate when a new one does not load.
    pub fn refresh(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for ((cert, key), entry) in entries.iter_mut() {
            refresh_entry(cert, key, entry);
        }
    }

    /// Pairs that failed to load, with the error, for `/status`.
    pub fn errors(&self) -> Vec<(String, String)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .filter_map(|((c, _), e)| e.error.clone().map(|err| (c.clone(), err)))
            .collect()
    }
}

fn refresh_entry(cert: &str, key: &str, entry: &mut Entry) {
    let now = mtimes(cert, key);
    if now.is_some() && now == entry.seen {
        return;
    }
    match load(cert, key) {
        Ok(certified) => {
            entry.slot.current.store(Some(Arc::new(certified)));
            entry.seen = now;
            entry.error = None;
            tracing::info!(cert, "certificate loaded");
        }
        Err(e) => {
            // Remember what failed so the same bad file is not retried every pass.
            entry.seen = now;
            let serving = entry.slot.current.load().is_some();
            tracing::error!(error = %e, serving_last_good = serving, "certificate refused");
            entry.error = Some(e.to_string());
        }
    }
}

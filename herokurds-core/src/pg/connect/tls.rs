//! The TLS connector a URL's `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` call for, cached per distinct setup.

use std::path::Path;

use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;

use super::{server, ConnectError};
use crate::url::{DatabaseUrl, Param, SslMode};

/// What a TLS connector is built from. Connectors are cached by it for the
/// life of the process: building one loads the system's CA bundle, tens of
/// milliseconds of CPU that a transfer opening dozens of sessions would
/// otherwise pay for each of them.
#[derive(PartialEq, Eq)]
struct TlsSettings {
    /// Check the certificate chain (else accept any certificate).
    verify_chain: bool,
    /// Check the host name too (`verify-full`).
    verify_hostname: bool,
    /// The `sslrootcert` file's contents, when it replaces the system roots.
    roots: Option<Vec<u8>>,
    /// The `sslcert` and `sslkey` files' contents.
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Builds (or takes from the cache) the TLS connector `url`'s `sslmode`,
/// `sslrootcert`, `sslcert` and `sslkey` call for. The files are read
/// every time, so a replaced file is picked up.
pub(super) fn tls_connector(url: &DatabaseUrl) -> Result<MakeTlsConnector, ConnectError> {
    /// A handful of entries at most (one per distinct TLS setup).
    static CACHE: std::sync::Mutex<Vec<(TlsSettings, TlsConnector)>> =
        std::sync::Mutex::new(Vec::new());
    let mode = url.ssl_mode();
    let root_cert = url.ssl_root_cert();
    let verify_chain = url.verifies_certificate();
    let roots_path = root_cert.filter(|p| verify_chain && *p != Path::new("system"));
    let key_path = url.param(Param::SslKey);
    let settings = TlsSettings {
        verify_chain,
        verify_hostname: mode == SslMode::VerifyFull,
        roots: roots_path
            .map(|path| read_tls_file(Param::SslRootCert, path))
            .transpose()?,
        identity: match (url.param(Param::SslCert), key_path) {
            (Some(cert), Some(key)) => Some((
                read_tls_file(Param::SslCert, Path::new(cert))?,
                read_tls_file(Param::SslKey, Path::new(key))?,
            )),
            _ => None,
        },
    };
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, connector)) = cache.iter().find(|(s, _)| *s == settings) {
        return Ok(MakeTlsConnector::new(connector.clone()));
    }
    let mut builder = TlsConnector::builder();
    if let (Some(path), Some(pem)) = (roots_path, &settings.roots) {
        let certs = Certificate::stack_from_pem(pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| ConnectError::TlsFile {
                param: Param::SslRootCert,
                path: path.into(),
                reason: "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
            })?;
        builder.disable_built_in_roots(true);
        for cert in certs {
            builder.add_root_certificate(cert);
        }
    }
    builder.danger_accept_invalid_certs(!verify_chain);
    builder.danger_accept_invalid_hostnames(!settings.verify_hostname);
    if let (Some(key), Some((cert_pem, key_pem))) = (key_path, &settings.identity) {
        let identity =
            Identity::from_pkcs8(cert_pem, key_pem).map_err(|e| ConnectError::TlsFile {
                param: Param::SslKey,
                path: key.into(),
                reason: format!(
                    "{e} (sslkey must be an unencrypted PKCS#8 PEM key matching sslcert)"
                ),
            })?;
        builder.identity(identity);
    }
    let connector = builder.build().map_err(|e| ConnectError::Tls {
        server: server(url),
        reason: e.to_string(),
    })?;
    cache.push((settings, connector.clone()));
    Ok(MakeTlsConnector::new(connector))
}

fn read_tls_file(param: Param, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|e| ConnectError::TlsFile {
        param,
        path: path.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> DatabaseUrl {
        s.parse().unwrap()
    }

    #[test]
    fn a_missing_or_empty_root_cert_file_is_named() {
        let err = tls_connector(&url(
            "postgres://u:p@h/d?sslmode=verify-ca&sslrootcert=/no/such/bundle.pem",
        ))
        .err()
        .unwrap();
        assert!(matches!(
            err,
            ConnectError::TlsFile {
                param: Param::SslRootCert,
                ..
            }
        ));
        assert!(err.to_string().contains("/no/such/bundle.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = tls_connector(&url(&format!(
            "postgres://u:p@h/d?sslmode=verify-full&sslrootcert={}",
            empty.path().display()
        )))
        .err()
        .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        // Without verification the file is not read.
        assert!(tls_connector(&url(
            "postgres://u:p@h/d?sslmode=prefer&sslrootcert=/no/such/bundle.pem"
        ))
        .is_ok());
    }
}

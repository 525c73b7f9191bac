//! Throwaway TLS material for sandbox servers: a CA and a server certificate
//! it signed, valid for `127.0.0.1`, `::1` and `localhost`, so clients can
//! test `sslmode=verify-ca` and `verify-full` against `ca.crt`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

use super::SandboxError;

/// Writes `ca.crt`/`ca.key` into `dir` and `server.crt`/`server.key`
/// (mode 0600) into `data`.
pub(crate) fn write_server_certs(dir: &Path, data: &Path) -> Result<(), SandboxError> {
    let (ca_cert, ca_key, cert, key) = make().map_err(|e| SandboxError::Failed {
        what: "generating sandbox TLS certificates".into(),
        log_tail: e.to_string(),
    })?;
    let write = |path: &Path, bytes: &[u8], mode: u32| {
        fs::write(path, bytes)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
            .map_err(|source| SandboxError::Io {
                what: format!("writing {}", path.display()),
                source,
            })
    };
    write(&dir.join("ca.crt"), &ca_cert, 0o644)?;
    write(&dir.join("ca.key"), &ca_key, 0o600)?;
    write(&data.join("server.crt"), &cert, 0o644)?;
    write(&data.join("server.key"), &key, 0o600)
}

type Pem = Vec<u8>;

fn make() -> Result<(Pem, Pem, Pem, Pem), ErrorStack> {
    let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let ca = build(&ca_key, &ca_key, None, "herokurds sandbox CA", true)?;
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let cert = build(&key, &ca_key, Some(&ca), "127.0.0.1", false)?;
    Ok((
        ca.to_pem()?,
        ca_key.private_key_to_pem_pkcs8()?,
        cert.to_pem()?,
        key.private_key_to_pem_pkcs8()?,
    ))
}

fn build(
    key: &PKey<Private>,
    signer: &PKey<Private>,
    issuer: Option<&X509>,
    cn: &str,
    is_ca: bool,
) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.map(|i| i.subject_name()).unwrap_or(&name))?;
    b.set_pubkey(key)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(30)?);
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    if is_ca {
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
    } else {
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .ip("::1")
            .dns("localhost")
            .build(&b.x509v3_context(issuer.map(|i| &**i), None))?;
        b.append_extension(san)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
    }
    b.sign(signer, MessageDigest::sha256())?;
    Ok(b.build())
}

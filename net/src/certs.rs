//! Certificate authority and certificates for a cluster (`cairn cert init` / `issue`),
//! with rcgen: ECDSA P-256 keys, the role in the subject's organisational unit and the
//! name in its common name (see the crate's documentation). Servers (meta, node) also get the DNS
//! name [`SERVER_NAME`] and are usable as TLS clients (they call each other).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Role, TlsFiles, SERVER_NAME};

/// Default validity of an issued certificate.
pub const DEFAULT_DAYS: i64 = 365;
/// Validity of the CA.
const CA_DAYS: i64 = 10 * 365;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path:?} already exists; remove it first to replace it")]
    Exists { path: PathBuf },
    #[error("{path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("bad certificate name {0:?}: use letters, digits, '-', '_' and '.'")]
    BadName(String),
}

/// Validity window of a new certificate.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew between hosts) for `days`.
    pub fn days(days: i64) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CertError::Exists {
                path: path.to_path_buf(),
            },
            _ => io(e),
        })?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir/ca.pem` and `dir/ca.key` (the key readable by the owner only).
pub fn init_ca(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A name of its own, so that another cluster's certificates are "unknown issuer" here
    // (with a shared name they would fail only on the signature).
    dn.push(
        DnType::CommonName,
        format!("Cairn cluster CA {:016x}", rand::random::<u64>()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let validity = Validity::days(CA_DAYS);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let cert = params.self_signed(&key)?;
    write_new(&dir.join("ca.key"), &key.serialize_pem(), true)?;
    write_new(&dir.join("ca.pem"), &cert.pem(), false)
}

/// Issues `dir/NAME.pem` and `dir/NAME.key` for `role`, signed by the CA in `dir`.
pub fn issue(
    dir: &Path,
    role: Role,
    name: &str,
    validity: Validity,
) -> Result<TlsFiles, CertError> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "ca";
    if !valid_name {
        return Err(CertError::BadName(name.into()));
    }
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&read(&dir.join("ca.pem"))?, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationalUnitName, role.unit());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if matches!(role, Role::Meta | Role::Node) {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        params.subject_alt_names = vec![SanType::DnsName(SERVER_NAME.try_into()?)];
    }
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let cert = params.signed_by(&key, &issuer)?;
    let files = TlsFiles::new(dir, name);
    write_new(&files.key(), &key.serialize_pem(), true)?;
    write_new(&files.cert(), &cert.pem(), false)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn issued_certificates_carry_role_and_name_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path()).unwrap();
        assert!(matches!(init_ca(dir.path()), Err(CertError::Exists { .. })));
        for (role, name) in [
            (Role::Meta, "meta-1"),
            (Role::Node, "node-2"),
            (Role::Client, "alice"),
        ] {
            let files = issue(dir.path(), role, name, Validity::days(1)).unwrap();
            let pem = std::fs::read(files.cert()).unwrap();
            let der = CertificateDer::from_pem_slice(&pem).unwrap();
            assert_eq!(crate::identity_of(&der), Some((role, name.to_string())));
        }
        assert!(matches!(
            issue(dir.path(), Role::Client, "alice", Validity::days(1)),
            Err(CertError::Exists { .. })
        ));
        for bad in ["", "a/b", "ca", "x y"] {
            assert!(matches!(
                issue(dir.path(), Role::Client, bad, Validity::days(1)),
                Err(CertError::BadName(_))
            ));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("alice.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

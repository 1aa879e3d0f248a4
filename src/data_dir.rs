//! The server's data dir: a dev CA, a certificate for the base domain signed
//! by it, and an authtoken — made on first start, reused afterwards.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Files in the data dir.
pub const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";
const CERT_DOMAIN_FILE: &str = "server.domain";
const AUTHTOKEN_FILE: &str = "authtoken";

/// Why the data dir could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("no data directory: pass --data-dir")]
    NoDefault,
}

/// What the server needs from its data dir.
pub struct DataDir {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub authtoken: String,
}

/// `$XDG_DATA_HOME/gangway` (usually `~/.local/share/gangway`).
pub fn default_data_dir() -> Result<PathBuf, DataDirError> {
    dirs::data_dir()
        .map(|d| d.join("gangway"))
        .ok_or(DataDirError::NoDefault)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file readable only by us, atomically (temp file + rename), so
/// a crash never leaves half a key behind.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_string(path: &Path) -> Result<Option<String>, DataDirError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn new_ca() -> Result<(String, String), DataDirError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "Gangway development CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_server_cert(
    base_domain: &str,
    ca_pem: &str,
    ca_key_pem: &str,
) -> Result<(String, String), DataDirError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let mut params = CertificateParams::new(vec![
        base_domain.to_string(),
        format!("*.{base_domain}"),
        "localhost".to_string(),
    ])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, base_domain);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl DataDir {
    /// Creates or reuses everything under `root`. The server certificate is
    /// re-issued when the base domain changes; the CA and token are kept.
    pub fn prepare(root: &Path, base_domain: &str) -> Result<Self, DataDirError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        }
        let ca_cert = root.join(CA_CERT_FILE);
        let ca_key = root.join(CA_KEY_FILE);
        let (ca_pem, ca_key_pem, fresh_ca) = match (read_string(&ca_cert)?, read_string(&ca_key)?) {
            (Some(c), Some(k)) => (c, k, false),
            _ => {
                let (c, k) = new_ca()?;
                write_private(&ca_key, k.as_bytes())?;
                write_private(&ca_cert, c.as_bytes())?;
                (c, k, true)
            }
        };
        let cert = root.join(CERT_FILE);
        let key = root.join(KEY_FILE);
        let domain_file = root.join(CERT_DOMAIN_FILE);
        let current = read_string(&domain_file)?;
        let have_cert = cert.exists() && key.exists();
        if fresh_ca || !have_cert || current.as_deref().map(str::trim) != Some(base_domain) {
            let (c, k) = new_server_cert(base_domain, &ca_pem, &ca_key_pem)?;
            write_private(&key, k.as_bytes())?;
            write_private(&cert, c.as_bytes())?;
            write_private(&domain_file, base_domain.as_bytes())?;
        }
        let token_file = root.join(AUTHTOKEN_FILE);
        let authtoken = match read_string(&token_file)? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = random_token();
                write_private(&token_file, t.as_bytes())?;
                t
            }
        };
        Ok(DataDir {
            ca_cert,
            cert,
            key,
            authtoken,
        })
    }
}

//! The deployment's own CA: it signs the client certificates Kubernetes
//! operators request (`binding.csr` → `binding.cert`). Made once, on first
//! need, and kept in the store (outside `/r/`, so it is never pushed to
//! edges) so every API node of a fleet signs with the same one.

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};

use crate::store::{Compare, Op, Store, StoreError};

const KEY: &str = "/sys/deployment_ca";

/// How long an issued operator certificate is valid.
pub const ISSUED_VALIDITY_DAYS: i64 = 365;
const CA_VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentCa {
    pub cert_pem: String,
    key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("making the deployment CA: {0}")]
    Make(String),
    #[error("the stored deployment CA is unreadable: {0}")]
    Corrupt(String),
}

/// Valid from the start of the day `from` days away to the start of the
/// day `to` days away (UTC).
fn set_validity(p: &mut CertificateParams, from: i64, to: i64) {
    let at = |days: i64| {
        let d = Utc::now() + Duration::days(days);
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    p.not_before = at(from);
    p.not_after = at(to);
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// The deployment CA, made and stored if this is the first use.
pub async fn load_or_create(store: &dyn Store) -> Result<DeploymentCa, CaError> {
    loop {
        if let Some(kv) = store.get(KEY).await? {
            return serde_json::from_slice(&kv.value).map_err(|e| CaError::Corrupt(e.to_string()));
        }
        let ca = make().map_err(|e| CaError::Make(e.to_string()))?;
        let value = serde_json::to_vec(&ca).map_err(|e| CaError::Make(e.to_string()))?;
        let put = Op::Put {
            key: KEY.to_string(),
            value,
            lease: None,
        };
        // Two nodes racing: the loser reads the winner's.
        if store
            .txn(vec![Compare::ModRevision(KEY.to_string(), 0)], vec![put])
            .await?
            .succeeded
        {
            return Ok(ca);
        }
    }
}

fn make() -> Result<DeploymentCa, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, "Gangway deployment CA");
    set_validity(&mut params, -1, CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(DeploymentCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl DeploymentCa {
    /// Signs a PEM CSR as a client certificate (the CSR's subject and
    /// names kept; CA rights and other usages never granted). Errors say
    /// what is wrong with the CSR.
    pub fn sign_client_csr(&self, csr_pem: &str) -> Result<String, String> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("is not a valid PEM certificate signing request ({e})"))?;
        let p = &mut csr.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(p, 0, ISSUED_VALIDITY_DAYS);
        p.serial_number = Some(random_serial());
        let key =
            KeyPair::from_pem(&self.key_pem).map_err(|e| format!("deployment CA key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(|e| format!("deployment CA: {e}"))?;
        csr.signed_by(&issuer)
            .map(|c| c.pem())
            .map_err(|e| format!("could not be signed ({e})"))
    }
}

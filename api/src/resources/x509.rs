//! Reading PEM certificates and keys uploaded through the API: what ngrok
//! shows about them (subject, validity, usages, names), and the checks that
//! make a bad upload a 400 instead of a broken handshake later.

use gangway_config::resources::CertSummary;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::x509::AttributeTypeAndValue;

/// The DER of every certificate in a PEM bundle, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("not valid PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "holds a {:?} block; only certificates belong here",
                block.label
            ));
        }
        out.push(block.contents);
    }
    if out.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(out)
}

/// The first value of a name attribute, as text.
fn text<'a, 'b: 'a>(mut it: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>) -> String {
    it.next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn rfc3339(t: x509_parser::time::ASN1Time) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t.timestamp(), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses one DER certificate into ngrok's summary fields.
pub fn summarize(der: &[u8]) -> Result<(CertSummary, bool), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("is not a valid X.509 certificate: {e}"))?;
    Ok((summary_of(&cert)?, cert.is_ca()))
}

fn summary_of(cert: &X509Certificate<'_>) -> Result<CertSummary, String> {
    let subject = cert.subject();
    let ext_err = |e: x509_parser::error::X509Error| format!("has a malformed extension: {e}");
    let mut key_usages = Vec::new();
    if let Some(ku) = cert.key_usage().map_err(ext_err)? {
        let k = ku.value;
        for (on, name) in [
            (k.digital_signature(), "digital_signature"),
            (k.non_repudiation(), "content_commitment"),
            (k.key_encipherment(), "key_encipherment"),
            (k.data_encipherment(), "data_encipherment"),
            (k.key_agreement(), "key_agreement"),
            (k.key_cert_sign(), "cert_sign"),
            (k.crl_sign(), "crl_sign"),
            (k.encipher_only(), "encipher_only"),
            (k.decipher_only(), "decipher_only"),
        ] {
            if on {
                key_usages.push(name.to_string());
            }
        }
    }
    let mut extended_key_usages = Vec::new();
    if let Some(eku) = cert.extended_key_usage().map_err(ext_err)? {
        let e = eku.value;
        for (on, name) in [
            (e.any, "any"),
            (e.server_auth, "server_auth"),
            (e.client_auth, "client_auth"),
            (e.code_signing, "code_signing"),
            (e.email_protection, "email_protection"),
            (e.time_stamping, "time_stamping"),
            (e.ocsp_signing, "ocsp_signing"),
        ] {
            if on {
                extended_key_usages.push(name.to_string());
            }
        }
    }
    let (mut dns_names, mut ips) = (Vec::new(), Vec::new());
    if let Some(san) = cert.subject_alternative_name().map_err(ext_err)? {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(raw) => {
                    if let Ok(b) = <[u8; 4]>::try_from(*raw) {
                        ips.push(std::net::Ipv4Addr::from(b).to_string());
                    } else if let Ok(b) = <[u8; 16]>::try_from(*raw) {
                        ips.push(std::net::Ipv6Addr::from(b).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(CertSummary {
        subject_common_name: text(subject.iter_common_name()),
        subject_organization: text(subject.iter_organization()),
        subject_organizational_unit: text(subject.iter_organizational_unit()),
        subject_locality: text(subject.iter_locality()),
        subject_province: text(subject.iter_state_or_province()),
        subject_country: text(subject.iter_country()),
        issuer_common_name: text(cert.issuer().iter_common_name()),
        serial_number: serial,
        not_before: rfc3339(cert.validity().not_before),
        not_after: rfc3339(cert.validity().not_after),
        key_usages,
        extended_key_usages,
        dns_names,
        ips,
    })
}

/// Checks a private key parses and belongs to the leaf; returns its type
/// as ngrok names it (`rsa`, `ecdsa`, `ed25519`).
pub fn check_key(leaf_der: &[u8], key_pem: &str) -> Result<&'static str, String> {
    use boring::pkey::{Id, PKey};
    let key = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|_| "is not a PEM private key (PKCS#8, RSA or EC)".to_string())?;
    let leaf = boring::x509::X509::from_der(leaf_der).map_err(|e| e.to_string())?;
    let public = leaf.public_key().map_err(|e| e.to_string())?;
    if !public.public_eq(&key) {
        return Err("does not belong to the certificate (the public keys differ)".into());
    }
    match key.id() {
        Id::RSA => Ok("rsa"),
        Id::EC => Ok("ecdsa"),
        Id::ED25519 => Ok("ed25519"),
        _ => Err("is of a key type the edge cannot serve (use RSA, ECDSA or Ed25519)".into()),
    }
}

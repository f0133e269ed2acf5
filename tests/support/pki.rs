//! A private PKI for TLS tests: a root CA generated on the spot and a server certificate it
//! issued for 127.0.0.1 and localhost.
#![allow(dead_code, unreachable_pub)]

/// A private root CA, and a server certificate it issued for 127.0.0.1 and localhost:
/// `(ca PEM, server cert DER, server key DER (PKCS#8))`.
pub fn private_pki() -> (String, Vec<u8>, Vec<u8>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tower-observe test root");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    (ca.pem(), server.der().to_vec(), server_key.serialize_der())
}

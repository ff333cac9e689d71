//! rustls client settings for a TLS mode: `VerifyFull` checks the certificate against the
//! Connection's CA and the URL's host; `Require` encrypts without checking who answers (libpq's
//! `sslmode=require`), still verifying that the handshake is signed by the certificate presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::JdbcError;

/// The client settings for `VerifyFull` with the CA bundle `ca_pem`.
pub fn verifying(ca_pem: &str) -> Result<ClientConfig, JdbcError> {
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let certificate = certificate.map_err(|e| JdbcError::Certificate(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| JdbcError::Certificate(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(JdbcError::Certificate("it holds no BEGIN CERTIFICATE block".into()));
    }
    Ok(builder()?.with_root_certificates(roots).with_no_client_auth())
}

/// The client settings for `Require`: encrypted, any certificate.
pub fn encrypting_only() -> Result<ClientConfig, JdbcError> {
    let provider = Arc::new(ring::default_provider());
    Ok(builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, JdbcError> {
    ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| JdbcError::Certificate(format!("no TLS protocol version available: {e}")))
}

/// Accepts any server certificate; checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! TLS for sync streams (docs/replication.md, "Transport and framing").
//!
//! Every stream runs in TLS 1.3. Certificates carry no trust: a sync
//! listener presents a self-signed certificate generated when it starts
//! ([`server_config`]), and the master accepts any certificate whose key
//! signed the handshake ([`client_config`]). Authentication is the
//! handshake's proof of the cluster secret, which covers the session's TLS
//! exporter ([`Channel::binding`]), so a proof is valid in one TLS session
//! only and a relay between two sessions cannot splice a stream.

use crate::conn::{BoxStream, Stream};
use crate::limits::HANDSHAKE_TIMEOUT;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// The TLS exporter label of the channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-slotmail-sync";

/// The server name the master sends (SNI); it is not checked.
const SERVER_NAME: &str = "slotmail-sync";

/// A sync stream once its TLS session is up: the stream and the session's
/// channel binding, which both ends compute alike.
pub struct Channel {
    pub stream: BoxStream,
    /// 32 bytes of the TLS exporter with [`EXPORTER_LABEL`], no context.
    pub binding: [u8; 32],
}

impl Channel {
    /// A channel over a stream that is not TLS, for the simulated network
    /// of the tests: both ends must be given the same `binding`.
    pub fn unencrypted(stream: BoxStream, binding: [u8; 32]) -> Channel {
        Channel { stream, binding }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A sync listener's TLS configuration: TLS 1.3 only, a fresh self-signed
/// certificate (kept in memory), no client certificate.
pub fn server_config(slot: &str) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let generated =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string(), slot.to_string()])
            .map_err(io_error)?;
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io_error)?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key.into())
        .map_err(io_error)?;
    Ok(Arc::new(config))
}

/// The master's TLS configuration: TLS 1.3 only, any server certificate
/// whose key signed the handshake.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any certificate: trust comes from the channel-bound proof of the
/// cluster secret, not from the certificate. The handshake signature is
/// still checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

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
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration allows TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn binding_of(conn: &rustls::ConnectionCommon<impl Sized>) -> std::io::Result<[u8; 32]> {
    conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(io_error)
}

/// Run the master's side of TLS over `stream` (within the handshake
/// timeout).
pub async fn connect<S: Stream + 'static>(
    stream: S,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Channel> {
    let name = ServerName::try_from(SERVER_NAME).map_err(io_error)?;
    let tls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, stream),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let binding = binding_of(tls.get_ref().1)?;
    Ok(Channel {
        stream: Box::new(tls),
        binding,
    })
}

/// Run the listener's side of TLS over `stream` (within the handshake
/// timeout). A peer that does not speak TLS fails here and gets no frame.
pub async fn accept<S: Stream + 'static>(
    stream: S,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<Channel> {
    let tls = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsAcceptor::from(config).accept(stream),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    let binding = binding_of(tls.get_ref().1)?;
    Ok(Channel {
        stream: Box::new(tls),
        binding,
    })
}

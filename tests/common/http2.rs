//! HTTP/2 clients of the integration tests, with the `h2` crate (it sends what it is
//! given byte for byte, where a full client would normalise): a connection over h2c
//! or TLS (ALPN h2), and one request's status and body.

use super::Server;
use std::net::SocketAddr;

/// A current-thread tokio runtime for the `h2` clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A new h2c connection (prior knowledge) to `addr`, its task spawned.
pub async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move { conn.await.ok() });
    client.ready().await.unwrap()
}

/// One request over HTTP/2 cleartext with the `h2` crate, which sends `path` as
/// `:path` byte for byte: the status and the body.
pub fn h2_request(server: &Server, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    runtime().block_on(async {
        let mut client = h2_client(server.addr).await;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", server.addr))
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, body.is_empty()).unwrap();
        if !body.is_empty() {
            // The server may answer (413) before it takes the body.
            let _ = send.send_data(bytes::Bytes::copy_from_slice(body), true);
        }
        let resp = resp
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
        (status, String::from_utf8_lossy(&out).into_owned())
    })
}

/// A TLS client (ALPN `h2`) that trusts exactly `cert`, a `leaf_certificate`.
pub fn h2_tls_connector(cert: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// An h2 connection over TLS (ALPN h2) to a server using `cert`.
pub async fn h2_tls(
    addr: std::net::SocketAddr,
    cert: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    h2_tls_connector(cert).connect(name, tcp).await.unwrap()
}

//! A minimal HTTP/1.1 client (one connection per request) for the demo apps, readiness probes,
//! demo traffic and tests. Pooling is deliberately absent: every request is independent, which
//! is what a test of a proxy wants.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("request to {0} timed out")]
    Timeout(SocketAddr),
    #[error("bad header {0}")]
    Header(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// Sends one request and reads the whole response, within `timeout`.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, send_inner(addr, method, path, headers))
        .await
        .map_err(|_| HttpError::Timeout(addr))?
}

/// `GET path` with no extra headers and a 10 s timeout.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, HttpError> {
    send(addr, Method::GET, path, &[], Duration::from_secs(10)).await
}

async fn send_inner(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(String, String)],
) -> Result<Response, HttpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| HttpError::Connect(addr, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut request = Request::builder().method(method).uri(path);
    let h = request
        .headers_mut()
        .ok_or_else(|| HttpError::Header("builder".into()))?;
    h.insert(
        HOST,
        HeaderValue::from_str(&addr.to_string()).map_err(|_| HttpError::Header("host".into()))?,
    );
    for (name, value) in headers {
        let n =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::Header(name.clone()))?;
        let v = HeaderValue::from_str(value).map_err(|_| HttpError::Header(name.clone()))?;
        h.append(n, v);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok(Response {
        status,
        headers,
        body,
    })
}

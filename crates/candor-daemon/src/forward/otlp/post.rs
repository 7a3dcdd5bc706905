//! The POST of an OTLP/HTTP logs request to `<url>/v1/logs` over one kept-alive HTTP/1.1
//! connection (made again when it breaks). Header values are secrets (API keys): no message
//! here holds one.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What became of one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    /// 2xx: the collector has the lines.
    Sent,
    /// Not now: no connection, no answer in time, 429, 502, 503 or 504. Send again later.
    Retry(String),
    /// The collector refused the request itself (another 4xx or 5xx): sending it again would
    /// fail again.
    Rejected(String),
}

/// One OTLP/HTTP logs endpoint and the connection to it.
pub struct Collector {
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header and messages.
    authority: String,
    /// The base URL's path with `/v1/logs` after it.
    path: String,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Collector {
    /// `url`: `http://host[:port][/prefix]` (port 4318 by default, OTLP/HTTP's). Errors say
    /// what is wrong with the URL or which header, never a header's value.
    pub fn new(url: &str, headers: &[(String, String)]) -> Result<Collector, String> {
        Self::of_signal(url, headers, "logs")
    }

    /// The same, for another signal: `<url>/v1/<signal>` (`metrics`).
    pub fn of_signal(
        url: &str,
        headers: &[(String, String)],
        signal: &str,
    ) -> Result<Collector, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("otlp url {url:?} is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "otlp url scheme {other}:// is not supported; use http:// (a local collector or relay for TLS)"
                ))
            }
            None => return Err(format!("otlp url {url:?} lacks http://")),
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("otlp url {url:?} lacks a host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_string();
        let prefix = uri.path().trim_end_matches('/');
        let mut parsed = Vec::new();
        for (name, value) in headers {
            let n = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("otlp header name {name:?} is not valid in HTTP"))?;
            let v = hyper::header::HeaderValue::from_str(value)
                .map_err(|_| format!("the value of otlp header {name} is not valid in HTTP"))?;
            parsed.push((n, v));
        }
        Ok(Collector {
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(4318),
            authority,
            path: format!("{prefix}/v1/{signal}"),
            headers: parsed,
            conn: None,
        })
    }

    /// `http://host:port/…/v1/logs`, for status and messages.
    pub fn shown(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }

    /// POSTs one `ExportLogsServiceRequest` (from `encode_logs`) within `timeout`.
    pub async fn post(&mut self, body: Vec<u8>, timeout: Duration) -> Posted {
        match tokio::time::timeout(timeout, self.exchange(body)).await {
            Ok(posted) => posted,
            Err(_) => {
                // The connection may be mid-answer: a new one next time.
                self.conn = None;
                Posted::Retry(format!(
                    "no answer from {} within {} ms",
                    self.shown(),
                    timeout.as_millis()
                ))
            }
        }
    }

    async fn exchange(&mut self, body: Vec<u8>) -> Posted {
        let mut req = hyper::Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                hyper::header::USER_AGENT,
                concat!("candor/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = match req.body(Full::new(Bytes::from(body))) {
            Ok(req) => req,
            Err(e) => return Posted::Rejected(format!("the request could not be made: {e}")),
        };
        // A kept connection the collector closed meanwhile is made again.
        let kept = match self.conn.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match kept {
            Some(s) => s,
            None => match self.connect().await {
                Ok(s) => s,
                Err(e) => return Posted::Retry(e),
            },
        };
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => return Posted::Retry(format!("{} did not answer: {e}", self.shown())),
        };
        let code = resp.status();
        // The answer's body (an ExportLogsServiceResponse, maybe naming rejected records) is
        // read to the end so that the connection can carry the next request.
        let kept = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .is_ok();
        if kept {
            self.conn = Some(sender);
        }
        match code.as_u16() {
            200..=299 => Posted::Sent,
            429 | 502 | 503 | 504 => {
                Posted::Retry(format!("{} answered HTTP {}", self.shown(), code.as_u16()))
            }
            other => Posted::Rejected(format!("{} answered HTTP {other}", self.shown())),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.shown()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {} failed: {e}", self.shown()))?;
        // Driven until the sender is dropped or the collector closes it.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_take_the_logs_path_and_errors_hold_no_header_value() {
        let c = Collector::new("http://127.0.0.1:4318", &[]).unwrap();
        assert_eq!(c.shown(), "http://127.0.0.1:4318/v1/logs");
        let c = Collector::new("http://otel.internal/prefix/", &[]).unwrap();
        assert_eq!((c.port, c.path.as_str()), (4318, "/prefix/v1/logs"));
        let e = Collector::new("https://x", &[]).err().unwrap();
        assert!(e.contains("https://"), "{e}");
        let e = Collector::new("http://x", &[("x-api-key".into(), "SECRET\n".into())])
            .err()
            .unwrap();
        assert!(e.contains("x-api-key") && !e.contains("SECRET"), "{e}");
    }

    /// A collector that answers each request with `codes` in turn on one connection.
    async fn collector(codes: Vec<u16>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            let mut buf = Vec::new();
            for code in codes {
                // Read one request: its head, then Content-Length bytes.
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "closed mid-request");
                    buf.extend_from_slice(&chunk[..n]);
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                while buf.len() < head_end + len {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                buf.drain(..head_end + len);
                heads.push(head);
                let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
            heads
        });
        (port, task)
    }

    #[tokio::test]
    async fn answers_are_sent_retry_or_rejected_on_one_kept_connection() {
        let (port, task) = collector(vec![200, 503, 400]).await;
        let headers = [("x-api-key".to_string(), "k1".to_string())];
        let mut c = Collector::new(&format!("http://127.0.0.1:{port}"), &headers).unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.post(b"abc".to_vec(), t).await, Posted::Sent);
        assert!(matches!(c.post(b"d".to_vec(), t).await, Posted::Retry(e) if e.contains("503")));
        assert!(matches!(c.post(b"e".to_vec(), t).await, Posted::Rejected(e) if e.contains("400")));
        let heads = task.await.unwrap();
        assert_eq!(
            heads.len(),
            3,
            "three requests on the one connection accepted"
        );
        assert!(
            heads[0].starts_with("POST /v1/logs HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
        assert!(heads[0].contains("content-type: application/x-protobuf"));
        assert!(heads[0].contains("x-api-key: k1"));
    }

    #[tokio::test]
    async fn a_collector_that_is_down_is_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = Collector::new(&format!("http://127.0.0.1:{port}"), &[]).unwrap();
        let posted = c.post(b"x".to_vec(), Duration::from_secs(5)).await;
        assert!(
            matches!(posted, Posted::Retry(ref e) if e.contains("cannot connect")),
            "{posted:?}"
        );
    }
}

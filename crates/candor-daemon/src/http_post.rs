//! HTTP/1.1 POSTs to one endpoint over one kept-alive connection (made again when it breaks):
//! webhooks and OTLP/HTTP. Each request within its timeout; 2xx is sent; no connection, no
//! answer in time, 429, 502, 503 and 504 are worth trying again; any other answer refuses the
//! request itself. Header values are secrets (API keys, tokens): no message here holds one,
//! nor the URL's path or query, where Slack-style webhooks keep their token.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What became of one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    /// 2xx: the receiver has it.
    Sent,
    /// Not now: no connection, no answer in time, 429, 502, 503 or 504. Send again later.
    Retry(String),
    /// The receiver refused the request itself (another 4xx or 5xx): sending it again would
    /// fail again.
    Rejected(String),
}

/// One endpoint and the connection to it.
pub struct Poster {
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header and messages.
    authority: String,
    /// The URL's path (and query) with `suffix` after it.
    path: String,
    content_type: &'static str,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Poster {
    /// `url`: `http://host[:port][/path]` (`default_port` when it names none); requests go to
    /// its path with `suffix` after it (OTLP's `/v1/logs`), with `content_type` and `headers`.
    /// Errors say what is wrong with the URL or which header, never a header's value or the
    /// URL's path.
    pub fn new<'h>(
        url: &str,
        default_port: u16,
        suffix: &str,
        headers: impl IntoIterator<Item = (&'h String, &'h String)>,
        content_type: &'static str,
    ) -> Result<Poster, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("the url is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "url scheme {other}:// is not supported; use http:// (a relay on this host for TLS)"
                ))
            }
            None => return Err("the url lacks http://".into()),
        }
        let host = uri.host().ok_or("the url lacks a host")?;
        // `[::1]` is connected to as `::1`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_string();
        let path = match uri.path_and_query() {
            Some(p) if suffix.is_empty() => p.as_str().to_string(),
            Some(p) => format!("{}{suffix}", p.path().trim_end_matches('/')),
            None if suffix.is_empty() => "/".into(),
            None => suffix.into(),
        };
        let mut parsed = Vec::new();
        for (name, value) in headers {
            let n = hyper::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid in HTTP"))?;
            let v = hyper::header::HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name} is not valid in HTTP"))?;
            parsed.push((n, v));
        }
        Ok(Poster {
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(default_port),
            authority,
            path,
            content_type,
            headers: parsed,
            conn: None,
        })
    }

    /// `http://host:port`, for status and messages (the path may hold a token).
    pub fn shown(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// POSTs `body` within `timeout`.
    pub async fn post(&mut self, body: Vec<u8>, timeout: Duration) -> Posted {
        match tokio::time::timeout(timeout, self.exchange(body)).await {
            Ok(posted) => posted,
            Err(_) => {
                // The connection may be mid-answer: a new one next time.
                self.conn = None;
                Posted::Retry(format!(
                    "no answer from {} within {}",
                    self.shown(),
                    candor_spec::format_duration(timeout)
                ))
            }
        }
    }

    async fn exchange(&mut self, body: Vec<u8>) -> Posted {
        let mut req = hyper::Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, self.content_type)
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

    /// An OTLP collector's logs endpoint, as forwarding makes it.
    fn otlp(url: &str, headers: &[(String, String)]) -> Result<Poster, String> {
        Poster::new(
            url,
            4318,
            "/v1/logs",
            headers.iter().map(|(k, v)| (k, v)),
            "application/x-protobuf",
        )
    }

    #[test]
    fn urls_take_their_suffix_and_errors_hold_no_header_value_and_no_path() {
        let c = otlp("http://127.0.0.1:4318", &[]).unwrap();
        assert_eq!(
            (c.shown().as_str(), c.path.as_str()),
            ("http://127.0.0.1:4318", "/v1/logs")
        );
        let c = otlp("http://otel.internal/prefix/", &[]).unwrap();
        assert_eq!((c.port, c.path.as_str()), (4318, "/prefix/v1/logs"));
        let e = otlp("https://x", &[]).err().unwrap();
        assert!(e.contains("https://"), "{e}");
        let e = otlp("http://x", &[("x-api-key".into(), "SECRET\n".into())])
            .err()
            .unwrap();
        assert!(e.contains("x-api-key") && !e.contains("SECRET"), "{e}");
        // A webhook: its path and query as written, shown without them (they may hold a
        // token).
        let none: [(String, String); 0] = [];
        let hook = |url: &str| {
            Poster::new(
                url,
                80,
                "",
                none.iter().map(|(k, v)| (k, v)),
                "application/json",
            )
        };
        let w = hook("http://hooks.example:8080/services/T0/SECRET?x=1").unwrap();
        assert_eq!((w.host.as_str(), w.port), ("hooks.example", 8080));
        assert_eq!(w.path, "/services/T0/SECRET?x=1");
        assert_eq!(w.shown(), "http://hooks.example:8080");
        let w = hook("http://[::1]/").unwrap();
        assert_eq!((w.host.as_str(), w.port), ("::1", 80));
        for bad in [
            "https://hooks.slack.com/services/SECRET",
            "hooks.example/SECRET",
            "http:///SECRET",
        ] {
            let e = hook(bad).err().unwrap();
            assert!(!e.contains("SECRET"), "{e}");
        }
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
        let mut c = otlp(&format!("http://127.0.0.1:{port}"), &headers).unwrap();
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
        let mut c = otlp(&format!("http://127.0.0.1:{port}"), &[]).unwrap();
        let posted = c.post(b"x".to_vec(), Duration::from_secs(5)).await;
        assert!(
            matches!(posted, Posted::Retry(ref e) if e.contains("cannot connect")),
            "{posted:?}"
        );
    }
}

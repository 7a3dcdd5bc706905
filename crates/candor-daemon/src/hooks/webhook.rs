//! A webhook attempt: one HTTP/1.1 POST over a fresh TCP connection, connect and the whole
//! exchange within the hook's timeout; 2xx is sent, anything else a failed attempt. Header
//! values may be secrets: no message here ever holds one (nor the URL's path or query, where
//! Slack-style webhooks keep their token).

use std::collections::BTreeMap;
use std::time::Duration;

use candor_spec::format_duration;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where a webhook posts, read once from its `url`.
#[derive(Clone, Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// Path and query.
    path: String,
}

impl Endpoint {
    /// `http://host[:port][/path]`. Errors name what is wrong, never the path.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("webhook url is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "webhook url scheme {other}:// is not supported; use http:// (a local relay for https)"
                ))
            }
            None => return Err("webhook url lacks http://".into()),
        }
        let authority = uri
            .authority()
            .ok_or("webhook url lacks a host")?
            .as_str()
            .to_string();
        let host = uri.host().ok_or("webhook url lacks a host")?;
        // `[::1]` is connected to as `::1`.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Endpoint {
            host,
            port: uri.port_u16().unwrap_or(80),
            authority,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }

    /// `http://host:port`, for messages (the path may hold a token).
    pub fn shown(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// POST `body` to `to` with `headers` within `timeout`.
pub async fn post(
    to: &Endpoint,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, exchange(to, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {} within {}",
            to.shown(),
            format_duration(timeout)
        )),
    }
}

async fn exchange(
    to: &Endpoint,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut req = hyper::Request::post(to.path.as_str())
        .header(hyper::header::HOST, to.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("candor/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name {name:?} is not valid in HTTP"))?;
        let value = hyper::header::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header {name} is not valid in HTTP"))?;
        req = req.header(name, value);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "the request could not be made (check the url and headers)".to_string())?;
    let stream = TcpStream::connect((to.host.as_str(), to.port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", to.shown()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {} failed: {e}", to.shown()))?;
    // The connection is driven beside the request, in this task: it ends with the attempt. If
    // it ends first (the server answered and closed), the answer is still taken.
    let mut conn = std::pin::pin!(conn);
    let mut answer = std::pin::pin!(sender.send_request(req));
    let resp = tokio::select! {
        biased;
        r = answer.as_mut() => r,
        _ = &mut conn => answer.await,
    };
    let resp = resp.map_err(|e| format!("{} did not answer: {e}", to.shown()))?;
    let code = resp.status();
    if code.is_success() {
        Ok(())
    } else {
        Err(format!("{} answered HTTP {}", to.shown(), code.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_shown_without_their_path() {
        let e = Endpoint::parse("http://hooks.example:8080/services/T0/SECRET?x=1").unwrap();
        assert_eq!(e.host, "hooks.example");
        assert_eq!(e.port, 8080);
        assert_eq!(e.path, "/services/T0/SECRET?x=1");
        assert_eq!(e.shown(), "http://hooks.example:8080");
        let e = Endpoint::parse("http://[::1]/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 80));
        let https = Endpoint::parse("https://hooks.slack.com/services/SECRET").unwrap_err();
        assert!(https.contains("https://"), "{https}");
        assert!(!https.contains("SECRET"), "{https}");
        assert!(Endpoint::parse("hooks.example/x").is_err());
    }
}

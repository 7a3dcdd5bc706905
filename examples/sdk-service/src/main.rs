//! A small HTTP service built on candor-sdk, the way a service should behave under a
//! supervisor (see examples/sdk-service/candor.toml):
//!
//! - it serves on the socket Candor bound for it (`listen_fds`), or binds `$PORT` when run
//!   by hand;
//! - it says `READY=1` once it serves, and a status line with what it is doing;
//! - its watchdog pings only while the event loop turns (a heartbeat task);
//! - its accept loop backs off when fds run out and sheds above 80 % of its fd limit;
//! - `GET /health` runs its own checks;
//! - on SIGTERM it stops accepting, lets requests in flight finish, and the backstop ends it
//!   if they do not within its stop grace.
//!
//! `GET /` says who answered; `GET /slow?ms=N` answers after N ms (to watch a graceful stop).

use candor_sdk::accept::AcceptLoop;
use candor_sdk::fds::FdBudget;
use candor_sdk::health::Health;
use candor_sdk::listen::listen_fds;
use candor_sdk::notify;
use candor_sdk::shutdown::Shutdown;
use candor_sdk::watchdog::{Heartbeat, Watchdog};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use std::time::Duration;

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, kind: &str, body: String) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", kind.parse().expect("a header value"));
    r
}

async fn handle(req: Request<Incoming>, health: Health) -> Result<Answer, hyper::Error> {
    let who = format!(
        "{} run {} pid {}",
        std::env::var("CANDOR_SERVICE").unwrap_or_else(|_| "sdk-service".into()),
        std::env::var("CANDOR_RUN_ID").unwrap_or_else(|_| "-".into()),
        std::process::id()
    );
    Ok(match req.uri().path() {
        "/" => answer(StatusCode::OK, "text/plain", format!("hello from {who}\n")),
        "/health" => {
            let report = health.report();
            let status = if report.ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            answer(status, "application/json", report.to_json() + "\n")
        }
        "/slow" => {
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            println!("slow request: {ms} ms");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answer(
                StatusCode::OK,
                "text/plain",
                format!("slow {ms} ms from {who}\n"),
            )
        }
        _ => answer(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stop = Shutdown::install()?;
    let mut fds = listen_fds()?;
    let listener = if fds.is_empty() {
        let port = std::env::var("PORT").unwrap_or_else(|_| "8087".into());
        tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?
    } else {
        fds.take_tcp_tokio("http")?
    };

    let beat = Heartbeat::new();
    beat.spawn_tokio(Duration::from_millis(250));
    if let Some(dog) = Watchdog::from_env() {
        dog.spawn_with_heartbeat(&beat);
    }
    let health = Health::new();
    let b = beat.clone();
    health.check("event-loop", move || match b.age() {
        age if age > Duration::from_secs(2) => Err(format!("no turn for {age:?}")),
        _ => Ok(()),
    });
    let budget = FdBudget::new();
    health.check("fds", move || budget.check().map_err(|e| e.to_string()));

    let mut accept = AcceptLoop::new("http").shed_above(FdBudget::new());
    let mut in_flight = tokio::task::JoinSet::new();
    println!("serving on {}", listener.local_addr()?);
    notify::ready()?;
    notify::status("serving")?;
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            conn = accept.accept_async(&listener) => {
                let (conn, _) = conn?;
                let health = health.clone();
                in_flight.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(conn);
                    let serve = hyper::service::service_fn(move |req| handle(req, health.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(io, serve)
                        .await;
                });
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    drop(listener);
    let n = in_flight.len();
    println!(
        "stopping: {n} requests in flight, finishing them within {:?}",
        stop.grace()
    );
    notify::stopping()?;
    notify::status(&format!("stopping: {n} requests in flight"))?;
    while in_flight.join_next().await.is_some() {}
    println!("stopped cleanly");
    Ok(())
}

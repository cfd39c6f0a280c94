//! The `/metrics` endpoint: hyper's HTTP/1 server on the daemon's tokio runtime (the
//! one that serves TCP), far from the AF_XDP and UDP worker threads.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::stats::server::ReportFn;

/// Scrapers served at once; more wait in the accept queue (this is an operator's port).
const MAX_CONNECTIONS: usize = 16;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, report: Arc<ReportFn>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let report = report.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, report.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

async fn answer(
    req: Request<Incoming>,
    report: Arc<ReportFn>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n"));
    }
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "see /metrics\n"));
    }
    // Building the report reads the XDP counter map and the sockets' statistics (system
    // calls): keep them off the runtime's worker threads.
    let body = tokio::task::spawn_blocking(move || super::render(&report())).await;
    Ok(match body {
        Ok(Ok(text)) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            if let Ok(value) = super::CONTENT_TYPE.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            response
        }
        Ok(Err(e)) => {
            tracing::warn!("rendering metrics failed: {e:#}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
        Err(e) => {
            tracing::warn!(error = %e, "the metrics task failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_404_elsewhere() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let report: Arc<ReportFn> = Arc::new(|| crate::stats::Report {
            mount_list_entries: 3,
            ..Default::default()
        });
        let server = rt.spawn(serve(listener, report, stop_rx));
        let (metrics, missing) = std::thread::scope(|s| {
            let a = s.spawn(|| get(addr, "/metrics"));
            let b = s.spawn(|| get(addr, "/"));
            rt.block_on(async {
                while !a.is_finished() || !b.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(
            metrics.contains("\nxdp_mountd_mount_list_entries 3\n"),
            "{metrics}"
        );
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let _ = stop.send(true);
        rt.block_on(server).unwrap();
    }
}

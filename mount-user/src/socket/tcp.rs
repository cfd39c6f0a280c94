//! The TCP path: a tokio accept loop and one task per connection, reassembling RPC records
//! ([`mount_proto::rpc::record`]), answering pipelined calls in order, each reply sent as one
//! record of a single last fragment.
//!
//! Limits: at most `max_connections` connections and `max_per_host` from one host
//! ([`super::admission`]: when the total is reached the connection idle longest makes room;
//! a refused connection is accepted and closed at once, so clients fail fast instead of
//! hanging in the backlog), `max_record` bytes per call record (more closes that connection
//! only), `record_timeout` from a record's first byte to its last (against clients that
//! dribble a byte at a time), `idle_timeout` without a complete read or write closes.
//!
//! Memory per connection is bounded: a small reply buffer, grown to `reply_capacity` (large
//! enough that EXPORT/DUMP lists are not truncated over TCP) only for a reply that needs it
//! and shrunk again after it, so idle connections cost a few tens of KiB each.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use mount_proto::rpc::record::{single_fragment_header, RecordError, RecordReader, HEADER_LEN};

use super::admission::{Admission, Refusal, Ticket};
use super::limit::{Gate, Shell};
use super::Counters;
use crate::log_throttle::LogThrottle;
use crate::service::names::NameCache;
use crate::service::{Answer, Responder};

/// Default reply capacity of a TCP connection.
pub const TCP_REPLY_CAPACITY: usize = 1 << 20;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The reply buffer a connection starts with: every reply but a long EXPORT/DUMP list fits
/// (a MNT reply is under 200 bytes; lists this size are what UDP carries too).
const SMALL_REPLY: usize = 9 * 1024;
/// How long shutdown waits for connections to finish what they are doing.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP limits.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client host.
    pub max_per_host: usize,
    /// Time from a record's first byte to its last before the connection is closed.
    pub record_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Largest call record accepted, in bytes.
    pub max_record: usize,
    /// Reply buffer per connection, in bytes.
    pub reply_capacity: usize,
}

/// What every connection task shares.
struct Shared {
    responder: Arc<dyn Responder>,
    names: Arc<NameCache>,
    counters: Arc<Counters>,
    config: TcpConfig,
    /// Oversized records may come in floods too.
    oversize_log: LogThrottle,
    /// The rate limits, when configured.
    gate: Option<Arc<Gate>>,
}

/// Accept and serve connections until `shutdown` turns true, then close them all. A call
/// over the limits of `gate` waits until it fits.
pub async fn serve(
    listener: TcpListener,
    responder: Arc<dyn Responder>,
    names: Arc<NameCache>,
    counters: Arc<Counters>,
    config: TcpConfig,
    gate: Option<Arc<Gate>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let admission = Admission::new(config.max_connections, config.max_per_host);
    let shared = Arc::new(Shared {
        responder,
        names,
        counters,
        config,
        oversize_log: LogThrottle::new(Duration::from_secs(10)),
        gate,
    });
    let refused_log = LogThrottle::new(Duration::from_secs(10));
    let error_log = LogThrottle::new(Duration::from_secs(10));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                if let Some(suppressed) = error_log.allow() {
                    tracing::warn!(error = %e, suppressed, "TCP accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok((ticket, made_room)) => {
                if let Some(host) = made_room.evicted {
                    Counters::bump(&shared.counters.tcp_evicted);
                    tracing::debug!(%peer, evicted_host = %host, "closed the longest idle TCP connection to admit a new one");
                }
                ticket
            }
            Err(refusal) => {
                let (counter, what, limit, option) = match refusal {
                    Refusal::HostCap => (
                        &shared.counters.tcp_refused_host,
                        "from this host",
                        shared.config.max_per_host,
                        "--max-connections-per-host",
                    ),
                    Refusal::AllBusy => (
                        &shared.counters.tcp_refused,
                        "in total, none idle",
                        shared.config.max_connections,
                        "--max-connections",
                    ),
                };
                Counters::bump(counter);
                if let Some(suppressed) = refused_log.allow() {
                    tracing::warn!(%peer, limit, suppressed,
                        "too many TCP connections {what}: closing the new one (raise {option} if these are real clients)");
                }
                drop(stream);
                continue;
            }
        };
        Counters::bump(&shared.counters.tcp_connections);
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        tasks.spawn(async move {
            connection(stream, peer, &shared, &ticket, shutdown).await;
            Counters::bump(&shared.counters.tcp_closed);
            drop(ticket);
        });
    }
    drop(listener);
    // Connections watch the same flag; give them a moment to finish a reply in flight.
    if tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
}

/// Why a connection ended, for the log.
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Shutdown,
    Evicted,
    RecordTimeout,
    Oversize(RecordError),
    Io(std::io::Error),
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    ticket: &Ticket,
    mut shutdown: watch::Receiver<bool>,
) {
    // One reply per write: Nagle would hold back the replies to pipelined calls.
    let _ = stream.set_nodelay(true);
    let close = serve_connection(&mut stream, peer, shared, ticket, &mut shutdown).await;
    match close {
        Close::RecordTimeout => {
            Counters::bump(&shared.counters.tcp_record_timeout);
            if let Some(suppressed) = shared.oversize_log.allow() {
                tracing::warn!(%peer, timeout = ?shared.config.record_timeout, suppressed,
                    "closing TCP connection: a record took longer than --record-timeout");
            }
        }
        Close::Oversize(e) => {
            Counters::bump(&shared.counters.tcp_oversize);
            if let Some(suppressed) = shared.oversize_log.allow() {
                tracing::warn!(%peer, error = %e, suppressed, "closing TCP connection: oversized record");
            }
        }
        Close::Io(e) => tracing::debug!(%peer, error = %e, "TCP connection failed"),
        other => tracing::debug!(%peer, reason = ?other, "TCP connection closed"),
    }
}

async fn serve_connection(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    ticket: &Ticket,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    let idle = shared.config.idle_timeout;
    let mut reader = RecordReader::new(shared.config.max_record);
    let mut chunk = vec![0u8; READ_CHUNK];
    let small = HEADER_LEN + SMALL_REPLY.min(shared.config.reply_capacity);
    let mut out = vec![0u8; small];
    // When the record now arriving began (None between records).
    let mut record_started: Option<tokio::time::Instant> = None;
    loop {
        loop {
            let record = match reader.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => return Close::Oversize(e),
            };
            if let Some(gate) = &shared.gate {
                if let Err(close) = wait_for_rate(gate, peer, shared, ticket, shutdown).await {
                    return close;
                }
            }
            let mut reply = answer(record, peer, shared, &mut out[HEADER_LEN..]).await;
            if matches!(reply, Some((_, true)))
                && out.len() < HEADER_LEN + shared.config.reply_capacity
            {
                // A list longer than the small buffer: answer again with room for all of it.
                out.resize(HEADER_LEN + shared.config.reply_capacity, 0);
                reply = answer(record, peer, shared, &mut out[HEADER_LEN..]).await;
            }
            let Some((len, _)) = reply else {
                continue;
            };
            let header = match single_fragment_header(len) {
                Ok(h) => h,
                Err(e) => return Close::Io(std::io::Error::other(e)),
            };
            out[..HEADER_LEN].copy_from_slice(&header);
            match tokio::time::timeout(idle, stream.write_all(&out[..HEADER_LEN + len])).await {
                Ok(Ok(())) => Counters::bump(&shared.counters.tcp_replies),
                Ok(Err(e)) => return Close::Io(e),
                Err(_) => return Close::Idle,
            }
            if out.len() > small {
                out.truncate(small);
                out.shrink_to_fit();
            }
        }
        // Between records the connection may make room for a newcomer; inside one it has
        // until its record deadline.
        let deadline = if reader.is_idle() {
            record_started = None;
            ticket.idle();
            tokio::time::Instant::now() + idle
        } else {
            let started = *record_started.get_or_insert_with(tokio::time::Instant::now);
            ticket.busy();
            (started + shared.config.record_timeout).min(tokio::time::Instant::now() + idle)
        };
        let n = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Close::Shutdown,
            () = ticket.evicted() => return Close::Evicted,
            read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => match read {
                Err(_) if reader.is_idle() => return Close::Idle,
                Err(_) => return Close::RecordTimeout,
                Ok(Err(e)) => return Close::Io(e),
                Ok(Ok(0)) => return Close::Eof,
                Ok(Ok(n)) => n,
            },
        };
        ticket.busy();
        reader.push(&chunk[..n]);
        if !reader.is_idle() {
            record_started.get_or_insert_with(tokio::time::Instant::now);
        }
    }
}

/// Waits until the rate limits admit a call from `peer`. Over TCP a refused call waits
/// rather than being dropped: the client sends no retransmission that would bring it
/// back, and while it waits this connection reads nothing more, so TCP's own flow control
/// slows the sender down.
async fn wait_for_rate(
    gate: &Gate,
    peer: SocketAddr,
    shared: &Shared,
    ticket: &Ticket,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Close> {
    while let Err(refused) = gate.check(peer.ip(), Shell::Tcp, &shared.counters) {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return Err(Close::Shutdown),
            () = ticket.evicted() => return Err(Close::Evicted),
            () = tokio::time::sleep(refused.retry_after.max(Duration::from_micros(100))) => {}
        }
    }
    Ok(())
}

/// Answer one record; resolves the peer's name off the runtime when the core asks for it.
async fn answer(
    request: &[u8],
    peer: SocketAddr,
    shared: &Shared,
    out: &mut [u8],
) -> Option<(usize, bool)> {
    let mut answer = shared.responder.respond(request, peer, None, out);
    let mut host = None;
    if answer == Answer::NeedName {
        Counters::bump(&shared.counters.name_lookups);
        let resolved = match shared.names.cached(peer.ip()) {
            Some(name) => name,
            None => {
                let names = shared.names.clone();
                let ip = peer.ip();
                match tokio::task::spawn_blocking(move || names.resolve(ip)).await {
                    Ok(name) => name,
                    Err(_) => return None,
                }
            }
        };
        answer = shared
            .responder
            .respond(request, peer, Some(&*resolved), out);
        host = Some(resolved);
    }
    if answer == Answer::NeedUpstream {
        // Waiting for upstream blocks (bounded): off the runtime's worker threads.
        Counters::bump(&shared.counters.upstream_waits);
        let (responder, request, cap) = (shared.responder.clone(), request.to_vec(), out.len());
        let waited = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; cap];
            let answer = responder.respond_waited(&request, peer, host.as_deref(), &mut buf);
            (answer, buf)
        })
        .await;
        let Ok((waited, buf)) = waited else {
            return None;
        };
        if let Answer::Reply { len, .. } = waited {
            out.get_mut(..len)?.copy_from_slice(buf.get(..len)?);
        }
        answer = waited;
    }
    match answer {
        Answer::Reply { len, truncated } => {
            if truncated && out.len() >= shared.config.reply_capacity {
                tracing::debug!(%peer, len, "list truncated even over TCP");
            }
            Some((len, truncated))
        }
        Answer::Drop | Answer::NeedName | Answer::NeedUpstream => None,
    }
}

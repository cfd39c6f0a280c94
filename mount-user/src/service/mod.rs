//! The contract every data path shares: a [`Responder`] answers one RPC message given the
//! peer's address (and, when it asked for them, the peer's host facts), and says when it
//! needs I/O first ([`Answer::NeedName`], [`Answer::NeedUpstream`]) instead of doing it.
//! The kernel UDP and TCP shells (`crate::socket`) and the AF_XDP workers (`crate::afxdp`)
//! are built around it; [`mount::MountService`] is the responder that calls the protocol
//! core, and [`names::NameCache`] the host facts they look up off their hot paths.
use std::net::SocketAddr;

use mount_proto::exports::HostFacts;
use names::NameCache;

pub mod mount;
pub mod names;

/// What a [`Responder`] did with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `out[..len]` holds the reply; `truncated`: a list was cut to fit `out`.
    Reply { len: usize, truncated: bool },
    /// Send nothing.
    Drop,
    /// Resolve the peer's host name and ask again with it.
    NeedName,
    /// Gateway mode: the handle must be learned from upstream first. Hand the call to a
    /// thread off the fast path, which calls [`answer_deferred`].
    NeedUpstream,
}

/// The protocol side of a shell: answers one RPC message.
pub trait Responder: Send + Sync + 'static {
    /// Answer `request` from `peer` into `out` (the datagram or record capacity). `host` is
    /// what was looked up about the peer once a previous call returned [`Answer::NeedName`].
    fn respond(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer;

    /// Off the fast path, after [`Answer::NeedUpstream`]: wait (bounded) for what the answer
    /// needs, then answer for good (never `NeedUpstream` again). The default answers as
    /// [`respond`](Self::respond) does, for responders that never defer.
    fn respond_waited(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        self.respond(request, peer, host, out)
    }
}

/// Answer a call the fast path deferred: look the peer's name up when the answer needs it
/// (blocking on DNS), then let the responder wait for upstream when it needs that. Runs on
/// the shells' lookup threads only.
pub fn answer_deferred(
    responder: &dyn Responder,
    names: &NameCache,
    request: &[u8],
    peer: SocketAddr,
    out: &mut [u8],
) -> Answer {
    let mut host = None;
    let mut answer = responder.respond(request, peer, None, out);
    if answer == Answer::NeedName {
        let resolved = names.resolve(peer.ip());
        answer = responder.respond(request, peer, Some(&*resolved), out);
        host = Some(resolved);
    }
    if answer == Answer::NeedUpstream {
        answer = responder.respond_waited(request, peer, host.as_deref(), out);
    }
    answer
}

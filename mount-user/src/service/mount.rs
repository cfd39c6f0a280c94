//! The [`Responder`] that puts the MOUNT protocol core behind the shells: one export-table
//! snapshot per call (lock-free), the shared mount list, the policy, and in gateway mode
//! the learned-handles snapshot.
use std::net::SocketAddr;
use std::sync::Arc;

use mount_proto::exports::HostFacts;
use mount_proto::mount::{self, Client, Context, Gateway, Outcome, Policy};
use mount_proto::mountlist::MountList;

use super::{Answer, Responder};
use crate::exports::SharedExports;
use crate::upstream::Upstream;

/// The MOUNT service behind every transport: the core with the live table and list.
pub struct MountService {
    exports: Arc<SharedExports>,
    mounts: Arc<MountList>,
    policy: Policy,
    upstream: Option<Arc<Upstream>>,
}

impl MountService {
    /// The service over the shared export table and mount list.
    pub fn new(exports: Arc<SharedExports>, mounts: Arc<MountList>, policy: Policy) -> Self {
        Self {
            exports,
            mounts,
            policy,
            upstream: None,
        }
    }

    /// Gateway mode: hand out the handles `upstream` learns.
    pub fn with_upstream(mut self, upstream: Option<Arc<Upstream>>) -> Self {
        self.upstream = upstream;
        self
    }

    fn answer(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
        waited: bool,
    ) -> Answer {
        let table = self.exports.load();
        let handles = self.upstream.as_ref().map(|u| u.handles());
        let client = Client { addr: peer, host };
        let ctx = Context {
            exports: &table,
            mounts: &self.mounts,
            policy: &self.policy,
            upstream: handles.as_ref().map(|h| Gateway { handles: h, waited }),
        };
        match mount::answer(request, &client, &ctx, out) {
            Outcome::Reply { len, truncated } => Answer::Reply { len, truncated },
            Outcome::Drop(reason) => {
                tracing::trace!(%peer, ?reason, "call dropped");
                Answer::Drop
            }
            Outcome::NeedName => Answer::NeedName,
            Outcome::NeedUpstream => Answer::NeedUpstream,
        }
    }
}

impl Responder for MountService {
    fn respond(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        self.answer(request, peer, host, out, false)
    }

    fn respond_waited(
        &self,
        request: &[u8],
        peer: SocketAddr,
        host: Option<&HostFacts>,
        out: &mut [u8],
    ) -> Answer {
        if let (Some(upstream), Some(path)) = (&self.upstream, mount::mnt_path(request)) {
            upstream.wait_for(&path);
        }
        self.answer(request, peer, host, out, true)
    }
}

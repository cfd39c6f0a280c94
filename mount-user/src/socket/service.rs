//! The [`Responder`] that puts the MOUNT protocol core behind the shells: one export-table
//! snapshot per call (lock-free), the shared mount list, the policy.
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Answer, Responder};
use crate::exports::{HostFacts, SharedExports};
use crate::mount::{self, Client, Context, Outcome, Policy};
use crate::mountlist::MountList;

/// The MOUNT service behind every transport: the core with the live table and list.
pub struct MountService {
    exports: Arc<SharedExports>,
    mounts: Arc<MountList>,
    policy: Policy,
}

impl MountService {
    /// The service over the shared export table and mount list.
    pub fn new(exports: Arc<SharedExports>, mounts: Arc<MountList>, policy: Policy) -> Self {
        Self {
            exports,
            mounts,
            policy,
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
        let table = self.exports.load();
        let client = Client { addr: peer, host };
        let ctx = Context {
            exports: &table,
            mounts: &self.mounts,
            policy: &self.policy,
        };
        match mount::answer(request, &client, &ctx, out) {
            Outcome::Reply { len, truncated } => Answer::Reply { len, truncated },
            Outcome::Drop(reason) => {
                tracing::trace!(%peer, ?reason, "call dropped");
                Answer::Drop
            }
            Outcome::NeedName => Answer::NeedName,
        }
    }
}

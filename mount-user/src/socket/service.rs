//! The [`Responder`] that puts the MOUNT protocol core behind the shells: one export-table
//! snapshot per call (lock-free), the shared mount list, the policy.
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Answer, Responder};
use crate::exports::SharedExports;
use crate::mount::{self, Client, Context, Outcome, Policy, Transport};
use crate::mountlist::MountList;

/// The MOUNT service as seen from one transport.
pub struct MountService {
    exports: Arc<SharedExports>,
    mounts: Arc<MountList>,
    policy: Policy,
    transport: Transport,
}

impl MountService {
    /// The service for calls arriving over `transport`.
    pub fn new(
        exports: Arc<SharedExports>,
        mounts: Arc<MountList>,
        policy: Policy,
        transport: Transport,
    ) -> Self {
        Self {
            exports,
            mounts,
            policy,
            transport,
        }
    }
}

impl Responder for MountService {
    fn respond(
        &self,
        request: &[u8],
        peer: SocketAddr,
        name: Option<&str>,
        out: &mut [u8],
    ) -> Answer {
        let table = self.exports.load();
        let client = Client {
            addr: peer,
            name,
            transport: self.transport,
        };
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

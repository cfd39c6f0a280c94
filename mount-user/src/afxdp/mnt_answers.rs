//! MNT of an export root answered by the XDP program (`--xdp-answers on`,
//! docs/xdp-answers.md): keeps the program's `MOUNT_SEEN` map to the mount list's recorded
//! (address, export root) pairs that the current export table lets the program answer, and
//! moves the program to a new generation on every exports reload.
//!
//! The first MNT of a pair always reaches user space, which answers and records it; only
//! then ([`PresenceHook::recorded`], under the list's lock) does the pair enter the map, so
//! a MNT the program answers is one the list already holds: nothing is ever missing from
//! DUMP or rmtab. A removal (UMNT, UMNTALL, rmtab edits) deletes the pair under the list's
//! write lock before the reply goes out.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use mount_ebpf::answer::{SeenEntry, SeenKey, TEMPLATE_ENTRIES, TEMPLATE_MNT_FIRST};
use mount_proto::mount::templates;
use mount_proto::mountlist::PresenceHook;
use mount_xdp::ebpf::XdpAttachment;
use parking_lot::Mutex;

use crate::exports::SharedExports;

/// Template slots per generation: odd generations use the lower half of the map, even ones
/// the upper, so a reload never rewrites a slot the previous generation's entries name.
const SLOTS_PER_GENERATION: u32 = (TEMPLATE_ENTRIES - TEMPLATE_MNT_FIRST) / 2;

/// The daemon's side of the program's MNT answers.
pub struct MntAnswers {
    attachment: Arc<Mutex<Option<XdpAttachment>>>,
    exports: Arc<SharedExports>,
    /// Gateway mode: exports whose handles come from upstream stay on AF_XDP.
    gateway: bool,
    state: Mutex<State>,
}

/// Changed only under [`MntAnswers::state`]: a pair is inserted with the generation whose
/// templates it names, and a reload cannot run in between.
struct State {
    generation: u32,
    /// This generation's template slots, by reply bytes.
    slots: HashMap<Vec<u8>, u32>,
    /// Set once this generation's slots ran out (logged once).
    full: bool,
}

impl MntAnswers {
    /// Starts at generation 1 (the program answers no MNT before this).
    pub fn start(
        attachment: Arc<Mutex<Option<XdpAttachment>>>,
        exports: Arc<SharedExports>,
        gateway: bool,
    ) -> anyhow::Result<Arc<Self>> {
        if let Some(a) = attachment.lock().as_mut() {
            a.set_mnt_generation(1)?;
        }
        Ok(Arc::new(Self {
            attachment,
            exports,
            gateway,
            state: Mutex::new(State {
                generation: 1,
                slots: HashMap::new(),
                full: false,
            }),
        }))
    }

    /// After the export table was swapped: every pair decided with the old table is dead
    /// in the program once this returns (its generation no longer matches).
    pub fn reloaded(&self) {
        let mut st = self.state.lock();
        st.generation = st.generation.wrapping_add(1).max(1);
        st.slots.clear();
        st.full = false;
        if let Some(a) = self.attachment.lock().as_mut() {
            if let Err(e) = a.set_mnt_generation(st.generation) {
                // The old generation would stay live with a table it no longer matches:
                // stop MNT answers altogether rather than answer from it.
                tracing::error!(error = %format!("{e:#}"), "moving the XDP program's MNT \
                    answers to the reloaded exports failed; trying to turn them off");
                let _ = a.set_mnt_generation(0);
            }
        }
        tracing::debug!(
            generation = st.generation,
            "XDP MNT answers follow the reloaded exports"
        );
    }

    /// The template slot of `reply` in this generation, written on first use.
    fn slot(st: &mut State, a: &mut XdpAttachment, reply: &[u8]) -> Option<u32> {
        if let Some(&slot) = st.slots.get(reply) {
            return Some(slot);
        }
        let n = st.slots.len() as u32;
        if n >= SLOTS_PER_GENERATION {
            if !st.full {
                st.full = true;
                tracing::warn!(
                    slots = SLOTS_PER_GENERATION,
                    "the XDP program's MNT reply \
                    templates are all in use: further export/flavor forms stay on AF_XDP \
                    until the next reload"
                );
            }
            return None;
        }
        let half = if st.generation % 2 == 1 {
            0
        } else {
            SLOTS_PER_GENERATION
        };
        let slot = TEMPLATE_MNT_FIRST + half + n;
        if let Err(e) = a.set_template(slot, reply) {
            tracing::warn!(error = %format!("{e:#}"), "writing an XDP MNT reply template");
            return None;
        }
        st.slots.insert(reply.to_vec(), slot);
        Some(slot)
    }
}

/// [`MntAnswers`] as the mount list's hook (shared with the exports' swap hook).
pub struct Hook(pub Arc<MntAnswers>);

impl PresenceHook for Hook {
    fn recorded(&self, ip: IpAddr, dir: &str) {
        let Some(key) = SeenKey::for_ip(ip, dir.as_bytes()) else {
            return;
        };
        let this = &self.0;
        let mut st = this.state.lock();
        // Read after the generation is fixed (the lock): a table swapped in since is newer
        // than the generation, which only makes the entry die sooner.
        let table = this.exports.load();
        let Some(replies) = templates::mnt_replies(&table, ip, dir, this.gateway) else {
            return;
        };
        let mut guard = this.attachment.lock();
        let Some(a) = guard.as_mut() else {
            return;
        };
        let (Some(v1), Some(v3)) = (
            MntAnswers::slot(&mut st, a, &replies.v1),
            MntAnswers::slot(&mut st, a, &replies.v3),
        ) else {
            return;
        };
        let entry = SeenEntry::new(st.generation, replies.secure, v1, v3, dir.as_bytes());
        if let Err(e) = a.seen_insert(&key, entry) {
            tracing::debug!(error = %format!("{e:#}"), "MNT pair not cached in the XDP program");
        }
    }

    fn removed(&self, ip: IpAddr, dir: &str) {
        let Some(key) = SeenKey::for_ip(ip, dir.as_bytes()) else {
            return;
        };
        if let Some(a) = self.0.attachment.lock().as_mut() {
            if let Err(e) = a.seen_remove(&key) {
                // The pair would stay answerable without being listed: stop MNT answers.
                tracing::error!(error = %format!("{e:#}"), %ip, dir, "removing an unmounted pair \
                    from the XDP program failed; turning its MNT answers off");
                let _ = a.set_mnt_generation(0);
            }
        }
    }
}

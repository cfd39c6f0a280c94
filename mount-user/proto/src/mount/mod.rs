//! The MOUNT protocol core (program 100005, versions 1–3): [`answer`] turns one call into one
//! reply, sans-IO.
//!
//! Dispatch order (RFC 5531 and the Linux/libtirpc servers agree): RPC header
//! ([`rpc::Call::parse`]) → credential flavor ([`rpc::authenticate`]) → program (else
//! PROG_UNAVAIL) → version (else PROG_MISMATCH 1..3, never PROC_UNAVAIL) → procedure of that
//! version (else PROC_UNAVAIL) → arguments (else GARBAGE_ARGS) → the procedure.
//!
//! Decisions (the RFCs leave these open; each is tested; docs/protocol.md lists the rules):
//! - MNT does not depend on the call's credential flavor: like nfs-utils' mountd, flavors are
//!   enforced by the NFS server; MNT reports the export's flavors in `mountres3`.
//! - MNT status: NOENT when no export matches or the path is relative/not UTF-8/has a NUL;
//!   ACCES for a refused client, a source port ≥ 1024 on a `secure` export (loopback
//!   included), or a `..` that climbs above `/` or above the export finally matched.
//! - A subdirectory of an export with an explicit `fh=` has no handle we could know
//!   (`Export::subdir_handle` is None): NOENT, "no such mountable directory here".
//! - v1/v2 handles are exactly 32 bytes: shorter ones are zero-padded; a longer one cannot be
//!   expressed, answered EACCES as nfs-utils does when the kernel's handle does not fit.
//! - UMNT removes `(client address, normalised path)` without checking the exports: a client
//!   can only remove its own entries, and a stale entry must be removable after the export is
//!   gone. UMNT and UMNTALL always answer (void).
//! - PATHCONF (v2) has no status field: it goes through the same checks as MNT (export,
//!   `..`, client, `secure` port, as nfs-utils' `auth_authenticate` does); a refused client or
//!   unknown path gets all zeros, as nfs-utils answers; an allowed one gets
//!   [`PathConf::EXPORT`].
//! - DUMP, EXPORT, EXPORTALL, UMNT, UMNTALL have no port rule (nfs-utils neither).
//! - EXPORT/EXPORTALL/DUMP lists that do not fit `out` are cut at an entry boundary and the
//!   outcome says `truncated` (the UDP policy: a datagram is never oversized).
//! - A reply that does not fit `out` at all is [`DropReason::NoRoom`].
//! - Gateway mode ([`Gateway`]): an export without `fh=` answers MNT (export root or a
//!   subdirectory) with what upstream answered for that exact path: its handle, or its status
//!   as given. v1/v2 get upstream's v1 answer, or EACCES when upstream does not serve v1.
//!   A path not learned yet is [`Outcome::NeedUpstream`]; after the shell's bounded wait it
//!   is SERVERFAULT (v3) / EIO (v1/v2), never a synthetic handle.
pub mod client;
pub mod learned;
pub mod path;
pub mod results;
pub mod templates;
pub mod wire;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};

use crate::exports::{ClientCheck, ClientOptions, Export, ExportTable, HandleSource, HostFacts};
/// Re-exported: the mount list owns its host key text.
pub use crate::mountlist::IpText;
use crate::mountlist::MountList;
use crate::rpc::{self, AcceptStat, Call, CallError, RejectStat};
use crate::xdr::{Reader, Writer, XdrError};
use client::MntAnswer;
use learned::LearnedHandles;
use path::{NormBuf, PathError};
use results::Filtered;
use wire::FhStatus;
pub use wire::PathConf;

/// The MOUNT program number.
pub const MOUNT_PROGRAM: u32 = 100_005;
/// Lowest version served.
pub const MIN_VERSION: u32 = 1;
/// Highest version served.
pub const MAX_VERSION: u32 = 3;
/// Every version served, lowest first (what the daemon registers with rpcbind).
pub const VERSIONS: [u32; 3] = [MIN_VERSION, MIN_VERSION + 1, MAX_VERSION];
const _: () = assert!(MAX_VERSION == MIN_VERSION + 2);

/// Longest `dirpath` (`MNTPATHLEN`, RFC 1813 §5.1).
pub const MNTPATHLEN: usize = 1024;
/// Longest `name`: a host in the mount list, a group in the export list (`MNTNAMLEN`).
pub const MNTNAMLEN: usize = 255;
/// Size of a v1/v2 file handle, the fixed `fhandle` of `fhstatus` (`FHSIZE`, RFC 1094).
pub const FHSIZE: usize = 32;
/// Longest v3 file handle, `fhandle3` (`FHSIZE3`, RFC 1813).
pub const FHSIZE3: usize = 64;

/// Procedure numbers.
pub mod procs {
    /// Do nothing.
    pub const NULL: u32 = 0;
    /// Mount a directory: get its handle.
    pub const MNT: u32 = 1;
    /// List the mount list.
    pub const DUMP: u32 = 2;
    /// Remove one mount list entry.
    pub const UMNT: u32 = 3;
    /// Remove all of a client's entries.
    pub const UMNTALL: u32 = 4;
    /// List the exports.
    pub const EXPORT: u32 = 5;
    /// List the exports (v1/v2).
    pub const EXPORTALL: u32 = 6;
    /// POSIX pathconf values (v2).
    pub const PATHCONF: u32 = 7;
}

/// MNT status values (v3 `mountstat3`; v1/v2 use the same errno numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MountStat {
    /// Success.
    Ok = 0,
    /// Not owner.
    Perm = 1,
    /// No such file or directory.
    NoEnt = 2,
    /// I/O error.
    Io = 5,
    /// Permission denied.
    Acces = 13,
    /// Not a directory.
    NotDir = 20,
    /// Invalid argument.
    Inval = 22,
    /// Name too long.
    NameTooLong = 63,
    /// Operation not supported (v3 only).
    NotSupp = 10004,
    /// Server fault (v3 only).
    ServerFault = 10006,
}

/// How a call arrived: the shells count per transport. The answer does not depend on it
/// (only on the size of `out`), so [`Client`] does not carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram.
    Udp,
    /// A record on a stream.
    Tcp,
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// Source address and port.
    pub addr: SocketAddr,
    /// What the shell looked up about the client (reverse name, netgroups), when it has.
    pub host: Option<&'a HostFacts>,
}

/// Knobs of the protocol core.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// EXPORT/EXPORTALL list only the exports the calling client could mount.
    pub filter_exports_by_client: bool,
    /// Over UDP: the cap on list replies that keeps this service from being an amplifier.
    pub list_budget: Option<ListBudget>,
}

/// Anti-amplification for UDP, where a source address is never proven: a forged 40-byte
/// EXPORT call would otherwise reflect a list of up to 8800 bytes (218x for 300 exports)
/// at its victim. A list reply (EXPORT, EXPORTALL, DUMP) to a source outside `trusted` is
/// cut, at an entry boundary, to `factor` times the call's size: still a valid, shorter
/// list (never a silent drop, which would make clients retry into a storm). Clients that
/// need whole lists get them over TCP, whose handshake proves the address (showmount and
/// libnfs try TCP first), or from a trusted network. Other replies need no cap: the
/// largest, a MNT v3 reply with a 64-byte handle, is barely twice its call.
#[derive(Debug, Clone)]
pub struct ListBudget {
    /// A list reply takes at most this many times the call's bytes.
    pub factor: usize,
    /// Sources in these networks get whole lists (up to the datagram limit).
    pub trusted: Vec<ipnet::IpNet>,
}

impl ListBudget {
    /// The most bytes a list reply to a `call_len`-byte call from `ip` may take (None: no
    /// cap beyond the buffer). `ip` is canonical (no IPv4-mapped IPv6).
    pub fn limit(&self, call_len: usize, ip: IpAddr) -> Option<usize> {
        if self.trusted.iter().any(|net| net.contains(&ip)) {
            None
        } else {
            Some(call_len.saturating_mul(self.factor))
        }
    }
}

/// What `answer` decides with.
pub struct Context<'a> {
    /// Current export table snapshot.
    pub exports: &'a ExportTable,
    /// The mount list.
    pub mounts: &'a MountList,
    /// Policy knobs.
    pub policy: &'a Policy,
    /// Gateway mode (`--upstream`): handles learned from the upstream MOUNT server.
    pub upstream: Option<Gateway<'a>>,
}

/// Gateway mode: exports without `fh=` hand out the handles upstream gave for the path.
#[derive(Debug, Clone, Copy)]
pub struct Gateway<'a> {
    /// The learned handles snapshot.
    pub handles: &'a LearnedHandles,
    /// The shell already waited (bounded) for upstream to answer: a path still unknown is
    /// answered [`UNLEARNED_V3`] / [`UNLEARNED_V1`] instead of [`Outcome::NeedUpstream`].
    pub waited: bool,
}

/// The v3 status of a MNT whose handle upstream could not supply in time (upstream down,
/// not answering, or not a MOUNT server): the server cannot do its job right now.
pub const UNLEARNED_V3: MountStat = MountStat::ServerFault;
/// The v1/v2 status for the same case (v1 has no SERVERFAULT): EIO.
pub const UNLEARNED_V1: MountStat = MountStat::Io;

/// What the shell must do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `out[..len]` holds the whole reply message (no TCP record mark). `truncated`: an
    /// EXPORT/DUMP list was cut at an entry boundary to fit `out`.
    Reply {
        /// Reply length.
        len: usize,
        /// A list was cut.
        truncated: bool,
    },
    /// No reply must be sent; the reason is for counters/logs.
    Drop(DropReason),
    /// A name, wildcard or netgroup rule needs the client's facts: look `client.addr.ip()` up
    /// off the hot path and call `answer` again with `host: Some(..)`.
    NeedName,
    /// Gateway mode: the handle of this path has not been learned from upstream yet. Learn
    /// it off the fast path (bounded wait) and call `answer` again with `waited: true`.
    NeedUpstream,
}

/// Why no reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Too short for an RPC call header.
    Truncated,
    /// Not an RPC CALL.
    NotCall,
    /// `out` cannot hold even the reply.
    NoRoom,
}

impl DropReason {
    /// A short stable name, for counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotCall => "not_call",
            DropReason::NoRoom => "no_room",
        }
    }
}

/// Answer one RPC message: decode, decide, encode the reply into `out`.
pub fn answer(request: &[u8], client: &Client<'_>, ctx: &Context<'_>, out: &mut [u8]) -> Outcome {
    let call = match Call::parse(request) {
        Ok(call) => call,
        Err(err) => {
            return match err.reply() {
                Some((xid, stat)) => denied(out, xid, &stat),
                None if matches!(err, CallError::NotCall { .. }) => {
                    Outcome::Drop(DropReason::NotCall)
                }
                None => Outcome::Drop(DropReason::Truncated),
            }
        }
    };
    if let Err(stat) = rpc::authenticate(&call.cred) {
        return denied(out, call.xid, &RejectStat::AuthError(stat));
    }
    if call.prog != MOUNT_PROGRAM {
        return accepted(out, call.xid, &AcceptStat::ProgUnavail);
    }
    if !(MIN_VERSION..=MAX_VERSION).contains(&call.vers) {
        let stat = AcceptStat::ProgMismatch {
            low: MIN_VERSION,
            high: MAX_VERSION,
        };
        return accepted(out, call.xid, &stat);
    }
    let served = match call.proc_ {
        procs::NULL..=procs::EXPORT => true,
        procs::EXPORTALL => call.vers < 3,
        procs::PATHCONF => call.vers == 2,
        _ => false,
    };
    if !served {
        return accepted(out, call.xid, &AcceptStat::ProcUnavail);
    }
    let ip = client.addr.ip().to_canonical();
    match call.proc_ {
        procs::NULL => success(out, call.xid, |_| Ok(false)),
        procs::MNT => mnt(&call, client, ip, ctx, out),
        procs::DUMP => {
            let out = list_out(request, ip, ctx, out);
            success(out, call.xid, |w| results::put_mountlist(w, ctx.mounts))
        }
        procs::UMNT => {
            let Some(raw) = dirpath(call.args) else {
                return accepted(out, call.xid, &AcceptStat::GarbageArgs);
            };
            let mut buf = NormBuf::new();
            if let Ok(norm) = path::normalise(raw, &mut buf) {
                ctx.mounts.umnt(ip, norm.path);
            }
            success(out, call.xid, |_| Ok(false))
        }
        procs::UMNTALL => {
            ctx.mounts.umntall(ip);
            success(out, call.xid, |_| Ok(false))
        }
        procs::EXPORT | procs::EXPORTALL => {
            export(&call, client, ip, ctx, list_out(request, ip, ctx, out))
        }
        _ => pathconf(&call, client, ip, ctx, out),
    }
}

/// The normalised path of a MNT call (the key of [`LearnedHandles`]); None for anything
/// else. For the shells' lookup threads, off the fast path (it allocates).
pub fn mnt_path(request: &[u8]) -> Option<String> {
    let call = Call::parse(request).ok()?;
    if call.prog != MOUNT_PROGRAM || call.proc_ != procs::MNT {
        return None;
    }
    let mut buf = NormBuf::new();
    path::normalise(dirpath(call.args)?, &mut buf)
        .ok()
        .map(|n| n.path.to_string())
}

/// Decode a `dirpath` argument; None is GARBAGE_ARGS. Bytes after it are ignored, as the
/// XDR routines of every RPC library do.
fn dirpath(args: &[u8]) -> Option<&[u8]> {
    Reader::new(args).string(MNTPATHLEN).ok()
}

/// The result of resolving and authorising a path for a client.
enum Access<'t> {
    Granted {
        export: &'t Export,
        subpath: &'t str,
        options: &'t ClientOptions,
    },
    Refused(MountStat),
    NeedName,
}

/// Export lookup, `..` escape check, client match, `secure` port rule.
fn authorise<'t>(
    norm: &path::Normalised<'t>,
    client: &Client<'_>,
    ip: IpAddr,
    exports: &'t ExportTable,
) -> Access<'t> {
    match exports.lookup(norm.path) {
        Some(found) => authorise_match(found.export, found.subpath, norm, client, ip),
        None => Access::Refused(MountStat::NoEnt),
    }
}

/// [`authorise`] once the export is known.
fn authorise_match<'t>(
    export: &'t Export,
    subpath: &'t str,
    norm: &path::Normalised<'_>,
    client: &Client<'_>,
    ip: IpAddr,
) -> Access<'t> {
    if norm
        .min_depth
        .is_some_and(|d| d < path::depth(export.path()))
    {
        return Access::Refused(MountStat::Acces);
    }
    match export.check_client(ip, client.host) {
        ClientCheck::Allowed(options) => {
            if options.secure && client.addr.port() >= rpc::IPPORT_RESERVED {
                Access::Refused(MountStat::Acces)
            } else {
                Access::Granted {
                    export,
                    subpath,
                    options,
                }
            }
        }
        ClientCheck::Denied => Access::Refused(MountStat::Acces),
        // Asked with a name already: the table cannot decide, so the client is not allowed.
        ClientCheck::NeedName if client.host.is_some() => Access::Refused(MountStat::Acces),
        ClientCheck::NeedName => Access::NeedName,
    }
}

fn path_status(err: PathError) -> MountStat {
    match err {
        PathError::AboveRoot => MountStat::Acces,
        PathError::Relative | PathError::Nul | PathError::NotUtf8 => MountStat::NoEnt,
        PathError::TooLong => MountStat::NameTooLong,
    }
}

fn mnt(
    call: &Call<'_>,
    client: &Client<'_>,
    ip: IpAddr,
    ctx: &Context<'_>,
    out: &mut [u8],
) -> Outcome {
    let Some(raw) = dirpath(call.args) else {
        return accepted(out, call.xid, &AcceptStat::GarbageArgs);
    };
    let v3 = call.vers == 3;
    let mut buf = NormBuf::new();
    // The MNT of an export itself (byte-exact, hence already normal) skips normalisation
    // and the prefix walk; the general path gives the same answer, only slower.
    let (norm, access) = match ctx.exports.lookup_exact(raw) {
        Some(export) => {
            let norm = path::Normalised {
                path: export.path(),
                min_depth: None,
            };
            let access = authorise_match(export, "", &norm, client, ip);
            (norm, access)
        }
        None => match path::normalise(raw, &mut buf) {
            Ok(norm) => {
                let access = authorise(&norm, client, ip, ctx.exports);
                (norm, access)
            }
            Err(e) => return mnt_status(out, call.xid, path_status(e)),
        },
    };
    let (export, subpath, options) = match access {
        Access::Granted {
            export,
            subpath,
            options,
        } => (export, subpath, options),
        Access::Refused(stat) => return mnt_status(out, call.xid, stat),
        Access::NeedName => return Outcome::NeedName,
    };
    let learned = ctx
        .upstream
        .filter(|_| *export.handle_source() != HandleSource::Explicit);
    let handle = match learned {
        Some(gateway) => match learned_answer(&gateway, norm.path, v3) {
            Some(MntAnswer::Handle(h)) => h,
            // Upstream's own refusal, passed on as it was given.
            Some(MntAnswer::Status(stat)) => {
                return success(out, call.xid, |w| w.put_u32(stat).map(|()| false))
            }
            None => return Outcome::NeedUpstream,
        },
        None if subpath.is_empty() => *export.handle(),
        None => match export.subdir_handle(subpath) {
            Some(h) => h,
            None => return mnt_status(out, call.xid, MountStat::NoEnt),
        },
    };
    let Some(bytes) = results::handle_bytes(&handle) else {
        let stat = if v3 {
            MountStat::ServerFault
        } else {
            MountStat::Io
        };
        return mnt_status(out, call.xid, stat);
    };
    if !v3 && bytes.len() > FHSIZE {
        return mnt_status(out, call.xid, MountStat::Acces);
    }
    let outcome = success(out, call.xid, |w| {
        if v3 {
            results::put_mountres3_ok(w, bytes, &options.flavors)?;
        } else {
            FhStatus::Ok(bytes).emit(w)?;
        }
        Ok(false)
    });
    // Only a mount the client hears about goes on the list.
    if matches!(outcome, Outcome::Reply { .. }) {
        ctx.mounts.mnt(ip, norm.path);
    }
    outcome
}

/// The answer for `path` in gateway mode; None when it must be learned first.
fn learned_answer(gateway: &Gateway<'_>, path: &str, v3: bool) -> Option<MntAnswer> {
    let unlearned = if v3 { UNLEARNED_V3 } else { UNLEARNED_V1 };
    match gateway.handles.get(path) {
        Some(l) if v3 => Some(l.v3),
        // Upstream does not serve v1: no v1 handle we could know.
        Some(l) => Some(l.v1.unwrap_or(MntAnswer::Status(MountStat::Acces as u32))),
        None if gateway.waited => Some(MntAnswer::Status(unlearned as u32)),
        None => None,
    }
}

fn mnt_status(out: &mut [u8], xid: u32, stat: MountStat) -> Outcome {
    success(out, xid, |w| w.put_u32(stat as u32).map(|()| false))
}

fn export(
    call: &Call<'_>,
    client: &Client<'_>,
    ip: IpAddr,
    ctx: &Context<'_>,
    out: &mut [u8],
) -> Outcome {
    if !ctx.policy.filter_exports_by_client {
        return success(out, call.xid, |w| results::put_export_list(w, ctx.exports));
    }
    let mut need_name = false;
    let outcome = success(out, call.xid, |w| {
        match results::put_filtered_exports(w, ctx.exports, ip, client.host)? {
            Filtered::Written(truncated) => Ok(truncated),
            Filtered::NeedName => {
                need_name = true;
                Ok(false)
            }
        }
    });
    if need_name {
        Outcome::NeedName
    } else {
        outcome
    }
}

fn pathconf(
    call: &Call<'_>,
    client: &Client<'_>,
    ip: IpAddr,
    ctx: &Context<'_>,
    out: &mut [u8],
) -> Outcome {
    let Some(raw) = dirpath(call.args) else {
        return accepted(out, call.xid, &AcceptStat::GarbageArgs);
    };
    let mut buf = NormBuf::new();
    let values = match path::normalise(raw, &mut buf) {
        Ok(norm) => match authorise(&norm, client, ip, ctx.exports) {
            Access::Granted { .. } => PathConf::EXPORT,
            Access::Refused(_) => PathConf::REFUSED,
            Access::NeedName => return Outcome::NeedName,
        },
        Err(_) => PathConf::REFUSED,
    };
    success(out, call.xid, |w| values.emit(w).map(|()| false))
}

/// The part of `out` a list reply may fill: all of it, or the anti-amplification budget
/// (see [`ListBudget`]). Asked for list procedures only, so the trusted-network scan stays
/// off the NULL and MNT path.
fn list_out<'o>(request: &[u8], ip: IpAddr, ctx: &Context<'_>, out: &'o mut [u8]) -> &'o mut [u8] {
    let room = ctx
        .policy
        .list_budget
        .as_ref()
        .and_then(|b| b.limit(request.len(), ip))
        .map_or(out.len(), |limit| limit.min(out.len()));
    &mut out[..room]
}

/// Encode SUCCESS + results; `body` returns whether a list was truncated.
fn success(
    out: &mut [u8],
    xid: u32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<bool, XdrError>,
) -> Outcome {
    let mut truncated = false;
    let res = rpc::encode_success(out, xid, |w| {
        truncated = body(w)?;
        Ok(())
    });
    match res {
        Ok(len) => Outcome::Reply { len, truncated },
        Err(XdrError::Overflow) => Outcome::Drop(DropReason::NoRoom),
        // Any other encoder error is a bug of ours (a value the protocol cannot carry).
        Err(_) => accepted(out, xid, &AcceptStat::SystemErr),
    }
}

fn accepted(out: &mut [u8], xid: u32, stat: &AcceptStat) -> Outcome {
    match rpc::encode_accepted(out, xid, stat) {
        Ok(len) => Outcome::Reply {
            len,
            truncated: false,
        },
        Err(_) => Outcome::Drop(DropReason::NoRoom),
    }
}

fn denied(out: &mut [u8], xid: u32, stat: &RejectStat) -> Outcome {
    match rpc::encode_denied(out, xid, stat) {
        Ok(len) => Outcome::Reply {
            len,
            truncated: false,
        },
        Err(_) => Outcome::Drop(DropReason::NoRoom),
    }
}

//! ONC RPC (RFC 5531) call builder and reply parser, plus MOUNT result decoders.
//!
//! Hand-written on top of [`crate::xdr`], independent of the daemon's codec (mount-proto)
//! on purpose: the end-to-end suite checks the daemon with a codec that does not share the
//! daemon's bugs, so a layout both got wrong the same way cannot pass unnoticed.

use crate::xdr::{XdrReader, XdrWriter};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicU32, Ordering};

/// MOUNT program number.
pub const MOUNT_PROG: u32 = 100005;
/// Procedure numbers of MOUNT.
pub mod procs {
    /// NULL
    pub const NULL: u32 = 0;
    /// MNT
    pub const MNT: u32 = 1;
    /// DUMP
    pub const DUMP: u32 = 2;
    /// UMNT
    pub const UMNT: u32 = 3;
    /// UMNTALL
    pub const UMNTALL: u32 = 4;
    /// EXPORT
    pub const EXPORT: u32 = 5;
    /// EXPORTALL (v1/v2)
    pub const EXPORTALL: u32 = 6;
    /// PATHCONF (v2)
    pub const PATHCONF: u32 = 7;
}

/// The dirpath bound (`string<1024>`).
pub const XDR_MAX_PATH: usize = 1024;

/// Auth flavors used by the tests.
pub const AUTH_NONE: u32 = 0;
/// AUTH_SYS flavor.
pub const AUTH_SYS: u32 = 1;

static NEXT_XID: AtomicU32 = AtomicU32::new(0x5800_0001);

/// A fresh transaction id, unique within this test process.
pub fn next_xid() -> u32 {
    NEXT_XID.fetch_add(1, Ordering::Relaxed)
}

/// A credential or verifier.
#[derive(Clone, Debug)]
pub enum Auth {
    /// AUTH_NONE with an empty body.
    None,
    /// AUTH_SYS with the given fields (no validation: tests send oversized ones on purpose).
    Sys {
        /// stamp
        stamp: u32,
        /// machinename (raw bytes, any length)
        machine: Vec<u8>,
        /// uid
        uid: u32,
        /// gid
        gid: u32,
        /// auxiliary gids (any count)
        gids: Vec<u32>,
    },
    /// Any flavor with an arbitrary body.
    Raw {
        /// flavor number
        flavor: u32,
        /// opaque body (any length)
        body: Vec<u8>,
    },
}

impl Auth {
    /// A typical root AUTH_SYS credential from machine "e2e-client".
    pub fn sys_root() -> Self {
        Auth::Sys {
            stamp: 0x1234_5678,
            machine: b"e2e-client".to_vec(),
            uid: 0,
            gid: 0,
            gids: vec![0, 1, 2],
        }
    }

    fn encode(&self, w: &mut XdrWriter) {
        match self {
            Auth::None => {
                w.u32(AUTH_NONE).u32(0);
            }
            Auth::Sys {
                stamp,
                machine,
                uid,
                gid,
                gids,
            } => {
                let mut b = XdrWriter::new();
                b.u32(*stamp).opaque(machine).u32(*uid).u32(*gid);
                b.u32(gids.len() as u32);
                for g in gids {
                    b.u32(*g);
                }
                w.u32(AUTH_SYS).opaque(&b.buf);
            }
            Auth::Raw { flavor, body } => {
                w.u32(*flavor).opaque(body);
            }
        }
    }
}

/// An RPC CALL message under construction.
#[derive(Clone, Debug)]
pub struct Call {
    /// transaction id
    pub xid: u32,
    /// msg_type (0 = CALL; tests set 1 to send a non-call)
    pub msg_type: u32,
    /// RPC version (2 unless testing RPC_MISMATCH)
    pub rpcvers: u32,
    /// program
    pub prog: u32,
    /// program version
    pub vers: u32,
    /// procedure
    pub proc_: u32,
    /// credential
    pub cred: Auth,
    /// verifier
    pub verf: Auth,
    /// already-encoded arguments
    pub args: Vec<u8>,
}

impl Call {
    /// A MOUNT call with AUTH_SYS root credentials and no arguments.
    pub fn mount(vers: u32, proc_: u32) -> Self {
        Call {
            xid: next_xid(),
            msg_type: 0,
            rpcvers: 2,
            prog: MOUNT_PROG,
            vers,
            proc_,
            cred: Auth::sys_root(),
            verf: Auth::None,
            args: Vec::new(),
        }
    }

    /// A MOUNT call whose single argument is a dirpath string.
    pub fn mount_path(vers: u32, proc_: u32, path: &str) -> Self {
        let mut c = Self::mount(vers, proc_);
        let mut w = XdrWriter::new();
        w.string(path);
        c.args = w.into_bytes();
        c
    }

    /// Replaces the credential.
    pub fn with_cred(mut self, cred: Auth) -> Self {
        self.cred = cred;
        self
    }

    /// Replaces the arguments with raw bytes.
    pub fn with_args(mut self, args: Vec<u8>) -> Self {
        self.args = args;
        self
    }

    /// Encodes the whole message (no TCP record mark).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = XdrWriter::new();
        w.u32(self.xid)
            .u32(self.msg_type)
            .u32(self.rpcvers)
            .u32(self.prog)
            .u32(self.vers)
            .u32(self.proc_);
        self.cred.encode(&mut w);
        self.verf.encode(&mut w);
        w.raw(&self.args);
        w.into_bytes()
    }
}

/// accept_stat of an accepted reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptStat {
    /// SUCCESS (0); the procedure results follow.
    Success,
    /// PROG_UNAVAIL (1)
    ProgUnavail,
    /// PROG_MISMATCH (2) with the supported range.
    ProgMismatch {
        /// lowest version
        low: u32,
        /// highest version
        high: u32,
    },
    /// PROC_UNAVAIL (3)
    ProcUnavail,
    /// GARBAGE_ARGS (4)
    GarbageArgs,
    /// SYSTEM_ERR (5)
    SystemErr,
}

/// reject_stat of a denied reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// RPC_MISMATCH (0) with the supported RPC version range.
    RpcMismatch {
        /// lowest
        low: u32,
        /// highest
        high: u32,
    },
    /// AUTH_ERROR (1) with auth_stat.
    AuthError(u32),
}

/// auth_stat values.
pub mod auth_stat {
    /// AUTH_BADCRED
    pub const BADCRED: u32 = 1;
    /// AUTH_REJECTEDCRED
    pub const REJECTEDCRED: u32 = 2;
}

/// A parsed reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// transaction id
    pub xid: u32,
    /// Accepted (with status and results) or denied.
    pub body: ReplyBody,
    /// The whole raw message.
    pub raw: Vec<u8>,
}

/// The part after `xid, REPLY`.
#[derive(Clone, Debug)]
pub enum ReplyBody {
    /// MSG_ACCEPTED
    Accepted {
        /// verifier flavor
        verf_flavor: u32,
        /// verifier body
        verf_body: Vec<u8>,
        /// accept_stat
        stat: AcceptStat,
        /// bytes after the accept_stat (and after low/high for PROG_MISMATCH)
        results: Vec<u8>,
    },
    /// MSG_DENIED
    Denied(Denied),
}

impl Reply {
    /// Parses a reply message strictly: unknown discriminants and trailing bytes after a
    /// denial or a non-SUCCESS accept are errors.
    pub fn parse(raw: &[u8]) -> Result<Reply> {
        let mut r = XdrReader::new(raw);
        let xid = r.u32().context("xid")?;
        let mtype = r.u32().context("msg_type")?;
        if mtype != 1 {
            bail!("msg_type {mtype}, expected REPLY (1)");
        }
        let body = match r.u32().context("reply_stat")? {
            0 => {
                let verf_flavor = r.u32()?;
                let verf_body = r.opaque(400)?;
                let stat = match r.u32()? {
                    0 => AcceptStat::Success,
                    1 => AcceptStat::ProgUnavail,
                    2 => AcceptStat::ProgMismatch {
                        low: r.u32()?,
                        high: r.u32()?,
                    },
                    3 => AcceptStat::ProcUnavail,
                    4 => AcceptStat::GarbageArgs,
                    5 => AcceptStat::SystemErr,
                    s => bail!("unknown accept_stat {s}"),
                };
                let results = r.remaining().to_vec();
                if stat != AcceptStat::Success && !results.is_empty() {
                    bail!("{stat:?} reply carries {} trailing bytes", results.len());
                }
                ReplyBody::Accepted {
                    verf_flavor,
                    verf_body,
                    stat,
                    results,
                }
            }
            1 => {
                let d = match r.u32()? {
                    0 => Denied::RpcMismatch {
                        low: r.u32()?,
                        high: r.u32()?,
                    },
                    1 => Denied::AuthError(r.u32()?),
                    s => bail!("unknown reject_stat {s}"),
                };
                r.finish()?;
                ReplyBody::Denied(d)
            }
            s => bail!("unknown reply_stat {s}"),
        };
        Ok(Reply {
            xid,
            body,
            raw: raw.to_vec(),
        })
    }

    /// The accept_stat, panicking with the reply if it was denied.
    pub fn accept_stat(&self) -> &AcceptStat {
        match &self.body {
            ReplyBody::Accepted { stat, .. } => stat,
            ReplyBody::Denied(d) => panic!("expected an accepted reply, got denied {d:?}"),
        }
    }

    /// The results of a SUCCESS reply with an AUTH_NONE empty verifier; panics otherwise.
    pub fn success(&self) -> &[u8] {
        match &self.body {
            ReplyBody::Accepted {
                verf_flavor,
                verf_body,
                stat: AcceptStat::Success,
                results,
            } => {
                assert_eq!(*verf_flavor, AUTH_NONE, "reply verifier flavor");
                assert!(verf_body.is_empty(), "reply verifier body not empty");
                results
            }
            other => panic!("expected SUCCESS, got {other:?}"),
        }
    }

    /// The denial, panicking if accepted.
    pub fn denied(&self) -> &Denied {
        match &self.body {
            ReplyBody::Denied(d) => d,
            other => panic!("expected MSG_DENIED, got {other:?}"),
        }
    }
}

/// v1/v2 `fhstatus`: errno status, and the fixed 32-byte handle when 0.
pub fn parse_fhstatus(results: &[u8]) -> Result<(u32, Option<Vec<u8>>)> {
    let mut r = XdrReader::new(results);
    let status = r.u32()?;
    let fh = if status == 0 {
        Some(r.fixed(32)?)
    } else {
        None
    };
    r.finish()?;
    Ok((status, fh))
}

/// A decoded v3 MNT result: status and, when MNT3_OK, (handle, flavors).
pub type Mnt3 = (u32, Option<(Vec<u8>, Vec<u32>)>);

/// v3 `mountres3`: status, and (handle, flavors) when MNT3_OK.
pub fn parse_mountres3(results: &[u8]) -> Result<Mnt3> {
    let mut r = XdrReader::new(results);
    let status = r.u32()?;
    let ok = if status == 0 {
        let fh = r.opaque(64)?;
        if fh.is_empty() {
            bail!("empty fhandle3");
        }
        let n = r.u32()? as usize;
        if n > 64 {
            bail!("absurd auth flavor count {n}");
        }
        let mut flavors = Vec::with_capacity(n);
        for _ in 0..n {
            flavors.push(r.u32()?);
        }
        Some((fh, flavors))
    } else {
        None
    };
    r.finish()?;
    Ok((status, ok))
}

/// EXPORT / EXPORTALL `exports`: list of (dir, groups).
pub fn parse_exports(results: &[u8]) -> Result<Vec<(String, Vec<String>)>> {
    let mut r = XdrReader::new(results);
    let mut out = Vec::new();
    while r.bool()? {
        let dir = r.string(1024)?;
        let mut groups = Vec::new();
        while r.bool()? {
            groups.push(r.string(255)?);
        }
        out.push((dir, groups));
    }
    r.finish()?;
    Ok(out)
}

/// DUMP `mountlist`: list of (hostname, directory).
pub fn parse_mountlist(results: &[u8]) -> Result<Vec<(String, String)>> {
    let mut r = XdrReader::new(results);
    let mut out = Vec::new();
    while r.bool()? {
        let host = r.string(255)?;
        let dir = r.string(1024)?;
        out.push((host, dir));
    }
    r.finish()?;
    Ok(out)
}

/// The synthetic handle the contract defines for an export path without `fh=`:
/// b"XMD1" + first 28 bytes of SHA-256("xdp-mountd:" + path).
pub fn synthetic_handle(path: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("xdp-mountd:{path}").as_bytes());
    let mut v = b"XMD1".to_vec();
    v.extend_from_slice(&d[..28]);
    v
}

/// Decodes a hex string (test fixtures only).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

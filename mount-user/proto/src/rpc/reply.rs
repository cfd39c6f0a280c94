//! RPC replies, each part's decoder beside its encoder: [`Reply`] (`parse`/`emit`), with
//! [`AcceptStat`] and [`RejectStat`] (`parse`/`emit` each), and the server's shorthands
//! [`emit_accepted`]/[`emit_denied`] (AUTH_NONE verifier). Decoded by the rpcbind, portmapper
//! and upstream clients, the load generator and the tests.
//!
//! Accepted: `xid, REPLY(1), MSG_ACCEPTED(0), verf(AUTH_NONE, 0), accept_stat, ...`.
//! Denied: `xid, REPLY(1), MSG_DENIED(1), RPC_MISMATCH(0), low, high` or
//! `xid, REPLY(1), MSG_DENIED(1), AUTH_ERROR(1), auth_stat`.
use super::{AuthStat, OpaqueAuth, MAX_AUTH_BYTES, MSG_REPLY};
use crate::xdr::{Reader, Writer, XdrError};

/// `reply_stat` MSG_ACCEPTED.
pub const MSG_ACCEPTED: u32 = 0;
/// `reply_stat` MSG_DENIED.
pub const MSG_DENIED: u32 = 1;
/// `reject_stat` RPC_MISMATCH.
pub const RPC_MISMATCH: u32 = 0;
/// `reject_stat` AUTH_ERROR.
pub const AUTH_ERROR: u32 = 1;

/// `accept_stat` of an accepted reply, with the data some of them carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    /// 0: results follow.
    Success,
    /// 1: program not served here.
    ProgUnavail,
    /// 2: version not served; `low..=high` are the versions that are.
    ProgMismatch {
        /// Lowest version served.
        low: u32,
        /// Highest version served.
        high: u32,
    },
    /// 3: procedure not in this version.
    ProcUnavail,
    /// 4: arguments do not decode.
    GarbageArgs,
    /// 5: server-side failure (e.g. memory).
    SystemErr,
}

impl AcceptStat {
    /// The wire value of `accept_stat`.
    pub fn code(&self) -> u32 {
        match self {
            AcceptStat::Success => 0,
            AcceptStat::ProgUnavail => 1,
            AcceptStat::ProgMismatch { .. } => 2,
            AcceptStat::ProcUnavail => 3,
            AcceptStat::GarbageArgs => 4,
            AcceptStat::SystemErr => 5,
        }
    }

    /// Decode `accept_stat` and, for PROG_MISMATCH, the range served.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(match r.u32()? {
            0 => AcceptStat::Success,
            1 => AcceptStat::ProgUnavail,
            2 => AcceptStat::ProgMismatch {
                low: r.u32()?,
                high: r.u32()?,
            },
            3 => AcceptStat::ProcUnavail,
            4 => AcceptStat::GarbageArgs,
            5 => AcceptStat::SystemErr,
            v => return Err(XdrError::BadValue(v)),
        })
    }

    /// Encode `accept_stat` and, for PROG_MISMATCH, the range served.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.put_u32(self.code())?;
        if let AcceptStat::ProgMismatch { low, high } = *self {
            w.put_u32(low)?;
            w.put_u32(high)?;
        }
        Ok(())
    }
}

/// Why a call was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectStat {
    /// RPC version not supported; `low..=high` are.
    RpcMismatch {
        /// Lowest RPC version supported.
        low: u32,
        /// Highest RPC version supported.
        high: u32,
    },
    /// Authentication failed.
    AuthError(AuthStat),
}

impl RejectStat {
    /// Decode `reject_stat` and what follows it.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        Ok(match r.u32()? {
            RPC_MISMATCH => RejectStat::RpcMismatch {
                low: r.u32()?,
                high: r.u32()?,
            },
            AUTH_ERROR => {
                let v = r.u32()?;
                RejectStat::AuthError(AuthStat::from_code(v).ok_or(XdrError::BadValue(v))?)
            }
            v => return Err(XdrError::BadValue(v)),
        })
    }

    /// Encode `reject_stat` and what follows it.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        match *self {
            RejectStat::RpcMismatch { low, high } => {
                for v in [RPC_MISMATCH, low, high] {
                    w.put_u32(v)?;
                }
                Ok(())
            }
            RejectStat::AuthError(a) => {
                w.put_u32(AUTH_ERROR)?;
                w.put_u32(a.code())
            }
        }
    }
}

/// Write an accepted reply header up to and including `accept_stat` (and the mismatch range);
/// for SUCCESS the results follow. Writes nothing on overflow.
pub fn emit_accepted(w: &mut Writer<'_>, xid: u32, stat: &AcceptStat) -> Result<(), XdrError> {
    w.all_or_nothing(|w| {
        for v in [xid, MSG_REPLY, MSG_ACCEPTED] {
            w.put_u32(v)?;
        }
        OpaqueAuth::NONE.emit(w)?;
        stat.emit(w)
    })
}

/// Write a complete denied reply. Writes nothing on overflow.
pub fn emit_denied(w: &mut Writer<'_>, xid: u32, stat: &RejectStat) -> Result<(), XdrError> {
    w.all_or_nothing(|w| {
        for v in [xid, MSG_REPLY, MSG_DENIED] {
            w.put_u32(v)?;
        }
        stat.emit(w)
    })
}

/// Encode an accepted reply without results into `out`; returns its length.
pub fn encode_accepted(out: &mut [u8], xid: u32, stat: &AcceptStat) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    emit_accepted(&mut w, xid, stat)?;
    Ok(w.position())
}

/// Encode a denied reply into `out`; returns its length.
pub fn encode_denied(out: &mut [u8], xid: u32, stat: &RejectStat) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    emit_denied(&mut w, xid, stat)?;
    Ok(w.position())
}

/// Encode a SUCCESS reply whose results `body` writes after the header; returns its length.
pub fn encode_success(
    out: &mut [u8],
    xid: u32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), XdrError>,
) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    emit_accepted(&mut w, xid, &AcceptStat::Success)?;
    body(&mut w)?;
    Ok(w.position())
}

/// A decoded reply message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Transaction id of the call answered.
    pub xid: u32,
    /// Accepted or denied.
    pub body: ReplyBody<'a>,
}

/// The part of a reply after `xid` and `msg_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBody<'a> {
    /// MSG_ACCEPTED.
    Accepted {
        /// The server's verifier.
        verf: OpaqueAuth<'a>,
        /// The accept status.
        stat: AcceptStat,
        /// The procedure's results (SUCCESS) or trailing bytes (otherwise).
        results: &'a [u8],
    },
    /// MSG_DENIED.
    Denied(RejectStat),
}

/// Errors of decoding a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The message is not a reply.
    #[error("RPC message type {0} is not REPLY")]
    NotReply(u32),
    /// Malformed, truncated, or an enum value out of range.
    #[error("malformed RPC reply: {0}")]
    Xdr(#[from] XdrError),
}

impl<'a> Reply<'a> {
    /// Decode a reply message.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ReplyError> {
        let mut r = Reader::new(buf);
        let xid = r.u32()?;
        let mtype = r.u32()?;
        if mtype != MSG_REPLY {
            return Err(ReplyError::NotReply(mtype));
        }
        let body = match r.u32()? {
            MSG_ACCEPTED => {
                let flavor = r.u32()?;
                let vbody = r.opaque(MAX_AUTH_BYTES)?;
                let stat = AcceptStat::parse(&mut r)?;
                ReplyBody::Accepted {
                    verf: OpaqueAuth {
                        flavor,
                        body: vbody,
                    },
                    stat,
                    results: r.remaining(),
                }
            }
            MSG_DENIED => ReplyBody::Denied(RejectStat::parse(&mut r)?),
            v => return Err(XdrError::BadValue(v).into()),
        };
        Ok(Reply { xid, body })
    }

    /// Encode the whole reply (an accepted one's `results` as raw bytes), all or nothing.
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.all_or_nothing(|w| {
            w.put_u32(self.xid)?;
            w.put_u32(MSG_REPLY)?;
            match self.body {
                ReplyBody::Accepted {
                    verf,
                    stat,
                    results,
                } => {
                    w.put_u32(MSG_ACCEPTED)?;
                    verf.emit(w)?;
                    stat.emit(w)?;
                    w.put_raw(results)
                }
                ReplyBody::Denied(stat) => {
                    w.put_u32(MSG_DENIED)?;
                    stat.emit(w)
                }
            }
        })
    }
}

//! ONC RPC version 2 (RFC 5531): a zero-copy view of a CALL, credentials, the reply
//! encoders/decoders, and the record marking of stream transports ([`record`]).
//!
//! Modelled on smoltcp's `wire` module: [`Call::parse`] is the checked constructor of a view
//! that borrows from the datagram; [`Call::emit`]/[`emit_call`] encode. The layer only checks
//! what the RPC header itself defines; which credential flavors a server takes is decided by
//! [`auth::authenticate`], and everything about programs is the caller's business.
//!
//! How a broken header is classified (RFC 5531 leaves the no-reply cases to the server; these
//! are the choices, each tested):
//! - fewer than 8 bytes (no room for `xid` + `msg_type`), `msg_type != CALL`, or a header that
//!   ends before the verifier's body does: no reply ([`CallError::Truncated`],
//!   [`CallError::NotCall`]). A header we cannot read has no procedure to fail, so
//!   GARBAGE_ARGS (which is about *arguments*) would be wrong, and a truncated UDP datagram is
//!   better retried by the client than answered.
//! - `rpcvers != 2`: MSG_DENIED / RPC_MISMATCH (2, 2), checked as soon as the word is there,
//!   before anything after it: another RPC version may lay out the rest differently.
//! - credential body declared longer than 400 bytes: AUTH_ERROR / AUTH_BADCRED.
//! - verifier body declared longer than 400 bytes: AUTH_ERROR / AUTH_BADVERF (the verifier is
//!   malformed; RFC 5531's auth_stat for "bad verifier").
pub mod auth;
pub mod pmap;
pub mod record;
pub mod reply;

pub use auth::{authenticate, AuthStat, AuthSys, Credential};
pub use reply::{
    emit_accepted, emit_denied, encode_accepted, encode_denied, encode_success, AcceptStat,
    RejectStat, Reply, ReplyBody, ReplyError,
};

use crate::xdr::{Reader, Writer, XdrError};

/// The only RPC protocol version (RFC 5531).
pub const RPC_VERSION: u32 = 2;
/// `msg_type` of a call.
pub const MSG_CALL: u32 = 0;
/// `msg_type` of a reply.
pub const MSG_REPLY: u32 = 1;
/// Maximum body length of a credential or verifier (`opaque body<400>`).
pub const MAX_AUTH_BYTES: usize = 400;
/// Source ports below this are reserved (privileged, BSD's `IPPORT_RESERVED`): what an
/// AUTH_SYS caller's port proves, what the `secure` export option asks of MNT, and where
/// bindresvport looks for a port.
pub const IPPORT_RESERVED: u16 = 1024;

/// AUTH_NONE (also called AUTH_NULL).
pub const AUTH_NONE: u32 = 0;
/// AUTH_SYS (also called AUTH_UNIX).
pub const AUTH_SYS: u32 = 1;
/// AUTH_SHORT: a server-issued shorthand for AUTH_SYS; we never issue one.
pub const AUTH_SHORT: u32 = 2;
/// AUTH_DH (AUTH_DES).
pub const AUTH_DH: u32 = 3;
/// RPCSEC_GSS (RFC 2203).
pub const RPCSEC_GSS: u32 = 6;
/// The RPCSEC_GSS Kerberos v5 pseudo-flavor (RFC 2623), as `sec=krb5` and `mountres3` name it.
pub const AUTH_KRB5: u32 = 390003;
/// Kerberos v5 with integrity (`sec=krb5i`).
pub const AUTH_KRB5I: u32 = 390004;
/// Kerberos v5 with privacy (`sec=krb5p`).
pub const AUTH_KRB5P: u32 = 390005;

/// The transaction id of an RPC message, call or reply: its first word. None when `msg` is
/// shorter than that.
pub fn xid(msg: &[u8]) -> Option<u32> {
    msg.first_chunk::<4>().map(|b| u32::from_be_bytes(*b))
}

/// `opaque_auth`: a flavor and a body of at most 400 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpaqueAuth<'a> {
    /// The auth flavor number.
    pub flavor: u32,
    /// The flavor-specific body.
    pub body: &'a [u8],
}

impl OpaqueAuth<'static> {
    /// AUTH_NONE with an empty body: the verifier of every reply we send.
    pub const NONE: OpaqueAuth<'static> = OpaqueAuth {
        flavor: AUTH_NONE,
        body: &[],
    };
}

impl<'a> OpaqueAuth<'a> {
    /// Encode flavor and body.
    // Inline hint: every reply's verifier goes through here, and whether thin LTO inlined it
    // across codegen units flipped with unrelated changes (+~80 instructions per reply).
    #[inline]
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        let m = w.mark();
        let res = w
            .put_u32(self.flavor)
            .and_then(|()| w.put_opaque(self.body, MAX_AUTH_BYTES));
        if res.is_err() {
            w.rewind(m);
        }
        res
    }
}

/// Why a datagram is not a call we can answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Too short for `xid` + `msg_type`, or the header ends early: no reply.
    #[error("truncated RPC header")]
    Truncated,
    /// `msg_type` is not CALL (a reply, or garbage): no reply.
    #[error("RPC message type {msg_type} is not CALL")]
    NotCall {
        /// The message type found.
        msg_type: u32,
    },
    /// `rpcvers != 2`: reply MSG_DENIED / RPC_MISMATCH.
    #[error("RPC version {rpcvers} is not 2")]
    RpcMismatch {
        /// Transaction id to answer.
        xid: u32,
        /// The version the caller spoke.
        rpcvers: u32,
    },
    /// Credential body over 400 bytes: reply AUTH_ERROR / AUTH_BADCRED.
    #[error("credential body of {len} bytes")]
    CredTooLong {
        /// Transaction id to answer.
        xid: u32,
        /// The declared length.
        len: u32,
    },
    /// Verifier body over 400 bytes: reply AUTH_ERROR / AUTH_BADVERF.
    #[error("verifier body of {len} bytes")]
    VerfTooLong {
        /// Transaction id to answer.
        xid: u32,
        /// The declared length.
        len: u32,
    },
}

impl CallError {
    /// The denial to send, or None when the datagram gets no reply.
    pub fn reply(&self) -> Option<(u32, RejectStat)> {
        match *self {
            CallError::Truncated | CallError::NotCall { .. } => None,
            CallError::RpcMismatch { xid, .. } => Some((
                xid,
                RejectStat::RpcMismatch {
                    low: RPC_VERSION,
                    high: RPC_VERSION,
                },
            )),
            CallError::CredTooLong { xid, .. } => {
                Some((xid, RejectStat::AuthError(AuthStat::BadCred)))
            }
            CallError::VerfTooLong { xid, .. } => {
                Some((xid, RejectStat::AuthError(AuthStat::BadVerf)))
            }
        }
    }
}

/// A zero-copy view of an RPC CALL message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Procedure number.
    pub proc_: u32,
    /// Credential.
    pub cred: OpaqueAuth<'a>,
    /// Verifier.
    pub verf: OpaqueAuth<'a>,
    /// The procedure's arguments: everything after the header.
    pub args: &'a [u8],
}

/// Read an `opaque_auth`, telling "declared too long" apart from "input ends".
fn read_auth<'a>(r: &mut Reader<'a>) -> Result<OpaqueAuth<'a>, (Option<u32>, XdrError)> {
    let flavor = r.u32().map_err(|e| (None, e))?;
    let len = r.u32().map_err(|e| (None, e))?;
    if len as usize > MAX_AUTH_BYTES {
        return Err((
            Some(len),
            XdrError::TooLong {
                len: len as usize,
                max: MAX_AUTH_BYTES,
            },
        ));
    }
    let body = r.opaque_fixed(len as usize).map_err(|e| (None, e))?;
    Ok(OpaqueAuth { flavor, body })
}

impl<'a> Call<'a> {
    /// Parse and check a CALL header; see the module docs for how errors are classified.
    pub fn parse(buf: &'a [u8]) -> Result<Self, CallError> {
        let mut r = Reader::new(buf);
        let xid = r.u32().map_err(|_| CallError::Truncated)?;
        let msg_type = r.u32().map_err(|_| CallError::Truncated)?;
        if msg_type != MSG_CALL {
            return Err(CallError::NotCall { msg_type });
        }
        let rpcvers = r.u32().map_err(|_| CallError::Truncated)?;
        if rpcvers != RPC_VERSION {
            return Err(CallError::RpcMismatch { xid, rpcvers });
        }
        let prog = r.u32().map_err(|_| CallError::Truncated)?;
        let vers = r.u32().map_err(|_| CallError::Truncated)?;
        let proc_ = r.u32().map_err(|_| CallError::Truncated)?;
        let cred = read_auth(&mut r).map_err(|e| match e {
            (Some(len), _) => CallError::CredTooLong { xid, len },
            (None, _) => CallError::Truncated,
        })?;
        let verf = read_auth(&mut r).map_err(|e| match e {
            (Some(len), _) => CallError::VerfTooLong { xid, len },
            (None, _) => CallError::Truncated,
        })?;
        Ok(Call {
            xid,
            prog,
            vers,
            proc_,
            cred,
            verf,
            args: r.remaining(),
        })
    }

    /// Encode the whole call (header and `args` as raw bytes).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        let m = w.mark();
        let res = (|| {
            for v in [
                self.xid,
                MSG_CALL,
                RPC_VERSION,
                self.prog,
                self.vers,
                self.proc_,
            ] {
                w.put_u32(v)?;
            }
            self.cred.emit(w)?;
            self.verf.emit(w)?;
            w.put_raw(self.args)
        })();
        if res.is_err() {
            w.rewind(m);
        }
        res
    }
}

/// Encode a call header with credential `cred` and an AUTH_NONE verifier; the caller appends
/// the arguments. Used by the rpcbind client and the tests.
pub fn emit_call(
    w: &mut Writer<'_>,
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: &Credential<'_>,
) -> Result<(), XdrError> {
    let m = w.mark();
    let res = (|| {
        for v in [xid, MSG_CALL, RPC_VERSION, prog, vers, proc_] {
            w.put_u32(v)?;
        }
        cred.emit(w)?;
        OpaqueAuth::NONE.emit(w)
    })();
    if res.is_err() {
        w.rewind(m);
    }
    res
}

/// Encode a complete call (header + `args`) into `out`; returns its length.
pub fn encode_call(
    out: &mut [u8],
    xid: u32,
    prog: u32,
    vers: u32,
    proc_: u32,
    cred: &Credential<'_>,
    args: &[u8],
) -> Result<usize, XdrError> {
    let mut w = Writer::new(out);
    emit_call(&mut w, xid, prog, vers, proc_, cred)?;
    w.put_raw(args)?;
    Ok(w.position())
}

#[cfg(test)]
mod tests;

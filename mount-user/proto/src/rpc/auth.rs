//! Credentials: AUTH_NONE and AUTH_SYS (RFC 5531 appendix A), and the server's flavor policy.
//!
//! Policy (matching libtirpc's `_authenticate`, which docs/protocol.md follows):
//! - AUTH_NONE (0): accepted; its body is not inspected (it is normally empty).
//! - AUTH_SYS (1): the body must decode as `stamp, machinename string<255>, uid, gid,
//!   gids<16>`, else AUTH_BADCRED. Bytes after the last gid inside the body are tolerated
//!   (libtirpc only checks that the fields fit the body).
//! - anything else (AUTH_SHORT, AUTH_DH, RPCSEC_GSS, unknown numbers): AUTH_REJECTEDCRED,
//!   the auth_stat that tells a client "this kind of credential is not taken here".
//!
//! The verifier of an AUTH_NONE/AUTH_SYS call "should" be AUTH_NONE (RFC 5531 §A); like
//! libtirpc we do not inspect it beyond its 400-byte limit (checked by `Call::parse`).
use super::{OpaqueAuth, AUTH_NONE, AUTH_SYS, MAX_AUTH_BYTES};
use crate::xdr::{Reader, Writer, XdrError};

/// Longest AUTH_SYS machine name.
pub const MAX_MACHINE_NAME: usize = 255;
/// Most supplementary gids in AUTH_SYS.
pub const MAX_GIDS: usize = 16;

/// `auth_stat` of an AUTH_ERROR rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AuthStat {
    /// Success (never sent in a rejection).
    Ok = 0,
    /// Bad credential (seal broken, malformed).
    BadCred = 1,
    /// Client must begin a new session / flavor not accepted.
    RejectedCred = 2,
    /// Bad verifier.
    BadVerf = 3,
    /// Verifier expired or replayed.
    RejectedVerf = 4,
    /// Rejected for security reasons.
    TooWeak = 5,
    /// Bogus response verifier (client side).
    InvalidResp = 6,
    /// Reason unknown.
    Failed = 7,
}

impl AuthStat {
    /// The wire value.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decode a wire value.
    pub fn from_code(v: u32) -> Option<Self> {
        Some(match v {
            0 => AuthStat::Ok,
            1 => AuthStat::BadCred,
            2 => AuthStat::RejectedCred,
            3 => AuthStat::BadVerf,
            4 => AuthStat::RejectedVerf,
            5 => AuthStat::TooWeak,
            6 => AuthStat::InvalidResp,
            7 => AuthStat::Failed,
            _ => return None,
        })
    }
}

/// A decoded AUTH_SYS credential; the machine name borrows from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSys<'a> {
    /// Arbitrary id the client chose.
    pub stamp: u32,
    /// The caller's host name (raw bytes, at most 255).
    pub machine_name: &'a [u8],
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    gids: [u32; MAX_GIDS],
    ngids: u8,
}

impl<'a> AuthSys<'a> {
    /// Build a credential; None when the name is over 255 bytes or there are over 16 gids.
    pub fn new(
        stamp: u32,
        machine_name: &'a [u8],
        uid: u32,
        gid: u32,
        gids: &[u32],
    ) -> Option<Self> {
        if machine_name.len() > MAX_MACHINE_NAME || gids.len() > MAX_GIDS {
            return None;
        }
        let mut all = [0; MAX_GIDS];
        all[..gids.len()].copy_from_slice(gids);
        Some(Self {
            stamp,
            machine_name,
            uid,
            gid,
            gids: all,
            ngids: gids.len() as u8,
        })
    }

    /// Supplementary group ids.
    pub fn gids(&self) -> &[u32] {
        &self.gids[..self.ngids as usize]
    }

    /// Decode an AUTH_SYS body; any violation is AUTH_BADCRED.
    pub fn parse(body: &'a [u8]) -> Result<Self, AuthStat> {
        let mut r = Reader::new(body);
        let bad = |_| AuthStat::BadCred;
        let stamp = r.u32().map_err(bad)?;
        let machine_name = r.string(MAX_MACHINE_NAME).map_err(bad)?;
        let uid = r.u32().map_err(bad)?;
        let gid = r.u32().map_err(bad)?;
        let n = r.u32().map_err(bad)? as usize;
        if n > MAX_GIDS {
            return Err(AuthStat::BadCred);
        }
        let mut gids = [0; MAX_GIDS];
        for g in gids.iter_mut().take(n) {
            *g = r.u32().map_err(bad)?;
        }
        Ok(Self {
            stamp,
            machine_name,
            uid,
            gid,
            gids,
            ngids: n as u8,
        })
    }

    /// Encode the body (without flavor and length).
    pub fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        w.put_u32(self.stamp)?;
        w.put_string(self.machine_name, MAX_MACHINE_NAME)?;
        w.put_u32(self.uid)?;
        w.put_u32(self.gid)?;
        w.put_u32(self.ngids as u32)?;
        for &g in self.gids() {
            w.put_u32(g)?;
        }
        Ok(())
    }
}

/// A credential the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// AUTH_NONE.
    None,
    /// AUTH_SYS.
    Sys(AuthSys<'a>),
}

impl Credential<'_> {
    /// The flavor number.
    pub fn flavor(&self) -> u32 {
        match self {
            Credential::None => AUTH_NONE,
            Credential::Sys(_) => AUTH_SYS,
        }
    }

    /// Encode as an `opaque_auth` (flavor, length, body).
    pub fn emit(&self, w: &mut Writer<'_>) -> Result<(), XdrError> {
        match self {
            Credential::None => OpaqueAuth::NONE.emit(w),
            Credential::Sys(sys) => {
                // An AUTH_SYS body is at most 4+4+256+4+4+4+64 = 340 bytes.
                let mut body = [0u8; MAX_AUTH_BYTES];
                let mut bw = Writer::new(&mut body);
                sys.emit_body(&mut bw)?;
                let len = bw.position();
                OpaqueAuth {
                    flavor: AUTH_SYS,
                    body: &body[..len],
                }
                .emit(w)
            }
        }
    }
}

/// Decide whether a call's credential is acceptable (see the module docs for the policy).
pub fn authenticate<'a>(cred: &OpaqueAuth<'a>) -> Result<Credential<'a>, AuthStat> {
    match cred.flavor {
        AUTH_NONE => Ok(Credential::None),
        AUTH_SYS => AuthSys::parse(cred.body).map(Credential::Sys),
        _ => Err(AuthStat::RejectedCred),
    }
}

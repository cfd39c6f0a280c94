//! In-program answers (XDP_TX): what the program answers itself, and the layouts it shares
//! with user space for that. See docs/xdp-answers.md for the design.
//!
//! The reply bytes are never written by the program's own encoder: user space encodes
//! each reply form with mount-proto's encoder (xid 0) into a [`ReplyTemplate`], and the
//! program copies it, patches the xid and writes the headers. The RPC constants below are
//! the ones the program checks a call against; mount-proto has its own definitions (its
//! tests check that the two agree).

/// [`crate::Config::answers`] bit: answer MOUNT NULL calls over IPv4 in the program.
pub const ANSWER_NULL_V4: u8 = 1;
/// [`crate::Config::answers`] bit: answer MOUNT NULL calls over IPv6 in the program.
pub const ANSWER_NULL_V6: u8 = 2;

/// [`crate::Config::answers`] bit: answer MNT of an export root over IPv4 when the
/// (client, path) pair is in [`SEEN_MAP_NAME`] for the current generation.
pub const ANSWER_MNT_V4: u8 = 4;
/// [`crate::Config::answers`] bit: the same over IPv6.
pub const ANSWER_MNT_V6: u8 = 8;

/// Name of the `BPF_MAP_TYPE_ARRAY` of [`ReplyTemplate`]s, indexed by `TEMPLATE_*`.
pub const TEMPLATES_MAP_NAME: &str = "MOUNT_TEMPLATES";
/// Index of the NULL reply (the same bytes for MOUNT v1, v2 and v3).
pub const TEMPLATE_NULL: u32 = 0;
/// First index of the MNT reply templates (one per export root, version group and flavor
/// list; user space assigns them).
pub const TEMPLATE_MNT_FIRST: u32 = 1;
/// Entries of [`TEMPLATES_MAP_NAME`].
pub const TEMPLATE_ENTRIES: u32 = 4096;

/// Name of the `BPF_MAP_TYPE_LRU_HASH` of [`SeenKey`] -> [`SeenEntry`]: the (client, export
/// root) pairs user space has itself answered, allowed and recorded in the mount list.
pub const SEEN_MAP_NAME: &str = "MOUNT_SEEN";
/// Entries of [`SEEN_MAP_NAME`] (an evicted pair only sends its next MNT to user space).
pub const SEEN_ENTRIES: u32 = 65_536;
/// Longest export root path the program matches (longer ones always go to user space).
pub const MNT_PATH_MAX: usize = 128;
/// The MNT procedure.
pub const PROC_MNT: u32 = 1;
/// [`SeenEntry::flags`] bit: the export is `secure` for this client (source port < 1024).
pub const SEEN_SECURE: u32 = 1;
/// Reserved ports end here: a `secure` export refuses source ports at or above it.
pub const IPPORT_RESERVED: u16 = 1024;

/// Path bytes in [`SeenKey`]: most export roots are shorter, and the kernel hashes and
/// compares every key byte on each lookup, so a key that held [`MNT_PATH_MAX`] bytes cost
/// about 40 ns more per MNT (measured through test-run) for nothing.
pub const PATH_HEAD: usize = 32;
/// Path bytes after [`PATH_HEAD`], kept in [`SeenEntry::path_tail`].
pub const PATH_TAIL: usize = MNT_PATH_MAX - PATH_HEAD;

/// Key of [`SEEN_MAP_NAME`]: the client's address (IPv4 as `::ffff:a.b.c.d`), the MNT
/// path's XDR length and its first [`PATH_HEAD`] bytes (zero-padded). A longer path's
/// remaining bytes are in the entry ([`SeenEntry::path_tail`]) and compared there, so the
/// lookup is the "hash, then compare the stored bytes" of the design, exact: the kernel
/// compares the whole key, and the program the whole tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenKey {
    /// The client's address, network byte order.
    pub addr: [u8; 16],
    /// Bytes of the path (1..=[`MNT_PATH_MAX`]).
    pub path_len: u32,
    /// The path's first bytes, zero after its end.
    pub path_head: [u8; PATH_HEAD],
}

impl SeenKey {
    /// The key of `addr` (16 bytes, IPv4-mapped for IPv4) and `path`; None when the path is
    /// empty or longer than [`MNT_PATH_MAX`].
    pub fn new(addr: [u8; 16], path: &[u8]) -> Option<Self> {
        if path.is_empty() || path.len() > MNT_PATH_MAX {
            return None;
        }
        let mut key = SeenKey {
            addr,
            path_len: path.len() as u32,
            path_head: [0; PATH_HEAD],
        };
        let head = path.len().min(PATH_HEAD);
        key.path_head[..head].copy_from_slice(&path[..head]);
        Some(key)
    }

    /// The key of client `ip` (IPv4 as `::ffff:a.b.c.d`, as the program builds it) and
    /// `path`; None when the path is empty or longer than [`MNT_PATH_MAX`].
    pub fn for_ip(ip: core::net::IpAddr, path: &[u8]) -> Option<Self> {
        let addr = match ip {
            core::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            core::net::IpAddr::V6(v6) => v6.octets(),
        };
        Self::new(addr, path)
    }
}

/// The bytes of `path` after [`PATH_HEAD`], zero-padded: [`SeenEntry::path_tail`].
pub fn path_tail(path: &[u8]) -> [u8; PATH_TAIL] {
    let mut tail = [0; PATH_TAIL];
    if let Some(rest) = path.get(PATH_HEAD..) {
        let n = rest.len().min(PATH_TAIL);
        tail[..n].copy_from_slice(&rest[..n]);
    }
    tail
}

/// Where the program builds a MNT call's lookup: the key, and the path's tail read into
/// words it compares with the entry's (per-CPU scratch, as neither fits the stack beside
/// the rest of the program).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct SeenLookup {
    /// The key to look up.
    pub key: SeenKey,
    /// Aligns `tail` for u64 loads.
    pub pad: u32,
    /// The call's path bytes after [`PATH_HEAD`], zero-padded (room for a load size the
    /// verifier can bound with a mask).
    pub tail: [u8; 128],
}

// The program writes a `SeenKey` as 13 words at constant offsets and compares the tail as
// 12 u64 words; keep the layouts so.
const _: () = assert!(core::mem::size_of::<SeenKey>() == 13 * 4);
const _: () = assert!(PATH_TAIL == 12 * 8);
const _: () = assert!(core::mem::size_of::<SeenEntry>() == 16 + PATH_TAIL);
const _: () = assert!(core::mem::offset_of!(SeenLookup, tail) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(SeenEntry, path_tail) % 8 == 0);

/// Bytes of a call after its fixed header that the program copies to read at offsets that
/// depend on the credential's length (credential, verifier, the MNT path's length and first
/// [`PATH_HEAD`] bytes); a call whose parts lie further is left to user space.
pub const CALL_COPY_MAX: usize = 512;

/// The program's per-CPU copy of a call's bytes after its fixed header, with room for a
/// word read at any offset below [`CALL_COPY_MAX`].
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct CallCopy {
    /// The bytes; only the first `copied` (see the program) are this call's.
    pub bytes: [u8; CALL_COPY_MAX + 8],
}

const _: () = assert!(CALL_COPY_MAX.is_power_of_two());

/// Value of [`SEEN_MAP_NAME`]: how to answer this pair's MNT, valid while `generation`
/// equals [`crate::Config::mnt_generation`] (a reload bumps it, so every older entry is
/// dead at once).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenEntry {
    /// The generation of the export table it was decided with (never 0).
    pub generation: u32,
    /// [`SEEN_SECURE`] bits.
    pub flags: u32,
    /// Template index of the v1/v2 reply (fhstatus).
    pub template_v1: u32,
    /// Template index of the v3 reply (mountres3 with the client's flavors).
    pub template_v3: u32,
    /// The path's bytes after [`PATH_HEAD`], zero-padded ([`path_tail`]).
    pub path_tail: [u8; PATH_TAIL],
}

impl SeenEntry {
    /// The entry for `path` (the tail past [`PATH_HEAD`] is taken from it), decided with
    /// table `generation`, answered with templates `template_v1`/`template_v3`, `secure`
    /// when the export wants a reserved source port from this client.
    pub fn new(
        generation: u32,
        secure: bool,
        template_v1: u32,
        template_v3: u32,
        path: &[u8],
    ) -> Self {
        SeenEntry {
            generation,
            flags: if secure { SEEN_SECURE } else { 0 },
            template_v1,
            template_v3,
            path_tail: path_tail(path),
        }
    }
}
/// Longest reply a template holds (a MNT v3 reply with a 64-byte handle and a few flavors
/// fits with room to spare).
pub const TEMPLATE_MAX: usize = 256;
/// Shortest reply: an accepted RPC reply header (xid, REPLY, MSG_ACCEPTED, AUTH_NONE
/// verifier, accept_stat).
pub const TEMPLATE_MIN: usize = 24;

/// `msg_type` of a call (RFC 5531).
pub const MSG_CALL: u32 = 0;
/// The RPC protocol version.
pub const RPC_VERSION: u32 = 2;
/// The MOUNT program number.
pub const MOUNT_PROGRAM: u32 = 100_005;
/// Lowest MOUNT version served.
pub const MOUNT_MIN_VERSION: u32 = 1;
/// Highest MOUNT version served.
pub const MOUNT_MAX_VERSION: u32 = 3;
/// The NULL procedure.
pub const PROC_NULL: u32 = 0;
/// AUTH_NONE.
pub const AUTH_NONE: u32 = 0;
/// AUTH_SYS.
pub const AUTH_SYS: u32 = 1;
/// Longest credential or verifier body.
pub const MAX_AUTH_BYTES: u32 = 400;
/// Longest AUTH_SYS machine name.
pub const MAX_MACHINE_NAME: u32 = 255;
/// Most AUTH_SYS supplementary gids.
pub const MAX_GIDS: u32 = 16;
/// Bytes of an RPC call header up to the credential body (xid, msg_type, rpcvers, prog,
/// vers, proc, cred flavor, cred length).
pub const CALL_FIXED_LEN: u32 = 32;

/// TTL / hop limit of the program's replies: what mount-proto's frame emitter writes.
pub const REPLY_TTL: u8 = 64;

/// One reply form as user space encoded it, entry of [`TEMPLATES_MAP_NAME`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTemplate {
    /// Bytes of the reply in `bytes` ([`TEMPLATE_MIN`]..=[`TEMPLATE_MAX`]); 0 = no
    /// template, the program answers nothing with it.
    pub len: u32,
    /// The one's-complement sum ([`sum16`], unfolded) of `bytes[4..len]`: the reply
    /// without its xid, so the program's UDP checksum adds only the xid and the headers.
    pub sum: u32,
    /// The reply, its xid (first word) zero.
    pub bytes: [u8; TEMPLATE_MAX],
}

impl ReplyTemplate {
    /// No template.
    pub const EMPTY: ReplyTemplate = ReplyTemplate {
        len: 0,
        sum: 0,
        bytes: [0; TEMPLATE_MAX],
    };

    /// A template of `reply` (an encoded RPC reply whose xid is ignored); None when its
    /// length is outside [`TEMPLATE_MIN`]..=[`TEMPLATE_MAX`] or not a multiple of 4 (XDR).
    pub fn new(reply: &[u8]) -> Option<Self> {
        let len = reply.len();
        if !(TEMPLATE_MIN..=TEMPLATE_MAX).contains(&len) || !len.is_multiple_of(4) {
            return None;
        }
        let mut bytes = [0u8; TEMPLATE_MAX];
        bytes[4..len].copy_from_slice(&reply[4..]);
        Some(ReplyTemplate {
            len: len as u32,
            sum: sum16(&bytes[4..len]),
            bytes,
        })
    }
}

/// The unfolded one's-complement sum of `bytes` as big-endian 16-bit words (an odd tail
/// padded with a zero byte): at most 256 bytes here, so a u32 cannot overflow.
pub fn sum16(bytes: &[u8]) -> u32 {
    let mut acc = 0u32;
    let mut i = 0;
    while i + 1 < bytes.len() {
        acc += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    if i < bytes.len() {
        acc += u32::from(bytes[i]) << 8;
    }
    acc
}

/// Folds a running one's-complement sum to 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(acc: u64) -> u16 {
    // Four folds bring any u64 down to 16 bits (64 -> 33 -> 17 -> 16 bits + carry).
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The UDP checksum field for a final sum: its complement, 0 sent as 0xFFFF (RFC 768).
#[inline(always)]
pub const fn udp_checksum(acc: u64) -> u16 {
    let c = !fold(acc);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_sum_leaves_the_xid_out() {
        let mut reply = [0u8; 24];
        reply[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        reply[7] = 1; // REPLY
        let t = ReplyTemplate::new(&reply).unwrap();
        assert_eq!((t.len, t.sum), (24, 1));
        assert_eq!(&t.bytes[..4], &[0; 4]);
        assert!(ReplyTemplate::new(&reply[..20]).is_none());
        assert!(ReplyTemplate::new(&[0; 26]).is_none());
    }

    #[test]
    fn fold_and_checksum() {
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(udp_checksum(0xffff), 0xffff);
        assert_eq!(udp_checksum(0x1234), !0x1234);
    }

    #[test]
    fn a_path_splits_into_the_keys_head_and_the_entrys_tail() {
        let addr = [7; 16];
        let path: [u8; 100] = core::array::from_fn(|i| b'a' + (i % 26) as u8);
        let key = SeenKey::new(addr, &path).unwrap();
        assert_eq!(key.path_len, 100);
        assert_eq!(key.path_head, path[..PATH_HEAD]);
        let tail = path_tail(&path);
        assert_eq!(tail[..100 - PATH_HEAD], path[PATH_HEAD..]);
        assert!(tail[100 - PATH_HEAD..].iter().all(|&b| b == 0));
        // Short paths: zero-padded head, empty tail; the bounds.
        let short = SeenKey::new(addr, b"/srv/a").unwrap();
        assert_eq!(&short.path_head[..6], b"/srv/a");
        assert!(short.path_head[6..].iter().all(|&b| b == 0));
        assert_eq!(path_tail(b"/srv/a"), [0; PATH_TAIL]);
        assert_eq!(path_tail(&[b'x'; MNT_PATH_MAX]), [b'x'; PATH_TAIL]);
        assert!(SeenKey::new(addr, &[b'x'; MNT_PATH_MAX]).is_some());
        assert!(SeenKey::new(addr, &[b'x'; MNT_PATH_MAX + 1]).is_none());
        assert!(SeenKey::new(addr, b"").is_none());
    }
}

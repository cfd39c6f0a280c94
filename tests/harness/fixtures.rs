//! The standard exports file and a one-call setup for protocol tests.

use crate::daemon::{Daemon, DaemonOpts};
use crate::netns::NetPair;
use std::path::PathBuf;

/// The explicit handle of `/srv/fh` (20 bytes: not 32, to catch code assuming 32).
pub const FH_HEX: &str = "0102030405060708090a0b0c0d0e0f1011121314";

/// A maximal 64-byte handle (`/srv/fh64`).
pub const FH64_HEX: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff\
                            0f1e2d3c4b5a69788796a5b4c3d2e1f0ffeeddccbbaa99887766554433221100";
/// An exactly 32-byte handle (`/srv/fh32`), usable by v1/v2 as is.
pub const FH32_HEX: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";

/// Error/status numbers shared by v1/v2 errno and v3 mountstat3.
pub mod status {
    /// OK
    pub const OK: u32 = 0;
    /// ENOENT / MNT3ERR_NOENT
    pub const NOENT: u32 = 2;
    /// EACCES / MNT3ERR_ACCES
    pub const ACCES: u32 = 13;
}

/// Standard exports for pair N. Groups are written exactly as EXPORT must return them.
/// - `/srv/a`: the client subnets, rw, insecure.
/// - `/srv/secure`: the client subnets, default `secure` (source port < 1024 required).
/// - `/srv/ro`: anyone, ro, insecure.
/// - `/srv/fh`: anyone, insecure, explicit 20-byte handle.
/// - `/srv/krb`: anyone, insecure, sec=krb5p:sys.
/// - `/srv/denied`: only 192.0.2.0/24 (TEST-NET-1), which the client is not in.
/// - `/srv/fh64`, `/srv/fh32`: explicit 64- and 32-byte handles.
/// - `/srv/none`: sec=none:sys (AUTH_NONE must not be listed first).
pub fn standard_exports(n: u8) -> String {
    format!(
        "# e2e standard exports\n\
         /srv/a 10.77.{n}.0/24(rw,insecure) fd77:{n:x}::/64(rw,insecure)\n\
         /srv/secure 10.77.{n}.0/24(rw) fd77:{n:x}::/64(rw)\n\
         \n\
         /srv/ro *(ro,insecure)\n\
         /srv/fh *(insecure,fh={FH_HEX})\n\
         /srv/krb *(insecure,sec=krb5p:sys)\n\
         /srv/denied 192.0.2.0/24(rw,insecure)\n\
         /srv/fh64 *(insecure,fh={FH64_HEX})\n\
         /srv/fh32 *(insecure,fh={FH32_HEX})\n\
         /srv/none *(insecure,sec=none:sys)\n"
    )
}

/// The (dir, groups) list EXPORT must return for [`standard_exports`], in file order.
pub fn standard_export_list(n: u8) -> Vec<(String, Vec<String>)> {
    let s = |x: &str| x.to_string();
    let subnets = vec![format!("10.77.{n}.0/24"), format!("fd77:{n:x}::/64")];
    vec![
        (s("/srv/a"), subnets.clone()),
        (s("/srv/secure"), subnets),
        (s("/srv/ro"), vec![s("*")]),
        (s("/srv/fh"), vec![s("*")]),
        (s("/srv/krb"), vec![s("*")]),
        (s("/srv/denied"), vec![s("192.0.2.0/24")]),
        (s("/srv/fh64"), vec![s("*")]),
        (s("/srv/fh32"), vec![s("*")]),
        (s("/srv/none"), vec![s("*")]),
    ]
}

impl NetPair {
    /// Writes the standard exports file and returns its path.
    pub fn standard_exports_file(&self) -> PathBuf {
        self.write_file("exports", &standard_exports(self.n))
    }

    /// Standard exports, no rpcbind: the common protocol-test setup.
    pub fn start_standard(&self) -> Daemon<'_> {
        let f = self.standard_exports_file();
        self.start_daemon(&DaemonOpts::new(f))
    }
}

/// What a transport-matrix check gets: where the server is and who the client is.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// transport under test
    pub proto: crate::Proto,
    /// IPv6 (true) or IPv4
    pub v6: bool,
    /// subnet index
    pub n: u8,
    /// server address and MOUNT port
    pub server: std::net::SocketAddr,
    /// the client's address as the server sees it (mount-list key)
    pub cli_ip: std::net::IpAddr,
}

impl Ctx {
    /// A new client from an ephemeral (≥1024) source port.
    pub fn client(&self) -> crate::RpcClient {
        self.client_from(crate::SrcPort::High)
    }

    /// A new client from the given source port kind.
    pub fn client_from(&self, src: crate::SrcPort) -> crate::RpcClient {
        crate::RpcClient::new(self.proto, self.server, src)
            .unwrap_or_else(|e| panic!("client {:?} to {}: {e:#}", self.proto, self.server))
    }
}

/// Runs `check` against a fresh daemon with the standard exports (plus `opts` tweaks),
/// inside the client namespace, over one transport/family.
pub fn run_check(
    test: &str,
    proto: crate::Proto,
    v6: bool,
    tweak: fn(&mut DaemonOpts),
    check: fn(&Ctx),
) {
    let Some(pair) = NetPair::new(test) else {
        return;
    };
    let mut opts = DaemonOpts::new(pair.standard_exports_file());
    tweak(&mut opts);
    let _d = pair.start_daemon(&opts);
    let ctx = Ctx {
        proto,
        v6,
        n: pair.n,
        server: pair.srv_addr(v6, crate::PORT),
        cli_ip: pair.cli_ip(v6),
    };
    pair.in_client(move || check(&ctx));
}

/// Declares a module `$check` with tests `udp4`, `tcp4`, `udp6`, `tcp6`, each running the
/// function `$check(&Ctx)` against its own daemon (optional `tweak: fn(&mut DaemonOpts)`).
#[macro_export]
macro_rules! matrix {
    ($check:ident) => {
        $crate::matrix!($check, |_o: &mut $crate::DaemonOpts| {});
    };
    ($check:ident, $tweak:expr) => {
        mod $check {
            #[allow(unused_imports)]
            use super::*;
            use $crate::Proto;
            fn go(variant: &str, proto: Proto, v6: bool) {
                let name = format!("{}_{}", stringify!($check), variant);
                $crate::fixtures::run_check(&name, proto, v6, $tweak, super::$check);
            }
            #[test]
            fn udp4() {
                go("udp4", Proto::Udp, false)
            }
            #[test]
            fn tcp4() {
                go("tcp4", Proto::Tcp, false)
            }
            #[test]
            fn udp6() {
                go("udp6", Proto::Udp, true)
            }
            #[test]
            fn tcp6() {
                go("tcp6", Proto::Tcp, true)
            }
        }
    };
}

//! The standard exports file and a one-call setup for protocol tests.

use crate::daemon::{Daemon, DaemonOpts};
use crate::netns::NetPair;
use std::path::PathBuf;

/// The explicit handle of `/srv/fh` (20 bytes: not 32, to catch code assuming 32).
pub const FH_HEX: &str = "0102030405060708090a0b0c0d0e0f1011121314";

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
pub fn standard_exports(n: u8) -> String {
    format!(
        "# e2e standard exports\n\
         /srv/a 10.77.{n}.0/24(rw,insecure) fd77:{n}::/64(rw,insecure)\n\
         /srv/secure 10.77.{n}.0/24(rw) fd77:{n}::/64(rw)\n\
         \n\
         /srv/ro *(ro,insecure)\n\
         /srv/fh *(insecure,fh={FH_HEX})\n\
         /srv/krb *(insecure,sec=krb5p:sys)\n\
         /srv/denied 192.0.2.0/24(rw,insecure)\n"
    )
}

/// The (dir, groups) list EXPORT must return for [`standard_exports`], in file order.
pub fn standard_export_list(n: u8) -> Vec<(String, Vec<String>)> {
    let s = |x: &str| x.to_string();
    let subnets = vec![format!("10.77.{n}.0/24"), format!("fd77:{n}::/64")];
    vec![
        (s("/srv/a"), subnets.clone()),
        (s("/srv/secure"), subnets),
        (s("/srv/ro"), vec![s("*")]),
        (s("/srv/fh"), vec![s("*")]),
        (s("/srv/krb"), vec![s("*")]),
        (s("/srv/denied"), vec![s("192.0.2.0/24")]),
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

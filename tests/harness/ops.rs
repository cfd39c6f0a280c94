//! One-line MOUNT operations on an [`RpcClient`] that assert the RPC layer succeeded and
//! decode the procedure result, so tests read as protocol statements.

use crate::rpc::{
    parse_exports, parse_fhstatus, parse_mountlist, parse_mountres3, procs, Call, Mnt3, Reply,
};
use crate::transport::RpcClient;

impl RpcClient {
    /// Sends `call`, panicking with context on transport/parse failure.
    pub fn must(&mut self, call: &Call) -> Reply {
        match self.call(call) {
            Ok(r) => {
                assert_eq!(r.xid, call.xid, "reply xid");
                r
            }
            Err(e) => panic!("call vers {} proc {} failed: {e:#}", call.vers, call.proc_),
        }
    }

    /// NULL on `vers`; asserts SUCCESS with empty results.
    pub fn null(&mut self, vers: u32) {
        let r = self.must(&Call::mount(vers, procs::NULL));
        assert!(
            r.success().is_empty(),
            "NULL v{vers} results must be empty: {:02x?}",
            r.raw
        );
    }

    /// MNT v3.
    pub fn mnt3(&mut self, path: &str) -> Mnt3 {
        let r = self.must(&Call::mount_path(3, procs::MNT, path));
        parse_mountres3(r.success()).unwrap_or_else(|e| panic!("mountres3 for {path}: {e:#}"))
    }

    /// MNT v1/v2: errno status and 32-byte handle.
    pub fn mnt12(&mut self, vers: u32, path: &str) -> (u32, Option<Vec<u8>>) {
        let r = self.must(&Call::mount_path(vers, procs::MNT, path));
        parse_fhstatus(r.success()).unwrap_or_else(|e| panic!("fhstatus v{vers} {path}: {e:#}"))
    }

    /// EXPORT (or EXPORTALL with `proc_`=6).
    pub fn exports(&mut self, vers: u32, proc_: u32) -> Vec<(String, Vec<String>)> {
        let r = self.must(&Call::mount(vers, proc_));
        parse_exports(r.success()).unwrap_or_else(|e| panic!("exports v{vers}: {e:#}"))
    }

    /// DUMP.
    pub fn dump(&mut self, vers: u32) -> Vec<(String, String)> {
        let r = self.must(&Call::mount(vers, procs::DUMP));
        parse_mountlist(r.success()).unwrap_or_else(|e| panic!("mountlist v{vers}: {e:#}"))
    }

    /// UMNT; asserts void result.
    pub fn umnt(&mut self, vers: u32, path: &str) {
        let r = self.must(&Call::mount_path(vers, procs::UMNT, path));
        assert!(r.success().is_empty(), "UMNT result must be void");
    }

    /// UMNTALL; asserts void result.
    pub fn umntall(&mut self, vers: u32) {
        let r = self.must(&Call::mount(vers, procs::UMNTALL));
        assert!(r.success().is_empty(), "UMNTALL result must be void");
    }
}

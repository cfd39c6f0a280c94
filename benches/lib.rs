//! Benchmarks live in the [[bench]] targets of this package; shared call builders here.
use mount_proto::exports::ExportTable;
use mount_proto::mount::MOUNT_PROGRAM;
use mount_user::exports::parse_str;

/// A CALL with AUTH_NONE credentials: xid, CALL, rpcvers 2, prog, vers, proc, cred, verf, args.
pub fn call(vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [0x1234_5678u32, 0, 2, MOUNT_PROGRAM, vers, proc_, 0, 0, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend_from_slice(args);
    m
}

/// An XDR `dirpath` argument.
pub fn dirpath(path: &str) -> Vec<u8> {
    let mut a = (path.len() as u32).to_be_bytes().to_vec();
    a.extend_from_slice(path.as_bytes());
    a.resize(a.len().div_ceil(4) * 4, 0);
    a
}

/// `/srv/export0` .. `/srv/export99`, each `10.0.0.0/8(rw,insecure) *(ro)`.
pub fn hundred_exports() -> ExportTable {
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("/srv/export{i} 10.0.0.0/8(rw,insecure) *(ro)\n"));
    }
    match parse_str(&text, "bench") {
        Ok(t) => t,
        Err(e) => panic!("bench exports: {e}"),
    }
}

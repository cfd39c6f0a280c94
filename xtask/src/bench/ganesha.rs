//! NFS-Ganesha as the peer: its configuration (MOUNT on our port, NFSv3 only, one VFS
//! export of the same directory xdp-mountd exports) and its command line; and as the
//! upstream of the gateway variant (MOUNT on another port and a private program).
use std::path::Path;

/// The gateway variant's upstream Ganesha: its MOUNT port.
pub const UPSTREAM_MNT_PORT: u16 = 20048;
/// The gateway variant's upstream Ganesha: its private MOUNT program (out of our way in
/// rpcbind).
pub const UPSTREAM_MNT_PROGRAM: u32 = 400_005;

/// Ganesha's configuration: MOUNT on `port` of `bind_addr`, NFSv3 only (MOUNT is part of
/// v3), no NLM/RQUOTA, no NFSv4 grace period, one VFS export of `export_dir`.
pub fn config(bind_addr: &str, port: u16, export_dir: &Path) -> String {
    config_with_program(bind_addr, port, None, export_dir)
}

/// [`config`] with MOUNT under program `program` instead of 100005.
pub fn config_with_program(
    bind_addr: &str,
    port: u16,
    program: Option<u32>,
    export_dir: &Path,
) -> String {
    let dir = export_dir.display();
    let program = program.map_or(String::new(), |p| format!("    MNT_Program = {p};\n"));
    format!(
        "# Written by cargo xtask bench.\n\
         NFS_CORE_PARAM {{\n\
         \x20   MNT_Port = {port};\n\
         {program}\
         \x20   Bind_addr = {bind_addr};\n\
         \x20   Protocols = 3;\n\
         \x20   Enable_NLM = false;\n\
         \x20   Enable_RQUOTA = false;\n\
         }}\n\
         NFSv4 {{\n\
         \x20   Graceless = true;\n\
         }}\n\
         EXPORT {{\n\
         \x20   Export_Id = 1;\n\
         \x20   Path = {dir};\n\
         \x20   Pseudo = {dir};\n\
         \x20   Access_Type = RW;\n\
         \x20   Squash = No_Root_Squash;\n\
         \x20   Protocols = 3;\n\
         \x20   Transports = UDP, TCP;\n\
         \x20   FSAL {{\n\
         \x20       Name = VFS;\n\
         \x20   }}\n\
         }}\n"
    )
}

/// `ganesha.nfsd` in the foreground with our config, log and pid files.
pub fn argv(conf: &Path, log: &Path, pidfile: &Path) -> Vec<String> {
    vec![
        "ganesha.nfsd".into(),
        "-F".into(),
        "-f".into(),
        conf.display().to_string(),
        "-L".into(),
        log.display().to_string(),
        "-p".into(),
        pidfile.display().to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_puts_mount_on_our_port_and_exports_the_dir() {
        let c = config("10.79.0.1", 644, Path::new("/tmp/x/export"));
        assert!(c.contains("MNT_Port = 644;"), "{c}");
        assert!(c.contains("Bind_addr = 10.79.0.1;"), "{c}");
        assert!(c.contains("Path = /tmp/x/export;"), "{c}");
        assert!(c.contains("Name = VFS;"), "{c}");
        // Every block opened is closed (ganesha refuses the file otherwise).
        assert_eq!(c.matches('{').count(), c.matches('}').count());
        assert!(!c.contains("MNT_Program"));
        let u = config_with_program("10.79.0.1", 20048, Some(400_005), Path::new("/x"));
        assert!(
            u.contains("MNT_Port = 20048;\n    MNT_Program = 400005;\n"),
            "{u}"
        );
    }

    #[test]
    fn argv_runs_in_foreground() {
        let a = argv(Path::new("/c"), Path::new("/l"), Path::new("/p"));
        assert_eq!(a[0], "ganesha.nfsd");
        assert!(a.contains(&"-F".to_string()));
        let f = a.iter().position(|x| x == "-f").unwrap();
        assert_eq!(a[f + 1], "/c");
    }
}

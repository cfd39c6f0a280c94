//! NFS-Ganesha as the peer: its configuration (MOUNT on our port, NFSv3 only, one VFS
//! export of the same directory xdp-mountd exports) and its command line.
use std::path::Path;

/// Ganesha's configuration: MOUNT on `port` of `bind_addr`, NFSv3 only (MOUNT is part of
/// v3), no NLM/RQUOTA, no NFSv4 grace period, one VFS export of `export_dir`.
pub fn config(bind_addr: &str, port: u16, export_dir: &Path) -> String {
    let dir = export_dir.display();
    format!(
        "# Written by cargo xtask bench.\n\
         NFS_CORE_PARAM {{\n\
         \x20   MNT_Port = {port};\n\
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

//! The capabilities `serve` needs, checked at start so that a missing one is named
//! instead of surfacing later as a bare EPERM from the verifier, a bind or a socket.
//!
//! The daemon runs as an unprivileged user with exactly these (see the packaged unit):
//! CAP_BPF and CAP_NET_ADMIN to load and attach the XDP program, CAP_NET_RAW for AF_XDP
//! sockets, CAP_IPC_LOCK for the UMEM (unless RLIMIT_MEMLOCK is unlimited), and
//! CAP_NET_BIND_SERVICE for a port below `ip_unprivileged_port_start`. Not needed:
//! CAP_PERFMON (the XDP program only uses constant packet offsets, see mount-ebpf) and
//! CAP_SYS_ADMIN (nothing lists the system's BPF objects).
use anyhow::bail;

/// A Linux capability the daemon may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Bind ports below 1024.
    NetBindService = 10,
    /// Attach XDP programs to interfaces.
    NetAdmin = 12,
    /// Open AF_XDP sockets.
    NetRaw = 13,
    /// Lock memory beyond RLIMIT_MEMLOCK (the UMEM).
    IpcLock = 14,
    /// The old catch-all; also allows `bpf()`.
    SysAdmin = 21,
    /// Load BPF programs and create maps.
    Bpf = 39,
}

impl Cap {
    /// The name as in capabilities(7).
    pub fn name(self) -> &'static str {
        CAP_NAMES[self as usize]
    }
}

/// Names of capability bits 0..=40, in capabilities(7) spelling, lower case as
/// `setpriv` and `capsh` print them.
const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The effective capability set of this process (the `CapEff` mask of /proc/self/status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Reads this process's effective set.
    pub fn effective() -> anyhow::Result<CapSet> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        Self::from_status(&status)
    }

    /// Parses the `CapEff:` line of a /proc/PID/status text.
    pub fn from_status(status: &str) -> anyhow::Result<CapSet> {
        let Some(hex) = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
        else {
            bail!("no CapEff line in /proc/self/status");
        };
        Ok(CapSet(u64::from_str_radix(hex, 16)?))
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1 << cap as u32) != 0
    }

    /// The names of the capabilities in the set (`cap_N` for bits without a name here).
    pub fn names(self) -> Vec<String> {
        (0..64)
            .filter(|bit| self.0 & (1u64 << bit) != 0)
            .map(|bit| match CAP_NAMES.get(bit) {
                Some(name) => (*name).to_owned(),
                None => format!("cap_{bit}"),
            })
            .collect()
    }
}

/// One capability `serve` needs, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The capability.
    pub cap: Cap,
    /// Another capability that does instead (CAP_SYS_ADMIN for CAP_BPF).
    pub or: Option<Cap>,
    /// What it is for, for the error message.
    pub why: &'static str,
}

/// What `serve` needs: `xdp` with the AF_XDP path on, `port` the MOUNT port,
/// `memlock_unlimited` when RLIMIT_MEMLOCK is infinity, `unprivileged_port_start` from
/// the sysctl of the same name.
pub fn needed(
    xdp: bool,
    port: u16,
    memlock_unlimited: bool,
    unprivileged_port_start: u16,
) -> Vec<Need> {
    let mut out = Vec::new();
    if port != 0 && port < unprivileged_port_start {
        out.push(Need {
            cap: Cap::NetBindService,
            or: None,
            why: "binding a port below ip_unprivileged_port_start",
        });
    }
    if xdp {
        out.push(Need {
            cap: Cap::Bpf,
            or: Some(Cap::SysAdmin),
            why: "loading the XDP program and its maps",
        });
        out.push(Need {
            cap: Cap::NetAdmin,
            or: None,
            why: "attaching XDP to the interface",
        });
        out.push(Need {
            cap: Cap::NetRaw,
            or: None,
            why: "opening AF_XDP sockets",
        });
        if !memlock_unlimited {
            out.push(Need {
                cap: Cap::IpcLock,
                or: None,
                why: "locking the AF_XDP UMEM (or set LimitMEMLOCK=infinity)",
            });
        }
    }
    out
}

/// Fails naming every capability of `needs` that `have` lacks.
pub fn check(have: CapSet, needs: &[Need]) -> anyhow::Result<()> {
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| !have.has(n.cap) && !n.or.is_some_and(|o| have.has(o)))
        .map(|n| format!("{} ({})", n.cap.name().to_uppercase(), n.why))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing capability: {}; run as root, or grant it (the packaged \
             xdp-mountd.service does: AmbientCapabilities=)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Whether RLIMIT_MEMLOCK is unlimited for this process.
pub fn memlock_unlimited() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    ok && limit.rlim_cur == libc::RLIM_INFINITY
}

/// The first port that needs no CAP_NET_BIND_SERVICE (1024 when the sysctl is unreadable).
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_effective_set() {
        let set = CapSet::from_status("Name:\tx\nCapEff:\t000000c000006400\n").unwrap();
        assert_eq!(
            set.names(),
            [
                "cap_net_bind_service",
                "cap_net_raw",
                "cap_ipc_lock",
                "cap_perfmon",
                "cap_bpf"
            ]
        );
        assert!(set.has(Cap::Bpf) && !set.has(Cap::NetAdmin));
        assert!(CapSet::from_status("Name: x\n").is_err());
        assert_eq!(CapSet(1 << 50).names(), ["cap_50"]);
    }

    #[test]
    fn names_the_missing_capability() {
        let unit = [
            Cap::NetAdmin,
            Cap::Bpf,
            Cap::NetRaw,
            Cap::IpcLock,
            Cap::NetBindService,
        ];
        let all = CapSet(unit.iter().fold(0, |m, &c| m | 1 << c as u32));
        let needs = needed(true, 644, false, 1024);
        check(all, &needs).unwrap();
        for cap in unit {
            let without = CapSet(all.0 & !(1 << cap as u32));
            let err = check(without, &needs).unwrap_err().to_string();
            assert!(err.contains(&cap.name().to_uppercase()), "{err}");
        }
        // CAP_SYS_ADMIN does instead of CAP_BPF; no XDP, high port: nothing needed.
        let admin = CapSet(all.0 & !(1 << Cap::Bpf as u32) | 1 << Cap::SysAdmin as u32);
        check(admin, &needs).unwrap();
        assert!(needed(false, 4002, false, 1024).is_empty());
        assert_eq!(needed(true, 4002, true, 1024).len(), 3);
        assert_eq!(needed(false, 644, false, 0).len(), 0);
    }
}

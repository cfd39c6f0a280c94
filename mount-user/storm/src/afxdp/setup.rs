//! Set-up of storm's AF_XDP path: what the kernel knows about the way to the target
//! (route, source address, next hop's MAC from the neighbour table, primed with one NULL
//! call through an ordinary socket), and the interface's own MAC and MTU.
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use mount_proto::packet::MacAddr;

pub(super) fn run_ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The word after `key` in `text` (`ip` output is `key value` pairs).
fn word_after<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

/// `ip route get TARGET` → (device, preferred source, gateway).
pub fn parse_route(text: &str) -> (Option<String>, Option<IpAddr>, Option<IpAddr>) {
    (
        word_after(text, "dev").map(str::to_owned),
        word_after(text, "src").and_then(|s| s.parse().ok()),
        word_after(text, "via").and_then(|s| s.parse().ok()),
    )
}

/// `aa:bb:cc:dd:ee:ff` → MAC.
pub fn parse_mac(text: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(mac))
}

/// The `lladdr` of a usable `ip neigh show` line.
pub fn parse_neigh(text: &str) -> Option<MacAddr> {
    text.lines()
        .filter(|l| !l.contains("FAILED") && !l.contains("INCOMPLETE"))
        .find_map(|l| word_after(l, "lladdr").and_then(parse_mac))
}

pub(super) fn if_index(iface: &str) -> anyhow::Result<u32> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| anyhow!("bad interface name {iface:?}"))?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        bail!("no interface named {iface}");
    }
    Ok(index)
}

pub(super) fn read_sys(iface: &str, file: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{iface}/{file}");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_owned())
}

/// Sends a NULL call through the kernel (so it resolves the next hop) and waits briefly
/// for the reply.
pub(super) fn prime(sock: &UdpSocket, target: SocketAddr) -> bool {
    let mut call = [0u8; 64];
    let Ok(n) = mount_proto::rpc::encode_call(
        &mut call,
        0x5354_4f52,
        mount_proto::mount::MOUNT_PROGRAM,
        3,
        0,
        &mount_proto::rpc::Credential::None,
        &[],
    ) else {
        return false;
    };
    if sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        if sock.send_to(&call[..n], target).is_err() {
            continue;
        }
        if let Ok((_, from)) = sock.recv_from(&mut buf) {
            if from == target {
                return true;
            }
        }
    }
    false
}

/// The next hop's MAC from the neighbour table, waiting up to a second for resolution.
pub(super) fn neighbour_mac(hop: IpAddr, iface: &str) -> anyhow::Result<MacAddr> {
    let hop_text = hop.to_string();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let out = run_ip(&["neigh", "show", "to", &hop_text, "dev", iface])?;
        if let Some(mac) = parse_neigh(&out) {
            return Ok(mac);
        }
        if Instant::now() > deadline {
            bail!("no neighbour entry for {hop} on {iface} (is the target reachable there?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn format_mac(m: MacAddr) -> String {
    m.0.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_route_and_neigh_output() {
        let (dev, src, via) =
            parse_route("10.233.1.1 dev xaf-cli src 10.233.1.2 uid 0 \n    cache \n");
        assert_eq!(dev.as_deref(), Some("xaf-cli"));
        assert_eq!(src, Some("10.233.1.2".parse().unwrap()));
        assert_eq!(via, None);
        let (_, _, via) = parse_route("8.8.8.8 via 192.168.1.1 dev eth0 src 192.168.1.5 uid 0");
        assert_eq!(via, Some("192.168.1.1".parse().unwrap()));
        assert_eq!(
            parse_neigh("10.233.1.1 lladdr 02:aa:bb:cc:dd:0e REACHABLE\n"),
            Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e]))
        );
        assert_eq!(parse_neigh("10.233.1.1  INCOMPLETE\n"), None);
        assert_eq!(parse_neigh(""), None);
        assert_eq!(parse_mac("02:aa:bb:cc:dd"), None);
        assert_eq!(parse_mac("02:aa:bb:cc:dd:ee:ff"), None);
    }
}

//! The mount list's host key text: an IP address formatted on the stack, no allocation.
use std::fmt::Write as _;
use std::net::IpAddr;

/// An IP address formatted on the stack (the mount list's host key), no allocation.
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    /// Format `ip` (callers pass it canonicalised), as `Display` does.
    pub fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            // By hand: `fmt` machinery costs ~700 instructions for an IPv4 address, and this
            // runs on the first MNT of every new client in a mount storm.
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            // An IPv6 address is at most 45 characters, so this cannot fail.
            IpAddr::V6(_) => {
                let _ = write!(t, "{ip}");
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The address whose canonical key text is exactly `host`, if any: such a host's entries
/// are also kept in the binary-keyed fast set. Any other text (a name, `::ffff:a.b.c.d`,
/// upper-case IPv6 from a hand-edited rmtab) stays a distinct, text-only key, as before.
pub fn ip_key(host: &str) -> Option<IpAddr> {
    let ip = host.parse::<IpAddr>().ok()?.to_canonical();
    (IpText::new(ip).as_str() == host).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_display() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "255.255.255.255",
            "192.168.100.9",
            "1.20.199.250",
            "fd00::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
            assert_eq!(IpText::new(ip).as_str(), text);
        }
        // Every octet value, against Display.
        for o in 0..=255u8 {
            let ip = IpAddr::from([o, 0, o, 255 - o]);
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn ip_key_only_for_canonical_text() {
        assert_eq!(ip_key("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ip_key("fd00::1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(ip_key("FD00::1"), None);
        assert_eq!(ip_key("::ffff:10.1.2.3"), None);
        assert_eq!(ip_key("h3"), None);
    }
}

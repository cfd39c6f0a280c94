//! Hand-made frames sent through an AF_PACKET socket, to reach every branch of the XDP
//! program (VLAN tags, fragments, extension headers, broken headers) from a veth peer.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sends each frame as-is on `ifname` (in the calling thread's network namespace).
pub fn send_frames(ifname: &str, frames: &[Vec<u8>]) {
    // SAFETY: plain system calls on a socket this function owns; every pointer passed is to
    // a live local (name, frame, address) of the length given.
    unsafe {
        let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        assert!(
            raw >= 0,
            "socket(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
        let fd = OwnedFd::from_raw_fd(raw);
        let name = std::ffi::CString::new(ifname).unwrap();
        let ifindex = libc::if_nametoindex(name.as_ptr());
        assert_ne!(ifindex, 0, "no interface {ifname}");
        for frame in frames {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = ifindex as i32;
            addr.sll_halen = 6;
            let rc = libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            );
            assert_eq!(
                rc,
                frame.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

const MACS: [u8; 12] = [
    0x02, 0, 0, 0, 0, 0x01, // dst
    0x02, 0, 0, 0, 0, 0x02, // src
];

/// Ethernet header with `ethertype`, then `rest`.
pub fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = MACS.to_vec();
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// IPv4 + UDP to `port`; `ihl` in 32-bit words (options are NOPs), `frag` the raw
/// flags/offset field, `proto` the protocol. Checksums are not computed: XDP ignores
/// them and the kernel drops these frames after XDP_PASS, which is fine here.
pub fn ipv4(ihl: u8, frag: u16, proto: u8, port: u16) -> Vec<u8> {
    let options = usize::from(ihl.max(5) - 5) * 4;
    let total = 20 + options + 8 + 4;
    let mut ip = vec![0x40 | ihl, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0, 10, 231, 0, 2, 10, 231, 0, 1]);
    ip.extend(std::iter::repeat_n(1u8, options));
    ip.extend_from_slice(&[0x03, 0x20]);
    ip.extend_from_slice(&port.to_be_bytes());
    ip.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
    eth(0x0800, &ip)
}

/// IPv6 with next header `nh`, followed by a UDP header to `port`.
pub fn ipv6(nh: u8, port: u16) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 12, nh, 64];
    ip.extend_from_slice(&[0xfd, 0, 0x02, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip.extend_from_slice(&[0xfd, 0, 0x02, 0x31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip.extend_from_slice(&[0x03, 0x20]);
    ip.extend_from_slice(&port.to_be_bytes());
    ip.extend_from_slice(&[0, 12, 0x12, 0x34, b'p', b'i', b'n', b'g']);
    eth(0x86DD, &ip)
}

//! Turning on the XDP program's own answers (`--xdp-answers on`, docs/xdp-answers.md): the
//! NULL reply template from the protocol core (MNT's are `mnt_answers`'), and which
//! families the program may answer given the address the kernel socket is bound to (the
//! AF_XDP worker answers only calls that socket would receive, and so must the program).
//! Not to be confused with `answer`, the worker's answer to one frame in user space.
use std::net::IpAddr;

use anyhow::Context as _;
use mount_ebpf::answer::{ANSWER_MNT_V4, ANSWER_MNT_V6, ANSWER_NULL_V4, ANSWER_NULL_V6};
use mount_proto::mount::templates;
use mount_xdp::ebpf::{XdpAttachment, XdpMode};

/// The `Config::answers` bits for a kernel socket bound to `local`: both families for
/// `::`, IPv4 for `0.0.0.0`, none for a specific address (the program does not know which
/// addresses are ours, so it would answer calls the worker drops).
pub fn families(local: IpAddr) -> u8 {
    match local {
        IpAddr::V6(l) if l.is_unspecified() => {
            ANSWER_NULL_V4 | ANSWER_NULL_V6 | ANSWER_MNT_V4 | ANSWER_MNT_V6
        }
        IpAddr::V4(l) if l.is_unspecified() => ANSWER_NULL_V4 | ANSWER_MNT_V4,
        _ => 0,
    }
}

/// Writes the NULL template and turns answering on for `bits`, what [`families`] allows
/// for a kernel socket bound to `local`.
pub fn enable(attachment: &mut XdpAttachment, local: IpAddr, bits: u8) -> anyhow::Result<()> {
    if bits == 0 {
        tracing::warn!(
            bind = %local,
            "--xdp-answers on has no effect with --bind to one address: every call goes \
             through AF_XDP"
        );
        return Ok(());
    }
    attachment
        .set_answers(bits, &templates::null_reply())
        .context("turning on the XDP program's answers")?;
    if attachment.mode() == XdpMode::Native && has_peer(attachment.iface()) {
        tracing::warn!(
            iface = attachment.iface(),
            "{} looks like a veth (its link is another interface): native XDP_TX frames reach \
             the other end only when that end has an XDP program attached in native mode, \
             else veth drops them; attach one there, or use --xdp generic",
            attachment.iface()
        );
    }
    tracing::info!(
        ipv4 = bits & ANSWER_NULL_V4 != 0,
        ipv6 = bits & ANSWER_NULL_V6 != 0,
        "the XDP program answers MOUNT NULL itself (and MNT of recorded export roots)"
    );
    Ok(())
}

/// Whether `iface` is linked to another interface (`iflink` differs from `ifindex`): a
/// veth's peer, also a VLAN's or macvlan's parent. Unreadable counts as no.
fn has_peer(iface: &str) -> bool {
    let read = |file: &str| std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}")).ok();
    match (read("iflink"), read("ifindex")) {
        (Some(link), Some(index)) => link.trim() != index.trim(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_bind_address() {
        let f = |s: &str| families(s.parse().unwrap());
        let all = ANSWER_NULL_V4 | ANSWER_NULL_V6 | ANSWER_MNT_V4 | ANSWER_MNT_V6;
        assert_eq!(f("::"), all);
        assert_eq!(f("0.0.0.0"), ANSWER_NULL_V4 | ANSWER_MNT_V4);
        assert_eq!(f("10.0.0.1"), 0);
        assert_eq!(f("fd00::1"), 0);
    }

    #[test]
    fn loopback_has_no_peer() {
        assert!(!has_peer("lo"));
        assert!(!has_peer("no-such-if0"));
    }
}

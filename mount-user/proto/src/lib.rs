//! The protocol core of xdp-mountd (NFS MOUNT, ONC RPC program 100005, versions 1–3), kept
//! sans-IO by the compiler: this crate has no `unsafe`, and depends on no libc, aya, tokio or
//! socket2, so nothing in it can open a socket, read a file, start a thread or ask DNS.
//!
//! - [`xdr`]: the XDR reader and writer everything else is written with;
//! - [`rpc`]: ONC RPC calls, replies, credentials, the portmapper calls and the TCP record
//!   marking codec;
//! - [`mount`]: [`mount::answer`] turns one call into one reply (decode → decide → encode
//!   into the caller's buffer); the result types on the wire, each decoder beside its
//!   encoder ([`mount::wire`]); the MOUNT client side a gateway uses upstream;
//! - [`exports`]: exports(5) text parsed and compiled into an immutable table, host names
//!   resolved through a [`exports::Resolver`] the caller provides;
//! - [`mountlist`]: the mount list and its rmtab text format;
//! - [`packet`]: Ethernet/IPv4/IPv6/UDP frames for the AF_XDP path, parsed and emitted
//!   (with the frame layout the XDP program shares, from `mount-ebpf`).
//!
//! The daemon (`mount-user`) wraps this core in its data paths (kernel UDP and TCP
//! sockets, AF_XDP) and provides what the core must not do itself: reading the exports
//! files, the system resolver, writing rmtab, looking up client names and netgroups.
#![forbid(unsafe_code)]

pub mod exports;
pub mod mount;
pub mod mountlist;
pub mod packet;
pub mod rpc;
pub mod xdr;

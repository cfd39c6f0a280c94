//! xdp-mountd: an NFS MOUNT (ONC RPC program 100005, versions 1–3) service.
//!
//! The protocol core is the `mount-proto` crate (sans-IO, no `unsafe`): it decodes a call,
//! decides with the export table and mount list, and encodes the reply into the caller's
//! buffer. This crate is the daemon around it: the data paths (`socket` for kernel UDP and
//! TCP, `afxdp` with the XDP program and AF_XDP sockets of the `mount-xdp` crate), reading
//! and reloading the exports files (`exports`), the rmtab file (`rmtab`), client name
//! lookups, rpcbind, the upstream client of gateway mode, stats and metrics. The `storm`
//! load generator is the `mount-storm` crate; the binary runs it as `xdp-mountd storm`.

pub mod afxdp;
pub mod cluster;
pub mod exports;
pub mod log_throttle;
pub mod metrics;
pub mod portmap;
pub mod privileges;
pub mod ratelimit;
pub mod rmtab;
pub mod rpcbind;
pub mod service;
pub mod socket;
pub mod stats;
pub mod udp_call;
pub mod upstream;

//! xdp-mountd: an NFS MOUNT (ONC RPC program 100005, versions 1–3) service.
//!
//! The protocol core (`xdr`, `rpc`, `mount`) is sans-IO: it decodes a call, decides with
//! the export table and mount list, and encodes the reply into the caller's buffer. The
//! data paths (`socket`, later AF_XDP) are thin shells around [`mount::answer`].

pub mod afxdp;
pub mod ebpf;
pub mod exports;
pub mod log_throttle;
pub mod metrics;
pub mod mount;
pub mod mountlist;
pub mod packet;
pub mod portmap;
pub mod privileges;
pub mod ratelimit;
pub mod rpc;
pub mod rpcbind;
pub mod service;
pub mod socket;
pub mod stats;
pub mod storm;
pub mod udp_call;
pub mod upstream;
pub mod xdr;

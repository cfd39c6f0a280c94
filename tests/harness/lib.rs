//! Test harness: the suite's namespace pair and daemon launcher, a small independent RPC
//! client. Namespaces, veth, private rpcbinds, processes and the SKIPPED rule come from
//! the workspace's test bed ([`testbed`], `tests/bed/`), shared with mount-user's
//! privileged tests and xtask; what is here is the suite's own use of it.
//!
//! Layout:
//! - [`netns`]: [`NetPair`] (the suite's names and addresses on a [`testbed::Pair`], a
//!   scratch directory), running code or commands in either namespace.
//! - [`daemon`]: starting xdp-mountd in the server namespace with [`DaemonOpts`]
//!   (optionally with a private rpcbind in its own mount namespace), the checks at stop.
//! - [`xdr`], [`rpc`]: a hand-written XDR/RPC codec, independent of the daemon's.
//! - [`transport`]: UDP and TCP record-marking clients.
//! - [`fixtures`]: the standard exports file the protocol tests run against.
//! - [`afxdp`]: with `--xdp` on, proof at stop that UDP calls went through AF_XDP.
//! - [`cluster`]: cluster mode's bed: N nodes behind an ECMP service address, etcd, one
//!   `serve --cluster` daemon per node.
//! - [`cluster_ops`]: MOUNT calls through one cluster node, the cluster tests' helpers.
//! - [`ganesha`]: NFS-Ganesha as the upstream server of gateway mode, beside a shared rpcbind.
//!
//! Client sockets are created on a thread that `setns`-es into the client namespace
//! ([`NetPair::in_client`]); real client tools run under `ip netns exec CLI timeout 20`.

pub mod afxdp;
pub mod capture;
pub mod cluster;
pub mod cluster_ops;
pub mod daemon;
pub mod fixtures;
pub mod ganesha;
pub mod netns;
pub mod ops;
pub mod rpc;
pub mod transport;
pub mod unit;
pub mod xdr;

pub use daemon::{daemon_bin, Daemon, DaemonOpts, PORT};
pub use fixtures::{status, Ctx, FH32_HEX, FH64_HEX, FH_HEX};
pub use netns::{CmdOutput, NetPair};
pub use rpc::{
    auth_stat, parse_exports, parse_fhstatus, parse_mountlist, parse_mountres3, procs,
    synthetic_handle, AcceptStat, Auth, Call, Denied, Reply, MOUNT_PROG,
};
pub use testbed;
pub use transport::{Proto, RpcClient, SrcPort, TcpClient, UdpClient};

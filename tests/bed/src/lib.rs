//! The one test bed of xdp-mountd: network namespaces joined by a veth pair, code and
//! commands run inside them, private rpcbinds, and daemon processes with a READY line,
//! bounded waits and cleanup on drop (also when a test panics).
//!
//! Used by the end-to-end suite (`tests/`, package `e2e`), mount-user's privileged AF_XDP
//! tests (`mount-user/tests/`) and xtask (`cargo xtask run` and `bench`). Each of them
//! once had its own namespace builder; they differed in small ways (how leftovers were
//! found, whether processes were killed before a namespace went, how rpcbind was waited
//! for) and fixes reached one copy only. What stays in each user is what is its own: the
//! e2e suite's `DaemonOpts` and NetPair conveniences, mount-user's RPC client and XDP
//! probes, the bench's server variants and the demo's log follower.
//!
//! Everything here shells out to `ip` (iproute2), `unshare`, `nsenter`, `rpcbind` and
//! `rpcinfo` rather than speaking netlink: those tools are what an operator would type,
//! their errors read well, and a netlink crate would be a heavy dependency for xtask,
//! which must build on a fresh machine first thing (`cargo xtask setup`). Hence the only
//! dependencies are `anyhow` and `libc`.
//!
//! Layout:
//! - [`netns`]: one named namespace: exists, processes in it, removal, running a closure
//!   in it (`setns` on a thread of its own) or a command (`ip netns exec`), `ip` itself.
//! - [`bpf_stats`]: [`bpf_stats::BpfStats`], `kernel.bpf_stats_enabled` at 1 while held
//!   (lock file across processes), put back on drop.
//! - [`ecmp`]: [`Ecmp`], a client, N node namespaces behind one ECMP service address and a
//!   backbone bridge (cluster mode's deployment picture).
//! - [`etcd`]: [`Etcd`], one etcd member or a three-member cluster (leader found and
//!   killed), in a namespace of the test's, removed on drop.
//! - [`pair`]: [`Pair`], two namespaces and a veth pair with IPv4 and IPv6 addresses,
//!   removed on drop; unique names, the per-process cap and the sweep of stale namespaces.
//! - [`mounts`]: a private mount namespace for a command (tmpfs `/run`, an overlay on
//!   `/etc`, rpcbind started inside it first).
//! - [`rpcbind`]: [`Rpcbind`], a private rpcbind that other processes join.
//! - [`process`]: [`Process`], a child with a log, a READY line, bounded waits and stops.
//! - [`skip`]: [`can_run`], the SKIPPED-unless-CI rule of every privileged test.
//! - [`scratch`]: [`Scratch`], a scratch directory kept for inspection when a test fails.

pub mod bpf_stats;
pub mod ecmp;
pub mod etcd;
pub mod mounts;
pub mod netns;
pub mod pair;
pub mod process;
pub mod rpcbind;
pub mod scratch;
pub mod skip;

pub use ecmp::Ecmp;
pub use etcd::Etcd;
pub use mounts::{PrivateMounts, PrivateRpcbind};
pub use netns::{ip, CmdOutput};
pub use pair::{unique_names, End, Pair, PairSpec, UniqueNames};
pub use process::{Process, Spawn};
pub use rpcbind::Rpcbind;
pub use scratch::Scratch;
pub use skip::{can_run, current_test};

//! Cluster mode (`serve --cluster`): nodes behind ECMP share the exports, the handles
//! learned from upstream and the mount list through etcd. See docs/cluster.md.
//!
//! One thread ("cluster", its own single-threaded tokio runtime) owns the etcd client
//! ([`task`]); the protocol core and the shells know nothing of it: the mount list tells
//! it of MNT/UMNT/UMNTALL through a bounded queue ([`mounts::OpQueue`]), the exports are
//! swapped through the same [`Reloader`](crate::exports::Reloader) as a SIGHUP reload, and
//! gateway handles through [`Upstream`]'s hooks. No call ever waits on etcd.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mount_proto::mountlist::MountList;

use crate::upstream::Upstream;

pub mod exports;
pub mod handles;
pub mod keys;
pub mod membership;
pub mod mounts;
pub mod status;
mod task;

pub use exports::{CachedSet, ExportsSet};
pub use keys::Keys;
pub use status::{ClusterReport, NodeStatus, StatusReport};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/xdp-mountd";
/// Bound on each etcd call (a call past it counts as an etcd error).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the first attempt to read the exports at start.
pub const START_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the cluster is and who this node is.
#[derive(Debug, Clone)]
pub struct Config {
    /// etcd endpoints (`http://HOST:PORT`).
    pub endpoints: Vec<String>,
    /// This node's name.
    pub node: String,
    /// The keys under the prefix.
    pub keys: Keys,
    /// The last compiled exports set, for a start without etcd.
    pub cache: PathBuf,
}

/// The default cache file of `node`.
pub fn default_cache(node: &str) -> PathBuf {
    PathBuf::from(format!("/var/lib/xdp-mountd/cluster-{node}.exports"))
}

/// Parses `etcd://HOST:PORT[,HOST:PORT…]` into endpoints.
pub fn parse_url(url: &str) -> anyhow::Result<Vec<String>> {
    let rest = url
        .strip_prefix("etcd://")
        .with_context(|| format!("--cluster {url:?}: expected etcd://HOST:PORT[,HOST:PORT...]"))?;
    let endpoints: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|hp| {
            let ok = hp.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && !hp.contains('/') && p.parse::<u16>().is_ok()
            });
            anyhow::ensure!(ok, "--cluster {url:?}: {hp:?} is not HOST:PORT");
            Ok(format!("http://{hp}"))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!endpoints.is_empty(), "--cluster {url:?}: no endpoint");
    Ok(endpoints)
}

/// The first of `endpoints` that answers a status call, tried in turn.
///
/// One endpoint per client, not etcd-client's balanced channel over all of them: that
/// channel opens its connections lazily and keeps routing calls to a member that died
/// (`tcp connect error`), so a node given three members stopped writing when one was
/// killed. A client bound to one member fails fast instead, and the caller moves on.
pub async fn connect_first(endpoints: &[String]) -> anyhow::Result<etcd_client::Client> {
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let answered = async {
            let mut client = connect(endpoint).await?;
            bounded("status", client.status()).await?;
            anyhow::Ok(client)
        };
        match answered.await {
            Ok(client) => return Ok(client),
            Err(e) => errors.push(format!("{endpoint}: {e:#}")),
        }
    }
    anyhow::bail!("no etcd endpoint answered ({})", errors.join("; "))
}

/// Connects to one etcd `endpoint` (lazily: the first call finds out whether it answers).
/// One endpoint per client: etcd-client's balanced channel over several kept routing to a
/// dead member (docs/cluster.md), so sessions rotate over the endpoints themselves.
pub async fn connect(endpoint: &str) -> anyhow::Result<etcd_client::Client> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), CALL_TIMEOUT);
    etcd_client::Client::connect([endpoint], Some(options))
        .await
        .with_context(|| format!("connecting to etcd at {endpoint}"))
}

/// `fut`, bounded by [`CALL_TIMEOUT`].
pub async fn bounded<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.with_context(|| format!("etcd {what}")),
        Err(_) => anyhow::bail!("etcd {what}: no answer in {CALL_TIMEOUT:?}"),
    }
}

/// What the exports were at start.
#[derive(Debug)]
pub enum Initial {
    /// Read from etcd: the set and its generation.
    Etcd(ExportsSet, u64),
    /// etcd answered, but nothing is published.
    Unpublished,
    /// etcd did not answer.
    Unreachable(anyhow::Error),
}

/// Reads the published exports once, bounded by [`START_TIMEOUT`] (blocking).
pub fn initial_exports(config: &Config) -> Initial {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Initial::Unreachable(e.into()),
    };
    let key = config.keys.exports();
    let result = runtime.block_on(async {
        let read = async {
            let mut client = connect_first(&config.endpoints).await?;
            let resp = bounded("get exports", client.get(key.as_str(), None)).await?;
            match resp.kvs().first() {
                Some(kv) => {
                    let set = ExportsSet::from_value(kv.value(), &key)?;
                    Ok(Some((set, kv.mod_revision() as u64)))
                }
                None => Ok(None),
            }
        };
        match tokio::time::timeout(START_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("etcd: no answer in {START_TIMEOUT:?}")),
        }
    });
    match result {
        Ok(Some((set, generation))) => Initial::Etcd(set, generation),
        Ok(None) => Initial::Unpublished,
        Err(e) => Initial::Unreachable(e),
    }
}

/// Compiles and swaps in an exports set (the serve side's [`Reloader`]); true when it is
/// in force.
pub type Install = dyn Fn(&ExportsSet, u64) -> bool + Send + Sync;

/// What the cluster task works on.
pub struct Deps {
    /// The local mount list (what DUMP reads).
    pub mounts: Arc<MountList>,
    /// Swaps a published set in.
    pub install: Arc<Install>,
    /// Gateway mode.
    pub upstream: Option<Arc<Upstream>>,
}

/// The running cluster task.
pub struct Cluster {
    node: String,
    counters: Arc<status::Counters>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    /// Installs the mount-list observer and starts the task; `generation` is that of the
    /// table served now (0: none from etcd).
    pub fn start(config: Config, deps: Deps, generation: u64) -> anyhow::Result<Self> {
        let counters = Arc::new(status::Counters::default());
        counters
            .generation
            .store(generation, std::sync::atomic::Ordering::Relaxed);
        let (queue, ops) = mounts::OpQueue::new(counters.dropped.clone());
        if deps.mounts.set_observer(Box::new(queue)).is_err() {
            anyhow::bail!("the mount list already has an observer");
        }
        let handles = deps.upstream.as_ref().map(|up| {
            up.set_refresh_jitter(up.config().ttl / 4);
            let (tx, rx) = crossbeam_channel::bounded(handles::QUEUE);
            up.set_on_learned(Box::new(move |path, learned| {
                // Full: the next refresh writes it again.
                let _ = tx.try_send((path.to_owned(), *learned));
            }));
            rx
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let node = config.node.clone();
        let task = task::Task::new(config, deps, counters.clone(), ops, handles);
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(task.run(stop_rx)),
                    Err(e) => tracing::error!(error = %e, "cluster: no runtime; not sharing"),
                }
            })
            .context("starting the cluster thread")?;
        Ok(Self {
            node,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// The cluster part of the stats.
    pub fn report(&self) -> ClusterReport {
        self.counters.report(&self.node)
    }

    /// A function returning the cluster part of the stats (for the report hook).
    pub fn reporter(&self) -> Arc<dyn Fn() -> ClusterReport + Send + Sync> {
        let (counters, node) = (self.counters.clone(), self.node.clone());
        Arc::new(move || counters.report(&node))
    }

    /// Writes what is pending (bounded), gives up the lease and ends the task.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("cluster thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379,10.0.0.2:2379").unwrap(),
            ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(
            parse_url("etcd://[::1]:2379").unwrap(),
            ["http://[::1]:2379"]
        );
        for bad in [
            "http://h:1",
            "etcd://",
            "etcd://h",
            "etcd://h:x",
            "etcd://:1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

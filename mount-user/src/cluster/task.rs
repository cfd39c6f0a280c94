//! The cluster task: one session per etcd connection. The first session starts with a full
//! read of the prefix (a resync: exports, mount holders, handles), then watches from the
//! revision after it; a later one resumes the watch after the last revision seen (a resync
//! instead when ops were dropped meanwhile, when the watch was compacted away, or when etcd's
//! revision is behind ours); every [`BATCH_INTERVAL`] it writes the pending mount-list
//! writes in transactions, every [`STATUS_EVERY`] it keeps its lease and status. Any failure
//! ends the session; the next one follows after a backoff (100 ms doubling to 2 s). Between
//! sessions ops keep being planned, bounded.
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Receiver;
use etcd_client::{Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use mount_proto::mount::learned::Learned;

use super::exports::{write_cache, CachedSet};
use super::handles::HandleValue;
use super::membership::{unix_ms, LEASE_TTL, STATUS_EVERY};
use super::mounts::{Holders, MountOp, Pending, Write, BATCH_INTERVAL, DRAIN_INTERVAL, PENDING};
use super::status::Counters;
use super::{bounded, connect, Config, Deps, ExportsSet, NodeStatus};
use crate::log_throttle::LogThrottle;

/// Longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Transactions written per batch tick at most (4096 writes per 100 ms).
const TXNS_PER_TICK: usize = 32;
/// Handles waiting to be written while etcd is away, at most.
const HANDLES_PENDING: usize = 16_384;

/// A session's connection: client, lease and watch.
struct Opened {
    client: Client,
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    alive: etcd_client::LeaseKeepAliveStream,
    watch: etcd_client::WatchStream,
}

/// The task's state (owned by the cluster thread).
pub(super) struct Task {
    config: Config,
    deps: Deps,
    counters: Arc<Counters>,
    ops: Receiver<MountOp>,
    handles_in: Option<Receiver<(String, Learned)>>,
    handles_out: std::collections::BTreeMap<String, Learned>,
    holders: Holders,
    pending: Pending,
    /// `dropped` when the last resync ran: more since means MNTs may be missing in etcd.
    dropped_seen: u64,
    /// After dropped ops: local entries nobody held at the last full read, to be written
    /// again as room allows (kept in the local list meanwhile).
    restore: BTreeSet<(String, String)>,
    /// The last revision seen (resync or watch event): the next session watches from the
    /// one after it. None: read everything first.
    revision: Option<i64>,
    /// Index (modulo the count) of the endpoint the next session connects to; a failed
    /// session moves on to the next, so a dead member is left behind.
    endpoint: usize,
    throttle: LogThrottle,
}

impl Task {
    pub(super) fn new(
        config: Config,
        deps: Deps,
        counters: Arc<Counters>,
        ops: Receiver<MountOp>,
        handles_in: Option<Receiver<(String, Learned)>>,
    ) -> Self {
        Self {
            config,
            deps,
            counters,
            ops,
            handles_in,
            handles_out: Default::default(),
            holders: Holders::default(),
            pending: Pending::default(),
            dropped_seen: 0,
            restore: BTreeSet::new(),
            revision: None,
            endpoint: 0,
            throttle: LogThrottle::new(Duration::from_secs(10)),
        }
    }

    /// Sessions until `stop` turns true.
    pub(super) async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.session(&mut stop).await {
                Ok(()) => return,
                Err(e) => {
                    self.counters.errors.fetch_add(1, Relaxed);
                    self.endpoint = self.endpoint.wrapping_add(1);
                    let was = self.counters.connected.swap(false, Relaxed);
                    if was {
                        tracing::warn!(
                            error = %format!("{e:#}"),
                            "cluster: lost etcd; serving from local state, mount-list writes held (bounded)"
                        );
                    } else if let Some(suppressed) = self.throttle.allow() {
                        tracing::warn!(
                            error = %format!("{e:#}"),
                            suppressed,
                            "cluster: etcd unreachable; serving from local state"
                        );
                    }
                }
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_millis(100);
            }
            // Keep planning ops while waiting, so the queue does not fill.
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if *stop.borrow() {
                    return;
                }
                self.drain();
                tokio::select! {
                    _ = tokio::time::sleep(DRAIN_INTERVAL) => {}
                    _ = stop.changed() => return,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: resync, then watch, write and keep the lease until an error or stop.
    async fn session(
        &mut self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // Setting up may take a few bounded calls: a stop meanwhile ends it at once.
        let opened = tokio::select! {
            opened = self.open() => opened?,
            _ = stop.changed() => return Ok(()),
        };
        let Opened {
            mut client,
            lease,
            mut keeper,
            mut alive,
            mut watch,
        } = opened;
        self.put_status(&mut client, lease).await?;
        let mut batch = tokio::time::interval(BATCH_INTERVAL);
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        let mut status = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    self.drain();
                    let all = async {
                        loop {
                            self.flush(&mut client).await?;
                            if self.pending.is_empty() {
                                return anyhow::Ok(());
                            }
                        }
                    };
                    let flushed = tokio::time::timeout(Duration::from_secs(1), all).await;
                    if !matches!(flushed, Ok(Ok(()))) {
                        tracing::warn!(pending = self.pending.len(), "cluster: mount-list writes left unwritten at exit");
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(500), client.lease_revoke(lease)).await;
                    return Ok(());
                }
                msg = watch.message() => {
                    let resp = msg.context("etcd watch")?.context("etcd watch ended")?;
                    if resp.canceled() {
                        self.revision = None;
                        anyhow::bail!(
                            "etcd watch cancelled (compacted at {}): {}",
                            resp.compact_revision(),
                            resp.cancel_reason()
                        );
                    }
                    for event in resp.events() {
                        self.apply(event).await;
                        if let Some(kv) = event.kv() {
                            self.revision = Some(kv.mod_revision().max(self.revision.unwrap_or(0)));
                        }
                    }
                }
                _ = drain.tick() => self.drain(),
                _ = batch.tick() => {
                    self.drain();
                    self.flush(&mut client).await?;
                    self.restore_some();
                }
                _ = status.tick() => {
                    bounded("lease keep-alive", keeper.keep_alive()).await?;
                    self.put_status(&mut client, lease).await?;
                }
                ka = alive.message() => {
                    let ka = ka.context("etcd lease keep-alive")?.context("etcd lease keep-alive ended")?;
                    anyhow::ensure!(ka.ttl() > 0, "etcd lease {lease:x} expired");
                }
            }
        }
    }

    /// Connects, catches up (a resync, or the resumed watch), takes a lease and watches.
    async fn open(&mut self) -> anyhow::Result<Opened> {
        let endpoints = &self.config.endpoints;
        let Some(endpoint) = endpoints
            .get(self.endpoint % endpoints.len().max(1))
            .cloned()
        else {
            anyhow::bail!("no etcd endpoint configured");
        };
        let mut client = connect(&endpoint).await?;
        // Resume the watch where it broke when nothing was dropped meanwhile (etcd keeps the
        // history until compaction; a compacted start cancels the watch, and the next
        // session reads everything); else read everything now.
        let dropped = self.counters.dropped.load(Relaxed) != self.dropped_seen;
        let revision = match self.revision {
            Some(seen) if !dropped => {
                // Proves etcd answers before the watch is trusted to; a revision behind ours
                // is another etcd (restored or replaced): read everything.
                let now = bounded("status", client.status()).await?;
                match now.header().map(|h| h.revision()) {
                    Some(current) if current >= seen => seen,
                    _ => self.resync(&mut client).await?,
                }
            }
            _ => self.resync(&mut client).await?,
        };
        let lease = bounded("lease grant", client.lease_grant(LEASE_TTL, None))
            .await?
            .id();
        let (keeper, alive) = bounded("lease keep-alive", client.lease_keep_alive(lease)).await?;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let watch = bounded("watch", client.watch(self.config.keys.all(), Some(options))).await?;
        self.counters.connected.store(true, Relaxed);
        tracing::info!(
            %endpoint,
            node = %self.config.node,
            revision,
            "cluster: connected to etcd"
        );
        Ok(Opened {
            client,
            lease,
            keeper,
            alive,
            watch,
        })
    }

    /// Reads the whole prefix: exports, holders, handles; restores the local list from it.
    async fn resync(&mut self, client: &mut Client) -> anyhow::Result<i64> {
        let keys = self.config.keys.clone();
        let resp = bounded(
            "get (resync)",
            client.get(keys.all(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut holders = Holders::default();
        let mut exports = None;
        let mut handles = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if key == keys.exports() {
                exports = Some((kv.value().to_vec(), kv.mod_revision() as u64));
            } else if let Some(m) = keys.parse_mount(&key) {
                holders.insert(m);
            } else if let Some(path) = keys.parse_handle(&key) {
                handles.push((path, kv.value().to_vec()));
            }
        }
        // Ops dropped since the last resync may be MNTs etcd never heard of: this node's
        // entries that nobody holds are written again, as room in the pending writes allows
        // (see `restore_some`; a dropped UMNT cannot be recovered, see docs/cluster.md).
        self.holders = holders;
        let dropped = self.counters.dropped.load(Relaxed);
        if dropped != self.dropped_seen {
            let listed = self.deps.mounts.snapshot().1;
            self.restore = listed
                .into_iter()
                .filter(|(h, d)| self.needs_restore(h, d))
                .collect();
            tracing::info!(
                dropped = dropped - self.dropped_seen,
                entries = self.restore.len(),
                "cluster: ops were dropped; writing this node's unheld entries again"
            );
            self.dropped_seen = dropped;
        }
        self.reconcile_local();
        match exports {
            Some((value, generation)) => {
                if generation != self.counters.generation.load(Relaxed) {
                    self.install(&value, generation).await;
                }
            }
            None => tracing::warn!(
                key = %keys.exports(),
                "cluster: no exports published; keeping the current table"
            ),
        }
        for (path, value) in handles {
            self.adopt(&path, &value);
        }
        self.counters.resyncs.fetch_add(1, Relaxed);
        self.counters
            .mounts
            .store(self.holders.len() as u64, Relaxed);
        Ok(revision)
    }

    /// Whether a locally listed entry is to be written again after dropped ops: no node
    /// holds it in etcd and no delete of this node's key is on its way.
    fn needs_restore(&self, host: &str, dir: &str) -> bool {
        let own = self.config.keys.mount(host, dir, &self.config.node);
        !self.holders.contains(host, dir) && !self.pending.deletes(&own)
    }

    /// After dropped ops: plans this node's MNT of the entries to restore, as long as
    /// the pending writes are under half full.
    fn restore_some(&mut self) {
        if self.restore.is_empty() {
            return;
        }
        let now = Instant::now();
        while self.pending.len() < PENDING / 2 {
            let Some((host, dir)) = self.restore.pop_first() else {
                tracing::info!("cluster: this node's entries written again after dropped ops");
                return;
            };
            if !self.needs_restore(&host, &dir) {
                continue;
            }
            let op = MountOp::Mnt { host, dir };
            self.pending.plan(
                &op,
                &self.config.keys,
                &self.config.node,
                &self.holders,
                now,
            );
        }
    }

    /// The local list becomes the cluster's (plus this node's MNTs not yet written).
    fn reconcile_local(&mut self) {
        let keys = &self.config.keys;
        let node = &self.config.node;
        let mounts = &self.deps.mounts;
        let (_, local) = mounts.snapshot();
        let local: BTreeSet<(String, String)> = local.into_iter().collect();
        for (host, dir) in &local {
            if !self.restore.contains(&(host.clone(), dir.clone()))
                && !self.holders.contains(host, dir)
                && !self.pending.puts(&keys.mount(host, dir, node))
            {
                mounts.remove(host, dir);
            }
        }
        for ((host, dir), _) in self.holders.iter() {
            if !local.contains(&(host.clone(), dir.clone())) {
                mounts.add(host, dir);
            }
        }
    }

    /// One watch event.
    async fn apply(&mut self, event: &etcd_client::Event) {
        let Some(kv) = event.kv() else { return };
        let keys = self.config.keys.clone();
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let put = event.event_type() == EventType::Put;
        if key == keys.exports() {
            if put {
                self.install(kv.value(), kv.mod_revision() as u64).await;
            } else {
                tracing::warn!(%key, "cluster: exports key deleted; keeping the current table");
            }
        } else if let Some(m) = keys.parse_mount(&key) {
            let (host, dir) = (m.host.clone(), m.dir.clone());
            if put {
                self.holders.insert(m);
            } else {
                self.holders.remove(&m);
            }
            let own = keys.mount(&host, &dir, &self.config.node);
            if self.holders.contains(&host, &dir) || self.pending.puts(&own) {
                self.deps.mounts.add(&host, &dir);
            } else {
                self.deps.mounts.remove(&host, &dir);
            }
            self.counters
                .mounts
                .store(self.holders.len() as u64, Relaxed);
        } else if let Some(path) = keys.parse_handle(&key) {
            if put {
                self.adopt(&path, kv.value());
            }
        }
    }

    /// Compiles and swaps in a published set (off this thread), then caches it.
    async fn install(&mut self, value: &[u8], generation: u64) {
        let set = match ExportsSet::from_value(value, &self.config.keys.exports()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), generation, "cluster: keeping the current exports");
                return;
            }
        };
        let install = self.deps.install.clone();
        // Compiling resolves host names (blocking): off this thread; batches wait, calls not.
        let compiled = tokio::task::spawn_blocking(move || {
            let ok = install(&set, generation);
            (ok, set)
        })
        .await;
        let Ok((true, set)) = compiled else {
            return;
        };
        self.counters.generation.store(generation, Relaxed);
        let cache = &self.config.cache;
        match write_cache(cache, &CachedSet { generation, set }) {
            Ok(()) => {
                tracing::debug!(file = %cache.display(), generation, "cluster: exports cached")
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cluster: exports not cached"),
        }
    }

    /// A peer's learned handle.
    fn adopt(&mut self, path: &str, value: &[u8]) {
        let Some(up) = &self.deps.upstream else {
            return;
        };
        let parsed = HandleValue::parse(value);
        let learned = parsed.as_ref().and_then(HandleValue::learned);
        match (parsed, learned) {
            (Some(v), _) if v.by == self.config.node => {}
            (Some(_), Some(learned)) => {
                if up.adopt(path, learned) {
                    self.counters.adopted.fetch_add(1, Relaxed);
                }
            }
            _ => tracing::warn!(path, "cluster: malformed learned handle in etcd; ignored"),
        }
    }

    /// Moves queued ops into planned writes, and learned handles into their queue.
    fn drain(&mut self) {
        let now = Instant::now();
        let (keys, node) = (&self.config.keys, &self.config.node);
        while let Ok(op) = self.ops.try_recv() {
            if !self.pending.plan(&op, keys, node, &self.holders, now) {
                self.counters.dropped.fetch_add(1, Relaxed);
                continue;
            }
            // The core removed the entry locally; another node may still hold it.
            if let MountOp::Umnt { host, dir } = &op {
                if self.pending.listed(keys, node, &self.holders, host, dir) {
                    self.deps.mounts.add(host, dir);
                }
            }
        }
        if let Some(rx) = &self.handles_in {
            while let Ok((path, learned)) = rx.try_recv() {
                if self.handles_out.len() < HANDLES_PENDING || self.handles_out.contains_key(&path)
                {
                    self.handles_out.insert(path, learned);
                }
            }
        }
        self.count_pending(now);
    }

    /// Publishes the pending writes (and queued ops) and their age to the counters.
    fn count_pending(&self, now: Instant) {
        self.counters
            .pending
            .store((self.pending.len() + self.ops.len()) as u64, Relaxed);
        self.counters
            .lag_ms
            .store(self.pending.lag(now).as_millis() as u64, Relaxed);
    }

    /// Writes every pending mount-list write and learned handle.
    async fn flush(&mut self, client: &mut Client) -> anyhow::Result<()> {
        // A backlog (after an outage) is written over several ticks, so the watch is read
        // in between.
        for _ in 0..TXNS_PER_TICK {
            if self.pending.is_empty() {
                break;
            }
            let batch = self.pending.batch();
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|(key, write)| match write {
                    Write::Put => TxnOp::put(key.as_str(), "", None),
                    Write::Delete => TxnOp::delete(key.as_str(), None),
                })
                .collect();
            bounded("txn (mount list)", client.txn(Txn::new().and_then(ops))).await?;
            self.pending.written(&batch, Instant::now());
        }
        while let Some((path, learned)) = self.handles_out.pop_first() {
            let value = HandleValue::new(&self.config.node, &learned).to_value();
            let key = self.config.keys.handle(&path);
            if let Err(e) = bounded("put handle", client.put(key, value, None)).await {
                self.handles_out.insert(path, learned);
                return Err(e);
            }
        }
        self.count_pending(Instant::now());
        Ok(())
    }

    /// Rewrites this node's status, attached to `lease`.
    async fn put_status(&mut self, client: &mut Client, lease: i64) -> anyhow::Result<()> {
        let status = NodeStatus {
            node: self.config.node.clone(),
            generation: self.counters.generation.load(Relaxed),
            pending_ops: self.counters.pending.load(Relaxed),
            lag_ms: self.counters.lag_ms.load(Relaxed),
            last_contact_unix_ms: unix_ms(),
            etcd_connected: true,
        };
        let value = serde_json::to_vec(&status).unwrap_or_default();
        bounded(
            "put status",
            client.put(
                self.config.keys.node(&self.config.node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            ),
        )
        .await?;
        Ok(())
    }
}

//! `serve --cluster`: the first table (from etcd, else the node's cache, else empty) and
//! the cluster task wired to the reloader, the mount list and the gateway.
use std::sync::Arc;

use mount_proto::exports::ExportTable;
use mount_proto::mountlist::MountList;
use mount_user::cluster::{
    self, exports::write_cache, CachedSet, Cluster, Config, ExportsSet, Initial,
};
use mount_user::exports::{Reloader, SystemResolver};
use mount_user::upstream::Upstream;

/// The table to serve first, its generation (0: none from etcd) and the set it came from.
/// Never fails: a node without etcd and without a cache serves an empty table (logged).
pub fn initial_table(config: &Config) -> (ExportTable, u64, ExportsSet) {
    let from_cache = |why: &str| match cluster::exports::read_cache(&config.cache) {
        Ok(CachedSet { generation, set }) => match set.compile(&SystemResolver) {
            Ok(table) => {
                tracing::warn!(
                    file = %config.cache.display(),
                    generation,
                    exports = table.exports().len(),
                    "cluster: {why}; serving the cached exports"
                );
                (table, generation, set)
            }
            Err(e) => {
                tracing::error!(file = %config.cache.display(), "cluster: {why}; the cached exports do not compile ({e}); serving an empty table");
                (ExportTable::empty(), 0, ExportsSet::default())
            }
        },
        Err(e) => {
            tracing::warn!(
                "cluster: {why}; no usable cache ({e:#}); serving an empty table until exports are published"
            );
            (ExportTable::empty(), 0, ExportsSet::default())
        }
    };
    match cluster::initial_exports(config) {
        Initial::Etcd(set, generation) => match set.compile(&SystemResolver) {
            Ok(table) => {
                tracing::info!(
                    generation,
                    exports = table.exports().len(),
                    "cluster: exports loaded from etcd"
                );
                let cached = CachedSet {
                    generation,
                    set: set.clone(),
                };
                if let Err(e) = write_cache(&config.cache, &cached) {
                    tracing::warn!("cluster: exports not cached: {e:#}");
                }
                (table, generation, set)
            }
            Err(e) => {
                for line in e.to_string().lines() {
                    tracing::error!(
                        generation,
                        "cluster: published exports do not compile: {line}"
                    );
                }
                from_cache("the published exports do not compile")
            }
        },
        Initial::Unpublished => {
            tracing::warn!(
                key = %config.keys.exports(),
                "cluster: no exports published yet; serving an empty table (xdp-mountd cluster publish)"
            );
            (ExportTable::empty(), 0, ExportsSet::default())
        }
        Initial::Unreachable(e) => from_cache(&format!("etcd unreachable ({e:#})")),
    }
}

/// Starts the cluster task: published sets go through `reloader` (as a SIGHUP reload).
pub fn start(
    config: Config,
    reloader: &Arc<Reloader>,
    mounts: &Arc<MountList>,
    upstream: &Option<Arc<Upstream>>,
    generation: u64,
) -> anyhow::Result<Cluster> {
    let install = {
        let reloader = reloader.clone();
        Arc::new(move |set: &ExportsSet, generation: u64| {
            reloader
                .reload_texts(&format!("cluster generation {generation}"), set.pairs())
                .ok
        })
    };
    tracing::info!(node = %config.node, endpoints = %config.endpoints.join(","), "cluster mode");
    Cluster::start(
        config,
        cluster::Deps {
            mounts: mounts.clone(),
            install,
            upstream: upstream.clone(),
        },
        generation,
    )
}

//! `xdp-mountd serve`: wire exports, mount list, listeners, rpcbind and signals together.
//! The AF_XDP path is started by [`xdp`], the control socket by [`control`], the rpcbind
//! registrations are kept by [`registration`].
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mount_proto::exports::Resolver as _;
use mount_proto::mount::{ListBudget, Policy, Transport};
use mount_proto::mountlist::{Limits, MountList};
use mount_user::cluster::ClusterReport;
use mount_user::exports::{self, ExportSources, Reloader, SharedExports, SystemResolver};
use mount_user::privileges::{self, CapSet};
use mount_user::ratelimit::CallLimiter;
use mount_user::rmtab::{self, RmtabPersister};
use mount_user::service::mount::MountService;
use mount_user::service::names::NameCache;
use mount_user::socket::limit::Gate;
use mount_user::socket::tcp::{self, TcpConfig, TCP_REPLY_CAPACITY};
use mount_user::socket::udp::UdpServer;
use mount_user::socket::{self, Counters};
use mount_user::stats::{self, ExportsReport, Report};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServeArgs;
use crate::gateway;
use control::{Control, ControlHooks, KernelCounts, ReportExtras};
use registration::Watch;
use xdp::DropWatch;

mod cluster;
pub mod control;
mod registration;
pub mod xdp;
use mount_user::stats::procs::Counted;
use mount_user::upstream::Upstream;

/// TCP listen backlog: room for a mount storm's connection burst.
const TCP_BACKLOG: i32 = 1024;
/// How often the XDP program's rate-limit drops are looked at (logged at most every
/// [`DropWatch::INTERVAL`]).
const RATE_DROP_REPORT: Duration = Duration::from_secs(1);

/// Run the service until SIGINT/SIGTERM. Errors before READY (exports, rmtab, bind) are
/// returned; the exports error's Display is `FILE:LINE: message` per line.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    check_capabilities(&args)?;
    let cluster_config = args.cluster.config()?;
    let sources = ExportSources::new(args.exports.clone());
    // Cluster mode: the exports come from etcd (or the node's cache of them).
    let (table, cluster_start) = match &cluster_config {
        Some(config) => {
            let (table, generation, set) = cluster::initial_table(config);
            (table, Some((generation, set)))
        }
        None => {
            let table = exports::load_sources(&sources, &SystemResolver)?;
            tracing::info!(sources = ?sources.paths(), exports = table.exports().len(), "exports loaded");
            (table, None)
        }
    };
    // Gateway mode: the roots' handles are learned before anything is served (bounded).
    let upstream = gateway::start(&args.upstream)?;
    if let Some(up) = &upstream {
        gateway::learn(up, &table);
    }
    let exports = Arc::new(SharedExports::new(table));

    let (mounts, persister) = open_mount_list(&args)?;

    let bind = socket::effective_bind(args.bind);
    let workers = args.udp_workers();
    let (udp_sockets, tcp_listener, local) =
        bind_listeners(SocketAddr::new(bind, args.port), workers)?;

    let policy = Policy {
        filter_exports_by_client: args.filter_exports,
        list_budget: None,
    };
    // UDP (kernel socket and AF_XDP) answers from unproven addresses: lists are capped.
    let udp_policy = Policy {
        list_budget: (args.udp_list_factor > 0).then(|| ListBudget {
            factor: args.udp_list_factor as usize,
            trusted: args.trusted_networks.clone(),
        }),
        ..policy.clone()
    };
    let names = {
        let exports = exports.clone();
        Arc::new(
            NameCache::new()
                .with_netgroups(Box::new(move || exports.load().netgroups().clone()))
                .with_ttl(
                    Duration::from_secs(args.name_ttl),
                    Duration::from_secs(args.negative_ttl),
                ),
        )
    };
    // A reload forgets cached host facts: the netgroup or hosts files may have changed too.
    let reloader = {
        let names = names.clone();
        let mut reloader = Reloader::new(sources, exports.clone(), Box::new(move || names.clear()));
        if let Some(up) = upstream.clone() {
            // Gateway mode: a reloaded table's handles are learned before it is served.
            reloader = reloader.with_prepare(Box::new(move |table| gateway::learn(&up, table)));
        }
        Arc::new(reloader)
    };
    reloader.log_new_warnings(&exports.load());
    let cluster = match (cluster_config, cluster_start) {
        (Some(config), Some((generation, set))) => {
            // SIGHUP and `xdp-mountd reload` compile the published set again, never files.
            reloader.set_texts(set.pairs());
            Some(cluster::start(
                config, &reloader, &mounts, &upstream, generation,
            )?)
        }
        _ => None,
    };
    let counters = Arc::new(Counters::default());
    // Every call is counted per procedure for `xdp-mountd stats`.
    let counts = KernelCounts {
        listeners: counters.clone(),
        ..Default::default()
    };
    // The kernel paths' limiter; the XDP program holds AF_XDP traffic to the same limits.
    let limits = args.rate_limits();
    let gate = limits.is_on().then(|| {
        tracing::info!(
            per_source = %limits.describe_per_source(),
            global = %limits.describe_global(),
            sources = limits.sources,
            "call rate limits on"
        );
        Arc::new(Gate::new(CallLimiter::new(limits.clone())))
    });
    let service = |transport| {
        let counted = match transport {
            Transport::Udp => counts.udp.clone(),
            Transport::Tcp => counts.tcp.clone(),
        };
        let policy = match transport {
            Transport::Udp => udp_policy.clone(),
            Transport::Tcp => policy.clone(),
        };
        let service = MountService::new(exports.clone(), mounts.clone(), policy)
            .with_upstream(upstream.clone());
        Arc::new(Counted::new(service, counted))
    };
    // AF_XDP answers from the same core, uncounted here (its workers count per queue).
    let xdp_service = Arc::new(
        MountService::new(exports.clone(), mounts.clone(), udp_policy.clone())
            .with_upstream(upstream.clone()),
    );
    let kernel_udp = udp_sockets.first().context("no UDP socket")?.try_clone()?;
    let udp = UdpServer::start(
        udp_sockets,
        service(Transport::Udp),
        names.clone(),
        counters.clone(),
        gate.clone(),
    )
    .context("starting UDP workers")?;
    tracing::info!(%local, workers, "UDP listening");
    let restored = Arc::new(AtomicU64::new(0));
    let datapath = match xdp::start(&args.xdp, &limits, &kernel_udp, xdp_service, names.clone()) {
        Ok(d) => d,
        Err(e) => {
            udp.stop();
            return Err(e);
        }
    };
    if let Some(d) = &datapath {
        if let Err(e) = d.answer_mnt(exports.clone(), &mounts, upstream.is_some()) {
            udp.stop();
            return Err(e);
        }
    }
    let control = Control::start(
        &args
            .stats_socket
            .clone()
            .unwrap_or_else(|| stats::default_socket_path(local.port())),
        local.port(),
        datapath.clone(),
        &counts,
        ControlHooks {
            extras: report_extras(
                &exports,
                &mounts,
                &reloader,
                &upstream,
                &restored,
                cluster.as_ref().map(|c| c.reporter()),
            ),
            reload: {
                let reloader = reloader.clone();
                Arc::new(move || reloader.reload("xdp-mountd reload"))
            },
        },
    );

    // A small runtime: TCP is the slow path here (UDP workers are their own threads).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tcp")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let tcp_config = TcpConfig {
        max_connections: args.max_connections as usize,
        max_per_host: args.max_connections_per_host as usize,
        record_timeout: Duration::from_secs(args.record_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_record: args.max_record as usize,
        reply_capacity: TCP_REPLY_CAPACITY,
    };
    let registered = runtime.block_on(async {
        // Handlers first, so a signal arriving right after READY is not fatal.
        let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;

        let listener = tokio::net::TcpListener::from_std(tcp_listener).context("TCP listener")?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let tcp_task = tokio::spawn(tcp::serve(
            listener,
            service(Transport::Tcp),
            names,
            counters.clone(),
            tcp_config,
            gate,
            stop_rx,
        ));
        tracing::info!(%local, max_connections = args.max_connections, "TCP listening");
        let metrics = match args.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics address {addr}"))?;
                let bound = listener.local_addr().context("metrics local address")?;
                tokio::spawn(mount_user::metrics::http::serve(
                    listener,
                    control.report_fn(),
                    stop.subscribe(),
                ));
                tracing::info!(%bound, "metrics at http://{bound}/metrics");
                format!(" metrics={bound}")
            }
            None => String::new(),
        };

        let registered = if args.no_rpcbind {
            tracing::info!("--no-rpcbind: not registering with rpcbind");
            false
        } else {
            let ip = local.ip();
            tokio::task::spawn_blocking(move || registration::register(ip, local.port()))
                .await
                .unwrap_or(false)
        };
        // Watched even when rpcbind was not reachable now: it may start (or restart) later.
        let watch = match args.rpcbind_check {
            _ if args.no_rpcbind => None,
            0 => None,
            secs => {
                let every = Duration::from_secs(secs);
                Watch::start(local.ip(), local.port(), every, restored.clone())
                    .map_err(|e| tracing::warn!(error = %e, "rpcbind watch not started"))
                    .ok()
            }
        };

        println!("READY udp={local} tcp={local}{metrics}");
        std::io::stdout()
            .flush()
            .context("writing READY to stdout")?;

        let mut retry = tokio::time::interval(Duration::from_secs(args.resolve_retry));
        let mut drop_report = tokio::time::interval(RATE_DROP_REPORT);
        let mut drops = DropWatch::default();
        let retrying = Arc::new(AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let reloader = reloader.clone();
                    if tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await.is_err() {
                        tracing::error!("SIGHUP: reload task failed");
                    }
                }
                _ = retry.tick() => retry_unresolved(&exports, &reloader, &retrying),
                _ = drop_report.tick(), if limits.is_on() => {
                    if let Some(datapath) = &datapath {
                        xdp::log_rate_drops(datapath, &mut drops, &limits);
                    }
                }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            }
        }
        if let Some(watch) = watch {
            // Before unregistering, so the watch does not register us again.
            tokio::task::spawn_blocking(move || watch.stop()).await.ok();
        }
        let _ = stop.send(true);
        if tcp_task.await.is_err() {
            tracing::error!("TCP listener task panicked");
        }
        anyhow::Ok(registered)
    });
    control.stop();
    // XDP first: steering stops while the kernel UDP socket still serves.
    if let Some(Err(e)) = datapath.map(|d| d.shutdown()) {
        tracing::error!("stopping the AF_XDP path: {e:#}");
    }
    udp.stop();
    let registered = registered?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    if registered || restored.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        registration::unregister();
    }
    if let Some(cluster) = cluster {
        // After the listeners: the last ops are queued; their writes are bounded (1 s).
        cluster.stop();
    }
    if let Some(persister) = persister {
        persister
            .flush_and_stop()
            .context("writing the rmtab at exit")?;
    }
    counters.log();
    tracing::info!("stopped");
    Ok(())
}

/// Bind the UDP group and the TCP listener on the same port. With port 0 the kernel picks
/// the UDP port; should TCP find it taken, try again with another.
fn bind_listeners(
    addr: SocketAddr,
    workers: usize,
) -> anyhow::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener, SocketAddr)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp =
            socket::bind_udp_group(addr, workers).with_context(|| format!("binding UDP {addr}"))?;
        let local = udp
            .first()
            .context("no UDP socket")?
            .local_addr()
            .context("UDP local address")?;
        match socket::bind_tcp(local, TCP_BACKLOG) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            Err(e)
                if addr.port() == 0
                    && attempts < 10
                    && e.kind() == std::io::ErrorKind::AddrInUse =>
            {
                tracing::debug!(%local, "TCP port taken, picking another");
            }
            Err(e) => return Err(e).with_context(|| format!("binding TCP {local}")),
        }
    }
}

/// The mount list: from `--rmtab` (with a persister writing changes back) or in memory.
fn open_mount_list(args: &ServeArgs) -> anyhow::Result<(Arc<MountList>, Option<RmtabPersister>)> {
    let limits = Limits {
        per_host: args.max_mounts_per_host,
        total: args.max_mounts,
    };
    let Some(path) = &args.rmtab else {
        tracing::info!("no --rmtab: the mount list is kept in memory only");
        return Ok((Arc::new(MountList::with_limits(limits)), None));
    };
    let list = Arc::new(
        rmtab::load(path, limits).with_context(|| format!("reading rmtab {}", path.display()))?,
    );
    tracing::info!(file = %path.display(), entries = list.len(), "mount list loaded");
    let persister = rmtab::spawn(list.clone(), path.clone())
        .with_context(|| format!("starting the rmtab writer for {}", path.display()))?;
    Ok((list, Some(persister)))
}

/// Fails naming the capabilities this configuration needs and the process lacks.
fn check_capabilities(args: &ServeArgs) -> anyhow::Result<()> {
    let xdp = args.xdp.config(args.port, &args.rate_limits())?.is_some();
    let needs = privileges::needed(
        xdp,
        args.port,
        privileges::memlock_unlimited(),
        privileges::unprivileged_port_start(),
    );
    let have = CapSet::effective().context("reading the effective capabilities")?;
    privileges::check(have, &needs)?;
    tracing::info!(capabilities = %have.names().join(","), "effective capabilities");
    Ok(())
}

/// The report's parts owned here: the export table, reloads, mount list, capabilities.
fn report_extras(
    exports: &Arc<SharedExports>,
    mounts: &Arc<MountList>,
    reloader: &Arc<Reloader>,
    upstream: &Option<Arc<Upstream>>,
    restored: &Arc<AtomicU64>,
    cluster: Option<Arc<dyn Fn() -> ClusterReport + Send + Sync>>,
) -> Arc<ReportExtras> {
    let (exports, mounts, reloader) = (exports.clone(), mounts.clone(), reloader.clone());
    let (upstream, restored) = (upstream.clone(), restored.clone());
    Arc::new(move |report: &mut Report| {
        report.exports = ExportsReport {
            loaded: exports.load().exports().len() as u64,
            reloads: reloader.done(),
            reload_failures: reloader.failed(),
            generation: exports.generation(),
        };
        report.mount_list_entries = mounts.len() as u64;
        report.mount_list = stats::mount_list_counters(&mounts);
        report.capabilities = CapSet::effective().map(CapSet::names).unwrap_or_default();
        report.upstream = upstream.as_ref().map(|u| u.report());
        report.rpcbind_restored = restored.load(Ordering::Relaxed);
        report.cluster = cluster.as_ref().map(|c| c());
    })
}

/// Looks up again, off the runtime, the host names that did not resolve at load; when one
/// does now, reloads so that its rule matches by address. One retry at a time.
fn retry_unresolved(
    exports: &Arc<SharedExports>,
    reloader: &Arc<Reloader>,
    retrying: &Arc<AtomicBool>,
) {
    let names = exports.load().unresolved_names().to_vec();
    if names.is_empty() || retrying.swap(true, Ordering::AcqRel) {
        return;
    }
    let (reloader, retrying) = (reloader.clone(), retrying.clone());
    tokio::task::spawn_blocking(move || {
        let resolved = names
            .iter()
            .find(|n| SystemResolver.resolve(n).is_ok_and(|a| !a.is_empty()));
        if let Some(name) = resolved {
            reloader.reload(&format!("host {name:?} resolves now"));
        }
        retrying.store(false, Ordering::Release);
    });
}

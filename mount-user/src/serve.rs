//! `xdp-mountd serve`: wire exports, mount list, listeners, rpcbind and signals together.
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mount_user::exports::{ExportTable, SharedExports};
use mount_user::mount::{Policy, Transport};
use mount_user::mountlist::{Limits, MountList, Rmtab, RmtabPersister};
use mount_user::socket::resolve::NameCache;
use mount_user::socket::service::MountService;
use mount_user::socket::tcp::{self, TcpConfig, TCP_REPLY_CAPACITY};
use mount_user::socket::udp::UdpServer;
use mount_user::socket::{self, Counters};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServeArgs;
use crate::fastpath::{FastPath, KernelCounts, ReportSources};
use crate::gateway;
use crate::registration::{self, Watch};
use mount_user::stats::procs::Counted;
use mount_user::upstream::Upstream;

/// TCP listen backlog: room for a mount storm's connection burst.
const TCP_BACKLOG: i32 = 1024;

/// Run the service until SIGINT/SIGTERM. Errors before READY (exports, rmtab, bind) are
/// returned; the exports error's Display is `FILE:LINE: message` per line.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let table = ExportTable::load(&args.exports)?;
    tracing::info!(file = %args.exports.display(), exports = table.exports().len(), "exports loaded");
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
    };
    let names = Arc::new(NameCache::new());
    let counters = Arc::new(Counters::default());
    // Every call is counted per procedure for `xdp-mountd stats`.
    let counts = KernelCounts::default();
    let service = |transport| {
        let counted = match transport {
            Transport::Udp => counts.udp.clone(),
            Transport::Tcp => counts.tcp.clone(),
        };
        let service = MountService::new(exports.clone(), mounts.clone(), policy.clone())
            .with_upstream(upstream.clone());
        Arc::new(Counted::new(service, counted))
    };
    // AF_XDP answers from the same core, uncounted here (its workers count per queue).
    let xdp_service = Arc::new(
        MountService::new(exports.clone(), mounts.clone(), policy.clone())
            .with_upstream(upstream.clone()),
    );
    let kernel_udp = udp_sockets.first().context("no UDP socket")?.try_clone()?;
    let udp = UdpServer::start(
        udp_sockets,
        service(Transport::Udp),
        names.clone(),
        counters.clone(),
    )
    .context("starting UDP workers")?;
    tracing::info!(%local, workers, "UDP listening");
    let restored = Arc::new(AtomicU64::new(0));
    let fast = FastPath::start(
        &args.xdp,
        &kernel_udp,
        xdp_service,
        names.clone(),
        counters.clone(),
        &counts,
        ReportSources {
            mounts: mounts.clone(),
            upstream: upstream.clone(),
            rpcbind_restored: restored.clone(),
        },
    );
    let fast = match fast {
        Ok(f) => f,
        Err(e) => {
            udp.stop();
            return Err(e);
        }
    };

    // A small runtime: TCP is the slow path here (UDP workers are their own threads).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tcp")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let tcp_config = TcpConfig {
        max_connections: args.max_connections as usize,
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
            stop_rx,
        ));
        tracing::info!(%local, max_connections = args.max_connections, "TCP listening");

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

        println!("READY udp={local} tcp={local}");
        std::io::stdout()
            .flush()
            .context("writing READY to stdout")?;

        loop {
            tokio::select! {
                _ = hup.recv() => reload(&exports, &args, upstream.clone()).await,
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
    // XDP first: steering stops while the kernel UDP socket still serves.
    if let Err(e) = fast.shutdown() {
        tracing::error!("stopping the AF_XDP path: {e:#}");
    }
    udp.stop();
    let registered = registered?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    if registered || restored.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        registration::unregister();
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
        Rmtab::load(path, limits).with_context(|| format!("reading rmtab {}", path.display()))?,
    );
    tracing::info!(file = %path.display(), entries = list.len(), "mount list loaded");
    let persister = Rmtab::spawn(list.clone(), path.clone())
        .with_context(|| format!("starting the rmtab writer for {}", path.display()))?;
    Ok((list, Some(persister)))
}

/// SIGHUP: load the exports file again (and in gateway mode learn its roots' handles before
/// it is served); keep the current table on error.
async fn reload(exports: &Arc<SharedExports>, args: &ServeArgs, upstream: Option<Arc<Upstream>>) {
    let path = args.exports.clone();
    // Loading resolves host names and learning waits for upstream: off the runtime's workers.
    let loaded = tokio::task::spawn_blocking(move || {
        let table = ExportTable::load(&path)?;
        if let Some(up) = &upstream {
            gateway::learn(up, &table);
        }
        Ok::<_, mount_user::exports::ExportsError>(table)
    });
    match loaded.await {
        Ok(Ok(table)) => {
            let count = table.exports().len();
            exports.replace(table);
            tracing::info!(file = %args.exports.display(), exports = count, "SIGHUP: exports reloaded");
        }
        Ok(Err(e)) => {
            for line in e.to_string().lines() {
                tracing::error!("SIGHUP: reload failed, keeping the current exports: {line}");
            }
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: reload task failed"),
    }
}

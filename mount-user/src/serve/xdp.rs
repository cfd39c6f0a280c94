//! `serve`'s AF_XDP path: the `--iface/--xdp/--queues/--cores` options, starting the
//! [`Datapath`] next to the kernel listeners, and logging what its XDP program dropped
//! over the rate limits (the program counts; only userspace can log).
use std::net::UdpSocket;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use mount_ebpf::Counter;
use mount_user::afxdp::{Datapath, DatapathConfig};
use mount_user::ratelimit::RateLimits;
use mount_user::service::names::NameCache;
use mount_user::service::Responder;
use mount_xdp::ebpf::XdpMode;

/// `--xdp` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpChoice {
    /// XDP in the driver (fails clearly when the driver cannot).
    Native,
    /// XDP in the generic network stack (any interface, slower).
    Generic,
    /// No XDP: kernel sockets only.
    Off,
}

/// The AF_XDP options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct XdpArgs {
    /// Answer UDP calls arriving on this interface through AF_XDP (kernel bypass). Without
    /// it everything goes through the kernel sockets.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,

    /// Where the XDP program runs [default: native when --iface is given, else off].
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp: Option<XdpChoice>,

    /// AF_XDP sockets (and workers), one per rx queue 0..N [default: the interface's
    /// RX queue count].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub queues: Option<u32>,

    /// Cores to pin the workers to, one per queue, e.g. 0,1 or 2-5 [default: queue i on
    /// core i modulo the CPU count].
    #[arg(long, value_name = "LIST", value_parser = parse_core_list)]
    pub cores: Option<CoreList>,

    /// After answering, an AF_XDP worker busy-polls the interface's receive queue for up
    /// to this many microseconds before it sleeps (SO_PREFER_BUSY_POLL): fewer wakeups
    /// and lower latency under steady load, at the price of CPU spent spinning after
    /// every burst. 0: off.
    #[arg(long, value_name = "USECS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub afxdp_busy_poll: u32,
    /// Let the XDP program answer MOUNT NULL calls, and MNT of export roots a client has
    /// already mounted (recorded), itself (XDP_TX), after the rate limits, without waking a
    /// worker; everything else still goes to AF_XDP. Only with --iface,
    /// and only for calls to any address (--bind :: or 0.0.0.0). On a veth in native mode
    /// the other end needs an XDP program of its own, or veth drops the replies.
    #[arg(long, value_enum, value_name = "on|off", default_value = "off")]
    pub xdp_answers: OnOff,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// A parsed `--cores` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

/// Parses "0,2,4-6" into [0, 2, 4, 5, 6].
pub fn parse_core_list(s: &str) -> Result<CoreList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |t: &str| {
            t.parse::<usize>()
                .map_err(|_| format!("{t:?} is not a core number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1024 {
                    return Err(format!("bad core range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(CoreList(out))
}

impl XdpArgs {
    /// The data path to start, or None for kernel sockets only; its XDP program applies
    /// `limits`.
    pub fn config(&self, port: u16, limits: &RateLimits) -> anyhow::Result<Option<DatapathConfig>> {
        let mode = match (self.xdp, &self.iface) {
            (Some(XdpChoice::Off), _) | (None, None) => None,
            (Some(XdpChoice::Native), Some(_)) | (None, Some(_)) => Some(XdpMode::Native),
            (Some(XdpChoice::Generic), Some(_)) => Some(XdpMode::Generic),
            (Some(_), None) => bail!("--xdp native|generic needs --iface"),
        };
        let answers = self.xdp_answers == OnOff::On;
        let Some(mode) = mode else {
            if self.queues.is_some() || self.cores.is_some() || self.afxdp_busy_poll > 0 || answers
            {
                bail!(
                    "--queues, --cores, --afxdp-busy-poll and --xdp-answers on apply to the AF_XDP path: give --iface"
                );
            }
            return Ok(None);
        };
        Ok(Some(DatapathConfig {
            iface: self.iface.clone().unwrap_or_default(),
            mode,
            port,
            queues: self.queues,
            cores: self.cores.as_ref().map(|c| c.0.clone()),
            limits: limits.clone(),
            busy_poll_us: self.afxdp_busy_poll,
            answers,
        }))
    }
}

/// The XDP program's rate-limit drop counters as last logged: the first drops are logged
/// at the next look, later ones at most once per [`DropWatch::INTERVAL`], summed.
#[derive(Debug, Default)]
pub struct DropWatch {
    source: u64,
    global: u64,
    logged: Option<std::time::Instant>,
}

impl DropWatch {
    /// Least time between two log lines.
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    /// Takes the counters' current values; returns how much each grew since the last
    /// line, or (0, 0) when nothing grew or the last line is too recent.
    pub fn advance(&mut self, source: u64, global: u64) -> (u64, u64) {
        let grown = (
            source.saturating_sub(self.source),
            global.saturating_sub(self.global),
        );
        let due = self.logged.is_none_or(|at| at.elapsed() >= Self::INTERVAL);
        if grown == (0, 0) || !due {
            return (0, 0);
        }
        (self.source, self.global) = (source, global);
        self.logged = Some(std::time::Instant::now());
        grown
    }
}

/// Starts the data path when the options ask for one, on the kernel UDP socket's port
/// (calls it cannot answer go out through that socket).
pub fn start(
    args: &XdpArgs,
    limits: &RateLimits,
    kernel_udp: &UdpSocket,
    responder: Arc<dyn Responder>,
    names: Arc<NameCache>,
) -> anyhow::Result<Option<Arc<Datapath>>> {
    let port = kernel_udp.local_addr().context("UDP local address")?.port();
    let Some(config) = args.config(port, limits)? else {
        return Ok(None);
    };
    let kernel = kernel_udp
        .try_clone()
        .context("sharing the UDP socket with AF_XDP")?;
    Ok(Some(Arc::new(Datapath::start(
        &config, responder, names, kernel,
    )?)))
}

/// Logs what the XDP program dropped over the rate limits (see [`DropWatch`]); `serve`
/// calls it every second while limits are on.
pub fn log_rate_drops(datapath: &Datapath, watch: &mut DropWatch, limits: &RateLimits) {
    let Some(counters) = datapath.program_counters() else {
        return;
    };
    let (source, global) = watch.advance(
        counters.get(Counter::DroppedRateSource),
        counters.get(Counter::DroppedRateGlobal),
    );
    if source > 0 {
        tracing::warn!(dropped = source, limit = %limits.describe_per_source(),
            "the XDP program dropped calls over the per-source rate limit since the last report \
             (raise --rate-limit, or narrow --rate-limit-v4-prefix/--rate-limit-v6-prefix, if \
             these sources are legitimate)");
    }
    if global > 0 {
        tracing::warn!(dropped = global, limit = %limits.describe_global(),
            "the XDP program dropped calls over the global rate limit since the last report \
             (raise --rate-limit-global if the service can take more)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0,2,4-6").unwrap().0, vec![0, 2, 4, 5, 6]);
        assert_eq!(parse_core_list("3").unwrap().0, vec![3]);
        for bad in ["", "a", "3-1", "1,,2", "0-99999"] {
            assert!(parse_core_list(bad).is_err(), "{bad:?}");
        }
    }

    fn args(iface: Option<&str>, xdp: Option<XdpChoice>) -> XdpArgs {
        XdpArgs {
            iface: iface.map(str::to_owned),
            xdp,
            queues: None,
            cores: None,
            afxdp_busy_poll: 0,
            xdp_answers: OnOff::Off,
        }
    }

    #[test]
    fn modes() {
        let mode = |a: XdpArgs| a.config(644, &RateLimits::off()).unwrap().map(|c| c.mode);
        assert_eq!(mode(args(None, None)), None);
        assert_eq!(mode(args(Some("eth0"), None)), Some(XdpMode::Native));
        assert_eq!(
            mode(args(Some("eth0"), Some(XdpChoice::Generic))),
            Some(XdpMode::Generic)
        );
        assert_eq!(mode(args(Some("eth0"), Some(XdpChoice::Off))), None);
        assert!(args(None, Some(XdpChoice::Native))
            .config(644, &RateLimits::off())
            .is_err());
        let mut a = args(None, None);
        a.queues = Some(2);
        assert!(a.config(644, &RateLimits::off()).is_err());
        let mut a = args(None, None);
        a.afxdp_busy_poll = 50;
        assert!(
            a.config(644, &RateLimits::off()).is_err(),
            "busy polling needs AF_XDP"
        );
        let mut a = args(Some("eth0"), None);
        a.afxdp_busy_poll = 50;
        let c = a.config(644, &RateLimits::off()).unwrap().unwrap();
        assert_eq!(c.busy_poll_us, 50);
        let mut a = args(None, None);
        a.xdp_answers = OnOff::On;
        assert!(a.config(644, &RateLimits::off()).is_err());
        a.iface = Some("eth0".into());
        assert!(a.config(644, &RateLimits::off()).unwrap().unwrap().answers);
    }
}

//! The call rate limiter as the kernel-stack shells apply it: check a call, count what was
//! refused, and say so in the log (at most once per interval per limit) with the option to
//! raise. UDP drops a refused call; TCP waits until it fits (see `tcp.rs`).
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::Counters;
use crate::log_throttle::LogThrottle;
use crate::ratelimit::{CallLimiter, Over, Refused};

/// How often each limit may be logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A [`CallLimiter`] with its log throttles.
pub struct Gate {
    limiter: CallLimiter,
    source_log: LogThrottle,
    global_log: LogThrottle,
}

/// Which shell refused a call (for the counter and the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Dropped.
    Udp,
    /// Delayed.
    Tcp,
}

impl Gate {
    /// A gate over `limiter`.
    pub fn new(limiter: CallLimiter) -> Self {
        Self {
            limiter,
            source_log: LogThrottle::new(LOG_INTERVAL),
            global_log: LogThrottle::new(LOG_INTERVAL),
        }
    }

    /// Ok when a call from `peer` may be answered now; otherwise the refusal, counted in
    /// `counters` and logged.
    pub fn check(&self, peer: IpAddr, shell: Shell, counters: &Counters) -> Result<(), Refused> {
        let refused = match self.limiter.check(peer) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        Counters::bump(counter(counters, shell, refused.over));
        let action = match shell {
            Shell::Udp => "UDP calls dropped",
            Shell::Tcp => "TCP calls delayed",
        };
        let limits = self.limiter.limits();
        match refused.over {
            Over::Source => {
                if let Some(suppressed) = self.source_log.allow() {
                    let prefix = self.limiter.prefix_of(peer);
                    tracing::warn!(%prefix, limit = %limits.describe_per_source(), suppressed,
                        "calls over the per-source rate limit, {action} (raise --rate-limit, or \
                         narrow --rate-limit-v4-prefix/--rate-limit-v6-prefix, if this source is legitimate)");
                }
            }
            Over::Global => {
                if let Some(suppressed) = self.global_log.allow() {
                    tracing::warn!(%peer, limit = %limits.describe_global(), suppressed,
                        "calls over the global rate limit, {action} (raise --rate-limit-global if the \
                         service can take more)");
                }
            }
        }
        Err(refused)
    }
}

fn counter(counters: &Counters, shell: Shell, over: Over) -> &AtomicU64 {
    match (shell, over) {
        (Shell::Udp, Over::Source) => &counters.udp_rate_limited_source,
        (Shell::Udp, Over::Global) => &counters.udp_rate_limited_global,
        (Shell::Tcp, Over::Source) => &counters.tcp_rate_delayed_source,
        (Shell::Tcp, Over::Global) => &counters.tcp_rate_delayed_global,
    }
}

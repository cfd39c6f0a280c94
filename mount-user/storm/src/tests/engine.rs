//! The engine against an in-memory transport whose server answers each call after a fixed
//! delay: timing and accounting without sockets.
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use mount_proto::rpc::encode_success;

use crate::engine::{self, EngineConfig, Pace, Progress, Transport};
use crate::mix::{Mix, Templates};

/// Answers NULL calls `delay` after they were queued.
struct Delayed {
    delay: Duration,
    queue: VecDeque<(Instant, u32, u32)>,
}

impl Transport for Delayed {
    fn queue(&mut self, client: u32, _template: u16, xid: u32) {
        self.queue.push_back((Instant::now(), client, xid));
    }

    fn flush(&mut self) {}

    fn recv(
        &mut self,
        wait: Duration,
        sink: &mut dyn FnMut(u32, &[u8], bool),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let mut any = false;
            while let Some(&(at, client, xid)) = self.queue.front() {
                if at.elapsed() < self.delay {
                    break;
                }
                self.queue.pop_front();
                let mut out = [0u8; 64];
                let n = encode_success(&mut out, xid, |_| Ok(())).unwrap();
                sink(client, &out[..n], false);
                any = true;
            }
            if any || Instant::now() >= deadline {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    fn send_errors(&self) -> u64 {
        0
    }
}

fn run(pace: Pace, slots: u32, duration: Duration) -> engine::Stats {
    let t = Templates::build(&Mix::parse("null").unwrap(), &[], true).unwrap();
    let expects: Vec<_> = t.templates.iter().map(|t| (t.entry, t.expect)).collect();
    let cfg = EngineConfig {
        slots,
        clients: 3,
        pace,
        count: 1_000_000,
        warmup: Duration::ZERO,
        duration,
        timeout: Duration::from_secs(1),
        drain_max: Duration::from_secs(1),
        seed: 7,
    };
    let mut io = Delayed {
        delay: Duration::from_micros(300),
        queue: VecDeque::new(),
    };
    engine::run(
        &mut io,
        &expects,
        t.picker(),
        &cfg,
        &AtomicBool::new(false),
        &Progress::default(),
    )
    .unwrap()
}

#[test]
fn open_loop_latency_is_never_shorter_than_the_server_takes() {
    // 1000 calls/s: calls leave up to a tick (200 µs) before they are due; they must be
    // timed from when they left, so nothing is faster than the 300 µs the server takes.
    let s = run(Pace::Open { rate: 1000.0 }, 64, Duration::from_millis(400));
    assert!((350..=450).contains(&s.sent), "sent {}", s.sent);
    assert_eq!(s.answered, s.sent);
    let min_us = s.latency_ns.min() as f64 / 1000.0;
    assert!(
        min_us >= 295.0,
        "min latency {min_us} µs < the server's 300 µs"
    );
    // Nor are calls sent late: one interval (1 ms) late would put the median past 1.3 ms.
    let p50_us = s.latency_ns.value_at_quantile(0.5) as f64 / 1000.0;
    assert!(p50_us < 900.0, "median {p50_us} µs: calls leave late");
}

#[test]
fn closed_loop_keeps_the_window_full() {
    // 8 slots, 300 µs per call: at most 8 / 300 µs = 26 667 calls/s.
    let s = run(Pace::Closed, 8, Duration::from_millis(300));
    assert_eq!(s.answered, s.sent);
    assert_eq!((s.wrong, s.timeouts, s.lost()), (0, 0, 0));
    let rate = s.answered as f64 / s.measured.as_secs_f64();
    assert!(rate <= 26_667.0 * 1.05, "{rate} calls/s beats the window");
    assert!(
        rate >= 26_667.0 / 8.0,
        "{rate} calls/s: the window is not kept full"
    );
    assert!(s.latency_ns.min() >= 300_000);
}

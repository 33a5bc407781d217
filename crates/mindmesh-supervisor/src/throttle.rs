//! CPU throttling without cgroups: a SIGSTOP/SIGCONT duty cycle on the process group. Coarse
//! (the process runs in bursts) but works everywhere; the cgroup path is preferred.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::host::{ProcessHost, Sig};

/// A running duty cycle: cancel it, and (to freeze the group for good) wait for its last
/// SIGCONT first.
pub struct DutyCycle {
    pub token: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl DutyCycle {
    pub fn cancel(&self) {
        self.token.cancel();
    }
}

/// Length of one stop/continue cycle: short enough that a request never waits long.
const PERIOD_MS: u64 = 100;

/// Run the process group for `share` (0 < share < 1) of every period until cancelled; always
/// leaves the group continued.
pub fn spawn_duty_cycle(
    host: Arc<dyn ProcessHost>,
    pgid: u32,
    share: f64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let run = Duration::from_millis(((PERIOD_MS as f64) * share.clamp(0.01, 1.0)).round() as u64);
    let pause = Duration::from_millis(PERIOD_MS).saturating_sub(run);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(run) => {}
            }
            host.signal_group(pgid, Sig::Stop);
            let cancelled = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(pause) => false,
            };
            host.signal_group(pgid, Sig::Cont);
            if cancelled {
                break;
            }
        }
    })
}

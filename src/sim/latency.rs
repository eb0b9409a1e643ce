//! Exact per-request latency for the simulator's gateways.
//!
//! tokio's timer ticks in whole milliseconds and rounds every deadline up
//! to the next tick, then wakes the task on a later turn: `sleep(3 ms)`
//! answers after 4.2–4.4 ms. A simulated RS-485 gateway is the benchmark's
//! floor (a cycle of k meters × r reads × L), so it must answer after L,
//! not L plus the timer's rounding.
//!
//! One thread keeps every pending reply's deadline in a heap and sleeps on
//! a condition variable until the earliest one (a futex wait with an
//! hrtimer, its slack set to 1 µs for this thread), then completes the
//! reply's oneshot. Cost: one thread wake per request due, shared by all
//! gateways; no task spins and no worker blocks.
//!
//! Not for anything but the simulator: it trades a thread for precision.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::oneshot;

struct Due {
    at: Instant,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn timer() -> &'static Arc<Timer> {
    static TIMER: OnceLock<Arc<Timer>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t = Arc::new(Timer {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let run = t.clone();
        std::thread::Builder::new()
            .name("sim-latency".into())
            .spawn(move || run.run())
            .expect("spawn the simulator's latency thread");
        t
    })
}

impl Timer {
    fn run(&self) {
        // The default 50 µs timer slack would be most of the error left.
        // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and affects
        // only the calling thread. One of the two audited unsafe blocks
        // (Cargo.toml [lints]).
        #[cfg(target_os = "linux")]
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        }
        let mut q = self.queue.lock().expect("latency queue");
        loop {
            let now = Instant::now();
            while q.heap.peek().is_some_and(|d| d.0.at <= now) {
                let Reverse(due) = q.heap.pop().expect("peeked");
                // The request may have been dropped (connection closed).
                let _ = due.tx.send(());
            }
            q = match q.heap.peek().map(|d| d.0.at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.changed.wait_timeout(q, wait).expect("latency queue").0
                }
                None => self.changed.wait(q).expect("latency queue"),
            };
        }
    }
}

/// Complete at `at` (within tens of microseconds), not at the next
/// millisecond tick after it.
pub(crate) async fn until(at: Instant) {
    if at <= Instant::now() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    let t = timer();
    {
        let mut q = t.queue.lock().expect("latency queue");
        let seq = q.seq;
        q.seq += 1;
        let earliest = q.heap.peek().is_none_or(|d| at < d.0.at);
        q.heap.push(Reverse(Due { at, seq, tx }));
        if earliest {
            t.changed.notify_one();
        }
    }
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deadlines_complete_not_early_and_not_much_late() {
        let start = Instant::now();
        let waits = [7u64, 3, 5, 1, 9];
        let mut tasks = Vec::new();
        for ms in waits {
            tasks.push(tokio::spawn(async move {
                let at = start + Duration::from_millis(ms);
                until(at).await;
                let now = Instant::now();
                (ms, now >= at, now.saturating_duration_since(at))
            }));
        }
        for t in tasks {
            let (ms, not_early, late) = t.await.unwrap();
            assert!(not_early, "{ms} ms deadline completed early");
            // Lateness is scheduling; bounded loosely so that a loaded CI
            // machine does not fail it (the benchmark measures the real figure).
            assert!(
                late < Duration::from_millis(50),
                "{ms} ms deadline {late:?} late"
            );
        }
    }

    #[tokio::test]
    async fn a_past_deadline_completes_at_once() {
        let t = Instant::now();
        // Ready on the first poll: no trip through the deadline thread.
        use futures::FutureExt as _;
        assert!(until(t - Duration::from_millis(1)).now_or_never().is_some());
    }
}

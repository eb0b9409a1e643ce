//! Receiving readings in batches, so the tasks downstream of the pollers
//! wake a few dozen times a second rather than once per reading.
//!
//! A task that awaits `recv()` on a channel is woken by every send; with
//! thousands of readings a second across two worker threads, each wake is a
//! futex call and a context switch, and those were the largest single cost
//! of the daemon (a fifth of its CPU, BENCHMARKS.md). [`Gather::next`]
//! instead rests for `period` after each batch, then takes everything
//! queued meanwhile at once. While it rests, a send finds no waiting
//! receiver and wakes nothing.
//!
//! The price is latency: a reading waits at most `period` longer before the
//! sink encodes it or the watch aggregates it, against windows of a minute
//! and a flush interval of a second. Nothing is lost or reordered: the
//! channel stays bounded, and senders wait when it is full.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

/// How long the consumers of readings rest between batches.
pub(crate) const PERIOD: Duration = Duration::from_millis(20);

/// Most items a consumer takes from its channel at once.
pub(crate) const MAX: usize = 1024;

/// A receiver that hands out what arrived in batches.
#[derive(Debug)]
pub(crate) struct Gather<T> {
    rx: mpsc::Receiver<T>,
    period: Duration,
    rest_until: Instant,
}

impl<T> Gather<T> {
    pub(crate) fn new(rx: mpsc::Receiver<T>, period: Duration) -> Self {
        Gather {
            rx,
            period,
            rest_until: Instant::now(),
        }
    }

    /// Rest out the period after the previous batch, wait for at least one
    /// item, then append up to `max` queued items to `buf`. Returns how many
    /// were appended; 0 means every sender is gone and the channel is empty.
    ///
    /// Cancel-safe (for `select!`): cancelled while resting, it rests the
    /// remainder next time; while waiting, nothing has been taken
    /// (`recv_many` is cancel-safe).
    pub(crate) async fn next(&mut self, buf: &mut Vec<T>, max: usize) -> usize {
        sleep_until(self.rest_until).await;
        let n = self.rx.recv_many(buf, max.max(1)).await;
        self.rest_until = Instant::now() + self.period;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn batches_after_the_rest_and_ends_when_senders_are_gone() {
        let (tx, rx) = mpsc::channel(16);
        let mut g = Gather::new(rx, Duration::from_millis(20));
        let mut buf = Vec::new();
        tx.send(1).await.unwrap();
        assert_eq!(g.next(&mut buf, 8).await, 1);
        let t0 = Instant::now();
        for i in 2..=5 {
            tx.send(i).await.unwrap();
        }
        // The four queued during the rest come as one batch, after it.
        assert_eq!(g.next(&mut buf, 8).await, 4);
        assert!(Instant::now() >= t0 + Duration::from_millis(20));
        assert_eq!(buf, [1, 2, 3, 4, 5]);
        // At most `max` at a time, nothing lost.
        for i in 6..=9 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        buf.clear();
        assert_eq!(g.next(&mut buf, 3).await, 3);
        assert_eq!(g.next(&mut buf, 3).await, 1);
        assert_eq!(buf, [6, 7, 8, 9]);
        assert_eq!(g.next(&mut buf, 3).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_while_resting_loses_nothing() {
        let (tx, rx) = mpsc::channel(16);
        let mut g = Gather::new(rx, Duration::from_millis(20));
        let mut buf = Vec::new();
        tx.send(1).await.unwrap();
        g.next(&mut buf, 8).await;
        tx.send(2).await.unwrap();
        // A select! that picks another branch first drops the future.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = g.next(&mut buf, 8) => panic!("still resting"),
        }
        assert_eq!(g.next(&mut buf, 8).await, 1);
        assert_eq!(buf, [1, 2]);
    }
}

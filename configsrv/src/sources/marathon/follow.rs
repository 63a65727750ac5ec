//! Following Marathon: a full read of apps and tasks, then the event stream;
//! definition changes and a periodic resync trigger new full reads (bursts
//! coalesced); a dead or silent stream is reopened with jittered
//! exponential backoff, across every configured Marathon URL.

use super::events::{parse_event, Event, SseParser};
use super::parse_apps;
use super::rest::MarathonClient;
use crate::error::SourceError;
use crate::sources::SourceEvent;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// Timing of the Marathon follower.
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Full resync even when events say nothing changed.
    pub resync: Duration,
    /// A stream with no bytes (not even heartbeats) this long counts as dead.
    pub silence: Duration,
    /// Shortest time between two full reads that definition changes cause:
    /// the first change after a quiet spell is read at once, the rest of
    /// its burst in one read when the window closes.
    pub coalesce: Duration,
}

/// Jittered exponential backoff between `min` and `max`.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }
    /// The next wait: doubling, capped, with up to half taken off at random.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
    }
    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// When a definition change seen at `now` is read: at once after a quiet
/// spell (a lone deploy waits for nothing), else when the coalesce window
/// opened by the last read closes, so a deploy's burst of events costs
/// one read per window, not one per event.
fn read_time(now: Instant, last_read: Instant, coalesce: Duration) -> Instant {
    (last_read + coalesce).max(now)
}

async fn full_read(client: &MarathonClient, tx: &mpsc::Sender<SourceEvent>) -> bool {
    let result = match client.fetch_apps().await {
        Ok((origin, body)) => parse_apps(origin.as_str(), &body),
        Err(e) => Err(e),
    };
    let ok = result.is_ok();
    let _ = tx.send(SourceEvent::MarathonApps(result)).await;
    ok
}

/// Follows Marathon until the receiver goes away.
pub async fn follow(client: MarathonClient, opts: FollowOptions, tx: mpsc::Sender<SourceEvent>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    while !tx.is_closed() {
        // Open the stream first, so nothing that happens during the full read is missed.
        let (origin, resp) = match client.open_events().await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(SourceEvent::MarathonStream(Err(e))).await;
                full_read(&client, &tx).await;
                sleep(backoff.next(fastrand::f64())).await;
                continue;
            }
        };
        let _ = tx
            .send(SourceEvent::MarathonStream(Ok(origin.to_string())))
            .await;
        if !full_read(&client, &tx).await {
            sleep(backoff.next(fastrand::f64())).await;
            continue;
        }
        backoff.reset();
        let mut stream = resp.bytes_stream();
        let mut sse = SseParser::new(client.max_event);
        let mut resync_at = Instant::now() + opts.resync;
        // When the last full read ended: the coalesce window runs from there.
        let mut last_read = Instant::now();
        let broke = |message: String| SourceError::Http {
            origin: origin.clone(),
            message,
        };
        let why = 'stream: loop {
            tokio::select! {
                chunk = timeout(opts.silence, stream.next()) => match chunk {
                    Err(_) => break broke(format!("no bytes for {:?}; reconnecting", opts.silence)),
                    Ok(None) => break broke("stream ended; reconnecting".into()),
                    Ok(Some(Err(e))) => break broke(format!("{}; reconnecting", schemas::redact::redact(&e.to_string()))),
                    Ok(Some(Ok(bytes))) => {
                        let frames = match sse.push(&bytes) {
                            Ok(frames) => frames,
                            // Events may be lost: reconnect, and the full read after it catches up.
                            Err(e) => break 'stream SourceError::TooLarge {
                                origin: origin.clone(),
                                limit: e.limit as u64,
                                flag: "--event-max-bytes",
                            },
                        };
                        for frame in frames {
                            match parse_event(&frame.data) {
                                Ok(Event::AppsChanged { .. }) => {
                                    resync_at = resync_at.min(read_time(Instant::now(), last_read, opts.coalesce));
                                }
                                Ok(event) => {
                                    let _ = tx.send(SourceEvent::MarathonEvent(event)).await;
                                }
                                Err(e) => tracing::warn!(%origin, error = %e, "unreadable Marathon event skipped"),
                            }
                        }
                    }
                },
                () = sleep_until(resync_at) => {
                    full_read(&client, &tx).await;
                    last_read = Instant::now();
                    resync_at = last_read + opts.resync;
                }
            }
        };
        tracing::warn!("{why}");
        let _ = tx.send(SourceEvent::MarathonStream(Err(why))).await;
        sleep(backoff.next(fastrand::f64())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_a_quiet_spell_is_read_at_once_and_a_burst_once_per_window() {
        let t0 = Instant::now();
        let window = Duration::from_millis(50);
        let quiet = t0 + Duration::from_secs(1);
        assert_eq!(read_time(quiet, t0, window), quiet);
        let soon = t0 + Duration::from_millis(10);
        assert_eq!(read_time(soon, t0, window), t0 + window);
    }

    #[test]
    fn backoff_doubles_is_capped_jittered_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<u128> = (0..6).map(|_| b.next(0.0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 800, 800]);
        assert_eq!(b.next(1.0).as_millis(), 400);
        b.reset();
        assert_eq!(b.next(0.0).as_millis(), 100);
    }
}

//! How a push reports while it runs. The parts of a push (uploads on other tasks, the reader on
//! a blocking thread) send their lines through a `Notify`; the push's own task forwards them,
//! and the byte count, to the caller's `PushObserver`, which is only ever called from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::image_push::PushObserver;

/// How often byte progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Where the parts of a push send a line worth showing.
pub(crate) type Notify = Arc<dyn Fn(String) + Send + Sync>;

/// The progress of one push: where its lines go, the bytes read so far and about how many will
/// be.
pub(crate) struct PushProgress {
    notify: Notify,
    /// Bytes of layers read so far.
    pub read: Arc<AtomicU64>,
    /// About how many bytes will be read; lowered once it is known that only some layers are.
    pub total: AtomicU64,
}

/// The lines the parts of a push sent, waiting to be forwarded.
pub(crate) struct ProgressLines(mpsc::UnboundedReceiver<String>);

impl PushProgress {
    /// Progress of a push expected to read about `total` bytes, and the lines it will carry.
    pub(crate) fn new(total: u64) -> (Self, ProgressLines) {
        let (sender, lines) = mpsc::unbounded_channel::<String>();
        let progress = PushProgress {
            notify: Arc::new(move |line| {
                let _ = sender.send(line);
            }),
            read: Arc::new(AtomicU64::new(0)),
            total: AtomicU64::new(total),
        };
        (progress, ProgressLines(lines))
    }

    /// Where the push's parts send their lines.
    pub(crate) fn notify(&self) -> Notify {
        self.notify.clone()
    }

    /// Runs `push` while forwarding its lines and byte progress to `observer`. Bytes are
    /// reported while reading goes on and once more at the end of a push that succeeded, so
    /// the last figure is the whole.
    pub(crate) async fn drive<T, E>(
        &self,
        lines: ProgressLines,
        observer: &dyn PushObserver,
        push: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let ProgressLines(mut lines) = lines;
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        let mut reported = 0;
        let report_bytes = |reported: &mut u64| {
            let done = self.read.load(Ordering::Relaxed);
            if done != *reported {
                *reported = done;
                observer.on_bytes(done, self.total.load(Ordering::Relaxed).max(done));
            }
        };
        tokio::pin!(push);
        let result = loop {
            tokio::select! {
                result = &mut push => break result,
                Some(line) = lines.recv() => observer.on_progress(&line),
                _ = ticker.tick() => report_bytes(&mut reported),
            }
        };
        while let Ok(line) = lines.try_recv() {
            observer.on_progress(&line);
        }
        if result.is_ok() {
            report_bytes(&mut reported);
        }
        result
    }
}

/// The first twelve hex digits of a digest, as progress lines show it.
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// A byte count as a person would write it (`1.5 MB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_would_write_them() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}

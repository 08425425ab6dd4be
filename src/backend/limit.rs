//! Bandwidth limits (`--limit-upload`, `--limit-download`): one token bucket per direction,
//! shared by every thread and every backend of a command.
//!
//! A transfer asks the bucket before it moves bytes, in pieces of at most [`RateLimiter::piece`]
//! (an eighth of a second's worth, 4 KiB to 256 KiB), so the rate is smooth rather than bursty
//! per pack. The bucket holds at most one piece: an idle spell buys a burst of one piece, never
//! more. A piece larger than what the bucket holds is granted at once and runs the bucket into
//! debt, which the next takers wait off; so threads are paced together, in the order they ask,
//! and over any few seconds the bytes moved stay within one piece of `rate × time`.
//!
//! Writes to and reads from a local directory, and requests to and answers from `cairn serve`
//! through ssh, are paced as they are made; the OpenDAL backends pace
//! each piece of a body as it arrives (downloads) or as it is sent (S3 uploads); an SFTP upload
//! waits for all its pieces before it is sent whole (OpenDAL's SFTP writer takes one buffer).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest piece a transfer moves between two visits to the bucket.
const MAX_PIECE: usize = 256 << 10;
/// The smallest piece (also the alignment of pieces, for direct I/O).
const MIN_PIECE: usize = 4 << 10;

/// Time as a limiter sees it: the system clock, or a fake one in tests.
pub trait Clock: Send + Sync {
    /// Time since some fixed start.
    fn now(&self) -> Duration;
    /// Blocks the calling thread for `d`.
    fn sleep(&self, d: Duration);
}

/// The monotonic system clock.
struct SystemClock(Instant);

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The tokens (bytes) available and when they were counted; negative: debt.
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// A token bucket of bytes per second (see the module documentation).
pub struct RateLimiter {
    rate: f64,
    piece: usize,
    bucket: Mutex<Bucket>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("bytes_per_sec", &self.rate)
            .field("piece", &self.piece)
            .finish()
    }
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (at least 1) on the system clock.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self::with_clock(bytes_per_sec, Arc::new(SystemClock(Instant::now())))
    }

    /// A limiter on a clock of the caller's (a fake one in tests).
    pub fn with_clock(bytes_per_sec: u64, clock: Arc<dyn Clock>) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let piece =
            ((bytes_per_sec / 8) as usize).clamp(MIN_PIECE, MAX_PIECE) / MIN_PIECE * MIN_PIECE;
        let at = clock.now();
        RateLimiter {
            rate,
            piece,
            bucket: Mutex::new(Bucket {
                tokens: piece as f64,
                at,
            }),
            clock,
        }
    }

    /// The limit, in bytes per second.
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate as u64
    }

    /// The most a transfer should move between two calls to [`Self::take`]: an eighth of a
    /// second's worth, 4 KiB to 256 KiB, a multiple of 4 KiB.
    pub fn piece(&self) -> usize {
        self.piece
    }

    /// Reserves `n` bytes and returns how long the caller must wait before moving them (zero
    /// when the bucket holds them). For callers that wait their own way (an async sleep).
    pub fn reserve(&self, n: usize) -> Duration {
        let now = self.clock.now();
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let earned = now.saturating_sub(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + earned).min(self.piece as f64) - n as f64;
        b.at = now;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.rate)
        }
    }

    /// Waits until `n` bytes may be moved.
    pub fn take(&self, n: usize) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            self.clock.sleep(wait);
        }
    }

    /// How long `n` bytes take at this rate.
    pub fn time_for(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// The bandwidth limits of a command: one limiter per direction, shared (as `Arc`s) by every
/// backend the command opens. The default limits nothing.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Bytes written to the repository (`--limit-upload`).
    pub upload: Option<Arc<RateLimiter>>,
    /// Bytes read from the repository (`--limit-download`).
    pub download: Option<Arc<RateLimiter>>,
}

impl Limits {
    /// Limits in KiB/s, as the command line gives them; None or 0: unlimited.
    pub fn kib_per_sec(upload: Option<u64>, download: Option<u64>) -> Self {
        let limiter = |kib: Option<u64>| {
            kib.filter(|&k| k > 0)
                .map(|k| Arc::new(RateLimiter::new(k.saturating_mul(1024))))
        };
        Limits {
            upload: limiter(upload),
            download: limiter(download),
        }
    }
}

/// Writes `data` through `write` in pieces, each granted by `limiter` first; all at once
/// without a limiter.
pub(crate) fn paced_write(
    limiter: Option<&RateLimiter>,
    data: &[u8],
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let Some(l) = limiter else {
        return write(data);
    };
    for piece in data.chunks(l.piece()) {
        l.take(piece.len());
        write(piece)?;
    }
    Ok(())
}

/// A reader paced by a limiter: no read returns more than a piece, and each waits for what it
/// read to be granted (so an empty read at the end costs nothing).
pub(crate) struct PacedReader<'a, R> {
    inner: R,
    limiter: &'a RateLimiter,
}

impl<'a, R> PacedReader<'a, R> {
    pub(crate) fn new(inner: R, limiter: &'a RateLimiter) -> Self {
        PacedReader { inner, limiter }
    }
}

impl<R: std::io::Read> std::io::Read for PacedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.limiter.piece());
        let n = self.inner.read(&mut buf[..want])?;
        self.limiter.take(n);
        Ok(n)
    }
}

/// A writer paced by a limiter (none: not paced): no write takes more than a piece, and each
/// waits for what it wrote to be granted.
pub(crate) struct PacedWriter<'a, W> {
    inner: W,
    limiter: Option<&'a RateLimiter>,
}

impl<'a, W> PacedWriter<'a, W> {
    pub(crate) fn new(inner: W, limiter: Option<&'a RateLimiter>) -> Self {
        PacedWriter { inner, limiter }
    }
}

impl<W: std::io::Write> std::io::Write for PacedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(l) = self.limiter else {
            return self.inner.write(buf);
        };
        let n = self.inner.write(&buf[..buf.len().min(l.piece())])?;
        l.take(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that only moves when someone sleeps on it.
    #[derive(Default)]
    struct FakeClock {
        now: Mutex<Duration>,
    }

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.now.lock().expect("test")
        }
        fn sleep(&self, d: Duration) {
            *self.now.lock().expect("test") += d;
        }
    }

    fn limiter(rate: u64) -> (Arc<FakeClock>, RateLimiter) {
        let clock = Arc::new(FakeClock::default());
        (clock.clone(), RateLimiter::with_clock(rate, clock))
    }

    #[test]
    fn moving_bytes_in_pieces_takes_their_size_over_the_rate_less_one_piece() {
        let (clock, l) = limiter(1 << 20);
        assert_eq!(l.piece(), 128 << 10);
        let total = 8usize << 20;
        paced_write(Some(&l), &vec![0u8; total], |_| Ok(())).expect("test");
        let took = clock.now().as_secs_f64();
        let ideal = (total - l.piece()) as f64 / (1 << 20) as f64;
        assert!((took - ideal).abs() < 1e-6, "{took} s, not {ideal} s");
    }

    #[test]
    fn an_idle_spell_buys_one_piece_and_no_more() {
        let (clock, l) = limiter(1 << 20);
        l.take(l.piece());
        clock.sleep(Duration::from_secs(60));
        // A minute idle: one piece at once, then the rate again.
        assert_eq!(l.reserve(l.piece()), Duration::ZERO);
        let wait = l.reserve(1 << 20);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn takers_share_one_rate_and_wait_in_the_order_they_ask() {
        let (clock, l) = limiter(1 << 20);
        let piece = l.piece();
        // Four threads' first pieces at the same instant: one from the bucket, then each
        // waits a piece longer than the one before.
        let waits: Vec<Duration> = (0..4).map(|_| l.reserve(piece)).collect();
        let eighth = Duration::from_millis(125);
        assert_eq!(waits, [Duration::ZERO, eighth, eighth * 2, eighth * 3]);
        // Once the last of them has waited, the bucket is empty and the rate holds.
        clock.sleep(eighth * 3);
        assert_eq!(l.reserve(piece), eighth);
    }

    #[test]
    fn pieces_are_an_eighth_of_a_second_between_4_and_256_kib() {
        let (_, slow) = limiter(1000);
        assert_eq!(slow.piece(), 4 << 10);
        let (_, fast) = limiter(1 << 30);
        assert_eq!(fast.piece(), 256 << 10);
        let (_, odd) = limiter(1_000_000);
        assert_eq!(odd.piece() % (4 << 10), 0);
        assert!(odd.piece() <= 125_000);
    }

    #[test]
    fn a_paced_reader_reads_pieces_at_the_rate() {
        use std::io::Read;
        let (clock, l) = limiter(256 << 10);
        let data = vec![7u8; 1 << 20];
        let mut out = Vec::new();
        PacedReader::new(&data[..], &l)
            .read_to_end(&mut out)
            .expect("test");
        assert_eq!(out, data);
        // 1 MiB at 256 KiB/s, less the first piece (32 KiB) the bucket held.
        let took = clock.now().as_secs_f64();
        assert!((took - 3.875).abs() < 1e-6, "{took}");
    }

    #[test]
    fn a_paced_writer_writes_pieces_at_the_rate() {
        use std::io::Write;
        let (clock, l) = limiter(256 << 10);
        let mut out = Vec::new();
        PacedWriter::new(&mut out, Some(&l))
            .write_all(&[3u8; 1 << 20])
            .expect("test");
        assert_eq!(out, vec![3u8; 1 << 20]);
        let took = clock.now().as_secs_f64();
        assert!((took - 3.875).abs() < 1e-6, "{took}");
    }

    #[test]
    fn zero_or_no_limit_limits_nothing() {
        let l = Limits::kib_per_sec(Some(0), None);
        assert!(l.upload.is_none() && l.download.is_none());
        let l = Limits::kib_per_sec(Some(1024), Some(1));
        assert_eq!(l.upload.expect("test").bytes_per_sec(), 1 << 20);
        assert_eq!(l.download.expect("test").bytes_per_sec(), 1024);
    }
}

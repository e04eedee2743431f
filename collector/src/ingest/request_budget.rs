//! What a request may take while its body arrives: time, and bytes held on
//! its connection and across the collector.
//!
//! tonic reads a request body as fast as it comes and holds it whole until
//! the message is complete, up to `grpc.max_message_bytes`. HTTP/2 flow
//! control bounds what the peer sends ahead of that reading, not what
//! tonic holds. So one authenticated peer that opened 60 streams, each
//! stalled just short of the 4 MiB limit, held 240 MiB of the collector's
//! memory for as long as it liked. [`LimitedBody`] charges each message
//! against the connection's buffer and the collector's budget as soon as
//! its gRPC header announces its length (tonic reserves that much at
//! once), and every byte beyond; it fails the request when either is full,
//! before tonic holds the bytes, or when the body has not all come within
//! its deadline. A gzip message is charged its compressed length: it is
//! inflated (up to `grpc.max_message_bytes`) only once whole, and decoded
//! at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Why a request was failed while its body arrived: the `reason` label
/// of `campanile_ingest_requests_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    BodyTimeout,
    ConnectionBuffer,
    MemoryBudget,
}

impl Exceeded {
    const ALL: [Exceeded; 3] = [
        Exceeded::BodyTimeout,
        Exceeded::ConnectionBuffer,
        Exceeded::MemoryBudget,
    ];

    pub fn reason_label(self) -> &'static str {
        match self {
            Exceeded::BodyTimeout => "body_timeout",
            Exceeded::ConnectionBuffer => "connection_buffer",
            Exceeded::MemoryBudget => "memory_budget",
        }
    }
}

/// Bytes held against a limit.
#[derive(Debug)]
pub struct Pool {
    max: usize,
    used: AtomicUsize,
}

impl Pool {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.max {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The collector's budget, and the gauge that shows it.
#[derive(Clone)]
pub struct Budget {
    pub pool: Arc<Pool>,
    pub gauge: prometheus::IntGauge,
}

/// The bytes one request holds, given back when the last holder (its body
/// and its answer's future) drops it.
pub struct Held {
    bytes: AtomicUsize,
    /// 0, or 1 + the index of the [`Exceeded`] that failed the body.
    exceeded: AtomicU8,
    connection: Arc<Pool>,
    budget: Budget,
}

impl Held {
    pub fn new(connection: Arc<Pool>, budget: Budget) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            exceeded: AtomicU8::new(0),
            connection,
            budget,
        })
    }

    /// Why the request's body was failed, if it was.
    pub fn exceeded(&self) -> Option<Exceeded> {
        match self.exceeded.load(Ordering::Relaxed) {
            0 => None,
            n => Exceeded::ALL.get(usize::from(n) - 1).copied(),
        }
    }

    fn note(&self, why: Exceeded) {
        let at = Exceeded::ALL.iter().position(|e| *e == why).unwrap_or(0);
        self.exceeded.store(at as u8 + 1, Ordering::Relaxed);
    }

    fn take(&self, n: usize) -> Result<(), Exceeded> {
        if !self.connection.take(n) {
            return Err(Exceeded::ConnectionBuffer);
        }
        if !self.budget.pool.take(n) {
            self.connection.give(n);
            return Err(Exceeded::MemoryBudget);
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.budget.gauge.add(n as i64);
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        self.connection.give(n);
        self.budget.pool.give(n);
        self.budget.gauge.sub(n as i64);
    }
}

/// A request body that fails once it passes its deadline or its bytes
/// exceed what [`Held`] may take. The failure reaches the client as a
/// gRPC status; tonic then drops the body and h2 resets the stream.
pub struct LimitedBody<B> {
    inner: B,
    held: Arc<Held>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    failed: Option<Exceeded>,
    framing: Framing,
    charged: usize,
}

/// Where the body is in gRPC's framing: each message is a flag byte, a
/// big-endian u32 length, then that many bytes.
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message's body still to come.
    body_left: usize,
    /// Bytes received, and those announced by the headers so far.
    received: usize,
    announced: usize,
}

impl Framing {
    /// Reads `data` through the framing; returns what the body must be
    /// charged for so far: all received, and what was announced.
    fn feed(&mut self, mut data: &[u8]) -> usize {
        self.received += data.len();
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                self.header_len = 0;
                self.body_left = len;
                self.announced = self.announced.saturating_add(5 + len);
            }
        }
        self.received.max(self.announced)
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, held: Arc<Held>, timeout: Duration) -> Self {
        Self {
            inner,
            held,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            failed: None,
            framing: Framing::default(),
            charged: 0,
        }
    }

    fn fail(&mut self, why: Exceeded) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        self.failed = Some(why);
        self.held.note(why);
        let status = match why {
            Exceeded::BodyTimeout => tonic::Status::deadline_exceeded(format!(
                "request body not received within {} s of its headers",
                self.timeout.as_secs()
            )),
            // UNAVAILABLE, not RESOURCE_EXHAUSTED: an agent takes the latter
            // to mean its request is too large, and drops a lone report.
            Exceeded::ConnectionBuffer => tonic::Status::unavailable(
                "too many request bytes in flight on this connection; send one request at a time",
            ),
            Exceeded::MemoryBudget => {
                tonic::Status::unavailable("collector busy receiving other requests; retry later")
            }
        };
        Poll::Ready(Some(Err(status)))
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(why) = self.failed {
            return self.fail(why);
        }
        // Before the body, so a peer trickling bytes cannot outlast it.
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(Exceeded::BodyTimeout);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let due = self.framing.feed(data);
                    if due > self.charged {
                        if let Err(why) = self.held.take(due - self.charged) {
                            return self.fail(why);
                        }
                        self.charged = due;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(tonic::Status::from_error(e.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn budget(max: usize) -> Budget {
        Budget {
            pool: Pool::new(max),
            gauge: prometheus::IntGauge::new("b", "test").unwrap(),
        }
    }

    /// A body of chunks of these many zeros, then pending for ever.
    fn stalled(chunks: &[usize]) -> http_body_util::StreamBody<futures_stream::Chunks> {
        let chunks = chunks.iter().map(|n| Bytes::from(vec![0u8; *n])).collect();
        http_body_util::StreamBody::new(futures_stream::Chunks::new(chunks))
    }

    mod futures_stream {
        use super::*;

        pub struct Chunks(Vec<Bytes>);

        impl Chunks {
            pub fn new(mut c: Vec<Bytes>) -> Self {
                c.reverse();
                Self(c)
            }
        }

        impl tokio_stream::Stream for Chunks {
            type Item = Result<Frame<Bytes>, std::convert::Infallible>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                match self.0.pop() {
                    Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    None => Poll::Pending,
                }
            }
        }
    }

    async fn read_until_failure<B>(body: &mut LimitedBody<B>) -> tonic::Status
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return status,
                None => panic!("the body ended"),
            }
        }
    }

    /// A gRPC message header announcing `len` bytes.
    fn header(len: u32) -> Vec<u8> {
        let mut h = vec![0];
        h.extend_from_slice(&len.to_be_bytes());
        h
    }

    #[test]
    fn a_message_is_charged_what_its_header_announces_as_soon_as_it_comes() {
        let mut f = Framing::default();
        assert_eq!(f.feed(&header(1000)[..3]), 3, "half a header: what came");
        assert_eq!(f.feed(&header(1000)[3..]), 1005);
        assert_eq!(f.feed(&[0; 600]), 1005);
        // The rest of the first message, and the header of a second.
        let mut rest = vec![0; 400];
        rest.extend(header(50));
        assert_eq!(f.feed(&rest), 1060);
        // Bytes past an announced message are charged as they come.
        let mut f = Framing::default();
        let mut more = header(10);
        more.extend([0; 10]);
        more.extend([0; 3]);
        assert_eq!(f.feed(&more), 18, "15 announced, and 3 of a next header");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_at_its_deadline_and_gives_its_bytes_back() {
        let b = budget(1 << 20);
        let conn = Pool::new(1 << 20);
        let held = Held::new(conn.clone(), b.clone());
        let mut body = LimitedBody::new(
            stalled(&[1000, 2000]),
            held.clone(),
            Duration::from_secs(30),
        );
        let status = read_until_failure(&mut body).await;
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(held.exceeded(), Some(Exceeded::BodyTimeout));
        assert_eq!(
            (conn.used(), b.pool.used(), b.gauge.get()),
            (3000, 3000, 3000)
        );
        drop((body, held));
        assert_eq!((conn.used(), b.pool.used(), b.gauge.get()), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_beyond_the_connection_buffer_or_the_budget_fail_the_request() {
        let b = budget(10_000);
        let conn = Pool::new(4_000);
        let held = Held::new(conn.clone(), b.clone());
        let mut first = LimitedBody::new(stalled(&[3000]), held.clone(), Duration::from_secs(30));
        assert!(first.frame().await.unwrap().is_ok());
        let second_held = Held::new(conn.clone(), b.clone());
        let mut second = LimitedBody::new(
            stalled(&[3000]),
            second_held.clone(),
            Duration::from_secs(30),
        );
        let status = read_until_failure(&mut second).await;
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(second_held.exceeded(), Some(Exceeded::ConnectionBuffer));
        // Another connection still gets its share, up to the budget.
        let other = Pool::new(8_000);
        let third_held = Held::new(other, b.clone());
        let mut third = LimitedBody::new(
            stalled(&[5000, 3000]),
            third_held.clone(),
            Duration::from_secs(30),
        );
        let status = read_until_failure(&mut third).await;
        assert_eq!(third_held.exceeded(), Some(Exceeded::MemoryBudget));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            b.pool.used(),
            8000,
            "3000 on the first connection, 5000 on the other"
        );
        drop((first, held, second, second_held, third, third_held));
        assert_eq!(b.pool.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_announced_larger_than_the_room_left_fails_before_its_bytes_pass() {
        let b = budget(10_000);
        let conn = Pool::new(10_000);
        let held = Held::new(conn.clone(), b.clone());
        let mut first = header(9000);
        first.extend([0; 100]);
        let mut body = LimitedBody::new(
            http_body_util::StreamBody::new(futures_stream::Chunks::new(vec![first.into()])),
            held.clone(),
            Duration::from_secs(30),
        );
        assert!(body.frame().await.unwrap().is_ok(), "9005 bytes fit");
        assert_eq!(b.pool.used(), 9005, "charged what the header announced");
        let held2 = Held::new(Pool::new(10_000), b.clone());
        let mut body2 = LimitedBody::new(
            http_body_util::StreamBody::new(futures_stream::Chunks::new(vec![Bytes::from(
                header(2000),
            )])),
            held2.clone(),
            Duration::from_secs(30),
        );
        let refused = body2.frame().await.unwrap();
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unavailable);
        assert_eq!(held2.exceeded(), Some(Exceeded::MemoryBudget));
        drop((body, held));
        assert_eq!(b.pool.used(), 0);
    }
}

//! Counting the HTTP requests a bucket's client sends, by method: what the pack tier costs in
//! requests (S3 bills per request and limits them per prefix), and the proof that a `has` of
//! an absent block sends none.
//!
//! The count sits in the client's HTTP layer (an object_store [`HttpConnector`] wrapping the
//! default reqwest one), below the retries: every attempt that goes out is one request, as
//! the server and the bill see it. A LIST is a GET and a multipart upload's create and
//! complete are POSTs, as on the wire.
//!
//! Each client counts for itself ([`RequestCounter`]) and into one process-wide total
//! ([`process_requests`]): a caller that cannot reach the bucket inside an engine (a
//! benchmark) still sees what the engine sent, as the difference of two snapshots taken
//! while nothing else in the process talks to S3.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// Requests sent, by HTTP method: a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// GETs: object and ranged reads, and listings.
    pub get: u64,
    /// PUTs: single uploads and multipart parts.
    pub put: u64,
    /// HEADs: the look before every create-only put, and existence checks.
    pub head: u64,
    /// POSTs: a multipart upload's create and complete, and deletes (object_store's S3
    /// client sends even one key's delete as a multi-object delete).
    pub post: u64,
    /// DELETEs (a multipart upload's abort).
    pub delete: u64,
    /// Any other method.
    pub other: u64,
}

impl RequestCounts {
    /// All requests together.
    pub fn total(&self) -> u64 {
        self.get + self.put + self.head + self.post + self.delete + self.other
    }

    /// The requests sent since `earlier`, a snapshot of the same counter (saturating at 0,
    /// so a snapshot taken out of order gives zeros, not a wrapped count).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get.saturating_sub(earlier.get),
            put: self.put.saturating_sub(earlier.put),
            head: self.head.saturating_sub(earlier.head),
            post: self.post.saturating_sub(earlier.post),
            delete: self.delete.saturating_sub(earlier.delete),
            other: self.other.saturating_sub(earlier.other),
        }
    }
}

/// Live request counts, shared by a client and whoever reads them.
#[derive(Debug, Default)]
pub struct RequestCounter {
    by_method: [AtomicU64; METHODS],
}

/// The methods counted apart, plus one slot for the rest.
const METHODS: usize = 6;

impl RequestCounter {
    /// Counts one request of `method` (as HTTP spells it, upper case).
    fn record(&self, method: &str) {
        let slot = match method {
            "GET" => 0,
            "PUT" => 1,
            "HEAD" => 2,
            "POST" => 3,
            "DELETE" => 4,
            _ => 5,
        };
        // Relaxed: counts are read as a snapshot for reports, never to order other memory.
        self.by_method[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let n = |i: usize| self.by_method[i].load(Ordering::Relaxed);
        RequestCounts {
            get: n(0),
            put: n(1),
            head: n(2),
            post: n(3),
            delete: n(4),
            other: n(5),
        }
    }
}

/// Every request any counting client of this process has sent.
static PROCESS: RequestCounter = RequestCounter {
    by_method: [const { AtomicU64::new(0) }; METHODS],
};

/// The requests every bucket client of this process has sent so far (all [`PackBucket`]s
/// opened on S3, and any other client built by [`CountingConnector`]).
///
/// [`PackBucket`]: crate::PackBucket
pub fn process_requests() -> RequestCounts {
    PROCESS.snapshot()
}

/// An [`HttpConnector`] that builds object_store's default (reqwest) client and counts every
/// request it sends into `counter` and the process total.
#[derive(Debug, Clone)]
pub struct CountingConnector {
    counter: Arc<RequestCounter>,
}

impl CountingConnector {
    /// A connector counting into `counter`.
    pub fn new(counter: Arc<RequestCounter>) -> CountingConnector {
        CountingConnector { counter }
    }
}

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(CountingService {
            inner,
            counter: Arc::clone(&self.counter),
        }))
    }
}

/// The default client with a count in front of it.
#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counter: Arc<RequestCounter>,
}

/// What `HttpService::call` returns: the trait is declared with `async_trait`, whose
/// signature this spells out rather than adding that crate for one method.
type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>>;

impl HttpService for CountingService {
    fn call<'life0, 'async_trait>(&'life0 self, req: HttpRequest) -> CallFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        // Counted when sent, so a request that fails or times out is counted too: the
        // server may have done its work.
        let method = req.method().as_str();
        self.counter.record(method);
        PROCESS.record(method);
        Box::pin(self.inner.execute(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_land_in_their_own_counts_and_differences_saturate() {
        let counter = RequestCounter::default();
        for m in ["GET", "GET", "PUT", "HEAD", "POST", "DELETE", "PATCH"] {
            counter.record(m);
        }
        let first = counter.snapshot();
        assert_eq!(
            first,
            RequestCounts {
                get: 2,
                put: 1,
                head: 1,
                post: 1,
                delete: 1,
                other: 1,
            }
        );
        assert_eq!(first.total(), 7);
        counter.record("HEAD");
        let second = counter.snapshot();
        assert_eq!(
            second.since(&first),
            RequestCounts {
                head: 1,
                ..RequestCounts::default()
            }
        );
        assert_eq!(first.since(&second), RequestCounts::default());
    }
}

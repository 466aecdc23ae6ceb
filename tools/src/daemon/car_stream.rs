//! A CARv1 as a streamed HTTP response: the one path by which the daemon sends a CAR, for
//! the RPC API's `dag/export` and the gateway's `?format=car`.
//!
//! The blocks are written by a blocking task (the walks read the store with blocking calls)
//! into a [`CarWriter`] over a channel that feeds the response body. The status is sent before
//! the first block, so a failure mid-way (a missing block, a store error, a panic) can only
//! cut the stream short: the body then ends with an error, which hyper turns into an
//! unterminated chunked body, or, for a client that sent `TE: trailers`, into Kubo's
//! `X-Stream-Error` trailer carrying the reason. A body that simply stopped at a block
//! boundary would pass for a complete CAR, so even a panic ends it with an error.

use std::sync::Arc;

use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue, TRAILER};
use ipfrs_storage::Cid;
use tokio::sync::mpsc;

use crate::car::CarWriter;

use super::error::{Error, Result};
use super::http::{self, Body, ChannelWriter};

/// The CAR being written.
pub type Car = CarWriter<ChannelWriter>;

/// A 200 response of `content_type` whose body is the CARv1 with header `roots` and the
/// blocks `write` writes (over `source`: the daemon's [`super::node::Node`], or the block
/// store a gateway serves; on a blocking thread). `trailers`: the client sent `TE:
/// trailers`, so a failure mid-way is told in the `X-Stream-Error` trailer (declared in the
/// `Trailer` header).
pub fn response<T, F>(
    source: Arc<T>,
    roots: Vec<Cid>,
    trailers: bool,
    content_type: &str,
    write: F,
) -> Response<Body>
where
    T: Send + Sync + 'static,
    F: FnOnce(&T, &mut Car) -> Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter::new(tx.clone());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
            let mut car =
                CarWriter::new(sink, &roots).map_err(|e| Error::Internal(e.to_string()))?;
            write(&source, &mut car)?;
            car.finish()
                .map_err(|e| Error::Internal(e.to_string()))?
                .flush_rest()
                .map_err(|e| Error::Internal(e.to_string()))
        }))
        .unwrap_or_else(|_| Err(Error::Internal("the CAR writer panicked".into())));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(http::one_line(&e))));
        }
    });
    let body = if trailers {
        http::channel_body_with_error_trailer(rx)
    } else {
        http::channel_body(rx)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/vnd.ipld.car")),
    );
    if trailers {
        headers.insert(TRAILER, HeaderValue::from_static(http::STREAM_ERROR));
    }
    response
}

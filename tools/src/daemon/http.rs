//! HTTP pieces shared by the RPC API and the gateway: bodies, query strings, error replies,
//! request bodies read with an idle timeout.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::Stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::error::Error;

/// A response body: whole, empty or streamed.
pub type Body = BoxBody<Bytes, io::Error>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// No body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// A body fed by a channel (a blocking producer sends chunks; an `Err` ends the stream
/// abruptly, so the client sees a truncated response rather than a complete-looking one).
pub fn channel_body(rx: mpsc::Receiver<io::Result<Bytes>>) -> Body {
    let stream = futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk.map(Frame::data), rx))
    });
    StreamBody::new(stream).boxed()
}

/// The trailer that carries an error met after a streamed response's status was sent.
pub const STREAM_ERROR: &str = "X-Stream-Error";

/// [`channel_body`], except that an `Err` ends the body with an [`STREAM_ERROR`] trailer
/// (the response must declare it in its `Trailer` header): for clients that asked for
/// trailers (`TE: trailers`), which then learn why the stream was cut.
pub fn channel_body_with_error_trailer(rx: mpsc::Receiver<io::Result<Bytes>>) -> Body {
    let stream = futures_lite::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await? {
            Ok(chunk) => Some((Ok::<_, io::Error>(Frame::data(chunk)), Some(rx))),
            Err(e) => {
                let mut trailers = hyper::HeaderMap::new();
                let value = hyper::header::HeaderValue::from_str(&one_line(&e))
                    .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("stream failed"));
                trailers.insert(STREAM_ERROR, value);
                Some((Ok(Frame::trailers(trailers)), None))
            }
        }
    });
    StreamBody::new(stream).boxed()
}

/// Whether the client reads trailers (`TE: trailers`): then a stream error is told in one.
pub fn wants_trailers<B>(req: &hyper::Request<B>) -> bool {
    req.headers()
        .get_all(hyper::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// A path segment, percent-decoded (`+` stays a plus, unlike in query strings).
pub fn decode_path_segment(text: &str) -> Result<String, Error> {
    decode(&text.replace('+', "%2B"))
}

/// A response with a JSON body.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = value.to_string();
    text.push('\n');
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response (the gateway's errors): one line.
pub fn text(status: StatusCode, line: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{line}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The status of an error.
pub fn status_of(err: &Error) -> StatusCode {
    StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// One line of an error's text (multi-line causes are joined).
pub fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A parsed query string: `name=value` pairs in order, percent-decoded (`+` is a space).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

/// Most pairs a query string may carry: more is a bad request, not work.
pub const MAX_QUERY_PAIRS: usize = 1024;

impl Query {
    /// Parses `query`; a pair that is not valid percent-encoded UTF-8 is a bad request.
    pub fn parse(query: Option<&str>) -> Result<Query, Error> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_QUERY_PAIRS {
                return Err(Error::BadRequest(format!(
                    "more than {MAX_QUERY_PAIRS} query parameters"
                )));
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode(name)?, decode(value)?));
        }
        Ok(Query(pairs))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order (Kubo's repeated `arg`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean option as Kubo reads them: absent is `default`, a bare `name` or `name=`
    /// is true, else `true`/`false`/`1`/`0`.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.get(name) {
            None => Ok(default),
            Some("" | "true" | "1" | "True" | "TRUE") => Ok(true),
            Some("false" | "0" | "False" | "FALSE") => Ok(false),
            Some(other) => Err(Error::BadRequest(format!(
                "option {name:?}: {other:?} is not a boolean"
            ))),
        }
    }

    /// The one required `arg` (Kubo's positional argument).
    pub fn arg(&self) -> Result<&str, Error> {
        match self.all("arg").as_slice() {
            [one] => Ok(one),
            [] => Err(Error::BadRequest("argument \"arg\" is required".into())),
            _ => Err(Error::BadRequest("expected one argument \"arg\"".into())),
        }
    }
}

fn decode(text: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Error::BadRequest(format!("bad percent-encoding in query {text:?}"))
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| Error::BadRequest(format!("query {text:?} is not UTF-8 once decoded")))
}

/// A request body as a stream of data chunks, each read within `idle` (a client that stops
/// sending is cut off), at most `limit` bytes in all.
pub fn body_stream(
    body: Incoming,
    idle: Duration,
    limit: u64,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
    futures_lite::stream::unfold(
        (BodyStream::new(body), 0u64, false),
        move |(mut frames, mut seen, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = tokio::time::timeout(idle, futures_lite::StreamExt::next(&mut frames));
                let item = match next.await {
                    Err(_) => Err(Error::BadRequest(format!(
                        "request body stalled: no data for {} s",
                        idle.as_secs()
                    ))),
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => {
                        Err(Error::BadRequest(format!("request body: {}", one_line(&e))))
                    }
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        // Trailers carry no data.
                        Err(_) => continue,
                        Ok(data) => {
                            seen += data.len() as u64;
                            if seen > limit {
                                Err(Error::TooLarge(format!(
                                    "request body over its limit of {limit} bytes"
                                )))
                            } else {
                                Ok(data)
                            }
                        }
                    },
                };
                let failed = item.is_err();
                return Some((item, (frames, seen, failed)));
            }
        },
    )
}

/// Chunk size of streamed responses.
const CHUNK: usize = 256 << 10;

/// A `Write` that sends chunks to an async response body (from a blocking thread: it waits
/// while the client is slower than the writer, so memory stays bounded).
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// A writer into `tx`, which a [`channel_body`] reads.
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    }

    /// Sends what is buffered; the body ends once every sender is dropped.
    pub fn flush_rest(mut self) -> io::Result<()> {
        self.send()
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Read` over chunks sent from an async task, for a blocking thread (it waits for them).
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// A reader of what is sent into `rx` (an `Err` is returned where it was sent).
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(chunk)) => self.current = chunk,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

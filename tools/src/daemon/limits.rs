//! The daemon's resource limits: connections, timeouts, body sizes.

use std::time::Duration;

/// Limits that keep a misbehaving or hostile client from exhausting the daemon.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a request body may go without sending data.
    pub body_idle: Duration,
    /// Largest `dag/import` body.
    pub max_import_bytes: u64,
    /// Room for multipart framing on top of a block in `block/put`.
    pub multipart_overhead: u64,
    /// Largest request line and headers, in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
            max_import_bytes: 64 << 30,
            multipart_overhead: 64 << 10,
            // hyper's minimum read buffer is 8 KiB; 64 KiB holds any sane query string.
            max_header_bytes: 64 << 10,
        }
    }
}

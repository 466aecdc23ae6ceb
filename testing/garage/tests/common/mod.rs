//! What both test files share: an `object_store` S3 client configured the way Garage needs,
//! and the runtime it runs on.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

/// Bound on each test's object-store work: well under the ~60 s a test may take, well over
/// the second or two it takes here.
pub const TEST_BOUND: Duration = Duration::from_secs(45);

/// A client for `bucket` at `endpoint`: plain HTTP on loopback, path-style requests (Garage
/// is configured without a root domain, so it has no virtual-hosted buckets), region
/// "garage", and retries bounded well inside [`TEST_BOUND`] (the default keeps retrying for
/// three minutes).
pub fn s3_client(
    endpoint: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
    bucket: &str,
) -> AmazonS3 {
    AmazonS3Builder::new()
        // Client options first: `with_client_options` replaces them all, `with_allow_http`
        // among them.
        .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(10)))
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region(region)
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 15,
            retry_timeout: Duration::from_secs(20),
        })
        .build()
        .expect("an S3 client from a fixed, valid configuration")
}

/// A small runtime for one test: object_store is async, the tests are not.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

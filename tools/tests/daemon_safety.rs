//! The daemon under bad input and bad clients: loopback unless told otherwise, bearer tokens
//! (Kubo's API.Authorizations) enforced, every malformed request a 4xx with a one-line reason,
//! cut or truncated CAR uploads import nothing, slow and surplus connections are closed, and
//! random paths and query strings never get a 5xx or bring it down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use daemon_common::{
    Daemon, agent, car, car_under, dag, init_repo, multipart, post, post_files, store, unixfs,
};
use proptest::prelude::*;

fn objects(daemon: &Daemon) -> u64 {
    post(&format!("{}/api/v0/repo/stat", daemon.api)).json()["NumObjects"]
        .as_u64()
        .unwrap()
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[test]
fn remote_binds_need_a_flag_and_then_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    // Refused before anything is bound, so nothing listens beyond loopback in this test.
    let out = store(&repo)
        .args(["daemon", "--api", "0.0.0.0:0", "--gateway", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    let out = store(&repo)
        .args(["daemon", "--allow-remote", "--api", "0.0.0.0:0"])
        .args(["--gateway", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-auth"));

    // Tokens as Kubo's API.Authorizations: one for everything, one for block/stat only.
    let auth = dir.path().join("auth.json");
    std::fs::write(
        &auth,
        r#"{"API": {"Authorizations": {
            "admin": {"AuthSecret": "bearer:admin-secret", "AllowedPaths": ["/api/v0"]},
            "reader": {"AuthSecret": "reader-secret", "AllowedPaths": ["/api/v0/block/stat"]}
        }}}"#,
    )
    .unwrap();
    let daemon = Daemon::start(&repo, &["--api-auth", auth.to_str().unwrap()]);
    let call = |path: &str, token: Option<&str>| {
        let mut req = agent().post(&format!("{}/api/v0/{path}", daemon.api));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.send_empty().unwrap().status().as_u16()
    };
    assert_eq!(call("version", None), 401);
    assert_eq!(call("version", Some("wrong")), 401);
    assert_eq!(call("version", Some("admin-secret")), 200);
    assert_eq!(call("version", Some("reader-secret")), 403);
    let absent = ipfrs_storage::Block::new(&b"x"[..]).unwrap();
    assert_eq!(
        call(
            &format!("block/stat?arg={}", absent.cid()),
            Some("reader-secret")
        ),
        404
    );
    // The CLI hands its token over from the environment.
    let out = store(&repo)
        .args(["--json", "repo", "stat"])
        .env("IPFRS_STORE_API_TOKEN", "admin-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(daemon.stop().success());
}

#[test]
fn bad_input_is_a_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &["--body-timeout", "2", "--header-timeout", "2"]);
    let api = format!("{}/api/v0", daemon.api);
    let blocks = dag("safety", 40, 4000);
    let whole = car(&blocks);
    let before = objects(&daemon);

    let four = |r: &daemon_common::Reply, what: &str| {
        assert!(
            (400..500).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.text()
        );
        let message = r.json()["Message"].as_str().unwrap().to_string();
        assert!(!message.contains('\n'), "{what}: {message}");
        message
    };
    four(&post(&format!("{api}/block/stat?arg=notacid")), "bad cid");
    four(&post(&format!("{api}/block/stat")), "missing arg");
    four(&post(&format!("{api}/block/stat?arg=%zz")), "bad escape");
    four(
        &post(&format!("{api}/pin/add?arg=x&recursive=maybe")),
        "bad bool",
    );
    four(&post(&format!("{api}/block/put?mhtype=md5")), "bad mhtype");
    four(&post(&format!("{api}/dag/import")), "not multipart");
    four(&post(&format!("{api}/no/such/command")), "unknown command");
    // A block over Kubo's 1 MiB without allow-big-block is refused, with the reason; the
    // rest of its upload is read, so the client gets the reply.
    let big = vec![7u8; (1 << 20) + 1];
    let m = four(
        &post_files(&format!("{api}/block/put"), &[&big]),
        "oversize block",
    );
    assert!(m.contains("allow-big-block"), "{m}");
    // A body far past the request's limit is cut off: a 4xx if the client reads it before
    // the connection closes, else a reset; never a 5xx or a crash.
    let huge = vec![7u8; 16 << 20];
    let (content_type, body) = multipart(&[&huge]);
    if let Ok(r) = agent()
        .post(&format!("{api}/block/put"))
        .header("Content-Type", &content_type)
        .send(&body[..])
    {
        assert!((400..500).contains(&r.status().as_u16()), "{}", r.status());
    }
    // A dag-cbor label on bytes that are not dag-cbor.
    four(
        &post_files(
            &format!("{api}/block/put?cid-codec=dag-cbor"),
            &[b"\xff\xfe"],
        ),
        "bad dag-cbor",
    );

    // A truncated CAR inside a well-formed upload: nothing of it is kept.
    let cut = &whole[..whole.len() - 1500];
    four(
        &post_files(&format!("{api}/dag/import"), &[cut]),
        "truncated CAR",
    );
    assert_eq!(objects(&daemon), before);

    // An upload cut off mid-body (the client goes away): nothing of it is kept either.
    let (content_type, body) = multipart(&[&whole]);
    let mut stream = TcpStream::connect(addr(&daemon.api)).unwrap();
    write!(
        stream,
        "POST /api/v0/dag/import HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    drop(stream);
    // A stalled upload (the client stops sending): cut off after the body timeout.
    let mut stalled = TcpStream::connect(addr(&daemon.api)).unwrap();
    write!(
        stalled,
        "POST /api/v0/dag/import HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stalled.write_all(&body[..body.len() / 3]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    // Both imports ran their rollbacks: the store is as before (the import is journaled, so
    // give the cut one the time its rollback takes).
    let mut settled = false;
    for _ in 0..100 {
        if objects(&daemon) == before {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        settled,
        "a cut upload left {} blocks",
        objects(&daemon) - before
    );
    // And a whole one still imports.
    assert_eq!(
        post_files(&format!("{api}/dag/import"), &[&whole]).status,
        200
    );
    assert_eq!(objects(&daemon), before + 41);

    // A client that never finishes its headers is disconnected.
    let mut slow = TcpStream::connect(addr(&daemon.api)).unwrap();
    slow.write_all(b"POST /api/v0/version HTTP/1.1\r\nHost:")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "the server did not close a slow client: {read:?}"
    );
    // Headers past the limit: 431, not a crash.
    let long = format!("{api}/version?{}", "a=b&".repeat(40_000));
    let r = agent().post(&long).send_empty();
    if let Ok(r) = r {
        assert!((400..500).contains(&r.status().as_u16()), "{}", r.status());
    }
    assert_eq!(post(&format!("{api}/version")).status, 200);
    let mut daemon = daemon;
    assert!(daemon.alive());
    assert!(daemon.stop().success());
}

#[test]
fn connections_past_the_limit_get_503() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &["--max-connections", "2"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(addr(&daemon.api)).unwrap())
        .collect();
    // The two held connections have been accepted once a request on a third is answered.
    let mut third = TcpStream::connect(addr(&daemon.api)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    third
        .write_all(b"POST /api/v0/version HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    // Freed, the daemon serves again (the held connections' tasks end as they close).
    let mut ok = false;
    for _ in 0..100 {
        if post(&format!("{}/api/v0/version", daemon.api)).status == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok);
    assert!(daemon.stop().success());
}

/// A path segment: CID-like, dotted, encoded, or junk.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".to_string()),
        Just("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".to_string()),
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("api".to_string()),
        Just("v0".to_string()),
        Just("ipfs".to_string()),
        Just("block".to_string()),
        Just("dag".to_string()),
        Just("pin".to_string()),
        Just("repo".to_string()),
        Just("file.bin".to_string()),
        Just("sub".to_string()),
        "[a-z/]{0,12}",
        "[A-Za-z0-9%._~-]{0,40}",
    ]
}

/// A query string: Kubo's names with good and bad values, and junk.
fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("arg"),
        Just("format"),
        Just("dag-scope"),
        Just("recursive"),
        Just("pin"),
        Just("stream"),
        Just("type"),
        Just("cid-codec"),
        Just("mhtype"),
        Just("force"),
        Just("quiet"),
        Just("pin-roots"),
        Just("entity-bytes"),
        Just("car-dups"),
        Just("car-order"),
        Just("car-version"),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("raw".to_string()),
        Just("car".to_string()),
        Just("block".to_string()),
        Just("entity".to_string()),
        Just("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".to_string()),
        "-?[0-9]{1,20}:(\\*|-?[0-9]{1,20})",
        "[A-Za-z0-9%+=&._:*-]{0,30}",
    ];
    prop::collection::vec((name, value), 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[test]
fn random_paths_and_queries_never_get_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let mut daemon = Daemon::start(&repo, &[]);
    // Something to find, so some requests reach the store's happy paths too.
    let blocks = dag("prop", 3, 100);
    assert_eq!(
        post_files(
            &format!("{}/api/v0/dag/import", daemon.api),
            &[&car(&blocks)]
        )
        .status,
        200
    );
    // And a UnixFS directory, so that gateway paths below a CID resolve some of the time.
    let (file, file_blocks) = unixfs::file(&unixfs::file_bytes(5000, 3), 700, 3);
    let (sub, sub_blocks) = unixfs::directory(&[("file.bin", file, file_blocks.clone())]);
    let (root, tree) =
        unixfs::directory(&[("file.bin", file, file_blocks), ("sub", sub, sub_blocks)]);
    assert_eq!(
        post_files(
            &format!("{}/api/v0/dag/import", daemon.api),
            &[&car_under(&root, &tree)]
        )
        .status,
        200
    );
    let root = root.to_string();
    let (api, gateway) = (daemon.api.clone(), daemon.gateway.clone());
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        on_gateway in any::<bool>(),
        under_root in any::<bool>(),
        method in prop_oneof![Just("GET"), Just("POST"), Just("HEAD"), Just("PUT")],
        segments in prop::collection::vec(segment(), 0..5),
        query in query(),
        accept in prop_oneof![
            Just(""), Just("application/vnd.ipld.raw"), Just("application/vnd.ipld.car"),
            Just("text/html"), Just("*/*"),
            Just("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
            Just("application/vnd.ipld.car;order=foo, application/vnd.ipld.car;dups=n;q=0.5"),
            Just("application/vnd.ipld.car; version=2")
        ],
    )| {
        let base = if on_gateway { &gateway } else { &api };
        let mut path = segments.join("/");
        if on_gateway && under_root {
            path = format!("ipfs/{root}/{path}");
        }
        if !on_gateway && !segments.is_empty() && segments[0] != "api" {
            path = format!("api/v0/{path}");
        }
        // Keep it a valid request target: the URL parser is the client's, not ours.
        let path: String = path.chars().filter(|c| c.is_ascii_graphic()).collect();
        let url = format!("{base}/{path}?{query}");
        let Ok(uri) = url.parse::<ureq::http::Uri>() else { return Ok(()) };
        let mut req = ureq::http::Request::builder().method(method).uri(uri);
        if !accept.is_empty() {
            req = req.header("Accept", accept);
        }
        let req = req.body(()).unwrap();
        let response = agent().run(req);
        let status = response.map(|r| r.status().as_u16()).unwrap_or(0);
        prop_assert!(status != 0 && status < 500, "{method} {url} -> {status}");
    });
    assert!(daemon.alive());
    assert_eq!(post(&format!("{api}/api/v0/version")).status, 200);
    assert!(daemon.stop().success());
}

//! The trustless gateway's CAR responses as the spec describes them: paths below the CID
//! resolved through UnixFS directories, `dag-scope=block|entity|all`, `entity-bytes`,
//! `dups`/`order`/`version` from the query or `Accept`, 400s for what is not served, the
//! identity probe CID, and a stream cut by a missing block (unterminated, or ended with an
//! `X-Stream-Error` trailer for a client that asked for trailers; the same for the RPC API's
//! dag/export).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::io::{Read, Write};
use std::time::Duration;

use daemon_common::{Daemon, car_under, get, init_repo, post, post_files, read_car, unixfs};
use ipfrs_storage::{Block, Cid};

/// Chunk size of the test file: small, so a range picks a few leaves out of many.
const CHUNK: usize = 1000;

struct Tree {
    dir: Cid,
    blocks: Vec<Block>,
    big: Cid,
    big_data: Vec<u8>,
    big_blocks: Vec<Block>,
    sub: Cid,
    small: Cid,
    small_blocks: Vec<Block>,
}

/// /big.bin (10 KB: 10 leaves under 4-way dag-pb nodes), /sub/small.txt (one leaf).
fn tree() -> Tree {
    let big_data = unixfs::file_bytes(10_000, 5);
    let (big, big_blocks) = unixfs::file(&big_data, CHUNK, 4);
    let (small, small_blocks) = unixfs::file(b"hello, gateway", CHUNK, 4);
    let (sub, sub_blocks) = unixfs::directory(&[("small.txt", small, small_blocks.clone())]);
    let (dir, blocks) = unixfs::directory(&[
        ("big.bin", big, big_blocks.clone()),
        ("sub", sub, sub_blocks),
    ]);
    Tree {
        dir,
        blocks,
        big,
        big_data,
        big_blocks,
        sub,
        small,
        small_blocks,
    }
}

fn cids(blocks: &[Block]) -> Vec<Cid> {
    blocks.iter().map(|b| *b.cid()).collect()
}

fn started() -> (tempfile::TempDir, Daemon, Tree) {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let tree = tree();
    let r = post_files(
        &format!("{}/api/v0/dag/import", daemon.api),
        &[&car_under(&tree.dir, &tree.blocks)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    (dir, daemon, tree)
}

#[test]
fn paths_and_scopes_pick_the_spec_blocks() {
    let (_dir, daemon, t) = started();
    let gw = &daemon.gateway;
    let car = |url: String| {
        let r = get(&url, &[]);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let (roots, blocks) = read_car(&r.body);
        (roots, cids(&blocks), r)
    };

    // The whole directory: every block, depth first; roots name the requested CID.
    let (roots, got, r) = car(format!("{gw}/ipfs/{}?format=car", t.dir));
    assert_eq!(roots, vec![t.dir]);
    assert_eq!(got, cids(&t.blocks));
    let etag_all = r.header("etag").unwrap().to_string();

    // A path: the blocks that resolve it, then the file whole.
    let (roots, got, r) = car(format!("{gw}/ipfs/{}/sub/small.txt?format=car", t.dir));
    assert_eq!(roots, vec![t.dir]);
    let mut want = vec![t.dir, t.sub];
    want.extend(cids(&t.small_blocks));
    assert_eq!(got, want);
    assert_eq!(
        r.header("x-ipfs-roots"),
        Some(format!("{},{},{}", t.dir, t.sub, t.small).as_str())
    );
    assert_eq!(
        r.header("x-ipfs-path"),
        Some(format!("/ipfs/{}/sub/small.txt", t.dir).as_str())
    );

    // dag-scope=block: the path, then the terminal block alone.
    let (_, got, _) = car(format!(
        "{gw}/ipfs/{}/big.bin?format=car&dag-scope=block",
        t.dir
    ));
    assert_eq!(got, vec![t.dir, t.big]);

    // dag-scope=entity: a directory is its own block, a file is whole.
    let (_, got, r) = car(format!("{gw}/ipfs/{}?format=car&dag-scope=entity", t.dir));
    assert_eq!(got, vec![t.dir]);
    assert_ne!(
        r.header("etag").unwrap(),
        etag_all,
        "the scope is in the ETag"
    );
    let (_, got, _) = car(format!(
        "{gw}/ipfs/{}/big.bin?format=car&dag-scope=entity",
        t.dir
    ));
    let mut want = vec![t.dir];
    want.extend(cids(&t.big_blocks));
    assert_eq!(got, want);

    // A percent-encoded segment and a trailing slash resolve the same.
    let (_, got, _) = car(format!("{gw}/ipfs/{}/%73ub/?format=car", t.dir));
    assert_eq!(got[..2], [t.dir, t.sub]);

    // Not there: 404; through a file: 400; raw with a path: 400.
    let r = get(&format!("{gw}/ipfs/{}/nope?format=car", t.dir), &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("nope"), "{}", r.text());
    let r = get(&format!("{gw}/ipfs/{}/big.bin/x?format=car", t.dir), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get(&format!("{gw}/ipfs/{}/sub?format=raw", t.dir), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(daemon.stop().success());
}

/// The raw leaves of the big file that hold bytes `from..=to`.
fn leaves_for(t: &Tree, from: usize, to: usize) -> Vec<Cid> {
    t.big_data
        .chunks(CHUNK)
        .enumerate()
        .filter(|(i, _)| i * CHUNK <= to && (i + 1) * CHUNK > from)
        .map(|(_, c)| *Block::new(c.to_vec()).unwrap().cid())
        .collect()
}

#[test]
fn entity_bytes_sends_only_the_blocks_of_the_range() {
    let (_dir, daemon, t) = started();
    let gw = &daemon.gateway;
    let base = format!("{gw}/ipfs/{}/big.bin?format=car", t.dir);
    let raw_leaves = |body: &[u8]| -> Vec<Cid> {
        let (_, blocks) = read_car(body);
        // The path (dir), then the file's root and inner nodes, then leaves among them.
        assert_eq!(*blocks[0].cid(), t.dir);
        assert_eq!(*blocks[1].cid(), t.big);
        blocks
            .iter()
            .filter(|b| b.cid().codec() == 0x55)
            .map(|b| *b.cid())
            .collect()
    };
    let mut etags = std::collections::HashSet::new();
    for (range, from, to) in [
        ("0:0", 0, 0),
        ("2500:4999", 2500, 4999),
        ("-1500:*", 8500, 9999),
        ("9000:-500", 9000, 9499),
        ("0:*", 0, 9999),
        ("7000:123456", 7000, 9999),
    ] {
        let r = get(&format!("{base}&entity-bytes={range}"), &[]);
        assert_eq!(r.status, 200, "{range}: {}", r.text());
        assert_eq!(raw_leaves(&r.body), leaves_for(&t, from, to), "{range}");
        assert!(etags.insert(r.header("etag").unwrap().to_string()));
    }
    // A range that is empty once resolved: the file's root alone (its blocksizes say why).
    let r = get(&format!("{base}&entity-bytes=5000:-6000"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cids(&read_car(&r.body).1), vec![t.dir, t.big]);
    // Past the end, known up front: 400.
    let r = get(&format!("{base}&entity-bytes=10000:*"), &[]);
    assert_eq!(r.status, 400, "{}", r.text());
    // On a directory the parameter is ignored (entity scope).
    let r = get(
        &format!("{gw}/ipfs/{}?format=car&entity-bytes=0:10", t.dir),
        &[],
    );
    assert_eq!(cids(&read_car(&r.body).1), vec![t.dir]);
    // Malformed, or at odds with dag-scope.
    for bad in [
        "entity-bytes=a:1",
        "entity-bytes=5",
        "entity-bytes=9:1",
        "entity-bytes=0:1&dag-scope=all",
    ] {
        let r = get(&format!("{base}&{bad}"), &[]);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    assert!(daemon.stop().success());
}

#[test]
fn car_variants_are_served_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let gw = &daemon.gateway;
    // A file whose eight chunks are identical: one leaf CID met eight times.
    let data = vec![7u8; 8 * CHUNK];
    let (root, blocks) = unixfs::file(&data, CHUNK, 8);
    assert_eq!(blocks.len(), 2);
    let leaf = *blocks[1].cid();
    let r = post_files(
        &format!("{}/api/v0/dag/import", daemon.api),
        &[&car_under(&root, &blocks)],
    );
    assert_eq!(r.status, 200);
    let count = |body: &[u8]| read_car(body).1.iter().filter(|b| *b.cid() == leaf).count();

    let n = get(&format!("{gw}/ipfs/{root}?format=car"), &[]);
    assert_eq!(count(&n.body), 1);
    let y = get(&format!("{gw}/ipfs/{root}?format=car&car-dups=y"), &[]);
    assert_eq!(count(&y.body), 8);
    assert_eq!(
        y.header("content-type"),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=y")
    );
    assert_ne!(y.header("etag"), n.header("etag"));
    // The same from Accept's parameters; the query wins over them.
    let accept = [(
        "Accept",
        "application/vnd.ipld.car; version=1; order=dfs; dups=y",
    )];
    let r = get(&format!("{gw}/ipfs/{root}"), &accept);
    assert_eq!(count(&r.body), 8);
    let r = get(&format!("{gw}/ipfs/{root}?format=car&car-dups=n"), &accept);
    assert_eq!(count(&r.body), 1);
    // order=unk is answered with our order, said so.
    let r = get(&format!("{gw}/ipfs/{root}?format=car&car-order=unk"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().contains("order=dfs"));
    // A list of preferences: the first one served wins.
    let r = get(
        &format!("{gw}/ipfs/{root}"),
        &[(
            "Accept",
            "application/vnd.ipld.car;order=foo, application/vnd.ipld.car;order=dfs;dups=y;q=0.5",
        )],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count(&r.body), 8);

    for (query, accept) in [
        ("format=car&car-version=2", None),
        ("format=car&car-order=bfs", None),
        ("format=car&car-dups=maybe", None),
        ("format=car&dag-scope=everything", None),
        ("format=raw&dag-scope=all", None),
        ("format=raw&entity-bytes=0:1", None),
        ("format=dag-json", None),
        ("", Some("application/vnd.ipld.car; version=2")),
        ("", Some("text/html")),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let r = get(&format!("{gw}/ipfs/{root}?{query}"), &headers);
        assert_eq!(r.status, 400, "{query} {accept:?}: {}", r.text());
        assert!(!r.text().trim().is_empty());
    }

    // The identity probe CID: an empty block, a CAR with it as root and no block.
    let r = get(&format!("{gw}/ipfs/bafkqaaa?format=raw"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    let r = get(&format!("{gw}/ipfs/bafkqaaa?format=car"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let (roots, blocks) = read_car(&r.body);
    assert_eq!(roots[0].to_string(), "bafkqaaa");
    assert!(blocks.is_empty());
    assert!(daemon.stop().success());
}

/// A raw HTTP/1.1 GET over TCP: the response as sent, up to the connection's close.
fn raw_get(base: &str, path: &str, extra: &str) -> Vec<u8> {
    raw_request("GET", base, path, extra)
}

/// A raw HTTP/1.1 request with no body over TCP: the response as sent, up to the close. A
/// stream the server cuts ends in a reset, and a reset that arrives before the client read
/// anything discards what the kernel held for it (a busy machine): such an empty answer is
/// asked for again, a few times.
fn raw_request(method: &str, base: &str, path: &str, extra: &str) -> Vec<u8> {
    for _ in 0..4 {
        let out = raw_request_once(method, base, path, extra);
        if !out.is_empty() {
            return out;
        }
    }
    raw_request_once(method, base, path, extra)
}

fn raw_request_once(method: &str, base: &str, path: &str, extra: &str) -> Vec<u8> {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: 0\r\n{extra}\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    // A connection the server aborts ends the read with an error or EOF; both end it.
    let _ = stream.read_to_end(&mut out);
    out
}

#[test]
fn a_missing_block_cuts_the_car_stream() {
    let (_dir, daemon, t) = started();
    // Remove a leaf of the big file (unpin first: a pinned DAG's blocks stay).
    let r = post(&format!("{}/api/v0/pin/rm?arg={}", daemon.api, t.dir));
    assert_eq!(r.status, 200, "{}", r.text());
    let leaf = *t.big_blocks.last().unwrap().cid();
    let r = post(&format!("{}/api/v0/block/rm?arg={leaf}", daemon.api));
    assert!(r.lines()[0].get("Error").is_none(), "{}", r.text());
    let path = format!("/ipfs/{}?format=car", t.dir);

    // Without trailers: 200 was sent, then the chunked body is never terminated.
    let plain = raw_get(&daemon.gateway, &path, "");
    let text = String::from_utf8_lossy(&plain);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        !plain.ends_with(b"0\r\n\r\n"),
        "a cut stream must not end well"
    );

    // With TE: trailers: the body ends with an X-Stream-Error trailer naming the block.
    let with = raw_get(&daemon.gateway, &path, "TE: trailers\r\n");
    let text = String::from_utf8_lossy(&with);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("trailer: X-Stream-Error"), "{text}");
    let tail = &text[text.rfind("\r\n0\r\n").expect("a last chunk")..];
    assert!(
        tail.to_ascii_lowercase().contains("x-stream-error:"),
        "{tail}"
    );
    assert!(tail.contains(&leaf.to_string()), "{tail}");

    // The RPC API's dag/export does the same (Kubo's trailer).
    let export = format!("/api/v0/dag/export?arg={}", t.dir);
    let plain = raw_request("POST", &daemon.api, &export, "");
    let text = String::from_utf8_lossy(&plain);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!plain.ends_with(b"0\r\n\r\n"));
    let with = raw_request("POST", &daemon.api, &export, "TE: trailers\r\n");
    let text = String::from_utf8_lossy(&with);
    let tail = &text[text.rfind("\r\n0\r\n").expect("a last chunk")..];
    assert!(
        tail.to_ascii_lowercase().contains("x-stream-error:"),
        "{tail}"
    );
    assert!(tail.contains(&leaf.to_string()), "{tail}");

    // The same DAG with the block present streams to a good end.
    let small = raw_get(
        &daemon.gateway,
        &format!("/ipfs/{}/sub?format=car", t.dir),
        "",
    );
    assert!(small.ends_with(b"0\r\n\r\n"));
    assert!(daemon.stop().success());
}

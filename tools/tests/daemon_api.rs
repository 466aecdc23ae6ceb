//! `ipfrs-store daemon` driven over HTTP as Kubo clients and trustless-gateway clients drive
//! it: the RPC subset's paths, parameters and JSON shapes, the gateway's headers, pins that
//! survive a restart, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use daemon_common::{Daemon, car, dag, get, head, init_repo, post, post_files, read_car, store};

#[test]
fn kubo_rpc_subset_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let api = format!("{}/api/v0", daemon.api);

    // version, id
    let v = post(&format!("{api}/version"));
    assert_eq!(v.status, 200);
    assert_eq!(v.json()["Version"], env!("CARGO_PKG_VERSION"));
    let id = post(&format!("{api}/id")).json();
    let peer = id["ID"].as_str().unwrap().to_string();
    assert!(peer.starts_with("12D3KooW"), "{id}");

    // block put / stat / get, with Kubo's codec and pin options
    let put = post_files(
        &format!("{api}/block/put?cid-codec=raw&mhtype=sha2-256&pin=false"),
        &[b"hello daemon"],
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let key = put.json()["Key"].as_str().unwrap().to_string();
    assert!(key.starts_with("bafkrei"), "{key}");
    assert_eq!(put.json()["Size"], 12);
    let stat = post(&format!("{api}/block/stat?arg={key}"));
    assert_eq!(stat.json()["Key"], key.as_str());
    assert_eq!(stat.json()["Size"], 12);
    let got = post(&format!("{api}/block/get?arg={key}"));
    assert_eq!(got.body, b"hello daemon");
    // Kubo's calls are POST only.
    assert_eq!(get(&format!("{api}/block/get?arg={key}"), &[]).status, 405);

    // dag import: streamed multipart, roots pinned, stats on request
    let blocks = dag("imported", 20, 3000);
    let root = blocks[0].cid().to_string();
    let import = post_files(&format!("{api}/dag/import?stats=true"), &[&car(&blocks)]);
    assert_eq!(import.status, 200, "{}", import.text());
    let lines = import.lines();
    assert_eq!(lines[0]["Root"]["Cid"]["/"], root.as_str(), "{lines:?}");
    assert_eq!(lines[0]["Root"]["PinErrorMsg"], "");
    assert_eq!(lines[1]["Stats"]["BlockCount"], 21);

    // dag export: the same blocks, root first, depth first
    let export = post(&format!("{api}/dag/export?arg={root}"));
    assert_eq!(export.status, 200);
    let (roots, exported) = read_car(&export.body);
    assert_eq!(roots, vec![*blocks[0].cid()]);
    assert_eq!(exported, blocks);

    // pins: the import's root, listed both ways Kubo lists them
    let ls = post(&format!("{api}/pin/ls")).json();
    assert_eq!(ls["Keys"][&root]["Type"], "recursive", "{ls}");
    let streamed = post(&format!("{api}/pin/ls?stream=true")).lines();
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0]["Cid"], root.as_str());
    let added = post(&format!("{api}/pin/add?arg={key}&recursive=false"));
    assert_eq!(added.json()["Pins"][0], key.as_str(), "{}", added.text());
    // A pinned block is not removed.
    let rm = post(&format!("{api}/block/rm?arg={key}")).lines();
    assert_eq!(rm[0]["Error"], "pinned: direct");

    // repo stat and gc: an unpinned block goes, pinned ones stay
    let loose = post_files(&format!("{api}/block/put"), &[b"unpinned"]).json()["Key"]
        .as_str()
        .unwrap()
        .to_string();
    let stat = post(&format!("{api}/repo/stat")).json();
    assert_eq!(stat["NumObjects"], 23, "{stat}");
    assert!(stat["RepoSize"].as_u64().unwrap() > 60_000);
    let gc = post(&format!("{api}/repo/gc")).lines();
    assert_eq!(gc.len(), 1, "{gc:?}");
    assert_eq!(gc[0]["Key"]["/"], loose.as_str());
    assert_eq!(post(&format!("{api}/block/stat?arg={loose}")).status, 404);
    assert_eq!(post(&format!("{api}/repo/stat")).json()["NumObjects"], 22);
    let verify = post(&format!("{api}/repo/verify")).lines();
    assert_eq!(
        verify.last().unwrap()["Msg"],
        "verify complete, all blocks validated."
    );

    // Prometheus metrics for scrapers (GET).
    let metrics = get(&format!("{}/metrics", daemon.api), &[]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("# TYPE"), "{}", metrics.text());

    // pin rm (recursive=false refuses a recursive pin)
    let refused = post(&format!("{api}/pin/rm?arg={root}&recursive=false"));
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["Type"], "error");
    assert!(
        refused.json()["Message"]
            .as_str()
            .unwrap()
            .contains("pinned recursively")
    );

    // A clean stop, then the pins are still there for a plain CLI command.
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        !repo.join("api").exists(),
        "the api file outlived the daemon"
    );
    let out = store(&repo).args(["--json", "pin", "ls"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let pins: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pins["pins"].as_array().unwrap().len(), 2, "{pins}");
    // And the same ID after a restart.
    let daemon = Daemon::start(&repo, &[]);
    let id = post(&format!("{}/api/v0/id", daemon.api)).json();
    assert_eq!(id["ID"], peer.as_str());
    assert!(daemon.stop().success());
}

#[test]
fn trustless_gateway_headers_and_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let blocks = dag("gateway", 5, 1000);
    let root = blocks[0].cid().to_string();
    let import = post_files(
        &format!("{}/api/v0/dag/import", daemon.api),
        &[&car(&blocks)],
    );
    assert_eq!(import.status, 200);
    let gw = &daemon.gateway;

    // Raw block by ?format and by Accept.
    let leaf = blocks[1].cid().to_string();
    for (url, headers) in [
        (format!("{gw}/ipfs/{leaf}?format=raw"), vec![]),
        (
            format!("{gw}/ipfs/{leaf}"),
            vec![("Accept", "application/vnd.ipld.raw")],
        ),
    ] {
        let r = get(&url, &headers);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        assert_eq!(r.body, blocks[1].data().as_ref());
        assert_eq!(r.header("content-type"), Some("application/vnd.ipld.raw"));
        assert_eq!(r.header("etag"), Some(format!("\"{leaf}.raw\"").as_str()));
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=29030400, immutable")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(
            r.header("content-disposition")
                .unwrap()
                .starts_with("attachment")
        );
    }

    // CAR of the whole DAG, and of the root block alone.
    let r = get(&format!("{gw}/ipfs/{root}?format=car"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n")
    );
    assert!(r.header("etag").unwrap().starts_with("W/\""));
    assert_eq!(read_car(&r.body).1, blocks);
    let r = get(
        &format!("{gw}/ipfs/{root}?dag-scope=block"),
        &[("Accept", "application/vnd.ipld.car")],
    );
    assert_eq!(read_car(&r.body).1, blocks[..1].to_vec());

    // HEAD: headers, no body; conditional GET; errors.
    let h = head(&format!("{gw}/ipfs/{leaf}?format=raw"));
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    let etag = format!("\"{leaf}.raw\"");
    let r = get(
        &format!("{gw}/ipfs/{leaf}?format=raw"),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    let absent = ipfrs_storage::Block::new(&b"never stored"[..]).unwrap();
    let r = get(&format!("{gw}/ipfs/{}?format=raw", absent.cid()), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(
        head(&format!("{gw}/ipfs/{}?format=raw", absent.cid())).status,
        404
    );
    assert_eq!(
        get(&format!("{gw}/ipfs/{leaf}"), &[]).status,
        400,
        "no verifiable type asked"
    );
    assert_eq!(
        get(&format!("{gw}/ipfs/not-a-cid?format=raw"), &[]).status,
        400
    );
    assert_eq!(
        get(&format!("{gw}/ipfs/{root}/a/path?format=raw"), &[]).status,
        400
    );
    assert_eq!(get(&format!("{gw}/ipns/{root}"), &[]).status, 404);
    // Read-only.
    assert_eq!(post(&format!("{gw}/ipfs/{leaf}?format=raw")).status, 405);
    assert!(daemon.stop().success());
}

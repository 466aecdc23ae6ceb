//! The CAR module against the go-car fixtures (tools/tests/fixtures/car, copied from the
//! shared fixture set): block counts, roots, round trips through the writer, and errors that
//! name the problem and its byte offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;

use ipfrs_storage::Cid;
use ipfrs_tools::car::{self, CarError, CarV2Writer, CarVersion, CarWriter};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/car")
        .join(name)
}

fn read_all(name: &str) -> (car::CarHeader, BTreeMap<Cid, Vec<u8>>, usize) {
    let file = std::fs::File::open(fixture(name)).unwrap();
    let mut reader = car::read(file).unwrap();
    let header = reader.header().clone();
    let mut blocks = BTreeMap::new();
    let mut count = 0;
    for block in &mut reader {
        let block = block.unwrap();
        count += 1;
        blocks.insert(*block.cid(), block.data().to_vec());
    }
    (header, blocks, count)
}

fn read_error(name: &str) -> CarError {
    let bytes = std::fs::read(fixture(name)).unwrap();
    match car::read(Cursor::new(bytes)) {
        Err(e) => e,
        Ok(reader) => reader
            .into_iter()
            .find_map(Result::err)
            .expect("the fixture is corrupt, so reading must fail"),
    }
}

/// The root of go-car's sample files (a Filecoin DAG: dag-cbor, blake2b-256).
const SAMPLE_ROOT: &str = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy";

#[test]
fn sample_v1_and_wrapped_v2_hold_the_same_1049_blocks() {
    let (h1, b1, n1) = read_all("sample-v1.car");
    let (h2, b2, n2) = read_all("sample-wrapped-v2.car");
    assert_eq!((n1, n2), (1049, 1049));
    assert_eq!(h1.version, CarVersion::V1);
    assert_eq!(h2.version, CarVersion::V2);
    let root: Cid = SAMPLE_ROOT.parse().unwrap();
    assert_eq!(h1.roots, vec![root]);
    assert_eq!(h2.roots, vec![root]);
    assert!(b1.contains_key(&root));
    assert_eq!(b1, b2);
    assert!(
        h2.v2.unwrap().index_offset > 0,
        "the v2 fixture carries an index"
    );
}

#[test]
fn writer_round_trips_v1_and_v2() {
    for name in ["sample-v1.car", "simple-unixfs.car"] {
        let (header, blocks, _) = read_all(name);
        let mut v1 = CarWriter::new(Vec::new(), &header.roots).unwrap();
        let mut v2 = CarV2Writer::new(Cursor::new(Vec::new()), &header.roots).unwrap();
        for (cid, data) in &blocks {
            v1.write_block(cid, data).unwrap();
            v2.write_block(cid, data).unwrap();
        }
        for bytes in [v1.finish().unwrap(), v2.finish().unwrap().into_inner()] {
            let reader = car::read(Cursor::new(bytes)).unwrap();
            assert_eq!(reader.header().roots, header.roots);
            let again: BTreeMap<Cid, Vec<u8>> = reader
                .map(|b| {
                    let b = b.unwrap();
                    (*b.cid(), b.data().to_vec())
                })
                .collect();
            assert_eq!(again, blocks, "{name}");
        }
    }
}

#[test]
fn writer_header_is_byte_identical_to_go_car() {
    let bytes = std::fs::read(fixture("sample-v1.car")).unwrap();
    let root: Cid = SAMPLE_ROOT.parse().unwrap();
    let ours = CarWriter::new(Vec::new(), &[root])
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(ours, bytes[..ours.len()]);
    assert_eq!(ours.len(), 1 + 0x3c);
}

#[test]
fn v2_writer_reproduces_go_car_wrapped_v2_byte_for_byte() {
    // go-car's WrapV1 of sample-v1.car: same payload, then its MultihashIndexSorted index.
    let v1 = std::fs::read(fixture("sample-v1.car")).unwrap();
    let reader = car::read(Cursor::new(v1)).unwrap();
    let roots = reader.header().roots.clone();
    let mut writer = CarV2Writer::new(Cursor::new(Vec::new()), &roots).unwrap();
    for block in reader {
        let block = block.unwrap();
        writer.write_block(block.cid(), block.data()).unwrap();
    }
    let ours = writer.finish().unwrap().into_inner();
    let theirs = std::fs::read(fixture("sample-wrapped-v2.car")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert!(
        ours == theirs,
        "first difference at byte {:?}",
        ours.iter().zip(&theirs).position(|(a, b)| a != b)
    );
}

#[test]
fn bad_header_length_names_the_problem_and_offset() {
    let err = read_error("badheaderlength.car");
    assert!(
        matches!(err, CarError::HeaderLength { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("header length"), "{err}");
}

#[test]
fn bad_section_length_names_the_problem_and_offset() {
    let err = read_error("badsectionlength.car");
    // The header is 1 + 17 bytes; the first section starts right after it.
    assert!(
        matches!(err, CarError::SectionLength { offset: 18, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at byte 18"), "{err}");
}

#[test]
fn corrupt_pragma_is_a_truncated_header() {
    let err = read_error("sample-corrupt-pragma.car");
    assert!(
        matches!(
            err,
            CarError::Truncated {
                what: "CAR header",
                offset: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_is_a_hash_mismatch_at_its_section() {
    let mut bytes = std::fs::read(fixture("simple-unixfs.car")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let results: Vec<_> = car::read(Cursor::new(bytes)).unwrap().collect();
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, CarError::BadBlock { .. }), "{err}");
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
}

/// A second spelling of a CID would be a second key for one block. (The cid crate's reader
/// refuses overlong varints itself; this pins that down.)
#[test]
fn a_cid_with_an_overlong_varint_is_refused() {
    let block = ipfrs_storage::Block::new(&b"one block"[..]).unwrap();
    let mut writer = CarWriter::new(Vec::new(), &[*block.cid()]).unwrap();
    writer.write_block(block.cid(), block.data()).unwrap();
    let bytes = writer.finish().unwrap();
    // The only section is the tail: length varint, CID (0x01 version, 0x55 raw codec, ...),
    // data.
    let cid_bytes = block.cid().to_bytes();
    let section_len = cid_bytes.len() + block.data().len();
    let at = bytes.len() - section_len - 1;
    assert_eq!(bytes[at] as usize, section_len);
    assert_eq!(&bytes[at + 1..at + 3], &[0x01, 0x55]);
    let mut bad = bytes[..at].to_vec();
    bad.push(section_len as u8 + 1);
    // The raw codec spelled in two bytes: 0xd5 0x00.
    bad.extend_from_slice(&[0x01, 0xd5, 0x00]);
    bad.extend_from_slice(&bytes[at + 3..]);
    let results: Vec<_> = car::read(Cursor::new(bad)).unwrap().collect();
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(err, CarError::BadCid { .. }), "{err}");
    // The canonical file reads back.
    let good: Vec<_> = car::read(Cursor::new(bytes)).unwrap().collect();
    assert_eq!(good.len(), 1);
    assert!(good[0].is_ok());
}

#[test]
fn truncation_anywhere_is_an_error_never_a_panic() {
    let bytes = std::fs::read(fixture("simple-unixfs.car")).unwrap();
    let full = car::read(Cursor::new(bytes.clone())).unwrap().count();
    for cut in 0..bytes.len() {
        let outcome =
            car::read(Cursor::new(bytes[..cut].to_vec())).map(|r| r.collect::<Result<Vec<_>, _>>());
        match outcome {
            Err(_) | Ok(Err(_)) => {}
            // A cut exactly between sections is a shorter, valid CARv1.
            Ok(Ok(blocks)) => assert!(blocks.len() < full, "cut at {cut}"),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Flipped bytes anywhere in a real file: the reader errors or yields verified blocks,
    /// never panics, and never allocates for a section beyond the block limit.
    #[test]
    fn mutated_files_never_panic(
        flips in proptest::collection::vec((0usize..1933, proptest::prelude::any::<u8>()), 1..6)
    ) {
        let mut bytes = std::fs::read(fixture("simple-unixfs.car")).unwrap();
        for (at, x) in flips {
            let at = at % bytes.len();
            bytes[at] ^= x;
        }
        if let Ok(reader) = car::read(Cursor::new(bytes)) {
            for block in reader.flatten() {
                proptest::prop_assert!(ipfrs_storage::verify(block.cid(), block.data()).is_ok());
            }
        }
    }

    /// Arbitrary bytes after a valid CARv2 pragma and header exercise the v2 paths.
    #[test]
    fn arbitrary_v2_headers_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
        let mut bytes = std::fs::read(fixture("sample-wrapped-v2.car")).unwrap()[..11].to_vec();
        bytes.extend(tail);
        if let Ok(reader) = car::read(Cursor::new(bytes)) {
            let _ = reader.count();
        }
    }
}

// ---- Through the `ipfrs-store` binary: import, verify, export, compare. ----

mod cli {
    use super::*;
    use serde_json::Value;
    use std::path::Path;
    use std::process::{Command, Output};

    fn run(repo: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
            .env_remove("IPFRS_STORE_REPO")
            .arg("--repo")
            .arg(repo)
            .args(args)
            .output()
            .unwrap()
    }

    fn json(repo: &Path, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = run(repo, &all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn new_repo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        json(&repo, &["init"]);
        (dir, repo)
    }

    fn stored_blocks(repo: &Path) -> u64 {
        json(repo, &["repo", "stat"])["blocks"].as_u64().unwrap()
    }

    fn blocks_of(path: &Path) -> BTreeMap<Cid, Vec<u8>> {
        car::read(std::fs::File::open(path).unwrap())
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                (*b.cid(), b.data().to_vec())
            })
            .collect()
    }

    /// Imports `name`, checks the report and the store, exports the roots' DAG (v1 and v2)
    /// and compares the (CID, bytes) sets with the original file's.
    fn round_trip(name: &str, sections: u64, root: &str) {
        let (dir, repo) = new_repo();
        let report = json(&repo, &["car", "import", fixture(name).to_str().unwrap()]);
        let file = &report["files"][0];
        assert_eq!(file["blocks"], sections, "{name}");
        assert_eq!(file["roots"][0], root);
        json(&repo, &["block", "stat", root]);
        let verify = json(&repo, &["repo", "verify"]);
        assert_eq!(verify["corrupt"].as_array().unwrap().len(), 0);
        assert_eq!(verify["checked"].as_u64().unwrap(), stored_blocks(&repo));

        let original = blocks_of(&fixture(name));
        for v2 in [false, true] {
            let out = dir.path().join(format!("export-{v2}.car"));
            let mut args = vec!["car", "export", root, "-o", out.to_str().unwrap()];
            if v2 {
                args.push("--v2");
            }
            let exported = json(&repo, &args);
            assert_eq!(exported["blocks"].as_u64().unwrap(), original.len() as u64);
            let header = car::read(std::fs::File::open(&out).unwrap())
                .unwrap()
                .header()
                .clone();
            let want = if v2 { CarVersion::V2 } else { CarVersion::V1 };
            assert_eq!(header.version, want);
            assert_eq!(header.roots, vec![root.parse::<Cid>().unwrap()]);
            assert_eq!(blocks_of(&out), original, "{name} v2={v2}");
            // Depth-first in link order, as go-car wrote the fixtures: the same bytes.
            let again = std::fs::read(&out).unwrap();
            let expected = match (name, v2) {
                ("simple-unixfs.car", false) => Some(std::fs::read(fixture(name)).unwrap()),
                ("sample-v1.car" | "sample-wrapped-v2.car", false) => {
                    Some(std::fs::read(fixture("sample-v1.car")).unwrap())
                }
                ("sample-v1.car" | "sample-wrapped-v2.car", true) => {
                    Some(std::fs::read(fixture("sample-wrapped-v2.car")).unwrap())
                }
                _ => None,
            };
            if let Some(expected) = expected {
                assert!(
                    again == expected,
                    "{name} v2={v2}: export differs from go-car's file"
                );
            }
        }
    }

    #[test]
    fn sample_v1_imports_verifies_and_round_trips() {
        round_trip("sample-v1.car", 1049, SAMPLE_ROOT);
    }

    #[test]
    fn sample_wrapped_v2_imports_verifies_and_round_trips() {
        round_trip("sample-wrapped-v2.car", 1049, SAMPLE_ROOT);
    }

    #[test]
    fn simple_unixfs_round_trips() {
        round_trip(
            "simple-unixfs.car",
            22,
            "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT",
        );
    }

    #[test]
    fn bad_files_name_problem_and_offset_and_import_nothing() {
        let (_dir, repo) = new_repo();
        for (name, needle) in [
            ("badheaderlength.car", "bad CAR header length"),
            ("badsectionlength.car", "bad section length"),
            ("sample-corrupt-pragma.car", "truncated CAR header"),
        ] {
            // A good file first on the same command line: all or nothing means it is not
            // imported either.
            let good = fixture("simple-unixfs.car");
            let bad = fixture(name);
            let out = run(
                &repo,
                &[
                    "car",
                    "import",
                    good.to_str().unwrap(),
                    bad.to_str().unwrap(),
                ],
            );
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert_eq!(out.status.code(), Some(1), "{name}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(needle), "{stderr}");
            assert!(stderr.contains("at byte "), "{stderr}");
            assert!(stderr.contains(name), "{stderr}");
            assert_eq!(stored_blocks(&repo), 0, "{name}");
        }
    }

    #[test]
    fn a_bad_block_late_in_a_file_imports_nothing_unless_partial() {
        let (dir, repo) = new_repo();
        let mut bytes = std::fs::read(fixture("sample-v1.car")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let bad = dir.path().join("bad-last-block.car");
        std::fs::write(&bad, &bytes).unwrap();
        let out = run(&repo, &["car", "import", bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("does not match its CID"), "{stderr}");
        assert_eq!(stored_blocks(&repo), 0);

        let out = run(
            &repo,
            &[
                "--json",
                "car",
                "import",
                "--partial",
                bad.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let file = &report["files"][0];
        assert_eq!(file["blocks"], 1048);
        assert!(file["error"].as_str().unwrap().contains("at byte"));
        assert!(stored_blocks(&repo) > 1000);
    }

    #[test]
    fn export_of_an_incomplete_dag_fails_and_leaves_no_file() {
        let (dir, repo) = new_repo();
        json(
            &repo,
            &[
                "car",
                "import",
                "--pin-roots=false",
                fixture("simple-unixfs.car").to_str().unwrap(),
            ],
        );
        // Remove one block below the root (unpinned: `block rm` keeps a pinned DAG's
        // blocks): the DAG is now incomplete.
        let root = "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT";
        let blocks = blocks_of(&fixture("simple-unixfs.car"));
        let leaf = blocks
            .keys()
            .map(ToString::to_string)
            .find(|cid| cid != root)
            .unwrap();
        json(&repo, &["block", "rm", &leaf]);
        let out_path = dir.path().join("out.car");
        let out = run(
            &repo,
            &["car", "export", root, "-o", out_path.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not in the store"));
        assert!(!out_path.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the repo remains: {leftovers:?}");
    }
}

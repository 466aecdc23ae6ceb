//! Shared by the interop tests: a UnixFS file and a mixed DAG built here (so the tests need
//! no data files), CAR files of them, and `bitswap-node` child processes that are killed on
//! drop.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use ipfrs_car::varint;
use ipfrs_storage::{Block, Cid, Codec, HashAlgorithm};
use ipld_core::ipld::Ipld;

/// UnixFS `Data.Type` of a file.
const UNIXFS_FILE: u64 = 2;

/// A protobuf length-delimited field.
fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint::write(field << 3 | 2, out);
    varint::write(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A protobuf varint field.
fn varint_field(field: u64, value: u64, out: &mut Vec<u8>) {
    varint::write(field << 3, out);
    varint::write(value, out);
}

/// A DAG node under construction: its block, the file bytes below it and the bytes of every
/// block below it (dag-pb's Tsize).
struct Built {
    cid: Cid,
    file_bytes: u64,
    tree_bytes: u64,
}

/// A UnixFS file of `data`: raw leaves of `chunk` bytes (CIDv1) under a balanced tree of
/// dag-pb nodes of at most `fanout` links (CIDv1 dag-pb), as Kubo builds with
/// `--raw-leaves --cid-version 1`. Returns the root and every block, root first.
pub fn unixfs_file(data: &[u8], chunk: usize, fanout: usize) -> (Cid, Vec<Block>) {
    let mut blocks = Vec::new();
    let mut level: Vec<Built> = data
        .chunks(chunk)
        .map(|piece| {
            let block = Block::new(piece.to_vec()).unwrap();
            let built = Built {
                cid: *block.cid(),
                file_bytes: piece.len() as u64,
                tree_bytes: piece.len() as u64,
            };
            blocks.push(block);
            built
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(fanout)
            .map(|children| dag_pb_file_node(children, &mut blocks))
            .collect();
    }
    // A file of one chunk still gets a dag-pb root, so the root is always UnixFS.
    if level[0].cid.codec() == Codec::Raw.code() {
        level = vec![dag_pb_file_node(&level, &mut blocks)];
    }
    let root = level[0].cid;
    blocks.reverse();
    (root, blocks)
}

/// A dag-pb UnixFS file node over `children`. Links are written before Data, as dag-pb's
/// canonical form requires.
fn dag_pb_file_node(children: &[Built], blocks: &mut Vec<Block>) -> Built {
    let mut unixfs = Vec::new();
    varint_field(1, UNIXFS_FILE, &mut unixfs);
    let file_bytes: u64 = children.iter().map(|c| c.file_bytes).sum();
    varint_field(3, file_bytes, &mut unixfs);
    for child in children {
        varint_field(4, child.file_bytes, &mut unixfs);
    }
    let mut node = Vec::new();
    for child in children {
        let mut link = Vec::new();
        bytes_field(1, &child.cid.to_bytes(), &mut link);
        bytes_field(2, b"", &mut link);
        varint_field(3, child.tree_bytes, &mut link);
        bytes_field(2, &link, &mut node);
    }
    bytes_field(1, &unixfs, &mut node);
    let block = Block::with(Codec::DagPb, HashAlgorithm::Sha2_256, node).unwrap();
    let built = Built {
        cid: *block.cid(),
        file_bytes,
        tree_bytes: block.len() as u64 + children.iter().map(|c| c.tree_bytes).sum::<u64>(),
    };
    blocks.push(block);
    built
}

/// A mixed DAG: a dag-cbor root linking to a UnixFS file (dag-pb over raw leaves), a raw
/// block, a dag-cbor child (which links to the raw block again) and an identity CID (never
/// stored, answered from the CID). Returns the root, every stored block, and the identity CID.
pub fn mixed_dag(file: &[u8]) -> (Cid, Vec<Block>, Cid) {
    let (file_root, mut blocks) = unixfs_file(file, 4096, 8);
    let note = Block::new(&b"a raw block linked from dag-cbor"[..]).unwrap();
    let identity = *Block::with(Codec::Raw, HashAlgorithm::Identity, &b"inline"[..])
        .unwrap()
        .cid();
    let child = cbor_block(BTreeMap::from([
        ("again".to_string(), Ipld::Link(*note.cid())),
        ("n".to_string(), Ipld::Integer(7)),
    ]));
    let root = cbor_block(BTreeMap::from([
        ("file".to_string(), Ipld::Link(file_root)),
        ("note".to_string(), Ipld::Link(*note.cid())),
        ("child".to_string(), Ipld::Link(*child.cid())),
        ("inline".to_string(), Ipld::Link(identity)),
    ]));
    let root_cid = *root.cid();
    blocks.insert(0, root);
    blocks.push(child);
    blocks.push(note);
    (root_cid, blocks, identity)
}

fn cbor_block(map: BTreeMap<String, Ipld>) -> Block {
    let bytes = serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap();
    Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, bytes).unwrap()
}

/// Pseudo-random bytes (xorshift, seeded): the same file every run, incompressible.
pub fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes a CARv1 of `blocks` under `root`.
pub fn write_car(path: &Path, root: &Cid, blocks: &[Block]) {
    let file = std::fs::File::create(path).unwrap();
    let mut car = ipfrs_car::CarWriter::new(std::io::BufWriter::new(file), &[*root]).unwrap();
    for block in blocks {
        car.write_block(block.cid(), block.data()).unwrap();
    }
    car.finish().unwrap();
}

/// A child process whose stdout lines are read by a thread; killed and reaped on drop.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    name: String,
}

impl Proc {
    /// Starts `program` with `args`, stdout piped, stderr inherited (shown on failure).
    pub fn spawn(name: &str, program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            name: name.to_string(),
        }
    }

    /// A `bitswap-node` with `args`.
    pub fn node(name: &str, args: &[&str]) -> Proc {
        Proc::spawn(name, Path::new(env!("CARGO_BIN_EXE_bitswap-node")), args)
    }

    /// The rest of the first line starting with `prefix ` within `timeout`; panics (after
    /// the drop kills the process) otherwise.
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix).and_then(|r| r.strip_prefix(' '))
                    {
                        return rest.to_string();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no `{prefix}` line within {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    panic!(
                        "{}: exited ({status:?}) before printing `{prefix}`",
                        self.name
                    )
                }
            }
        }
    }

    /// Waits for the process to exit within `timeout`; panics otherwise (and the drop kills it).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{}: still running after {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

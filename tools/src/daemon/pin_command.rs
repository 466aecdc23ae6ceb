//! `ipfrs-store pin add|rm|ls` on an open store (the daemon answers the same over its API).

use futures_lite::future::block_on;
use serde::Serialize;

use crate::store::cli::PinCommand;
use crate::store::error::parse_cid;
use crate::store::output::Report;

use super::error::Result;
use super::node::Node;
use super::pins::{self, PinKind};

/// What a `pin` command did, or the pins it lists.
#[derive(Debug, Serialize)]
pub struct Pins {
    /// The CIDs pinned, unpinned or listed, with their kind.
    pub pins: Vec<PinEntry>,
}

/// One pin in a report.
#[derive(Debug, Serialize)]
pub struct PinEntry {
    /// The CID.
    pub cid: String,
    /// `recursive` or `direct`.
    #[serde(rename = "type")]
    pub kind: PinKind,
}

impl Report for Pins {
    fn human(&self) -> String {
        self.pins
            .iter()
            .map(|p| format!("{} {}\n", p.cid, p.kind.name()))
            .collect()
    }
}

/// Runs one `pin` subcommand. All CIDs are parsed before anything changes.
pub fn run(node: &Node, command: PinCommand) -> Result<Pins> {
    let entry = |cid: &ipfrs_storage::Cid, kind| PinEntry {
        cid: cid.to_string(),
        kind,
    };
    let mut out = Vec::new();
    match command {
        PinCommand::Add { cids, recursive } => {
            let cids = parse_all(&cids)?;
            let kind = if recursive {
                PinKind::Recursive
            } else {
                PinKind::Direct
            };
            for cid in &cids {
                node.pin_add(cid, recursive)?;
                out.push(entry(cid, kind));
            }
        }
        PinCommand::Rm { cids, recursive } => {
            for cid in &parse_all(&cids)? {
                let kind = block_on(node.pin_rm(cid, recursive))?;
                out.push(entry(cid, kind));
            }
        }
        PinCommand::Ls => {
            for pin in block_on(pins::ls(node.engine()))? {
                out.push(entry(&pin.cid, pin.kind));
            }
        }
    }
    Ok(Pins { pins: out })
}

fn parse_all(cids: &[String]) -> Result<Vec<ipfrs_storage::Cid>> {
    Ok(cids
        .iter()
        .map(|c| parse_cid(c))
        .collect::<crate::store::error::Result<Vec<_>>>()?)
}

//! CAR files: the codec (streaming read, the CARv1 and CARv2 writers, their errors) is the
//! `ipfrs-car` crate, re-exported here so `ipfrs_tools::car` stays the one path for embedders
//! of the tools; what lives here is the IPLD side, the links between blocks (dag-pb, dag-cbor,
//! raw) that a DAG walk over a CAR file follows.

mod cbor_links;
mod links;

pub use ipfrs_car::{
    CarError, CarHeader, CarReader, CarV2Writer, CarVersion, CarWriter, HeaderFault, ReadOptions,
    Section, SectionLengthFault, V2Header, read, read_buffered, read_with,
};
pub use links::{LinkError, links};

//! cargo-fuzz entry point of `versioning_objects`: the body, its input layout and its invariants live in
//! `ipfrs_fuzz_targets::versioning_objects` (tools/fuzz-targets), shared with the stable smoke test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipfrs_fuzz_targets::versioning_objects(data));

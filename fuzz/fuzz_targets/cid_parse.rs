//! cargo-fuzz entry point of `cid_parse`: the body, its input layout and its invariants live in
//! `ipfrs_fuzz_targets::cid_parse` (tools/fuzz-targets), shared with the stable smoke test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipfrs_fuzz_targets::cid_parse(data));

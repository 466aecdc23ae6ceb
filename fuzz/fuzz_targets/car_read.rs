//! cargo-fuzz entry point of `car_read`: the body, its input layout and its invariants live in
//! `ipfrs_fuzz_targets::car_read` (tools/fuzz-targets), shared with the stable smoke test.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ipfrs_fuzz_targets::car_read(data));

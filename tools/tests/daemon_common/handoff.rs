//! Helpers of the tests that hand commands to a daemon: `ipfrs-store` run in a directory
//! with paths relative to it, and small safetensors models.

use std::path::Path;
use std::process::{Command, Stdio};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// `ipfrs-store --repo repo ARGS` run in `dir` (paths relative to it, as a user types them).
pub fn cli(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"));
    c.current_dir(dir)
        .env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .env("USER", "handoff-tester")
        .args(["--repo", "repo"])
        .stdin(Stdio::null());
    c
}

/// A two-tensor model whose values follow `seed`, written with the safetensors crate.
pub fn write_model(path: &Path, seed: f32) -> Vec<u8> {
    let w: Vec<f32> = (0..4096).map(|i| seed + i as f32 * 0.001).collect();
    let b: Vec<f32> = (0..64).map(|i| seed * 2.0 - i as f32).collect();
    let (wb, bb): (Vec<u8>, Vec<u8>) = (
        w.iter().flat_map(|x| x.to_le_bytes()).collect(),
        b.iter().flat_map(|x| x.to_le_bytes()).collect(),
    );
    let tensors = vec![
        (
            "w".to_string(),
            TensorView::new(Dtype::F32, vec![64, 64], &wb).unwrap(),
        ),
        (
            "b".to_string(),
            TensorView::new(Dtype::F32, vec![64], &bb).unwrap(),
        ),
    ];
    let bytes = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

//! Helpers shared by the integration tests: fixture paths, reference tensors, comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lethe::clip::safetensors_io::read_shard;

/// The committed fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A reference tensor: shape and values.
pub type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads every tensor of a safetensors file as f32.
pub fn read_tensors(path: &Path) -> Named {
    let mut tensors = BTreeMap::new();
    read_shard(path, &mut tensors).unwrap_or_else(|e| panic!("{e}"));
    tensors
        .into_iter()
        .map(|(k, t)| {
            let values = t.to_f32(&k, path).unwrap();
            (k, (t.shape, values))
        })
        .collect()
}

/// Largest absolute difference relative to the largest reference magnitude.
pub fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length differs");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    diff / scale
}

/// Asserts `got` matches `want` within `tolerance` (relative to the reference's magnitude).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
    let error = relative_error(got, want);
    assert!(
        error <= tolerance,
        "{what}: relative error {error:e} exceeds {tolerance:e}"
    );
    eprintln!("{what}: relative error {error:e}");
}

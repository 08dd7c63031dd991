//! The demo models built into the binary, named `demo:vit` and `demo:rn` wherever a model is
//! expected, so Lethe works out of the box with no download and no files.
//!
//! They are ordinary open_clip checkpoints (trained by `lethe train-demo`). On first use they
//! are written once to a content-addressed folder in the user's cache, and from there on they
//! load through the same code as any checkpoint on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The model used when none is given.
pub const DEFAULT_MODEL: &str = "demo:vit";

/// One embedded checkpoint.
struct DemoModel {
    name: &'static str,
    config: &'static str,
    weights: &'static [u8],
}

const DEMOS: [DemoModel; 2] = [
    DemoModel {
        name: "vit",
        config: include_str!("../assets/demo/shapes-vit/open_clip_config.json"),
        weights: include_bytes!("../assets/demo/shapes-vit/open_clip_model.safetensors"),
    },
    DemoModel {
        name: "rn",
        config: include_str!("../assets/demo/shapes-rn/open_clip_config.json"),
        weights: include_bytes!("../assets/demo/shapes-rn/open_clip_model.safetensors"),
    },
];

/// Where Lethe may keep files it can always recreate.
fn cache_root() -> PathBuf {
    // The XDG rule: an empty or relative XDG_CACHE_HOME is ignored.
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("lethe")
}

/// Turns a model spec into a checkpoint folder: `demo:NAME` is materialised from the binary,
/// anything else is taken as a path.
pub fn resolve_model(spec: &str) -> Result<PathBuf, String> {
    let Some(name) = spec.strip_prefix("demo:") else {
        return Ok(PathBuf::from(spec));
    };
    let demo = DEMOS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| format!("unknown demo model '{spec}' (available: demo:vit, demo:rn)"))?;
    materialise(demo, &cache_root())
}

/// Writes a demo checkpoint under `root` unless an identical copy is already there. The folder
/// name carries a hash of the content, so a newer binary never reads an older model, and the
/// folder appears by an atomic rename, so a concurrent or interrupted first run never leaves
/// a half-written model behind.
fn materialise(demo: &DemoModel, root: &Path) -> Result<PathBuf, String> {
    let mut hasher = Sha256::new();
    hasher.update(demo.config.as_bytes());
    hasher.update(demo.weights);
    let digest = hasher.finalize();
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let dir = root.join(format!("demo-{}-{tag}", demo.name));
    if dir.join("open_clip_model.safetensors").is_file() {
        return Ok(dir);
    }
    let failed =
        |e: std::io::Error| format!("cannot write the demo model to {}: {e}", root.display());
    fs::create_dir_all(root).map_err(failed)?;
    // Unique per process and per call: two threads of one process must not share a staging
    // folder either, or one could rename it while the other is still truncating a file in it.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let staging = root.join(format!(".demo-{}-{}-{call}", demo.name, std::process::id()));
    fs::create_dir_all(&staging).map_err(failed)?;
    fs::write(staging.join("open_clip_config.json"), demo.config).map_err(failed)?;
    fs::write(staging.join("open_clip_model.safetensors"), demo.weights).map_err(failed)?;
    if let Err(error) = fs::rename(&staging, &dir) {
        let _ = fs::remove_dir_all(&staging);
        // Another process may have won the race with the same content.
        if !dir.join("open_clip_model.safetensors").is_file() {
            return Err(failed(error));
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pass_through_and_unknown_demos_are_named() {
        assert_eq!(
            resolve_model("/models/clip").unwrap(),
            PathBuf::from("/models/clip")
        );
        let error = resolve_model("demo:vgg").unwrap_err();
        assert!(
            error.contains("demo:vgg") && error.contains("demo:rn"),
            "{error}"
        );
    }

    #[test]
    fn materialising_twice_reuses_the_same_folder() {
        let root = tempfile::tempdir().unwrap();
        let first = materialise(&DEMOS[0], root.path()).unwrap();
        let second = materialise(&DEMOS[0], root.path()).unwrap();
        assert_eq!(first, second);
        let written = fs::read(first.join("open_clip_model.safetensors")).unwrap();
        assert_eq!(written, DEMOS[0].weights);
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "no staging left"
        );
    }

    #[test]
    fn threads_materialising_at_once_all_read_the_whole_model() {
        let root = tempfile::tempdir().unwrap();
        let folders: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| materialise(&DEMOS[1], root.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for folder in folders {
            let written = fs::read(folder.join("open_clip_model.safetensors")).unwrap();
            assert!(written == DEMOS[1].weights, "a thread saw a partial model");
        }
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "no staging left"
        );
    }
}

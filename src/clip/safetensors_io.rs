//! Reading and writing (possibly sharded) safetensors checkpoints without losing anything:
//! tensors keep their dtype, shard, order and metadata, so an export can be byte-for-byte the
//! same layout the user's pipeline expects.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;

use super::checkpoint::CheckpointError;

/// One tensor as stored on disk.
#[derive(Clone, Debug)]
pub struct StoredTensor {
    /// Element type on disk.
    pub dtype: Dtype,
    /// Shape on disk.
    pub shape: Vec<usize>,
    /// Raw little-endian bytes.
    pub bytes: Vec<u8>,
}

/// One safetensors file of a checkpoint.
#[derive(Clone, Debug)]
pub struct Shard {
    /// File name inside the checkpoint folder.
    pub file: String,
    /// Tensor names in this file.
    pub keys: Vec<String>,
    /// The file's `__metadata__` block.
    pub metadata: Option<HashMap<String, String>>,
}

/// All weight files of a checkpoint.
#[derive(Clone, Debug)]
pub struct WeightFiles {
    /// Every tensor by name.
    pub tensors: BTreeMap<String, StoredTensor>,
    /// The files they came from.
    pub shards: Vec<Shard>,
    /// The shard index (`*.safetensors.index.json`) when the checkpoint is sharded.
    pub index: Option<(String, Value)>,
}

impl StoredTensor {
    /// Decodes the values as `f32` (from f32, f16, bf16 or f64).
    pub fn to_f32(&self, key: &str, file: &Path) -> Result<Vec<f32>, CheckpointError> {
        let chunks = |n: usize| self.bytes.chunks_exact(n);
        let values: Vec<f32> = match self.dtype {
            Dtype::F32 => chunks(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => chunks(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => chunks(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
                .collect(),
            other => {
                return Err(CheckpointError::Damaged {
                    path: file.to_path_buf(),
                    problem: format!("tensor '{key}' has dtype {other:?}, expected a float type"),
                });
            }
        };
        // A model with NaN weights answers NaN to everything; say so once, at load.
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(CheckpointError::Damaged {
                path: file.to_path_buf(),
                problem: format!(
                    "tensor '{key}' holds {bad} non-finite value(s) (NaN or infinity), as a diverged training run leaves them"
                ),
            });
        }
        Ok(values)
    }

    /// Encodes `f32` values in this tensor's dtype (the inverse of [`Self::to_f32`]).
    pub fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
        match dtype {
            Dtype::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::F64 => values
                .iter()
                .flat_map(|v| (*v as f64).to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

/// Reads one safetensors file.
pub fn read_shard(
    path: &Path,
    tensors: &mut BTreeMap<String, StoredTensor>,
) -> Result<Shard, CheckpointError> {
    let bytes = crate::limits::read_file(path).map_err(|e| io_error(path, e))?;
    let damaged = |e: safetensors::SafeTensorError| CheckpointError::Damaged {
        path: path.to_path_buf(),
        problem: format!("not a valid safetensors file ({e})"),
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(damaged)?;
    let file = SafeTensors::deserialize(&bytes).map_err(damaged)?;
    let mut keys = Vec::new();
    for (name, view) in file.iter() {
        keys.push(name.to_string());
        tensors.insert(
            name.to_string(),
            StoredTensor {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            },
        );
    }
    Ok(Shard {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        keys,
        metadata: header.metadata().clone(),
    })
}

/// Reads a checkpoint's weights: `single` when present, otherwise the shards `index` names.
pub fn read_weights(dir: &Path, single: &str, index: &str) -> Result<WeightFiles, CheckpointError> {
    let mut tensors = BTreeMap::new();
    let single_path = dir.join(single);
    if single_path.is_file() {
        let shard = read_shard(&single_path, &mut tensors)?;
        return Ok(WeightFiles {
            tensors,
            shards: vec![shard],
            index: None,
        });
    }
    let index_path = dir.join(index);
    let text = crate::limits::read_text(&index_path).map_err(|e| io_error(&index_path, e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| CheckpointError::Damaged {
        path: index_path.clone(),
        problem: format!("not valid JSON ({e})"),
    })?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| CheckpointError::Damaged {
            path: index_path.clone(),
            problem: "no 'weight_map' object".to_string(),
        })?;
    let mut files: Vec<&str> = map.values().filter_map(Value::as_str).collect();
    files.sort_unstable();
    files.dedup();
    let shards = files
        .into_iter()
        .map(|file| read_shard(&dir.join(file), &mut tensors))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WeightFiles {
        tensors,
        shards,
        index: Some((index.to_string(), json)),
    })
}

/// Writes `contents` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written file under the real name.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp: PathBuf = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = write(&temp).and_then(|()| fs::rename(&temp, path).map_err(|e| io_error(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes every shard (and the index) of `weights` into `dir`.
pub fn write_weights(weights: &WeightFiles, dir: &Path) -> Result<(), CheckpointError> {
    for shard in &weights.shards {
        let views = shard
            .keys
            .iter()
            .map(|key| {
                let t = &weights.tensors[key];
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|view| (key.as_str(), view))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CheckpointError::Damaged {
                path: dir.join(&shard.file),
                problem: format!("cannot encode tensors ({e})"),
            })?;
        let path = dir.join(&shard.file);
        write_atomically(&path, |temp| {
            safetensors::serialize_to_file(views, shard.metadata.clone(), temp).map_err(|e| {
                CheckpointError::Damaged {
                    path: path.clone(),
                    problem: format!("cannot write ({e})"),
                }
            })
        })?;
    }
    if let Some((name, json)) = &weights.index {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(json).expect("JSON values always serialise");
        write_atomically(&path, |temp| {
            fs::write(temp, &text).map_err(|e| io_error(&path, e))
        })?;
    }
    Ok(())
}

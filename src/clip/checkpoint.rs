//! Finding, loading and exporting CLIP checkpoints in the formats people have on disk.
//!
//! The input folder is only ever read. Export writes a new folder with the same files, key
//! names, dtypes and shards as the input, with the edited weights in place.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use serde_json::Value;

use super::config::{self, ClipSpec};
use super::safetensors_io::{
    Shard, StoredTensor, WeightFiles, read_weights, write_atomically, write_weights,
};
use super::tokenizer::Tokenizer;
use super::weights::{Bind, Format, Layout, ParamVisitor};
use super::{Clip, host_values};

/// Everything that can go wrong with a checkpoint, each naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// What was asked for.
        path: PathBuf,
    },
    /// The folder holds no checkpoint Lethe knows.
    #[error(
        "{}: not a CLIP checkpoint folder (expected config.json + model.safetensors from Hugging Face, \
         or open_clip_config.json + open_clip_model.safetensors from open_clip)",
        path.display()
    )]
    NotACheckpoint {
        /// The folder.
        path: PathBuf,
    },
    /// Only a pickle file was found.
    #[error(
        "{}: pickle checkpoints are refused because unpickling can run arbitrary code; \
         convert it to safetensors first (e.g. safetensors.torch.save_file(torch.load(path, weights_only=True), ...))",
        path.display()
    )]
    Pickle {
        /// The pickle file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        cause: std::io::Error,
    },
    /// The configuration file is not usable.
    #[error("{}: {problem}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A weight file is damaged or not a safetensors file.
    #[error("{}: {problem}", path.display())]
    Damaged {
        /// The weight file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The weights do not fit the model the configuration describes.
    #[error("{}: weights do not match the configuration: {}", path.display(), summary(missing, unexpected, mismatched))]
    Keys {
        /// The weight file (or the first shard).
        path: PathBuf,
        /// Keys the model needs that the file lacks.
        missing: Vec<String>,
        /// Keys the file has that the model does not use.
        unexpected: Vec<String>,
        /// Keys whose shapes differ: (key, expected, found).
        mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// Export was asked to write over the input.
    #[error("{}: refusing to write an export over the original checkpoint; choose another folder", path.display())]
    WouldOverwrite {
        /// The output folder.
        path: PathBuf,
    },
}

fn summary(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    const SHOWN: usize = 6;
    let list = |items: Vec<String>| {
        let more = items.len().saturating_sub(SHOWN);
        let mut text = items.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "missing {} key(s): {}",
            missing.len(),
            list(missing.to_vec())
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "unexpected {} key(s): {}",
            unexpected.len(),
            list(unexpected.to_vec())
        ));
    }
    if !mismatched.is_empty() {
        let shown = mismatched
            .iter()
            .map(|(k, want, got)| format!("{k} (expected {want:?}, found {got:?})"))
            .collect();
        parts.push(format!(
            "{} mis-shaped key(s): {}",
            mismatched.len(),
            list(shown)
        ));
    }
    parts.join("; ")
}

/// Buffers that reference implementations store but that carry no learned value.
fn is_ignored_buffer(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.ends_with("position_ids")
        || key.ends_with("attn_mask")
}

/// A checkpoint folder that has been read and understood.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The folder it was read from.
    pub dir: PathBuf,
    /// Its on-disk layout.
    pub format: Format,
    /// The model shape its configuration describes.
    pub spec: ClipSpec,
    /// Its weights exactly as stored.
    pub weights: WeightFiles,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HuggingFace => "Hugging Face CLIPModel",
            Self::OpenClip => "open_clip",
        })
    }
}

fn read_json(path: &Path) -> Result<Value, CheckpointError> {
    let text = crate::limits::read_text(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Config {
        path: path.to_path_buf(),
        problem: format!("not valid JSON ({e})"),
    })
}

/// Takes the normalisation a Hugging Face `preprocessor_config.json` asks for.
fn apply_image_processor(spec: &mut ClipSpec, json: &Value) -> Result<(), String> {
    let triple = |key: &str| -> Result<Option<[f32; 3]>, String> {
        match json.get(key) {
            None => Ok(None),
            Some(value) => serde_json::from_value::<[f32; 3]>(value.clone())
                .map(Some)
                .map_err(|_| format!("'{key}' must be a list of 3 numbers, found {value}")),
        }
    };
    if let Some(mean) = triple("image_mean")? {
        spec.mean = mean;
    }
    if let Some(std) = triple("image_std")? {
        spec.std = std;
    }
    Ok(())
}

impl Checkpoint {
    /// Reads the checkpoint in `path` (a folder, or a file inside one), detecting its format.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        if !path.exists() {
            return Err(CheckpointError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        let has = |name: &str| dir.join(name).is_file();
        // PyTorch pickles are named, config or not: they are a common first try.
        let not_readable = || {
            let pickle = [
                "pytorch_model.bin",
                "open_clip_pytorch_model.bin",
                "model.pt",
            ]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file());
            match pickle {
                Some(path) => CheckpointError::Pickle { path },
                None => CheckpointError::NotACheckpoint {
                    path: path.to_path_buf(),
                },
            }
        };
        let (format, config_name, single, index) = if has("open_clip_config.json") {
            (
                Format::OpenClip,
                "open_clip_config.json",
                "open_clip_model.safetensors",
                "open_clip_model.safetensors.index.json",
            )
        } else if has("config.json") {
            (
                Format::HuggingFace,
                "config.json",
                "model.safetensors",
                "model.safetensors.index.json",
            )
        } else {
            return Err(not_readable());
        };
        if !has(single) && !has(index) {
            return Err(not_readable());
        }
        let config_path = dir.join(config_name);
        let json = read_json(&config_path)?;
        let spec = match format {
            Format::HuggingFace => config::from_hf_config(&json),
            Format::OpenClip => config::from_open_clip_config(&json),
        }
        .map_err(|problem| CheckpointError::Config {
            path: config_path,
            problem,
        })?;
        let mut spec = spec;
        let image_processor = dir.join("preprocessor_config.json");
        if format == Format::HuggingFace && image_processor.is_file() {
            apply_image_processor(&mut spec, &read_json(&image_processor)?).map_err(|problem| {
                CheckpointError::Config {
                    path: image_processor,
                    problem,
                }
            })?;
        }
        spec.check().map_err(|problem| CheckpointError::Config {
            path: dir.join(config_name),
            problem,
        })?;
        let weights = read_weights(&dir, single, index)?;
        Ok(Self {
            dir,
            format,
            spec,
            weights,
        })
    }

    fn weight_path(&self) -> PathBuf {
        self.dir.join(&self.weights.shards[0].file)
    }

    /// Builds the model on `device` with this checkpoint's weights.
    pub fn load(&self, device: &Device) -> Result<Clip, CheckpointError> {
        let mut model = Clip::new(&self.spec, device);
        let mut loader = Loader {
            checkpoint: self,
            device,
            used: HashSet::new(),
            missing: Vec::new(),
            mismatched: Vec::new(),
            failure: None,
        };
        model.bind(&mut loader, "", self.format);
        if let Some(error) = loader.failure {
            return Err(error);
        }
        let unexpected: Vec<String> = self
            .weights
            .tensors
            .keys()
            .filter(|k| !loader.used.contains(*k) && !is_ignored_buffer(k))
            .cloned()
            .collect();
        if !loader.missing.is_empty() || !unexpected.is_empty() || !loader.mismatched.is_empty() {
            return Err(CheckpointError::Keys {
                path: self.weight_path(),
                missing: loader.missing,
                unexpected,
                mismatched: loader.mismatched,
            });
        }
        Ok(model)
    }

    /// The tokenizer that belongs to this checkpoint: the folder's own tokenizer files when it
    /// has them (Hugging Face), otherwise CLIP's standard vocabulary.
    pub fn tokenizer(&self) -> Result<Tokenizer, CheckpointError> {
        let damaged = |path: PathBuf| {
            move |e: super::tokenizer::TokenizerError| CheckpointError::Damaged {
                path,
                problem: e.to_string(),
            }
        };
        let json = self.dir.join("tokenizer.json");
        let (vocab, merges) = (self.dir.join("vocab.json"), self.dir.join("merges.txt"));
        if json.is_file() {
            Tokenizer::from_tokenizer_json(&json).map_err(damaged(json))
        } else if vocab.is_file() && merges.is_file() {
            Tokenizer::from_vocab_merges(&vocab, &merges).map_err(damaged(vocab))
        } else {
            Ok(Tokenizer::clip_default())
        }
    }

    /// Writes `model` to `out_dir` in this checkpoint's format, key names, dtypes and shards,
    /// along with the folder's configuration and tokenizer files. Never writes into the input.
    pub fn export(&self, model: &Clip, out_dir: &Path) -> Result<(), CheckpointError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| CheckpointError::Io { path, cause }
        };
        fs::create_dir_all(out_dir).map_err(io(out_dir))?;
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same(out_dir, &self.dir) {
            return Err(CheckpointError::WouldOverwrite {
                path: out_dir.to_path_buf(),
            });
        }
        let mut weights = self.weights.clone();
        for (key, (shape, values)) in named_tensors(model, self.format, None) {
            let stored = weights
                .tensors
                .get_mut(&key)
                .expect("the model was loaded from these keys");
            debug_assert_eq!(stored.shape, shape);
            stored.bytes = StoredTensor::encode(stored.dtype, &values);
        }
        let weight_files: HashSet<&str> = weights
            .shards
            .iter()
            .map(|s| s.file.as_str())
            .chain(weights.index.as_ref().map(|(name, _)| name.as_str()))
            .collect();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let companion = name.ends_with(".json") || name.ends_with(".txt");
            if companion && !weight_files.contains(name.as_str()) && entry.path().is_file() {
                let target = out_dir.join(&name);
                fs::copy(entry.path(), &target).map_err(io(&target))?;
            }
        }
        write_weights(&weights, out_dir)
    }
}

/// Writes a model that has no checkpoint yet (one trained from scratch) as a new open_clip
/// folder: `open_clip_config.json` (`config`) and `open_clip_model.safetensors` in `dtype`.
pub fn write_open_clip(
    model: &Clip,
    config: &Value,
    dtype: safetensors::Dtype,
    out_dir: &Path,
) -> Result<(), CheckpointError> {
    fs::create_dir_all(out_dir).map_err(|source| CheckpointError::Io {
        path: out_dir.to_path_buf(),
        cause: source,
    })?;
    let tensors: BTreeMap<String, StoredTensor> = named_tensors(model, Format::OpenClip, None)
        .into_iter()
        .map(|(key, (shape, values))| {
            let bytes = StoredTensor::encode(dtype, &values);
            (
                key,
                StoredTensor {
                    dtype,
                    shape,
                    bytes,
                },
            )
        })
        .collect();
    let weights = WeightFiles {
        shards: vec![Shard {
            file: "open_clip_model.safetensors".into(),
            keys: tensors.keys().cloned().collect(),
            metadata: Some([("format".to_string(), "pt".to_string())].into()),
        }],
        tensors,
        index: None,
    };
    write_weights(&weights, out_dir)?;
    let path = out_dir.join("open_clip_config.json");
    let text = serde_json::to_string_pretty(config).expect("JSON values always serialise");
    write_atomically(&path, |temp| {
        fs::write(temp, &text).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            cause: source,
        })
    })
}

/// Reads a model's tensors (or, with `gradients`, their gradients) under the checkpoint keys of
/// `format`, in the on-disk layout: key -> (shape, values).
pub fn named_tensors(
    model: &Clip,
    format: Format,
    gradients: Option<&Gradients>,
) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut reader = Reader {
        gradients,
        out: BTreeMap::new(),
    };
    model.clone().bind(&mut reader, "", format);
    reader.out
}

struct Loader<'a> {
    checkpoint: &'a Checkpoint,
    device: &'a Device,
    used: HashSet<String>,
    missing: Vec<String>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    failure: Option<CheckpointError>,
}

impl Loader<'_> {
    /// Fetches `key` as a tensor in the disk layout if its shape is `expected`.
    fn disk_tensor<const D: usize>(
        &mut self,
        key: &str,
        expected: Vec<usize>,
    ) -> Option<Tensor<D>> {
        let Some(stored) = self.checkpoint.weights.tensors.get(key) else {
            self.missing.push(key.to_string());
            return None;
        };
        self.used.insert(key.to_string());
        if stored.shape != expected {
            self.mismatched
                .push((key.to_string(), expected, stored.shape.clone()));
            return None;
        }
        match stored.to_f32(key, &self.checkpoint.weight_path()) {
            Ok(values) => {
                let shape = if expected.is_empty() {
                    vec![1]
                } else {
                    expected
                };
                Some(Tensor::from_data(
                    TensorData::new(values, shape),
                    self.device,
                ))
            }
            Err(error) => {
                self.failure.get_or_insert(error);
                None
            }
        }
    }
}

impl ParamVisitor for Loader<'_> {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout) {
        let expected = layout.disk_shape(param.lazy_shape().as_slice());
        if let Some(tensor) = self.disk_tensor::<D>(key, expected) {
            *param = Param::from_tensor(layout.from_disk(tensor));
        }
    }

    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    ) {
        let part_shapes: Vec<Vec<usize>> = parts
            .iter()
            .map(|p| layout.disk_shape(p.lazy_shape().as_slice()))
            .collect();
        let mut expected = part_shapes[0].clone();
        expected[0] = part_shapes.iter().map(|s| s[0]).sum();
        if let Some(tensor) = self.disk_tensor::<D>(key, expected) {
            let sizes = part_shapes.iter().map(|s| s[0]).collect();
            for (param, chunk) in parts.into_iter().zip(tensor.split_with_sizes(sizes, 0)) {
                *param = Param::from_tensor(layout.from_disk(chunk));
            }
        }
    }
}

struct Reader<'g> {
    gradients: Option<&'g Gradients>,
    out: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Reader<'_> {
    fn value<const D: usize>(&self, param: &Param<Tensor<D>>, layout: Layout) -> Option<Tensor<D>> {
        let value = param.val();
        let value = match self.gradients {
            Some(gradients) => value.grad(gradients)?,
            None => value,
        };
        Some(layout.swap(value))
    }

    /// Records a tensor already in the disk layout.
    fn store<const D: usize>(&mut self, key: &str, tensor: Tensor<D>, layout: Layout) {
        let shape = match layout {
            Layout::Scalar => Vec::new(),
            Layout::AsIs | Layout::Transposed => tensor.dims().to_vec(),
        };
        let values = host_values(tensor);
        self.out.insert(key.to_string(), (shape, values));
    }
}

impl ParamVisitor for Reader<'_> {
    fn param<const D: usize>(&mut self, key: &str, param: &mut Param<Tensor<D>>, layout: Layout) {
        if let Some(tensor) = self.value(param, layout) {
            self.store(key, tensor, layout);
        }
    }

    fn fused<const D: usize>(
        &mut self,
        key: &str,
        parts: [&mut Param<Tensor<D>>; 3],
        layout: Layout,
    ) {
        let chunks: Option<Vec<Tensor<D>>> = parts.iter().map(|p| self.value(p, layout)).collect();
        if let Some(chunks) = chunks {
            self.store(key, Tensor::cat(chunks, 0), Layout::AsIs);
        }
    }
}

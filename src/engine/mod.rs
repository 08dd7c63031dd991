//! A model opened for use: network, tokenizer, preprocessing and device together, as every
//! command and the evaluation code need them.

pub mod embeddings;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::Tensor;

use crate::backend::{self, DeviceChoice, ResolvedDevice};
use crate::clip::Clip;
use crate::clip::checkpoint::Checkpoint;
use crate::clip::preprocess::Preprocessor;
use crate::clip::tokenizer::Tokenizer;

/// A model ready to use, with what it needs around it.
pub struct LoadedModel {
    /// The network.
    pub model: Clip,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its image preprocessing.
    pub preprocessor: Preprocessor,
    /// Tokens per text, start and end included.
    pub context_length: usize,
    /// Id that fills short texts.
    pub pad_id: u32,
    /// Where it runs.
    pub device: ResolvedDevice,
}

impl LoadedModel {
    /// Opens a model spec: a checkpoint folder, or `demo:vit` / `demo:rn` (built in).
    pub fn open_spec(spec: &str, choice: DeviceChoice) -> Result<Self> {
        let path = crate::demo::resolve_model(spec).map_err(anyhow::Error::msg)?;
        Self::open(&path, choice)
    }

    /// Opens a checkpoint folder on the chosen device.
    pub fn open(path: &Path, choice: DeviceChoice) -> Result<Self> {
        Self::from_checkpoint(&Checkpoint::open(path)?, choice)
    }

    /// Loads an already opened checkpoint on the chosen device, for callers that keep the
    /// checkpoint too (to export an edited copy in the same format).
    pub fn from_checkpoint(checkpoint: &Checkpoint, choice: DeviceChoice) -> Result<Self> {
        let device = backend::resolve(choice).map_err(anyhow::Error::msg)?;
        tracing::info!("device: {}", device.description);
        let model = checkpoint.load(&device.device)?;
        let tokenizer = checkpoint.tokenizer()?;
        let spec = &checkpoint.spec;
        Ok(Self {
            model,
            tokenizer,
            preprocessor: Preprocessor {
                size: spec.vision.image_size(),
                mean: spec.mean,
                std: spec.std,
            },
            context_length: spec.text.context_length,
            pad_id: spec.text.pad_id,
            device,
        })
    }

    /// The same tokenizer, preprocessing and device around another network (an edited copy).
    pub fn with_model(&self, model: Clip) -> Self {
        Self {
            model,
            tokenizer: self.tokenizer.clone(),
            preprocessor: self.preprocessor.clone(),
            context_length: self.context_length,
            pad_id: self.pad_id,
            device: self.device.clone(),
        }
    }

    /// Tokenises texts for this model.
    pub fn tokenize(&self, texts: &[String]) -> Vec<Vec<u32>> {
        self.tokenizer
            .tokenize_batch(texts, self.context_length, self.pad_id)
    }

    /// Image embeddings of files.
    pub fn embed_images(&self, paths: &[PathBuf]) -> Result<Tensor<2>> {
        let pixels = self.preprocessor.batch(paths, &self.device.device)?;
        Ok(self.model.encode_image(pixels))
    }

    /// Text embeddings.
    pub fn embed_texts(&self, texts: &[String]) -> Tensor<2> {
        self.model.encode_text(&self.tokenize(texts))
    }
}

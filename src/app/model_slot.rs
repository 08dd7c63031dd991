//! The model the app browses with: loaded in the background, replaced when the user opens
//! another checkpoint, and shared read-only with the threads that embed images.

use std::sync::Arc;

use eframe::egui;

use super::task::{Task, take_finished};
use crate::backend::DeviceChoice;
use crate::engine::LoadedModel;

/// The browsing model and its loading state.
#[derive(Default)]
pub struct ModelSlot {
    /// The spec of the loaded (or loading) model.
    pub spec: String,
    loaded: Option<Arc<LoadedModel>>,
    loading: Option<Task<Result<LoadedModel, String>>>,
    /// Why the last load failed.
    pub error: Option<String>,
}

impl ModelSlot {
    /// Starts loading `spec` (a checkpoint folder or `demo:vit`/`demo:rn`) on `device`
    /// (`auto`, `gpu`, `cpu`). The previous model stays usable until the new one is ready.
    pub fn load(&mut self, ctx: &egui::Context, spec: &str, device: &str) {
        let spec = spec.trim().to_string();
        let device = device.to_string();
        self.spec = spec.clone();
        self.error = None;
        self.loading = Some(Task::spawn(format!("loading {spec}"), ctx, move || {
            let choice: DeviceChoice = device.parse()?;
            LoadedModel::open_spec(&spec, choice).map_err(|e| format!("{e:#}"))
        }));
    }

    /// Picks up a finished load; returns the error of a failed one.
    pub fn poll(&mut self) -> Option<Result<(), String>> {
        let result = take_finished(&mut self.loading)?.and_then(|r| r);
        Some(match result {
            Ok(model) => {
                self.loaded = Some(Arc::new(model));
                Ok(())
            }
            Err(error) => {
                let message = format!("cannot open the model {}: {error}", self.spec);
                self.error = Some(message.clone());
                Err(message)
            }
        })
    }

    /// The loaded model, if any.
    pub fn loaded(&self) -> Option<&Arc<LoadedModel>> {
        self.loaded.as_ref()
    }

    /// What is being loaded, for the status bar.
    pub fn pending(&self) -> Option<&str> {
        self.loading.as_ref().map(|t| t.label.as_str())
    }

    /// The device the model computes on, in words.
    pub fn device(&self) -> Option<&str> {
        self.loaded.as_ref().map(|m| m.device.description.as_str())
    }
}

//! The user's workspace: the scenario being worked on (model, datasets, what to forget, method
//! and settings) and the curated image sets. It is saved atomically on every change that
//! matters and when the app closes, and reopened on the next launch.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::sets::Sets;
use crate::eval::audit::AuditSection;
use crate::recipe::{
    BatchMode, BatchSection, EvalSection, ForgetSection, MethodSection, ModelSection, Recipe,
    ScenarioSection,
};
use crate::unlearn::methods::{Preset, UnlearningMethod, emb::Emb};

/// The file name of a saved workspace.
pub const WORKSPACE_FILE: &str = "workspace.toml";

/// Everything the app remembers between launches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Workspace {
    /// The scenario as a recipe: model, zero-shot head, classes, method, evaluation.
    pub recipe: Recipe,
    /// The dataset shown in the Data panel.
    pub browse: String,
    /// Forget, retain and evaluation images picked in the browsed dataset.
    pub sets: Sets,
    /// Forget with the picked forget images instead of synthetic ones.
    pub use_forget_images: bool,
    /// Keep the picked forget images out of training and judge the method's stop on them
    /// (the recipe's `verify` set); exclusive with `use_forget_images`.
    pub verify_with_forget_images: bool,
    /// The method preset the settings started from.
    pub preset: Preset,
    /// Dark theme (light otherwise).
    pub dark: bool,
    /// UI zoom factor (1.0 = 100 %).
    pub zoom: f32,
    /// Concepts queued to be forgotten in one batch (a batch recipe's `[[scenario]]`s); the
    /// scenario above supplies what they share: model, method, retain and evaluation sets.
    pub queue: Vec<ScenarioSection>,
    /// How the queue runs: one concept after another on the same model, or all at once.
    pub queue_mode: BatchMode,
}

impl Workspace {
    /// Whether the run uses the images of the forget set, to train on or to verify with.
    pub fn uses_forget_set(&self) -> bool {
        self.use_forget_images || self.verify_with_forget_images
    }
}

impl Default for Workspace {
    /// The suggested demo scenario: the demo ViT forgets the shape star, judged on fresh shape,
    /// colour and fruit images with the default audit criteria, browsing a Shapes shape set.
    /// (Star rather than a colour: the demo ViT forgets a shape cleanly with the careful preset,
    /// while forgetting a colour costs it a tenth of its shapes.)
    fn default() -> Self {
        Self {
            recipe: Recipe {
                seed: 0,
                model: ModelSection {
                    path: crate::demo::DEFAULT_MODEL.into(),
                    device: "auto".into(),
                },
                forget: ForgetSection {
                    dataset: "shapes:shapes?seed=101&n=500".into(),
                    classes: vec!["star".into()],
                    images: None,
                    retain: None,
                    verify: None,
                    calibration: None,
                },
                method: MethodSection {
                    name: "emb".into(),
                    settings: Emb.preset(Preset::Careful),
                },
                eval: EvalSection {
                    datasets: vec![
                        "shapes:colors?seed=102&n=300".into(),
                        "shapes:fruits?seed=103&n=300".into(),
                    ],
                    ..EvalSection::default()
                },
                audit: Some(AuditSection::default()),
                scenario: Vec::new(),
                batch: None,
                subgroup: None,
            },
            browse: "shapes:shapes?seed=7&n=2000".into(),
            sets: Sets::default(),
            use_forget_images: false,
            verify_with_forget_images: false,
            preset: Preset::Careful,
            dark: true,
            zoom: 1.0,
            queue: Vec::new(),
            queue_mode: BatchMode::Sequential,
        }
    }
}

impl Workspace {
    /// Reads a saved workspace; a missing file gives the demo scenario, an unreadable one an
    /// error naming the file (the caller falls back to the demo and keeps the file untouched).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{} is not a Lethe workspace", path.display()))
    }

    /// Parses workspace text.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The workspace as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a workspace always serialises")
    }

    /// Replaces the scenario with the recipe in `path`, after checking it as `lethe run` would
    /// (structure, then the method's settings); on any error the workspace is unchanged. A
    /// batch recipe fills the queue, and its first concept becomes the scenario.
    pub fn open_recipe(&mut self, path: &Path) -> Result<()> {
        let (mut recipe, _) = Recipe::load(path)?;
        crate::unlearn::methods::check(&recipe.method.name, &recipe.method.settings)
            .with_context(|| format!("recipe {} is not valid", path.display()))?;
        if recipe.is_batch() {
            self.queue_mode = recipe.batch_mode();
            self.queue = std::mem::take(&mut recipe.scenario);
            recipe.batch = None;
            recipe.forget.classes = self.queue[0].classes.clone();
        }
        self.recipe = recipe;
        Ok(())
    }

    /// Adds the scenario's classes (forgotten through the zero-shot head of its dataset) to the
    /// queue as one concept. When the scenario uses the picked forget set, `save_pictures`
    /// saves it for this concept alone and returns its dataset spec; it is called only once
    /// the concept is known to be new.
    pub fn queue_scenario(
        &mut self,
        save_pictures: impl FnOnce() -> Result<String, String>,
    ) -> Result<(), String> {
        let forget = &self.recipe.forget;
        if forget.classes.is_empty() {
            return Err("Nothing to queue: choose a class to forget in step 2 (Sets).".into());
        }
        let mut concept = ScenarioSection {
            name: None,
            classes: forget.classes.clone(),
            dataset: Some(forget.dataset.clone()),
            images: None,
            retain: None,
            verify: None,
            audit: None,
        };
        if self.queue.iter().any(|c| c.title() == concept.title()) {
            return Err(format!("{} is already in the queue.", concept.title()));
        }
        if self.uses_forget_set() {
            let pictures = save_pictures()?;
            if self.use_forget_images {
                concept.images = Some(pictures);
            } else {
                concept.verify = Some(pictures);
            }
        }
        self.queue.push(concept);
        Ok(())
    }

    /// The queue as a batch recipe, built on `shared` (the scenario with its picked retain
    /// and evaluation sets applied) and checked as `lethe run` checks a batch recipe.
    pub fn batch_recipe(&self, shared: &Recipe) -> Result<Recipe, String> {
        if self.queue.is_empty() {
            return Err("The queue is empty: add concepts with \"Add to queue\".".into());
        }
        let mut batch = shared.clone();
        batch.forget.classes.clear();
        batch.forget.images = None;
        batch.forget.verify = None;
        batch.scenario = self.queue.clone();
        batch.batch = Some(BatchSection {
            mode: self.queue_mode,
        });
        Recipe::parse(&batch.to_toml()).map_err(|e| format!("The queue cannot run: {e}"))
    }

    /// Writes the workspace to `path` through a temporary sibling file renamed into place, so
    /// a crash mid-write never leaves a half-written workspace.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_file(path, self.to_toml().as_bytes())
    }
}

/// Where the app keeps its workspace: `LETHE_HOME` if set (tests, portable installs), else the
/// platform's data folder for Lethe.
pub fn home() -> PathBuf {
    std::env::var_os("LETHE_HOME")
        .map(PathBuf::from)
        .or_else(|| eframe::storage_dir(super::APP_ID))
        .unwrap_or_else(|| PathBuf::from(".lethe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WORKSPACE_FILE);
        let mut workspace = Workspace::default();
        workspace.recipe.forget.classes = vec!["blue".into()];
        workspace.sets.forget.insert(3);
        workspace.zoom = 1.5;
        workspace.save(&path).unwrap();
        assert_eq!(Workspace::load(&path).unwrap(), workspace);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only the workspace file remains");
    }

    #[test]
    fn a_recipe_opens_into_the_workspace_and_a_bad_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut workspace = Workspace::default();
        let good = dir.path().join("good.toml");
        let mut recipe = workspace.recipe.clone();
        recipe.forget.classes = vec!["green".into()];
        recipe.method.name = "emb".into();
        fs::write(&good, recipe.to_toml()).unwrap();
        workspace.open_recipe(&good).unwrap();
        assert_eq!(workspace.recipe, recipe);
        let bad = dir.path().join("bad.toml");
        fs::write(
            &bad,
            recipe
                .to_toml()
                .replace("[method]", "[method]\nlearning_rat = 1.0"),
        )
        .unwrap();
        let error = format!("{:#}", workspace.open_recipe(&bad).unwrap_err());
        assert!(
            error.contains("bad.toml") && error.contains("learning_rat"),
            "{error}"
        );
        assert_eq!(workspace.recipe, recipe);
    }

    #[test]
    fn a_batch_recipe_opens_into_the_queue_and_comes_back_as_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut workspace = Workspace::default();
        let mut batch = workspace.recipe.clone();
        batch.forget.classes.clear();
        batch.batch = Some(BatchSection {
            mode: BatchMode::Joint,
        });
        for class in ["red", "green"] {
            batch.scenario.push(ScenarioSection {
                name: None,
                classes: vec![class.into()],
                dataset: None,
                images: None,
                retain: None,
                verify: None,
                audit: None,
            });
        }
        let path = dir.path().join("batch.toml");
        fs::write(&path, batch.to_toml()).unwrap();
        workspace.open_recipe(&path).unwrap();
        assert_eq!(workspace.recipe.forget.classes, ["red"]);
        assert_eq!(workspace.queue_mode, BatchMode::Joint);
        assert!(!workspace.recipe.is_batch());
        assert_eq!(workspace.batch_recipe(&workspace.recipe).unwrap(), batch);
    }

    #[test]
    fn queueing_refuses_nothing_and_twice_and_saves_pictures_only_for_a_new_concept() {
        let mut workspace = Workspace {
            verify_with_forget_images: true,
            ..Workspace::default()
        };
        let saved = std::cell::Cell::new(0);
        let save = || {
            saved.set(saved.get() + 1);
            Ok("manifest:star.csv".to_string())
        };
        workspace.queue_scenario(save).unwrap();
        let error = workspace.queue_scenario(save).unwrap_err();
        assert!(error.contains("star is already in the queue"), "{error}");
        assert_eq!(saved.get(), 1);
        assert_eq!(
            workspace.queue[0].verify.as_deref(),
            Some("manifest:star.csv")
        );
        assert_eq!(workspace.queue[0].images, None);
        workspace.recipe.forget.classes.clear();
        let error = workspace.queue_scenario(save).unwrap_err();
        assert!(error.contains("Nothing to queue"), "{error}");
        // Joint batches need one zero-shot head; the message says so before anything runs.
        workspace.recipe.forget.classes = vec!["apple".into()];
        workspace.recipe.forget.dataset = "shapes:fruits?seed=1&n=50".into();
        workspace.queue_scenario(save).unwrap();
        workspace.queue_mode = BatchMode::Joint;
        let error = workspace.batch_recipe(&workspace.recipe).unwrap_err();
        assert!(error.contains("same dataset"), "{error}");
        workspace.queue.clear();
        let error = workspace.batch_recipe(&workspace.recipe).unwrap_err();
        assert!(error.contains("queue is empty"), "{error}");
    }

    #[test]
    fn a_missing_workspace_is_the_demo_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WORKSPACE_FILE);
        assert_eq!(Workspace::load(&path).unwrap(), Workspace::default());
        fs::write(&path, "recipe = 3").unwrap();
        let error = format!("{:#}", Workspace::load(&path).unwrap_err());
        assert!(error.contains("workspace.toml"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "recipe = 3");
    }
}

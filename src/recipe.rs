//! Recipes: a TOML file that says which model forgets what, with which method and settings, and
//! how to judge the result. A run is reproducible from its recipe, so every output folder keeps a
//! copy of it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::audit::AuditSection;

/// A whole unlearning run, as written in a recipe file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Seed of everything random in the run (synthetic images, perturbations).
    #[serde(default)]
    pub seed: u64,
    /// The model to edit.
    pub model: ModelSection,
    /// What to forget.
    pub forget: ForgetSection,
    /// How to forget it.
    pub method: MethodSection,
    /// How to measure the result.
    #[serde(default)]
    pub eval: EvalSection,
    /// Criteria the result is judged by (pass / fail / inconclusive); without this section the
    /// run reports numbers only. In a batch, the criteria of every scenario without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSection>,
    /// `[[scenario]]`: several concepts to forget in one recipe (a batch); `[forget]` then holds
    /// what they share and names no classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scenario: Vec<ScenarioSection>,
    /// `[batch]`: how the scenarios are run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSection>,
    /// `[subgroup]`: the classes to forget are forgotten only for a subgroup of their pictures
    /// (red stars), and the class's other subgroups (every other star) must stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subgroup: Option<SubgroupSection>,
}

/// `[subgroup]`: a subgroup of a class to forget while its siblings stay. The forget,
/// retain and verify pictures of `[forget]` are then the subgroup's and its siblings'
/// pictures (retain pictures are kept although they carry the class's label), and the run is
/// judged the way the subgroup paper reports it: Target ↓ (the subgroup's pictures), Retain ↑
/// (the siblings), All ↑ (the whole `[forget]` dataset), each `[eval]` dataset ↑, and the
/// Score over them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubgroupSection {
    /// What the subgroup is called in reports (e.g. "red star").
    pub name: String,
    /// Pictures of the subgroup (a dataset spec, e.g. `shapes:shapes?shape=star&color=red`),
    /// classified among their own dataset's classes: they must no longer be recognised.
    pub target: String,
    /// Pictures of the sibling subgroups (e.g. `shapes:shapes?shape=star&not-color=red`):
    /// they must still be recognised.
    pub siblings: String,
    /// The subgroup under other heads (e.g. `shapes:color-shapes?shape=star&color=red`, as
    /// "red star"): each must fall too; reported beside Target, never counted as kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_forgotten: Vec<String>,
}

/// `[[scenario]]`: one concept of a batch. Keys left out take `[forget]`'s and `[audit]`'s.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    /// The concept's name in the batch's tables (default: its classes joined by " + ").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Class names to forget.
    pub classes: Vec<String>,
    /// The zero-shot head's dataset, if not `[forget]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Real forget images, if not `[forget]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// Real images to keep, if not `[forget]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<String>,
    /// Verification pictures, if not `[forget]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// This concept's criteria, if not `[audit]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSection>,
}

impl ScenarioSection {
    /// The concept's name: `name`, or its classes joined.
    pub fn title(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.classes.join(" + "))
    }
}

/// How a batch's scenarios are run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// One run after another, each starting from the previous one's model; after each, every
    /// concept is measured again (does forgetting B bring A back?).
    #[default]
    Sequential,
    /// One run forgets every scenario's classes at once (they must share the head dataset).
    Joint,
}

/// `[batch]`: how the scenarios are run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// `sequential` (default) or `joint`.
    pub mode: BatchMode,
}

/// `[model]`: the checkpoint to start from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A checkpoint folder or a built-in model (`demo:vit`, `demo:rn`).
    pub path: String,
    /// Where to compute: `auto`, `gpu` or `cpu`.
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_device() -> String {
    "auto".into()
}

/// `[forget]`: the classes to forget and the zero-shot head they belong to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForgetSection {
    /// Dataset spec whose class names and templates form the zero-shot head; its images (if
    /// any) measure the target and other-class accuracy.
    pub dataset: String,
    /// Class names to forget, as spelled in the dataset (left out in a batch, where each
    /// `[[scenario]]` names its own).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Optional real forget images (a dataset spec); their labels must name the forget
    /// classes. Without them, methods that need images synthesise them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    /// Optional real images of what to keep (a dataset spec), for methods with a retain term
    /// (Lip's `retain_weight`); images labelled with a forget class are left out. Without
    /// them, such methods synthesise pictures of the other classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<String>,
    /// Optional real pictures of the forget classes (a dataset spec) that methods never train
    /// on: the stop is judged on them instead of on the forget images, whose accuracy can fall
    /// long before real pictures are forgotten. Images of other classes are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// Optional real pictures of everything the edit must leave alone (a dataset spec), never
    /// trained on, on which a method chooses its own settings: the subgroup method searches
    /// its model soup for the blend that changes the fewest of their answers. Pictures of a
    /// forgotten class are left out, except in a subgroup scenario, where the rule that names
    /// the set leaves the subgroup out (`except=red star`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

/// `[method]`: the method's name and its settings; keys not given keep the method's defaults.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct MethodSection {
    /// Registered method name (`lip`, `emb`, `ulip`, ...).
    pub name: String,
    /// Every other key of the table, read by the method itself.
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// `[eval]`: what to measure before and after.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Other datasets whose accuracy must not drop.
    pub datasets: Vec<String>,
    /// Fine-tuning steps of the relearning test on images of the forgotten classes (0: skip).
    pub relearn_steps: usize,
    /// Images per class used to measure retrieval precision (0: skip).
    pub retrieval_per_class: usize,
    /// Pictures of the forget dataset placed on the before/after embedding map, with its
    /// classes' prompts (0: no map).
    pub map_pictures: usize,
    /// The map's t-SNE perplexity (about how many neighbours each point keeps together).
    pub map_perplexity: f32,
    /// The map's t-SNE optimisation steps.
    pub map_iterations: usize,
}

impl EvalSection {
    /// The map settings' ranges (t-SNE's own code would stop the program on some of them).
    fn check(&self) -> Result<(), String> {
        if self.map_pictures > 100_000 {
            return Err(format!(
                "[eval] map_pictures must be from 0 to 100000, got {}",
                self.map_pictures
            ));
        }
        crate::viz::map::MapOptions {
            perplexity: self.map_perplexity,
            iterations: self.map_iterations,
            seed: 0,
        }
        .check("[eval] map_perplexity", "[eval] map_iterations")?;
        Ok(())
    }
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            datasets: Vec::new(),
            relearn_steps: 10,
            retrieval_per_class: 20,
            map_pictures: 1000,
            map_perplexity: crate::viz::map::MapOptions::default().perplexity,
            map_iterations: crate::viz::map::MapOptions::default().iterations,
        }
    }
}

/// Why a recipe could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file could not be read.
    #[error("cannot read recipe {path}: {cause}")]
    Read {
        /// The recipe file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not a valid recipe.
    #[error("recipe {path} is not valid: {message}")]
    Invalid {
        /// The recipe file.
        path: PathBuf,
        /// What is wrong and where (TOML errors name the line).
        message: String,
    },
}

impl Recipe {
    /// Reads and checks a recipe file; returns the recipe and its text, which a run keeps
    /// verbatim (copied into the result folder and hashed).
    pub fn load(path: &Path) -> Result<(Self, String), RecipeError> {
        let text = crate::limits::read_text(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            cause: source,
        })?;
        let recipe = Self::parse(&text).map_err(|message| RecipeError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok((recipe, text))
    }

    /// Parses recipe text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let recipe: Recipe = toml::from_str(text).map_err(|e| e.to_string())?;
        recipe.check_scenarios()?;
        recipe.eval.check()?;
        if recipe.subgroup.is_some() && recipe.is_batch() {
            return Err(
                "[subgroup] describes one scenario; a batch of [[scenario]]s cannot have one"
                    .into(),
            );
        }
        Ok(recipe)
    }

    /// Whether the recipe is a batch of `[[scenario]]`s.
    pub fn is_batch(&self) -> bool {
        !self.scenario.is_empty()
    }

    /// How the batch runs (sequential unless `[batch] mode` says otherwise).
    pub fn batch_mode(&self) -> BatchMode {
        self.batch.as_ref().map(|b| b.mode).unwrap_or_default()
    }

    fn check_scenarios(&self) -> Result<(), String> {
        if !self.is_batch() {
            if self.batch.is_some() {
                return Err("[batch] needs [[scenario]] entries to run".into());
            }
            if self.forget.classes.is_empty() {
                return Err("[forget] classes is empty: name at least one class to forget".into());
            }
            return Ok(());
        }
        if !self.forget.classes.is_empty() {
            return Err(
                "[forget] classes: with [[scenario]] entries each scenario names its classes; leave them out of [forget]"
                    .into(),
            );
        }
        let mut titles = Vec::new();
        for (i, scenario) in self.scenario.iter().enumerate() {
            if scenario.classes.is_empty() {
                return Err(format!(
                    "[[scenario]] {}: classes is empty: name at least one class to forget",
                    i + 1
                ));
            }
            let title = scenario.title();
            if titles.contains(&title) {
                return Err(format!(
                    "[[scenario]] {}: the name '{title}' is used twice; give each scenario its own name",
                    i + 1
                ));
            }
            titles.push(title);
        }
        if self.batch_mode() == BatchMode::Joint {
            let datasets: Vec<&str> = self
                .scenario
                .iter()
                .map(|s| s.dataset.as_deref().unwrap_or(&self.forget.dataset))
                .collect();
            if datasets.iter().any(|d| *d != datasets[0]) {
                return Err(
                    "[batch] mode = \"joint\" forgets every class in one run, so every [[scenario]] must use the same dataset"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Each scenario of a batch as a single-concept recipe: `self` with that scenario's
    /// classes, sets and criteria.
    pub fn concepts(&self) -> Vec<(String, Recipe)> {
        self.scenario
            .iter()
            .map(|s| {
                let mut one = self.clone();
                one.scenario.clear();
                one.batch = None;
                one.forget.classes = s.classes.clone();
                let or = |own: &Option<String>, shared: &Option<String>| {
                    own.clone().or_else(|| shared.clone())
                };
                if let Some(dataset) = &s.dataset {
                    one.forget.dataset = dataset.clone();
                }
                one.forget.images = or(&s.images, &self.forget.images);
                one.forget.retain = or(&s.retain, &self.forget.retain);
                one.forget.verify = or(&s.verify, &self.forget.verify);
                one.audit = s.audit.clone().or_else(|| self.audit.clone());
                (s.title(), one)
            })
            .collect()
    }

    /// A joint batch as one recipe forgetting every scenario's classes.
    pub fn joint(&self) -> Recipe {
        let mut all = self.clone();
        all.scenario.clear();
        all.batch = None;
        all.forget.dataset = self.concepts()[0].1.forget.dataset.clone();
        for scenario in &self.scenario {
            for class in &scenario.classes {
                if !all.forget.classes.contains(class) {
                    all.forget.classes.push(class.clone());
                }
            }
        }
        all
    }

    /// The recipe as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a recipe always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAR: &str = r#"
seed = 3
[model]
path = "demo:vit"
[forget]
dataset = "shapes:shapes"
classes = ["star"]
[method]
name = "lip"
learning_rate = 1e-3
[eval]
datasets = ["shapes:colors?seed=102&n=1000"]
"#;

    #[test]
    fn a_recipe_reads_and_keeps_method_settings_for_the_method() {
        let recipe = Recipe::parse(STAR).unwrap();
        assert_eq!(recipe.seed, 3);
        assert_eq!(recipe.model.device, "auto");
        assert_eq!(recipe.forget.classes, ["star"]);
        assert_eq!(recipe.method.name, "lip");
        assert_eq!(
            recipe.method.settings["learning_rate"].as_float(),
            Some(1e-3)
        );
        assert_eq!(recipe.eval.relearn_steps, 10);
        assert_eq!(Recipe::parse(&recipe.to_toml()).unwrap(), recipe);
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let typo = STAR.replace("[forget]", "[forgett]");
        let message = Recipe::parse(&typo).unwrap_err();
        assert!(message.contains("forgett"), "{message}");
        assert!(message.contains("line"), "{message}");
        let empty = STAR.replace(r#"["star"]"#, "[]");
        assert!(Recipe::parse(&empty).unwrap_err().contains("empty"));
    }

    const BATCH: &str = r#"
[model]
path = "demo:vit"
[forget]
dataset = "shapes:colors"
verify = "shapes:colors?seed=9"
[method]
name = "emb"
[audit]
target_at_most = 0.2
[[scenario]]
classes = ["red"]
[[scenario]]
name = "greens"
classes = ["green"]
verify = "shapes:colors?seed=10"
[scenario.audit]
target_at_most = 0.05
"#;

    #[test]
    fn a_batch_splits_into_one_recipe_per_concept_with_shared_defaults() {
        let recipe = Recipe::parse(BATCH).unwrap();
        assert!(recipe.is_batch());
        assert_eq!(recipe.batch_mode(), BatchMode::Sequential);
        let concepts = recipe.concepts();
        let names: Vec<&str> = concepts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["red", "greens"]);
        let (red, green) = (&concepts[0].1, &concepts[1].1);
        assert_eq!(red.forget.classes, ["red"]);
        assert_eq!(red.forget.verify.as_deref(), Some("shapes:colors?seed=9"));
        assert_eq!(
            green.forget.verify.as_deref(),
            Some("shapes:colors?seed=10")
        );
        let limit = |r: &Recipe| r.audit.as_ref().unwrap().target_at_most;
        assert_eq!(limit(red), crate::eval::audit::Limit::At(0.2));
        assert_eq!(limit(green), crate::eval::audit::Limit::At(0.05));
        assert!(!red.is_batch());
        assert_eq!(Recipe::parse(&red.to_toml()).unwrap(), *red);
        assert_eq!(recipe.joint().forget.classes, ["red", "green"]);
        assert_eq!(Recipe::parse(&recipe.to_toml()).unwrap(), recipe);
    }

    #[test]
    fn batch_mistakes_are_named() {
        let both = BATCH.replace("verify = \"shapes:colors?seed=9\"", "classes = [\"blue\"]");
        assert!(
            Recipe::parse(&both)
                .unwrap_err()
                .contains("[forget] classes")
        );
        let twice = BATCH.replace(
            "name = \"greens\"\nclasses = [\"green\"]",
            "classes = [\"red\"]",
        );
        assert!(Recipe::parse(&twice).unwrap_err().contains("used twice"));
        let joint = format!("{BATCH}[batch]\nmode = \"joint\"\n").replace(
            "classes = [\"green\"]",
            "classes = [\"green\"]\ndataset = \"shapes:shapes\"",
        );
        assert!(Recipe::parse(&joint).unwrap_err().contains("same dataset"));
        let lonely = STAR.replace("[eval]", "[batch]\nmode = \"joint\"\n[eval]");
        assert!(Recipe::parse(&lonely).unwrap_err().contains("[[scenario]]"));
    }
}

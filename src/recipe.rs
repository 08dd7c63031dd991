//! Recipes: a TOML file that says which model forgets what, with which method and settings, and
//! how to judge the result. A run is reproducible from its recipe, so every output folder keeps a
//! copy of it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// Class names to forget, as spelled in the dataset.
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
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            datasets: Vec::new(),
            relearn_steps: 10,
            retrieval_per_class: 20,
        }
    }
}

/// Why a recipe could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file could not be read.
    #[error("cannot read recipe {path}: {source}")]
    Read {
        /// The recipe file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
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
        let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
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
        if recipe.forget.classes.is_empty() {
            return Err("[forget] classes is empty: name at least one class to forget".into());
        }
        Ok(recipe)
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
}

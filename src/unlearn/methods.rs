//! The registry of unlearning methods: what each is called, what it needs, and how to set one up
//! from a class list and its settings. The command line and the app list methods from here, so a
//! new method appears everywhere once it is registered.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::job::Method;
use super::lip::{ForgetTask, HeldOut, Lip, LipOptions, RetainImages, Variant};
use super::synthetic::{SyntheticImages, synthesize};
use crate::clip::Clip;
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::eval::{class_embeddings, class_prompts};

/// What a user needs to know to pick a method.
#[derive(Clone, Copy, Debug)]
pub struct MethodInfo {
    /// Name used in recipes and on the command line.
    pub name: &'static str,
    /// Display name.
    pub title: &'static str,
    /// What it does, in plain words.
    pub summary: &'static str,
    /// What data it needs.
    pub needs: &'static str,
}

/// Every registered method.
pub const METHODS: [MethodInfo; 3] = [
    MethodInfo {
        name: "lip",
        title: "Lip (Lipschitz, synthetic samples)",
        summary: "Makes the model's answer for pictures of the class insensitive to noise, in both \
                  the image and the text tower, updating only the few layers that matter most for \
                  the class each step; stops once it no longer recognises the class.",
        needs: "Only the class name: pictures of the class are synthesised from the model itself \
                (real ones can be given instead).",
    },
    MethodInfo {
        name: "emb",
        title: "Emb (embedding distance baseline)",
        summary: "Like Lip, but pulls embeddings of noisy pictures together and pushes picture and \
                  class name apart by plain distances instead of a noise-relative ratio.",
        needs: "Only the class name (synthetic pictures), or real ones.",
    },
    MethodInfo {
        name: "ulip",
        title: "ULip (vision-only Lipschitz baseline)",
        summary: "Lip's noise-insensitivity on the image tower alone; the text tower is left as \
                  it is.",
        needs: "Pictures of the class: real ones if given, otherwise synthetic.",
    },
];

/// A recipe's `[method]` table: the method's name and its settings.
#[derive(Serialize)]
struct MethodTable<'a> {
    name: &'a str,
    #[serde(flatten)]
    options: LipOptions,
}

/// Every registered method as a commented `[method]` table of its defaults, ready to paste into
/// a recipe; methods are separated by two blank lines.
pub fn describe_all() -> String {
    METHODS
        .iter()
        .map(|m| {
            let table = MethodTable {
                name: m.name,
                options: LipOptions::default(),
            };
            let settings = toml::to_string(&BTreeMap::from([("method", table)]))
                .expect("the settings always serialise");
            format!(
                "# {}\n# {}\n# Needs: {}\n{settings}",
                m.title, m.summary, m.needs
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Looks a method up by name.
pub fn method_info(name: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|m| m.name == name)
}

/// A starting point for a method's settings, for users who do not want to tune knobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's settings: small steps, many perturbations; slow, and on small models it may
    /// stop short of forgetting.
    Gentle,
    /// A schedule sized for small models such as the demo ones: larger steps, fewer
    /// perturbations and synthetic images, at most 40 steps.
    #[default]
    Default,
    /// The default schedule with the retain term on, the push between picture and class name
    /// doubled, and the layers every class shares left alone: forgets while holding the other
    /// classes' answers. Made for Emb: with Lip's loss the retain term holds the class to
    /// forget in place too.
    Careful,
    /// Larger steps, more of them, and a stricter stop: forgets harder, at a higher risk to
    /// other classes.
    Aggressive,
}

impl Preset {
    /// Every preset, gentlest first.
    pub const ALL: [Preset; 4] = [
        Preset::Gentle,
        Preset::Default,
        Preset::Careful,
        Preset::Aggressive,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Gentle => "gentle",
            Preset::Default => "default",
            Preset::Careful => "careful",
            Preset::Aggressive => "aggressive",
        }
    }
}

/// Every setting of the Lip family with its default (the paper's), as a recipe's `[method]`
/// keys: the app's knob editor lists exactly these.
pub fn default_settings() -> toml::Table {
    toml::Table::try_from(LipOptions::default()).expect("the settings always serialise")
}

/// The settings a preset changes from the defaults (only those keys, so a recipe stays short).
pub fn preset_settings(preset: Preset) -> toml::Table {
    let text = match preset {
        Preset::Gentle => "",
        Preset::Default => {
            "learning_rate = 5e-4\nperturbations = 8\nbatch = 4\nmax_steps = 40\n\
             [synthetic]\ncount = 32\n"
        }
        Preset::Careful => {
            "learning_rate = 1e-3\nperturbations = 8\nbatch = 4\nmax_steps = 60\n\
             alpha = 2.0\nblocks_only = true\nretain_weight = 1.0\n[synthetic]\ncount = 32\n"
        }
        Preset::Aggressive => {
            "learning_rate = 1e-3\nperturbations = 8\nbatch = 4\nmax_steps = 60\n\
             stop_accuracy = 0.05\n[synthetic]\ncount = 32\n"
        }
    };
    text.parse().expect("presets are valid TOML")
}

/// What each setting means, in plain words, for tooltips next to the knobs.
pub fn setting_help(key: &str) -> &'static str {
    match key {
        "learning_rate" => "How big each update of the weights is (Adam's step size).",
        "weight_decay" => "How strongly weights are pulled towards zero at each update.",
        "perturbations" => {
            "Noisy copies of each forget image per step: more is steadier but slower."
        }
        "sigma" => {
            "Strength of the noise added to images and text embeddings, at the first step and at full escalation."
        }
        "vision_layers" => {
            "Image-tower layers updated per step (the ones whose gradients are largest), first and at full escalation."
        }
        "text_layers" => "Text-tower layers updated per step, first and at full escalation.",
        "escalation_steps" => {
            "Steps over which noise and layer counts grow when the class is not yet forgotten."
        }
        "stop_accuracy" => {
            "Stop once the model recognises fewer than this fraction of the forget images."
        }
        "batch" => "Forget images per step.",
        "max_steps" => "Give up after this many steps.",
        "blocks_only" => {
            "Update only layers inside the residual blocks, never the shared embeddings, norms and projections."
        }
        "alpha" => "Emb only: weight of the term pushing image and class-name embeddings apart.",
        "retain_weight" => {
            "How strongly the model's answers for pictures of the other classes are held to the original ones (0: the paper's method, no such term). Uses the retain set when one is given, otherwise synthetic pictures of the other classes."
        }
        "retain_batch" => "Retain pictures per step, when the retain term is on.",
        "retain_per_class" => {
            "Synthetic pictures of each other class for the retain term, when no retain set is given."
        }
        "synthetic" => {
            "How pictures of the class are synthesised from the model when no real ones are given."
        }
        "count" => "Number of synthetic pictures.",
        "threshold" => "Probability of the class each synthetic picture must reach.",
        "step_size" => "Size of each pixel update while synthesising.",
        _ => "",
    }
}

/// A method set up for a run, with the synthetic images it made (for previews and reports).
pub struct Prepared {
    /// The method, ready for the job runner.
    pub method: Box<dyn Method>,
    /// Synthetic forget images, one set per forgotten class; empty when real images were given.
    pub synthetic: Vec<SyntheticImages>,
    /// Number of forget images the method works on.
    pub forget_images: usize,
    /// Number of real pictures the stop is judged on (0 without a verification set).
    pub verification_images: usize,
}

/// Everything a method is set up from.
pub struct Setup<'a> {
    /// Registered method name.
    pub name: &'a str,
    /// The method's settings (keys not given keep their defaults).
    pub settings: &'a toml::Table,
    /// Seed of everything random in the method.
    pub seed: u64,
    /// The model to edit, on an autodiff device.
    pub model: &'a Clip,
    /// Tokenizer, preprocessing and device of the model.
    pub loaded: &'a LoadedModel,
    /// The zero-shot head: class names and templates.
    pub head: &'a Dataset,
    /// Indices of the classes to forget in `head.classes`.
    pub targets: &'a [usize],
    /// Real forget images, if the user gave any; labels are matched to the head by name.
    pub real_images: Option<&'a Dataset>,
    /// Real images of what to keep, if the user gave any (for a method's retain term); images
    /// labelled with a forgotten class are left out.
    pub retain_images: Option<&'a Dataset>,
    /// Real pictures of the forgotten classes that are never trained on, if the user gave any:
    /// the stop is judged on them. Images of other classes are left out.
    pub verify_images: Option<&'a Dataset>,
    /// Set when the run is cancelled: slow preparation (synthesis) stops early.
    pub cancel: &'a AtomicBool,
}

/// Reads a method's settings: the Lip variant it names and its options. Errors name the
/// method and the offending key, so a recipe can be checked before any work starts.
pub fn parse_settings(name: &str, settings: &toml::Table) -> Result<(Variant, LipOptions), String> {
    let variant = match name {
        "lip" => Variant::Lip,
        "emb" => Variant::Emb,
        "ulip" => Variant::ULip,
        other => {
            let known: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
            return Err(format!(
                "unknown method '{other}': registered methods are {}",
                known.join(", ")
            ));
        }
    };
    let options = LipOptions::deserialize(toml::Value::Table(settings.clone()))
        .map_err(|e| format!("method '{name}': {e}"))?;
    Ok((variant, options))
}

/// Sets up the named method. Errors name the method and the offending setting or data.
pub fn prepare(setup: &Setup) -> Result<Prepared, String> {
    let (variant, mut options) = parse_settings(setup.name, setup.settings)?;
    options.synthetic.seed = setup.seed;
    let device = setup.model.device();
    // Computed by the evaluation model; joined to the autodiff graph of the pixels.
    let heads =
        class_embeddings(setup.loaded, &setup.head.classes, &setup.head.templates).autodiff();
    let (images, labels, synthetic) = match setup.real_images {
        Some(real) => {
            let (images, labels) = real_images_of_targets(setup, real, "forget")?;
            (images, labels, Vec::new())
        }
        None => {
            let per_class = options.synthetic.count.div_ceil(setup.targets.len()).max(1);
            let mut sets = Vec::new();
            let mut labels = Vec::new();
            for (i, &target) in setup.targets.iter().enumerate() {
                let mut synthetic = options.synthetic.clone();
                synthetic.seed = setup.seed.wrapping_add(i as u64);
                sets.push(synthesize(
                    setup.model,
                    heads.clone(),
                    &vec![target; per_class],
                    setup.loaded.preprocessor.size,
                    &synthetic,
                    setup.cancel,
                ));
                labels.extend(std::iter::repeat_n(target, per_class));
            }
            let images = Tensor::cat(sets.iter().map(|s| s.tensor(&device)).collect(), 0);
            (images, labels, sets)
        }
    };
    let held_out = match setup.verify_images {
        Some(real) => {
            let (images, labels) = real_images_of_targets(setup, real, "verification")?;
            Some(HeldOut { images, labels })
        }
        None => None,
    };
    let retain = if options.retain_weight > 0.0 {
        let images = match setup.retain_images {
            Some(real) => real_retain_images(setup, real)?,
            None => synthetic_retain_images(setup, &options, heads.clone()),
        };
        Some(RetainImages::new(setup.model, heads, images))
    } else {
        None
    };
    let forget_images = labels.len();
    let verification_images = held_out.as_ref().map_or(0, |h| h.labels.len());
    let prompts = setup
        .loaded
        .tokenize(&class_prompts(&setup.head.classes, &setup.head.templates));
    let task = ForgetTask {
        images,
        labels,
        prompts,
        templates: setup.head.templates.len(),
        retain,
        held_out,
    };
    Ok(Prepared {
        method: Box::new(Lip::new(variant, options, task, setup.seed)),
        synthetic,
        forget_images,
        verification_images,
    })
}

/// Pictures of every class of the head but the forgotten ones, synthesised from the model for
/// the retain term when the user gave no retain images.
fn synthetic_retain_images(setup: &Setup, options: &LipOptions, heads: Tensor<2>) -> Tensor<4> {
    let kept: Vec<usize> = (0..setup.head.classes.len())
        .filter(|c| !setup.targets.contains(c))
        .flat_map(|c| std::iter::repeat_n(c, options.synthetic.retain_per_class.max(1)))
        .collect();
    let mut synthetic = options.synthetic.clone();
    // A seed of its own, so adding the retain term leaves the forget images as they were.
    synthetic.seed = setup.seed.wrapping_add(0x7e7a_1000);
    synthesize(
        setup.model,
        heads,
        &kept,
        setup.loaded.preprocessor.size,
        &synthetic,
        setup.cancel,
    )
    .tensor(&setup.model.device())
}

/// The user's retain images (those not labelled with a forgotten class), preprocessed.
fn real_retain_images(setup: &Setup, real: &Dataset) -> Result<Tensor<4>, String> {
    let forgotten = |name: &str| setup.targets.iter().any(|&t| setup.head.classes[t] == name);
    let (images, _) = preprocess_where(setup, real, "retain", |name| {
        (!forgotten(name)).then_some(0)
    });
    images.ok_or_else(|| {
        format!(
            "retain images {}: no readable image of a class to keep",
            real.name
        )
    })
}

/// The images of `dataset` for which `label` gives a label (others are skipped),
/// preprocessed into one tensor on the model's device, with those labels; `None` when no
/// image was kept. Unreadable images are skipped with a warning naming `role`.
fn preprocess_where(
    setup: &Setup,
    dataset: &Dataset,
    role: &str,
    label: impl Fn(&str) -> Option<usize>,
) -> (Option<Tensor<4>>, Vec<usize>) {
    let preprocessor = &setup.loaded.preprocessor;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for item in &dataset.items {
        let Some(kept) = label(&dataset.classes[item.label]) else {
            continue;
        };
        match item.source.image() {
            Ok(image) => {
                pixels.extend(preprocessor.apply(&image));
                labels.push(kept);
            }
            Err(error) => tracing::warn!("skipping unreadable {role} image: {error}"),
        }
    }
    if labels.is_empty() {
        return (None, labels);
    }
    let side = preprocessor.size;
    let images = Tensor::from_data(
        TensorData::new(pixels, [labels.len(), 3, side, side]),
        &setup.model.device(),
    );
    (Some(images), labels)
}

/// The user's images of the target classes in `real` (its other images are skipped),
/// preprocessed, with their head labels; `role` names the set in messages.
fn real_images_of_targets(
    setup: &Setup,
    real: &Dataset,
    role: &str,
) -> Result<(Tensor<4>, Vec<usize>), String> {
    let (images, labels) = preprocess_where(setup, real, role, |name| {
        setup
            .targets
            .iter()
            .copied()
            .find(|&t| setup.head.classes[t] == name)
    });
    let Some(images) = images else {
        let wanted: Vec<&str> = setup
            .targets
            .iter()
            .map(|&t| setup.head.classes[t].as_str())
            .collect();
        return Err(format!(
            "{role} images {}: no readable image is labelled {}",
            real.name,
            wanted.join(" or ")
        ));
    };
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a settings table, nested tables included.
    fn keys(table: &toml::Table) -> Vec<String> {
        table
            .iter()
            .flat_map(|(key, value)| {
                let nested = value.as_table().map(keys).unwrap_or_default();
                std::iter::once(key.clone()).chain(nested)
            })
            .collect()
    }

    #[test]
    fn every_setting_has_a_tooltip() {
        let missing: Vec<String> = keys(&default_settings())
            .into_iter()
            .filter(|key| setting_help(key).is_empty())
            .collect();
        assert!(missing.is_empty(), "no help for {missing:?}");
    }

    #[test]
    fn presets_only_name_known_settings() {
        for preset in Preset::ALL {
            parse_settings("lip", &preset_settings(preset)).unwrap();
        }
    }
}

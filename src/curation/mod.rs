//! Turning a scenario into data: what the user named (a zero-shot head, the classes to forget,
//! real forget, retain and verification images, or none) becomes the tensors a method trains
//! on. Methods receive the result and never reach back into datasets or evaluation.

use std::sync::atomic::AtomicBool;

use burn::tensor::{Tensor, TensorData};

use crate::clip::{Clip, index_tensor};
use crate::data::dataset::Dataset;
use crate::data::shapes::Rng;
use crate::engine::LoadedModel;
use crate::eval::{class_embeddings, class_prompts};
use crate::unlearn::synthetic::{SyntheticImages, SyntheticOptions, synthesize};
use crate::unlearn::toolkit::RetainImages;

/// What the user named for a run, before any image is read.
pub struct Setup<'a> {
    /// Seed of everything random in the run.
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
    /// Real images of what to keep, if the user gave any; images labelled with a forgotten
    /// class are left out.
    pub retain_images: Option<&'a Dataset>,
    /// Real pictures of the forgotten classes that are never trained on, if the user gave any:
    /// the stop is judged on them. Images of other classes are left out.
    pub verify_images: Option<&'a Dataset>,
    /// Real pictures of what is kept, never trained on, that a method chooses its settings
    /// on, if the user gave any; pictures are left out as retain pictures are.
    pub calibration_images: Option<&'a Dataset>,
    /// The name of the subgroup of the target classes the run forgets (`red star`), when it
    /// forgets one: retain images of those classes are its siblings and are kept.
    pub subgroup: Option<&'a str>,
    /// Set when the run is cancelled: slow preparation (synthesis) stops early.
    pub cancel: &'a AtomicBool,
}

/// What a method asks of the scenario, read from its settings.
#[derive(Clone, Debug)]
pub struct DataNeeds {
    /// How forget pictures are synthesised when the user gave no real ones (its seed is set
    /// from the run's).
    pub synthetic: SyntheticOptions,
    /// Whether the method uses retain images: the user's, or else `synthetic.retain_per_class`
    /// synthetic pictures of every other class of the head.
    pub retain: bool,
    /// Whether the method trains on image–caption pairs: the user's forget images of the
    /// classes to forget and retain images of the rest, each with its caption.
    pub pairs: bool,
}

/// Images with the caption of each, as a method trains on associations.
pub struct Pairs {
    /// Normalised images `[n, 3, s, s]`, on the autodiff device.
    pub images: Tensor<4>,
    /// Tokenised captions, one per image.
    pub captions: Vec<Vec<u32>>,
    /// The head class of each image, when its class is one of the head's.
    pub labels: Vec<Option<usize>>,
}

impl Pairs {
    /// The pairs in an order drawn from `seed`: sets joined from several specs
    /// (`siblings | everything else`) come one after the other, and a method that walks
    /// through them in windows would otherwise train on one set at a time.
    pub fn shuffled(self, seed: u64) -> Pairs {
        let mut order: Vec<usize> = (0..self.captions.len()).collect();
        let mut rng = Rng::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let device = self.images.device();
        Pairs {
            images: self.images.select(0, index_tensor(&order, &device)),
            captions: order.iter().map(|&i| self.captions[i].clone()).collect(),
            labels: order.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    /// The first `count` pairs and the rest.
    pub fn split(self, count: usize) -> (Pairs, Pairs) {
        let total = self.captions.len();
        let (captions, rest_captions) = self.captions.split_at(count);
        let (labels, rest_labels) = self.labels.split_at(count);
        (
            Pairs {
                images: self.images.clone().narrow(0, 0, count),
                captions: captions.to_vec(),
                labels: labels.to_vec(),
            },
            Pairs {
                images: self.images.narrow(0, count, total - count),
                captions: rest_captions.to_vec(),
                labels: rest_labels.to_vec(),
            },
        )
    }
}

/// Real pictures of the forgotten classes kept out of training. Synthetic pictures are often
/// forgotten long before real ones (the Lip paper's verification caveat), so a stop judged on
/// them can come early; real, unseen ones judge the class itself.
pub struct HeldOut {
    /// Normalised images `[n, 3, s, s]`.
    pub images: Tensor<4>,
    /// The class (index into the head) each image shows.
    pub labels: Vec<usize>,
}

/// A prepared scenario: the forget images and the zero-shot head they are judged against.
pub struct Scenario {
    /// Normalised forget images `[n, 3, s, s]` (synthetic or real), on an autodiff device.
    pub images: Tensor<4>,
    /// The class (index into the head) each image shows; every one is a class to forget.
    pub labels: Vec<usize>,
    /// Tokenised prompts of every class of the head, `templates` per class, class-major.
    pub prompts: Vec<Vec<u32>>,
    /// Prompts per class.
    pub templates: usize,
    /// Images the edit must leave alone, with the original model's answers for them, when
    /// the method asked for them.
    pub retain: Option<RetainImages>,
    /// Forget images never trained on, on which the stop is judged instead of the training
    /// images (`None`: judged on the training images, as in the Lip paper).
    pub held_out: Option<HeldOut>,
    /// The forget images with their captions, when the method asked for pairs.
    pub forget_pairs: Option<Pairs>,
    /// Retain images with their captions, when the method asked for pairs.
    pub retain_pairs: Option<Pairs>,
    /// Pictures of what is kept, never trained on, that a method chooses its settings on
    /// (the subgroup method's soup), when the user gave some.
    pub calibration: Option<Tensor<4>>,
    /// Tokenised prompts of the subgroup's own name and then of its rivals, through the head's
    /// templates (class-major, as `prompts`), when the run forgets a subgroup: the name must
    /// not be recognised either. See [`subgroup_names`].
    pub subgroup_prompts: Option<Vec<Vec<u32>>>,
}

/// A scenario with the synthetic pictures it was made from, for previews and reports.
pub struct Curated {
    /// The data the method trains on.
    pub scenario: Scenario,
    /// Synthetic forget images, one set per forgotten class; empty when real images were given.
    pub synthetic: Vec<SyntheticImages>,
}

/// A set of images the scenario could not be built from, and why.
#[derive(Debug, thiserror::Error)]
#[error("{role} images {dataset}: {problem}")]
pub struct DataError {
    /// Which set: `forget`, `retain`, `verification` or `calibration`.
    pub role: &'static str,
    /// The dataset spec.
    pub dataset: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Builds the scenario a method asked for with `needs`.
pub fn curate(setup: &Setup, needs: &DataNeeds) -> Result<Curated, DataError> {
    let device = setup.model.device();
    // Computed by the evaluation model; joined to the autodiff graph of the pixels.
    let heads =
        class_embeddings(setup.loaded, &setup.head.classes, &setup.head.templates).autodiff();
    let mut forget_captions = None;
    let (images, labels, synthetic) = match setup.real_images {
        Some(real) => {
            let (images, labels, captions) = real_images_of_targets(setup, real, "forget")?;
            forget_captions = Some((real, captions));
            (images, labels, Vec::new())
        }
        None if needs.pairs => {
            return Err(DataError {
                role: "forget",
                dataset: setup.head.name.clone(),
                problem: "this method learns from image–caption pairs: name real pictures of \
                          the classes to forget, with captions ([forget] images)"
                    .into(),
            });
        }
        None => {
            let per_class = needs.synthetic.count.div_ceil(setup.targets.len()).max(1);
            let mut sets = Vec::new();
            let mut labels = Vec::new();
            for (i, &target) in setup.targets.iter().enumerate() {
                let mut synthetic = needs.synthetic.clone();
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
            let (images, labels, _) = real_images_of_targets(setup, real, "verification")?;
            Some(HeldOut { images, labels })
        }
        None => None,
    };
    let (forget_pairs, retain_pairs) = match forget_captions.filter(|_| needs.pairs) {
        Some((real, captions)) => (
            Some(Pairs {
                images: images.clone(),
                captions: tokenized_captions(setup, real, "forget", captions)?,
                labels: labels.iter().copied().map(Some).collect(),
            }),
            Some(retain_pairs(setup)?),
        ),
        None => (None, None),
    };
    let calibration = match setup.calibration_images {
        Some(real) => {
            let (images, _, _) = preprocess_where(setup, real, "calibration", kept(setup, real));
            Some(images.ok_or_else(|| no_image_to_keep("calibration", real))?)
        }
        None => None,
    };
    let retain = if needs.retain {
        let images = match setup.retain_images {
            Some(real) => real_retain_images(setup, real)?,
            None => synthetic_retain_images(setup, &needs.synthetic, heads.clone()),
        };
        Some(RetainImages::new(setup.model, heads, images))
    } else {
        None
    };
    let prompts = setup
        .loaded
        .tokenize(&class_prompts(&setup.head.classes, &setup.head.templates));
    let subgroup_prompts = setup.subgroup.map(|name| {
        setup.loaded.tokenize(&class_prompts(
            &subgroup_names(name, &setup.head.classes, setup.targets),
            &setup.head.templates,
        ))
    });
    Ok(Curated {
        scenario: Scenario {
            images,
            labels,
            prompts,
            templates: setup.head.templates.len(),
            retain,
            held_out,
            forget_pairs,
            retain_pairs,
            calibration,
            subgroup_prompts,
        },
        synthetic,
    })
}

/// The subgroup's name, then its rivals: the name with its class word replaced by each class
/// of the head that is kept ("red circle", "red heart", … for "red star"), so the name can be
/// forgotten in favour of names that share the subgroup's other attributes. A name without
/// its class word has no rivals.
pub fn subgroup_names(name: &str, classes: &[String], targets: &[usize]) -> Vec<String> {
    let mut names = vec![name.to_string()];
    for &target in targets {
        let class = &classes[target];
        if !name.contains(class.as_str()) {
            continue;
        }
        for (i, other) in classes.iter().enumerate() {
            if !targets.contains(&i) {
                names.push(name.replace(class.as_str(), other));
            }
        }
    }
    names
}

/// Every caption tokenised, or an error naming `dataset` when an image has none.
fn tokenized_captions(
    setup: &Setup,
    dataset: &Dataset,
    role: &'static str,
    captions: Vec<Option<String>>,
) -> Result<Vec<Vec<u32>>, DataError> {
    let captions: Option<Vec<String>> = captions.into_iter().collect();
    let captions = captions.ok_or_else(|| DataError {
        role,
        dataset: dataset.name.clone(),
        problem: "an image has no caption (pairs need one per image: a manifest's `caption` \
                  column, or a Shapes subset)"
            .into(),
    })?;
    Ok(setup.loaded.tokenize(&captions))
}

/// The user's retain images of classes to keep with their captions.
fn retain_pairs(setup: &Setup) -> Result<Pairs, DataError> {
    let Some(real) = setup.retain_images else {
        return Err(DataError {
            role: "retain",
            dataset: setup.head.name.clone(),
            problem: "this method learns from image–caption pairs: name pictures to keep, with \
                      captions ([forget] retain)"
                .into(),
        });
    };
    let (images, labels, captions) = preprocess_where(setup, real, "retain", kept(setup, real));
    let images = images.ok_or_else(|| no_image_to_keep("retain", real))?;
    Ok(Pairs {
        images,
        captions: tokenized_captions(setup, real, "retain", captions)?,
        labels: labels
            .into_iter()
            .map(|label| (label != OUTSIDE_HEAD).then_some(label))
            .collect(),
    })
}

/// Which retain images to keep: all but those labelled with a forgotten class. A label only
/// names a forgotten class when the retain set speaks the head's label space (each of its
/// classes is a head class): a colour set's "orange" is not the fruit being forgotten. In a
/// subgroup scenario every retain image is a sibling and is kept.
/// The label of a kept image is its head class, or [`OUTSIDE_HEAD`].
fn kept<'a>(setup: &'a Setup, real: &Dataset) -> impl Fn(&str) -> Option<usize> + 'a {
    let same_space =
        same_label_space(&real.classes, &setup.head.classes) && setup.subgroup.is_none();
    move |name| {
        let forgotten = same_space && setup.targets.iter().any(|&t| setup.head.classes[t] == name);
        let head_class = setup.head.classes.iter().position(|c| c == name);
        (!forgotten).then_some(head_class.unwrap_or(OUTSIDE_HEAD))
    }
}

/// The label [`kept`] gives a retain image whose class the head does not have.
const OUTSIDE_HEAD: usize = usize::MAX;

/// Whether every class of `classes` is also a class of `head`.
fn same_label_space(classes: &[String], head: &[String]) -> bool {
    classes.iter().all(|c| head.contains(c))
}

fn no_image_to_keep(role: &'static str, real: &Dataset) -> DataError {
    DataError {
        role,
        dataset: real.name.clone(),
        problem: "no readable image of a class to keep".into(),
    }
}

/// Pictures of every class of the head but the forgotten ones, synthesised from the model for
/// the retain term when the user gave no retain images.
fn synthetic_retain_images(
    setup: &Setup,
    options: &SyntheticOptions,
    heads: Tensor<2>,
) -> Tensor<4> {
    let kept: Vec<usize> = (0..setup.head.classes.len())
        .filter(|c| !setup.targets.contains(c))
        .flat_map(|c| std::iter::repeat_n(c, options.retain_per_class.max(1)))
        .collect();
    let mut synthetic = options.clone();
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
fn real_retain_images(setup: &Setup, real: &Dataset) -> Result<Tensor<4>, DataError> {
    let (images, _, _) = preprocess_where(setup, real, "retain", kept(setup, real));
    images.ok_or_else(|| no_image_to_keep("retain", real))
}

/// The images of `dataset` for which `label` gives a label (others are skipped),
/// preprocessed into one tensor on the model's device, with those labels and their captions;
/// `None` when no image was kept. Unreadable images are skipped with a warning naming `role`.
fn preprocess_where(
    setup: &Setup,
    dataset: &Dataset,
    role: &str,
    label: impl Fn(&str) -> Option<usize>,
) -> (Option<Tensor<4>>, Vec<usize>, Vec<Option<String>>) {
    let preprocessor = &setup.loaded.preprocessor;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut captions = Vec::new();
    for item in &dataset.items {
        let Some(kept) = label(&dataset.classes[item.label]) else {
            continue;
        };
        match item.source.image() {
            Ok(image) => {
                pixels.extend(preprocessor.apply(&image));
                labels.push(kept);
                captions.push(item.caption.clone());
            }
            Err(error) => tracing::warn!("skipping unreadable {role} image: {error}"),
        }
    }
    if labels.is_empty() {
        return (None, labels, captions);
    }
    let side = preprocessor.size;
    let images = Tensor::from_data(
        TensorData::new(pixels, [labels.len(), 3, side, side]),
        &setup.model.device(),
    );
    (Some(images), labels, captions)
}

/// Preprocessed images with the head label and the caption (if any) of each.
type LabelledImages = (Tensor<4>, Vec<usize>, Vec<Option<String>>);

/// The user's images of the target classes in `real` (its other images are skipped),
/// preprocessed, with their head labels and captions; `role` names the set in messages.
fn real_images_of_targets(
    setup: &Setup,
    real: &Dataset,
    role: &'static str,
) -> Result<LabelledImages, DataError> {
    let (images, labels, captions) = preprocess_where(setup, real, role, |name| {
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
        return Err(DataError {
            role,
            dataset: real.name.clone(),
            problem: format!("no readable image is labelled {}", wanted.join(" or ")),
        });
    };
    Ok((images, labels, captions))
}

#[cfg(test)]
mod tests {
    use super::{same_label_space, subgroup_names};

    #[test]
    fn a_subgroup_name_rivals_the_same_name_of_every_kept_class() {
        let shapes = names(&["circle", "star", "heart"]);
        assert_eq!(
            subgroup_names("red star", &shapes, &[1]),
            names(&["red star", "red circle", "red heart"])
        );
        // A name that does not say its class has nothing to be swapped for.
        assert_eq!(
            subgroup_names("marmoset", &names(&["monkey", "cat"]), &[0]),
            names(&["marmoset"])
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_shared_word_from_another_label_space_is_not_the_forgotten_class() {
        let fruits = names(&["apple", "banana", "orange", "lemon", "grape"]);
        assert!(same_label_space(&names(&["orange", "apple"]), &fruits));
        assert!(!same_label_space(
            &names(&["red", "orange", "blue"]),
            &fruits
        ));
    }
}

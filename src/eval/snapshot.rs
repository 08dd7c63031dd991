//! Everything an unlearning run measures about one model state, taken before and after so the
//! two can be compared number by number.

use serde::Serialize;

use burn::tensor::Tensor;

use super::EmbeddedImages;
use super::interval::Estimate;
use super::retrieval::{AtRanks, PairRecall, image_from_image, image_from_text, pair_recall};
use super::{DatasetAccuracy, class_embeddings, classify, embed_dataset, embed_items, zero_shot};
use crate::clip::{host_values, index_tensor, normalize};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;

/// Images per forward pass during evaluation.
const BATCH: usize = 250;

/// Generic templates tried on top of the dataset's own: forgetting should not hinge on the
/// exact wording of the prompt.
const EXTRA_TEMPLATES: [&str; 3] = ["{}", "a photo of the {}.", "an image of a {}."];

/// What to measure.
pub struct EvalPlan {
    /// The dataset whose classes form the zero-shot head (the forget dataset).
    pub head: Dataset,
    /// Indices of the forgotten classes in `head.classes`.
    pub targets: Vec<usize>,
    /// Other datasets whose accuracy should not drop.
    pub others: Vec<Dataset>,
    /// Query images per class for image-from-image retrieval (0: skip retrieval).
    pub retrieval_per_class: usize,
    /// Real pictures never trained on: those of the forgotten classes (matched by name) are
    /// measured against the head, so an audit can judge the class on pictures the method
    /// never saw.
    pub verify: Option<Dataset>,
    /// Whether snapshots keep the head's embeddings on the host for the embedding map;
    /// copying them costs memory and time that a run without a map should not pay.
    pub keep_embeddings: bool,
    /// The subgroup's and its siblings' pictures, when the run forgets a subgroup.
    pub subgroup: Option<SubgroupPlan>,
}

/// The pictures a subgroup scenario is judged on: the subgroup and its siblings among the
/// head's classes, the subgroup under other heads among theirs.
pub struct SubgroupPlan {
    /// What the subgroup is called.
    pub name: String,
    /// Pictures of the subgroup: they must no longer be recognised.
    pub target: Dataset,
    /// Pictures of its sibling subgroups: they must stay recognised.
    pub siblings: Dataset,
    /// The subgroup under other heads: each must fall too.
    pub also_forgotten: Vec<Dataset>,
}

/// A subgroup scenario's pictures, measured.
#[derive(Clone, Debug)]
pub struct SubgroupAccuracy {
    /// The subgroup's pictures.
    pub target: DatasetAccuracy,
    /// The siblings' pictures.
    pub siblings: DatasetAccuracy,
    /// The subgroup under each other head.
    pub also_forgotten: Vec<DatasetAccuracy>,
}

impl EvalPlan {
    /// Whether class `name` is one of the forgotten ones.
    pub fn is_target(&self, name: &str) -> bool {
        self.targets.iter().any(|&t| self.head.classes[t] == name)
    }
}

/// Target-class accuracy with one prompt template.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateAccuracy {
    /// The template, `{}` standing for the class name.
    pub template: String,
    /// Accuracy on the forgotten classes' images.
    pub target: Option<Estimate>,
}

/// Retrieval of the forgotten classes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Retrieval {
    /// Class name → images (precision).
    pub image_from_text: AtRanks,
    /// Image → images of the same class (precision).
    pub image_from_image: AtRanks,
    /// Image ↔ caption recall on the forget pairs (images of the forgotten classes) and on
    /// the retain pairs (the rest), when the forget dataset has captions.
    pub pairs: Option<PairSets>,
}

/// Pair recall on the forget and the retain pairs of the forget dataset.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PairSets {
    /// Pictures of the forgotten classes with their captions (Df).
    pub forget: PairRecall,
    /// Pictures of the other classes with their captions (Dr).
    pub retain: PairRecall,
}

/// Most pairs of each set that pair recall ranks: enough for a stable measure, few enough
/// that the score matrix stays small.
const MAX_PAIRS: usize = 1000;

/// Pair recall on the images of `images` whose class is forgotten (`forget = true`) or
/// kept, at most [`MAX_PAIRS`], with their captions from `head`; `None` when an item has no
/// caption.
fn pair_set(
    model: &LoadedModel,
    plan: &EvalPlan,
    images: &EmbeddedImages,
    forget: bool,
) -> Option<PairRecall> {
    let rows: Vec<usize> = (0..images.labels.len())
        .filter(|&r| plan.targets.contains(&images.labels[r]) == forget)
        .take(MAX_PAIRS)
        .collect();
    let captions: Vec<String> = rows
        .iter()
        .map(|&r| plan.head.items[images.items[r]].caption.clone())
        .collect::<Option<_>>()?;
    if rows.is_empty() {
        return Some(PairRecall::default());
    }
    let picked = images
        .embeds
        .clone()
        .select(0, index_tensor(&rows, &images.embeds.device()));
    let texts: Vec<Tensor<2>> = captions
        .chunks(BATCH)
        .map(|chunk| normalize(model.embed_texts(chunk)).detach())
        .collect();
    Some(pair_recall(&picked, &Tensor::cat(texts, 0), &captions))
}

/// One model state, measured.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Zero-shot accuracy on the forget dataset, per class.
    pub head: DatasetAccuracy,
    /// Accuracy on the forgotten classes' images (`None` when the dataset has none).
    pub target: Option<Estimate>,
    /// Accuracy on the other classes of the forget dataset.
    pub other_classes: Option<Estimate>,
    /// Accuracy on each other dataset.
    pub others: Vec<DatasetAccuracy>,
    /// Target accuracy under single templates.
    pub templates: Vec<TemplateAccuracy>,
    /// Retrieval of the forgotten classes.
    pub retrieval: Option<Retrieval>,
    /// Accuracy on the verification pictures of the forgotten classes, when the plan has any.
    pub verification: Option<Estimate>,
    /// The embeddings the zero-shot head compared, kept for the embedding map (empty when the
    /// plan keeps none).
    pub embeddings: HeadEmbeddings,
    /// The subgroup scenario's pictures, when the plan has one.
    pub subgroup: Option<SubgroupAccuracy>,
}

/// The forget dataset's image embeddings and its class embeddings, copied to the host.
#[derive(Clone, Default)]
pub struct HeadEmbeddings {
    /// Width of every embedding.
    pub dim: usize,
    /// `[rows × dim]` normalised image embeddings, row-major.
    pub images: Vec<f32>,
    /// The dataset item of each image row.
    pub items: Vec<usize>,
    /// The label of each image row.
    pub labels: Vec<usize>,
    /// `[classes × dim]` normalised class embeddings (each class's prompts averaged).
    pub classes: Vec<f32>,
}

impl HeadEmbeddings {
    fn of(images: &EmbeddedImages, classes: &Tensor<2>) -> Self {
        Self {
            dim: classes.dims()[1],
            images: host_values(images.embeds.clone()),
            items: images.items.clone(),
            labels: images.labels.clone(),
            classes: host_values(classes.clone()),
        }
    }
}

impl std::fmt::Debug for HeadEmbeddings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HeadEmbeddings {{ {} images and {} classes of {} dimensions }}",
            self.items.len(),
            self.classes.len() / self.dim.max(1),
            self.dim
        )
    }
}

/// Accuracy on the pictures of `plan.verify` whose class is a forgotten class of the head,
/// classified among all the head's classes (`None` without such pictures).
fn verification(model: &LoadedModel, plan: &EvalPlan, heads: Tensor<2>) -> Option<Estimate> {
    let verify = plan.verify.as_ref()?;
    let head_label = |label: usize| {
        let name = &verify.classes[label];
        plan.is_target(name)
            .then(|| plan.head.classes.iter().position(|c| c == name))
            .flatten()
    };
    let indices: Vec<usize> = (0..verify.items.len())
        .filter(|&i| head_label(verify.items[i].label).is_some())
        .collect();
    if indices.is_empty() {
        return None;
    }
    let mut images = embed_items(model, verify, &indices, BATCH);
    for label in &mut images.labels {
        *label = head_label(*label).expect("only target pictures were embedded");
    }
    Some(classify(&verify.name, &plan.head.classes, &images, heads).estimate())
}

/// Measures `model` as `plan` says.
pub fn measure(model: &LoadedModel, plan: &EvalPlan) -> Snapshot {
    let head = &plan.head;
    let images = embed_dataset(model, head, BATCH);
    let heads = class_embeddings(model, &head.classes, &head.templates);
    let accuracy = classify(&head.name, &head.classes, &images, heads.clone());
    let mut templates: Vec<String> = head.templates.clone();
    for extra in EXTRA_TEMPLATES {
        if !templates.iter().any(|t| t == extra) {
            templates.push(extra.to_string());
        }
    }
    let templates = templates
        .into_iter()
        .map(|template| {
            let single = class_embeddings(model, &head.classes, std::slice::from_ref(&template));
            let result = classify(&head.name, &head.classes, &images, single);
            TemplateAccuracy {
                target: result.estimate_of(|c| plan.is_target(c)),
                template,
            }
        })
        .collect();
    let retrieval = (plan.retrieval_per_class > 0).then(|| Retrieval {
        image_from_text: image_from_text(&images, &heads, &plan.targets),
        image_from_image: image_from_image(&images, &plan.targets, plan.retrieval_per_class),
        pairs: pair_set(model, plan, &images, true)
            .zip(pair_set(model, plan, &images, false))
            .map(|(forget, retain)| PairSets { forget, retain }),
    });
    Snapshot {
        embeddings: if plan.keep_embeddings {
            HeadEmbeddings::of(&images, &heads)
        } else {
            HeadEmbeddings::default()
        },
        target: accuracy.estimate_of(|c| plan.is_target(c)),
        other_classes: accuracy.estimate_of(|c| !plan.is_target(c)),
        verification: verification(model, plan, heads.clone()),
        head: accuracy,
        others: plan
            .others
            .iter()
            .map(|d| zero_shot(model, d, &d.templates, BATCH))
            .collect(),
        templates,
        retrieval,
        subgroup: plan.subgroup.as_ref().map(|s| {
            let measure = |d: &Dataset| zero_shot(model, d, &d.templates, BATCH);
            SubgroupAccuracy {
                target: measure(&s.target),
                siblings: measure(&s.siblings),
                also_forgotten: s.also_forgotten.iter().map(measure).collect(),
            }
        }),
    }
}

//! **Subgroup forgetting**: forget, remind, restore ("Targeted Forgetting of Image Subgroups
//! in CLIP Models", CVPR 2025). Forgets a subgroup of a class (red stars) while the class's
//! other subgroups (every other star) and everything else stay recognised.
//!
//! 1. **Forgetting.** Each layer `l` is ranked by its relative Fisher information of the
//!    image–text similarity,
//!
//!    ```text
//!    I_l = E_forget[g_l²] / E_retain[g_l²],   g = ∇_θ cos(f(x), g(t))
//!    ```
//!
//!    (forget pictures with a prompt of their class; retain pictures with theirs, or their
//!    caption when the head does not have their class); low-rank
//!    adapters go on the `layers` weight matrices with the highest `I_l`, everything else is
//!    frozen, and the adapters minimise the forget pictures' similarity to their class,
//!    `L_f = mean_i cos(f(xᵢ), g(t_yᵢ))` (`forget_loss = "similarity"`), until the forget (or
//!    verification) pictures are recognised below `stop_accuracy`. That loss has no floor: it
//!    pushes the subgroup ever further from its class and drags everything near it along, so
//!    the default is a margin loss that stops pushing a picture once another class of the head
//!    leads its own, `L_f = mean_i max(0, cos(f(xᵢ), c_yᵢ) − max_{c≠yᵢ} cos(f(xᵢ), c) + m)`
//!    with `c` the head's class embeddings (with `forget_name`, the same for the subgroup's
//!    own name against its rivals, the name with its class word replaced by another class:
//!    "red star" must trail "red circle", "red heart", …).
//! 2. **Reminding.** On a ResNet, each retain picture gets a perturbation `δᵢ` that moves the
//!    features it raises at every batch norm towards the statistics the norm keeps from
//!    pre-training, `L_a = Σ_l ‖μ_l(x+δ) − BN_l^μ‖ + ‖σ_l(x+δ) − BN_l^σ‖`; a ViT has no batch
//!    norm and skips this. Then the adapters are fine-tuned with CLIP's contrastive loss on
//!    the (aligned) retain pairs, keeping an exponential moving average of the weights,
//!    `θ_ema ← β·θ_ema + (1 − β)·θ` (with LoRA, `θ` is the adapters' factors, so the average
//!    is itself a set of adapters, which the result saves). Two terms go beyond the paper,
//!    because a subgroup that differs from its siblings in one attribute (colour) behaves
//!    unlike the paper's ImageNet subgroups: the zero-shot cross-entropy of each retain
//!    picture's class (siblings' captions share the class word, so the contrastive loss alone
//!    never asks them to stay that class),
//!    weighted so that every class counts alike (the siblings are often half the retain
//!    pictures, and an unweighted loss drew arrows and stars to "triangle"), and
//!    `remind_forget_weight · L_f` (without it, reminding the siblings brings the subgroup
//!    back); `remind_forget_weight = 0` is the paper's reminding. Forgetting and reminding
//!    both also hold the retain pairs where the original model put them,
//!    `keep_weight · (KL(p₀(·|x) ‖ p(·|x)) + 1 − cos(f(x), f₀(x)) + 1 − cos(g(t), g₀(t)))`
//!    (their answers among the head's classes, their pictures' and their captions'
//!    embeddings, which other heads read), plus `1 − cos(g(r), g₀(r))` for the rivals `r`
//!    of the subgroup's name (forgetting "red star" must not move "red heart", or red squares
//!    become red hearts), which the paper leaves to reminding alone (`keep_weight = 0`).
//! 3. **Restoring.** A model soup `θ = α·θ_unlearned + (1 − α)·θ_original`: `α` is searched
//!    on a calibration set (the scenario's calibration pictures, ideally the whole dataset but
//!    the subgroup, or else retain pictures held out of training; with the verification or
//!    forget pictures) for the best Score with the target still below `soup_forget_at_most`.
//!
//! Every stage and component can be switched off (the paper's ablations): `relative_fisher
//! = false` adapts every weight matrix, `lora = false` fine-tunes the chosen layers
//! themselves, `alignment = false` reminds on the pictures as they are, `ema_decay = 0`
//! keeps the last weights, `soup = false` keeps the unlearned model.

use std::collections::HashSet;

use burn::module::ParamId;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{
    MethodError, Preset, UnlearningMethod, contrastive_pair_needs, parse_options, preset_table,
    shared_help,
};
use crate::clip::lora::{self, LoraShape};
use crate::clip::{Clip, VisionTower, host_values, index_tensor, normalize};
use crate::curation::{DataNeeds, Pairs, Scenario};
use crate::eval::ensemble;
use crate::train::clip_adam;
use crate::train::loss::{contrastive_loss, weighted_cross_entropy};
use crate::unlearn::job::{Method, StepReport};
use crate::unlearn::params::{
    LayerInfo, interpolate, layers, masked_step, relative_fisher, similarity_fisher, top_layers,
};
use crate::unlearn::synthetic::normalised_step;
use crate::unlearn::toolkit::{
    Temperature, agreement, answer_divergence, embedding_logits, forget_accuracy, take_pairs,
    window, zero_shot_answers,
};

/// The subgroup method.
pub struct Subgroup;

/// The subgroup method's knobs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SubgroupOptions {
    /// Rank layers by relative Fisher information (off: adapt every weight matrix).
    pub relative_fisher: bool,
    /// K: how many weight matrices are adapted.
    pub layers: usize,
    /// Pictures of each set the Fisher information is estimated on (one backward pass each).
    pub fisher_images: usize,
    /// Train low-rank adapters (off: fine-tune the chosen layers themselves).
    pub lora: bool,
    /// Rank of each adapter.
    pub rank: usize,
    /// Adapter scale numerator (the product is scaled by alpha / rank).
    pub alpha: f64,
    /// Adam step size while forgetting.
    pub learning_rate: f64,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Pictures per step, of forget pictures and of retain pairs.
    pub batch: usize,
    /// Most forgetting steps.
    pub forget_steps: usize,
    /// What the forgetting loss asks of each forget picture.
    pub forget_loss: ForgetLoss,
    /// With `forget_loss = "margin"`: by how much cosine similarity the picture's class must
    /// trail the head's best other class.
    pub margin: f32,
    /// With `forget_loss = "margin"`: the subgroup's own name (`red star`) must trail its best
    /// rival as well (the name with its class word replaced by another class of the head,
    /// `red circle`), so a finer head forgets it too.
    pub forget_name: bool,
    /// Weight of holding the retain pairs where the original model put them (their answers
    /// among the head's classes, their pictures' and captions' embeddings), and the rivals
    /// of the subgroup's name, while forgetting and reminding (0: the paper's method, which
    /// relies on reminding alone).
    pub keep_weight: f32,
    /// Forgetting ends once the forget (or verification) pictures are recognised at or below
    /// this share.
    pub stop_accuracy: f64,
    /// Align the retain pictures' features to the batch-norm statistics before reminding
    /// (ResNet only).
    pub alignment: bool,
    /// Steps of the alignment (each moves one batch of retain pictures).
    pub alignment_steps: usize,
    /// Size of each alignment step, per unit of mean |gradient| (normalised pixels).
    pub alignment_step_size: f32,
    /// Contrastive steps on the retain pairs (0: no reminding).
    pub remind_steps: usize,
    /// Adam step size while reminding.
    pub remind_learning_rate: f64,
    /// Weight of the forgetting loss kept on while reminding (0: the paper's reminding, which
    /// lets a subgroup that differs from its siblings in one attribute come back).
    pub remind_forget_weight: f32,
    /// β of the weights' moving average while reminding (0: keep the last weights).
    pub ema_decay: f64,
    /// Search a model soup with the original model.
    pub soup: bool,
    /// The soup must keep the target at or below this accuracy.
    pub soup_forget_at_most: f64,
    /// Share of the retain pictures held out of training to calibrate the soup when the
    /// scenario has no calibration pictures of its own.
    pub calibration_share: f64,
}

/// What the forgetting loss asks of each forget picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgetLoss {
    /// Lower its similarity to its class until another class of the head leads by `margin`,
    /// then leave it: the subgroup stops being recognised with the least change.
    Margin,
    /// The paper's `L_f`: lower its similarity to its class, without end.
    Similarity,
}

impl Default for SubgroupOptions {
    fn default() -> Self {
        Self {
            relative_fisher: true,
            layers: 24,
            fisher_images: 32,
            lora: true,
            rank: 8,
            alpha: 8.0,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch: 16,
            forget_steps: 60,
            forget_loss: ForgetLoss::Margin,
            margin: 0.1,
            forget_name: true,
            keep_weight: 3.0,
            stop_accuracy: 0.0,
            alignment: true,
            alignment_steps: 40,
            alignment_step_size: 0.01,
            remind_steps: 60,
            remind_learning_rate: 5e-4,
            remind_forget_weight: 10.0,
            ema_decay: 0.9,
            soup: true,
            soup_forget_at_most: 0.05,
            calibration_share: 0.25,
        }
    }
}

impl UnlearningMethod for Subgroup {
    fn name(&self) -> &'static str {
        "subgroup"
    }

    fn title(&self) -> &'static str {
        "Subgroup forgetting (forget, remind, restore)"
    }

    fn summary(&self) -> &'static str {
        "Forgets one subgroup of a class (red stars) and keeps its siblings (the other stars): \
         low-rank adapters on the layers that matter most to the subgroup and least to its \
         siblings push the subgroup's pictures away from their class, the siblings' pictures \
         (aligned to what the batch norms remember) remind the model of the rest, and a soup \
         with the original model restores what was lost elsewhere."
    }

    fn needs(&self) -> &'static str {
        "Real captioned pictures of the subgroup to forget and of its sibling subgroups to keep; \
         verification pictures of the subgroup are recommended (they calibrate the soup)."
    }

    fn defaults(&self) -> toml::Table {
        toml::Table::try_from(SubgroupOptions::default()).expect("the settings always serialise")
    }

    fn help(&self, key: &str) -> &'static str {
        match key {
            "relative_fisher" => {
                "Choose the layers that matter most to the subgroup and least to its siblings (off: the paper's ablation, every weight matrix)."
            }
            "layers" => "How many weight matrices are changed.",
            "fisher_images" => {
                "Pictures of each set used to rank the layers (one backward pass each)."
            }
            "lora" => {
                "Train small low-rank adapters instead of the layers themselves (off: the paper's ablation, full fine-tuning)."
            }
            "rank" => "Rank of each adapter: higher changes more.",
            "alpha" => "Scale of the adapters (their product is scaled by alpha / rank).",
            "batch" => "Forget pictures and retain pairs per step (each).",
            "forget_steps" => "Most steps of the forgetting stage.",
            "forget_loss" => {
                "\"margin\": push each subgroup picture only until another class leads its own; \"similarity\": the paper's loss, which lowers the picture's similarity to its class without end and harms more."
            }
            "margin" => {
                "With the margin loss: by how much similarity another class must lead the picture's own."
            }
            "forget_name" => {
                "With the margin loss: forget the subgroup under its own name too (a finer head, such as colour × shape): the name must trail the same name with another class word (red circle for red star)."
            }
            "keep_weight" => {
                "How strongly the retain pairs are held where the original model put them while forgetting and reminding: their answers among the head's classes and their pictures' and captions' embeddings, which other heads read; with forget_name, the rival names too (0: the paper's method)."
            }
            "stop_accuracy" => {
                "Forgetting ends once the subgroup's pictures are recognised at or below this share."
            }
            "alignment" => {
                "Before reminding, nudge the retain pictures so their features match what the batch norms remember of pre-training (ResNet only; off: the paper's ablation)."
            }
            "alignment_steps" => "Steps of that alignment.",
            "alignment_step_size" => "Size of each alignment step on the pictures.",
            "remind_steps" => "Contrastive steps on the retain pairs after forgetting (0: none).",
            "remind_learning_rate" => "Step size while reminding.",
            "remind_forget_weight" => {
                "Weight of the forgetting loss while reminding, so the subgroup stays forgotten as its siblings are reminded (0: the paper's reminding)."
            }
            "ema_decay" => {
                "Weight of the running average of the weights while reminding (0: keep the last weights)."
            }
            "soup" => {
                "Blend the result with the original model, the blend searched on held-out pictures (off: the paper's ablation)."
            }
            "soup_forget_at_most" => {
                "The blend must still recognise the subgroup at or below this share."
            }
            "calibration_share" => {
                "Share of the retain pictures kept out of training to choose the blend, when no calibration pictures are given."
            }
            other => shared_help(other),
        }
    }

    fn preset(&self, preset: Preset) -> toml::Table {
        let text = match preset {
            Preset::Gentle => "layers = 8\nrank = 4\nremind_forget_weight = 0.0\n",
            Preset::Default => "",
            Preset::Careful => "remind_steps = 100\n",
            Preset::Aggressive => "learning_rate = 3e-3\nremind_forget_weight = 20.0\n",
        };
        preset_table(text)
    }

    fn ablations(&self) -> Vec<(&'static str, toml::Table)> {
        [
            ("no relative Fisher", "relative_fisher = false"),
            ("no alignment", "alignment = false"),
            ("no soup", "soup = false"),
            ("no LoRA", "lora = false"),
            ("no reminding", "remind_steps = 0"),
            ("no keep term", "keep_weight = 0.0"),
        ]
        .into_iter()
        .map(|(name, text)| (name, preset_table(text)))
        .collect()
    }

    fn data_needs(&self, settings: &toml::Table) -> Result<DataNeeds, MethodError> {
        // Reminding is contrastive.
        let options: SubgroupOptions = parse_options(self.name(), settings)?;
        contrastive_pair_needs(self.name(), options.batch)
    }

    fn start(
        &self,
        settings: &toml::Table,
        scenario: Scenario,
        seed: u64,
    ) -> Result<Box<dyn Method>, MethodError> {
        let options: SubgroupOptions = parse_options(self.name(), settings)?;
        let mut scenario = scenario;
        let (forget, retain) = take_pairs(&mut scenario, self.name())?;
        let retain = retain.shuffled(seed);
        let count = retain.captions.len();
        let held = ((count as f64 * options.calibration_share).round() as usize).min(count - 1);
        let given = scenario.calibration.take();
        let subgroup_prompts = scenario.subgroup_prompts.take();
        let calibration_given = given.is_some();
        let (retain, calibration) = if !options.soup || given.is_some() || held == 0 {
            (retain, given)
        } else {
            let (trained, held) = retain.split(count - held);
            (trained, Some(held.images))
        };
        let forget_texts = scenario
            .labels
            .iter()
            .enumerate()
            .map(|(i, &label)| class_prompt(&scenario, label, i))
            .collect();
        let retain_texts = retain
            .labels
            .iter()
            .zip(&retain.captions)
            .enumerate()
            .map(|(i, (label, caption))| match label {
                Some(label) => class_prompt(&scenario, *label, i),
                None => caption.clone(),
            })
            .collect();
        let mut retain_class_counts = vec![0; scenario.prompts.len() / scenario.templates];
        for label in retain.labels.iter().flatten() {
            retain_class_counts[*label] += 1;
        }
        let remind = options.remind_steps > 0;
        let max_steps = options.forget_steps
            + if remind { options.alignment_steps } else { 0 }
            + options.remind_steps
            + 1;
        Ok(Box::new(SubgroupRun {
            optimizer: clip_adam(options.weight_decay),
            shifts: Vec::new(),
            options,
            forget,
            forget_texts,
            retain_texts,
            retain,
            calibration,
            scenario,
            subgroup_prompts,
            seed,
            trained: None,
            selected: HashSet::new(),
            retain_class_counts,
            keep: None,
            ema: None,
            final_adapters: None,
            stage: Stage::Forget,
            stage_step: 0,
            max_steps,
            calibration_answers: None,
            calibration_given,
            notes: Vec::new(),
        }))
    }
}

/// The prompt of class `label` for picture `i`: the head's templates in turn.
fn class_prompt(scenario: &Scenario, label: usize, i: usize) -> Vec<u32> {
    scenario.prompts[label * scenario.templates + i % scenario.templates].clone()
}

/// The text side of one step, every prompt through the text tower once and shared by the
/// loss terms that read it.
struct StepTexts {
    /// The head's class embeddings `[classes, embed]` (templates ensembled).
    heads: Tensor<2>,
    /// The subgroup's name and then its rivals `[names, embed]` (templates ensembled), when
    /// the name is forgotten too.
    names: Option<Tensor<2>>,
    /// Each rival prompt's normalised embedding `[prompts, embed]`, when there are rivals.
    rivals: Option<Tensor<2>>,
}

/// Step `step`'s window of retain pairs through the model being trained, each encoded once:
/// normalised embeddings of the pictures as trained on (with their alignment shifts), of the
/// pictures as they are (the keep term compares these with the original's view; the same
/// tensor while nothing is shifted) and of the captions.
struct RetainView {
    start: usize,
    size: usize,
    trained: Tensor<2>,
    plain: Tensor<2>,
    captions: Tensor<2>,
}

/// The original model's view of the retain pairs, which the keep term holds the model to:
/// each picture's answers among the head's classes, and its picture's and caption's
/// embeddings (other heads, such as colour × shape, read the same embeddings, and every
/// name of every head goes through the same text tower).
struct KeepReference {
    /// Log-probabilities over the head's classes `[n, classes]`.
    answers: Tensor<2>,
    /// Normalised picture embeddings `[n, embed]`.
    images: Tensor<2>,
    /// Normalised caption embeddings `[n, embed]`.
    captions: Tensor<2>,
    /// The rivals of the subgroup's name (`red heart`, `red circle`, … for `red star`), each
    /// prompt's normalised embedding: forgetting the name must not move what the rivals
    /// mean, or red squares become red hearts.
    rivals: Option<Tensor<2>>,
}

impl KeepReference {
    /// The view of `original`, whose step texts are `texts`, on `retain`.
    fn new(original: &Clip, texts: StepTexts, retain: &Pairs) -> Self {
        let images = normalize(original.encode_image(retain.images.clone())).detach();
        let logits = embedding_logits(original, images.clone(), texts.heads, Temperature::Held);
        Self {
            answers: log_softmax(logits, 1).detach(),
            images,
            captions: normalize(original.encode_text(&retain.captions)).detach(),
            rivals: texts.rivals.map(|rivals| rivals.detach()),
        }
    }

    /// KL(original ‖ current) of the answers plus the cosine distances of the picture and
    /// caption embeddings from the original's, on the window `view`, and of the rival
    /// prompts' embeddings in `texts`.
    fn drift(&self, model: &Clip, view: &RetainView, texts: &StepTexts) -> Tensor<1> {
        let answers = log_softmax(
            embedding_logits(
                model,
                view.plain.clone(),
                texts.heads.clone(),
                Temperature::Held,
            ),
            1,
        );
        let distance = |now: Tensor<2>, then: Tensor<2>| -(now * then).sum_dim(1).mean() + 1.0;
        let rows = |then: &Tensor<2>| then.clone().narrow(0, view.start, view.size);
        let drift = answer_divergence(rows(&self.answers), answers)
            + distance(view.plain.clone(), rows(&self.images))
            + distance(view.captions.clone(), rows(&self.captions));
        match (&self.rivals, &texts.rivals) {
            (Some(then), Some(now)) => drift + distance(now.clone(), then.clone()),
            _ => drift,
        }
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Forget,
    Align,
    Remind,
    Restore,
}

/// A subgroup-forgetting run in progress.
struct SubgroupRun {
    options: SubgroupOptions,
    /// The subgroup's pictures and captions.
    forget: Pairs,
    /// One prompt of its class per forget picture (the head's templates in turn).
    forget_texts: Vec<Vec<u32>>,
    /// The text each retain picture is compared with when the layers are ranked: its class's
    /// prompt when the head has its class (a sibling of the subgroup), else its caption.
    retain_texts: Vec<Vec<u32>>,
    /// The sibling subgroups' pairs trained on.
    retain: Pairs,
    /// The pictures the soup is chosen on: the scenario's calibration pictures, or retain
    /// pictures held out of training.
    calibration: Option<Tensor<4>>,
    /// The head and the pictures forgetting is judged on.
    scenario: Scenario,
    /// Prompts of the subgroup's own name and its rivals (the head's templates), when it has
    /// one: with `forget_name`, the name must trail its best rival too.
    subgroup_prompts: Option<Vec<Vec<u32>>>,
    seed: u64,
    /// The model being trained (with adapters when `lora`), set up at the first step.
    trained: Option<Clip>,
    /// The layers chosen to change.
    selected: HashSet<ParamId>,
    optimizer: ModuleOptimizer,
    /// The alignment's perturbation of every trained retain picture, normalised pixels;
    /// empty until the alignment starts (a ViT, or a run without alignment, never needs it).
    shifts: Vec<f32>,
    /// How many retain pictures trained on show each head class.
    retain_class_counts: Vec<usize>,
    /// The original model's view of the retain pairs, when `keep_weight` is set.
    keep: Option<KeepReference>,
    /// Moving average of the trained weights while reminding (of the adapters' factors when
    /// `lora`, so the average is itself a set of adapters).
    ema: Option<Clip>,
    /// The final model's adapters and the soup's weight on them, once restored (`lora` only).
    final_adapters: Option<(Clip, f64)>,
    stage: Stage,
    stage_step: usize,
    max_steps: usize,
    /// The original model's answers on the calibration pictures.
    calibration_answers: Option<Vec<usize>>,
    /// Whether the calibration pictures are the scenario's own (else held out of retain).
    calibration_given: bool,
    /// What the run did, for the report.
    notes: Vec<String>,
}

/// How many forgetting steps pass between checks of the stop rule.
const CHECK_EVERY: usize = 5;

impl SubgroupRun {
    /// Ranks the layers, picks the ones to change and attaches the adapters.
    fn prepare(&mut self, model: Clip) -> Clip {
        let all = layers(&model);
        let eligible: Vec<_> = all.iter().filter(|l| l.is_weight_matrix()).collect();
        let k = self.options.layers.min(eligible.len());
        self.selected = if self.options.relative_fisher {
            let n = self.options.fisher_images;
            let take = |pairs: &Pairs, texts: &[Vec<u32>]| {
                let count = texts.len().min(n);
                (
                    pairs.images.clone().narrow(0, 0, count),
                    texts[..count].to_vec(),
                )
            };
            let (images, texts) = take(&self.forget, &self.forget_texts);
            let forget = similarity_fisher(&model, &images, &texts, 1);
            let (images, texts) = take(&self.retain, &self.retain_texts);
            let retain = similarity_fisher(&model, &images, &texts, 1);
            let ratios = relative_fisher(&forget, &retain);
            let mut ranked: Vec<(&String, &f32)> = ratios.iter().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(a.1));
            tracing::debug!(?ranked, "relative Fisher information");
            top_layers(&all, &ratios, |l| l.is_weight_matrix(), k)
        } else {
            eligible.iter().map(|l| l.id).collect()
        };
        // Counted by checkpoint key: a fused projection is one matrix of several parameters.
        let keys = |chosen: &dyn Fn(&&LayerInfo) -> bool| {
            all.iter()
                .filter(|l| l.is_weight_matrix() && chosen(l))
                .map(|l| l.checkpoint_key())
                .collect::<HashSet<_>>()
                .len()
        };
        self.notes.push(format!(
            "{} {} of {} weight matrices{}.",
            if self.options.lora {
                format!("Rank-{} adapters trained on", self.options.rank)
            } else {
                "Fine-tuned".into()
            },
            keys(&|l| self.selected.contains(&l.id)),
            keys(&|_| true),
            if self.options.relative_fisher {
                ", those with the highest relative Fisher information"
            } else {
                " (every one: relative Fisher off)"
            }
        ));
        if self.options.keep_weight > 0.0 {
            let texts = self.step_texts(&model);
            self.keep = Some(KeepReference::new(&model, texts, &self.retain));
            self.notes.push(format!(
                "Keep term (weight {}): {} retain pairs{} were held where the original model put them (their answers among the head's classes, their pictures' and captions' embeddings) while forgetting and reminding.",
                self.options.keep_weight,
                self.retain.captions.len(),
                match self
                    .keep
                    .as_ref()
                    .and_then(|k| k.rivals.as_ref())
                    .map_or(0, |rivals| rivals.dims()[0])
                {
                    0 => String::new(),
                    prompts => format!(" and {prompts} prompts of the name's rivals"),
                }
            ));
        }
        if self.options.lora {
            let shape = LoraShape {
                rank: self.options.rank,
                alpha: self.options.alpha,
            };
            lora::attach(model, &self.selected, shape, self.seed)
        } else {
            model
        }
    }

    /// The trained model as an ordinary one (adapters merged).
    fn merged(&self) -> Clip {
        self.plain(self.trained.clone().expect("set up at the first step"))
    }

    /// `model` (the trained model or its average) with its adapters merged, when it has any.
    fn plain(&self, model: Clip) -> Clip {
        if self.options.lora {
            lora::merge(model)
        } else {
            model
        }
    }

    /// One optimiser step on the chosen parameters.
    fn update(&mut self, loss: Tensor<1>, learning_rate: f64) {
        let model = self.trained.take().expect("set up at the first step");
        let gradients = loss.backward();
        let model = if self.options.lora {
            let gradients = GradientsParams::from_grads(gradients, &model);
            self.optimizer.step(learning_rate, model, gradients)
        } else {
            masked_step(
                &mut self.optimizer,
                learning_rate,
                model,
                gradients,
                &self.selected,
            )
        };
        self.trained = Some(model);
    }

    /// The subgroup's name and its rivals through the head's templates, when the name is
    /// forgotten too.
    fn name_prompts(&self) -> Option<&Vec<Vec<u32>>> {
        self.subgroup_prompts
            .as_ref()
            .filter(|_| self.options.forget_name)
    }

    /// The head's prompts and the name's, through `model`'s text tower in one pass.
    fn step_texts(&self, model: &Clip) -> StepTexts {
        let templates = self.scenario.templates;
        let head = self.scenario.prompts.len();
        let mut prompts = self.scenario.prompts.clone();
        prompts.extend(self.name_prompts().into_iter().flatten().cloned());
        let names = prompts.len() - head;
        let embeddings = model.encode_text(&prompts);
        let part = |from: usize, count: usize| embeddings.clone().narrow(0, from, count);
        StepTexts {
            heads: ensemble(part(0, head), templates),
            names: (names > 0).then(|| ensemble(part(head, names), templates)),
            rivals: (names > templates)
                .then(|| normalize(part(head + templates, names - templates))),
        }
    }

    /// Step `step`'s window of retain pairs through `model`.
    fn retain_view(&self, model: &Clip, step: usize) -> RetainView {
        let (images, start, size) = self.retain_window(step);
        let trained = normalize(model.encode_image(images));
        let plain = if self.shifts.is_empty() {
            trained.clone()
        } else {
            let images = self.retain.images.clone().narrow(0, start, size).detach();
            normalize(model.encode_image(images))
        };
        RetainView {
            start,
            size,
            trained,
            plain,
            captions: normalize(model.encode_text(&self.retain.captions[start..start + size])),
        }
    }

    /// `L_f` on step `step`'s window of forget pictures: their mean cosine similarity to a
    /// prompt of their class, or with the margin loss, by how much their class still leads the
    /// head's other classes (plus the margin), each picture's term ending once it does not.
    /// `texts` are needed by the margin loss only.
    fn forget_loss(&self, step: usize, texts: Option<&StepTexts>) -> Tensor<1> {
        let count = self.forget_texts.len();
        let (start, size) = window(step, self.options.batch, count);
        let model = self.trained.as_ref().expect("set up at the first step");
        let images = self.forget.images.clone().narrow(0, start, size).detach();
        let image = normalize(model.encode_image(images));
        if self.options.forget_loss == ForgetLoss::Similarity {
            let text = normalize(model.encode_text(&self.forget_texts[start..start + size]));
            return (image * text).sum_dim(1).mean();
        }
        let texts = texts.expect("the margin loss is given the step's texts");
        let head = image.clone().matmul(texts.heads.clone().transpose());
        let classes = head.dims()[1];
        let mut own = vec![0.0f32; size * classes];
        for (row, label) in self.forget.labels[start..start + size].iter().enumerate() {
            own[row * classes + label.expect("forget pictures show a head class")] = 1.0;
        }
        let own = Tensor::<2>::from_data(TensorData::new(own, [size, classes]), &head.device());
        let class = (head.clone() * own.clone()).sum_dim(1);
        // Cosines lie in [-1, 1]: 3 below puts the own class out of the running.
        let rival = (head - own * 3.0).max_dim(1);
        let margin = self.options.margin;
        let by_class = relu(class - rival.clone() + margin).mean();
        let Some(names) = &texts.names else {
            return by_class;
        };
        // The name against its rivals (names that share its other attributes), or else
        // against the head's other classes.
        let similarities = image.matmul(names.clone().transpose());
        let names = similarities.dims()[1];
        let name = similarities.clone().narrow(1, 0, 1);
        let name_rival = if names > 1 {
            similarities.narrow(1, 1, names - 1).max_dim(1)
        } else {
            rival
        };
        by_class + relu(name - name_rival + margin).mean()
    }

    /// `keep_weight` × how far the retain window `view` (and the rivals in `texts`) moved
    /// from the original model's view of them (zero when the term is off).
    fn keep_term(&self, view: &RetainView, texts: &StepTexts) -> Tensor<1> {
        let model = self.trained.as_ref().expect("set up at the first step");
        match &self.keep {
            Some(keep) => keep.drift(model, view, texts) * self.options.keep_weight,
            None => Tensor::zeros([1], &self.forget.images.device()),
        }
    }

    /// One step of the forgetting loss on a batch of forget pictures.
    fn forget_step(&mut self) -> StepReport {
        let model = self.trained.as_ref().expect("set up at the first step");
        // The paper's loss without the keep term reads no prompts of the head.
        let texts = (self.options.forget_loss == ForgetLoss::Margin || self.keep.is_some())
            .then(|| self.step_texts(model));
        let mut loss = self.forget_loss(self.stage_step, texts.as_ref());
        if let Some(texts) = &texts
            && self.keep.is_some()
        {
            let view = self.retain_view(model, self.stage_step);
            loss = loss + self.keep_term(&view, texts);
        }
        let value = host_values(loss.clone().detach())[0];
        self.update(loss, self.options.learning_rate);
        self.stage_step += 1;
        let check = self.stage_step.is_multiple_of(CHECK_EVERY)
            || self.stage_step == self.options.forget_steps;
        let accuracy = check.then(|| forget_accuracy(&self.merged(), &self.scenario));
        if accuracy.is_some_and(|a| a <= self.options.stop_accuracy)
            || self.stage_step >= self.options.forget_steps
        {
            self.next_stage();
        }
        StepReport {
            losses: vec![("forget".into(), value)],
            forget_accuracy: accuracy,
            retain_accuracy: None,
            finished: false,
        }
    }

    /// The retain pictures of step `step`'s window, with their alignment shifts.
    fn retain_window(&self, step: usize) -> (Tensor<4>, usize, usize) {
        let count = self.retain.captions.len();
        let (start, size) = window(step, self.options.batch, count);
        let [_, channels, h, w] = self.retain.images.dims();
        let plane = channels * h * w;
        let images = self.retain.images.clone().narrow(0, start, size).detach();
        if self.shifts.is_empty() {
            return (images, start, size);
        }
        let shifts = Tensor::<4>::from_data(
            TensorData::new(
                self.shifts[start * plane..(start + size) * plane].to_vec(),
                [size, channels, h, w],
            ),
            &self.retain.images.device(),
        );
        (images + shifts, start, size)
    }

    /// Moves one batch of retain pictures' features towards the batch-norm statistics.
    fn align_step(&mut self) -> StepReport {
        let model = self.trained.as_ref().expect("set up at the first step");
        let VisionTower::ResNet(tower) = &model.visual else {
            unreachable!("alignment runs on ResNets only");
        };
        if self.shifts.is_empty() {
            self.shifts = vec![0.0; self.retain.images.shape().num_elements()];
        }
        let (images, start, size) = self.retain_window(self.stage_step);
        let images = images.detach().require_grad();
        let loss = tower.feature_alignment_loss(images.clone());
        let value = host_values(loss.clone().detach())[0];
        let gradients = loss.backward();
        let gradient = host_values(images.grad(&gradients).expect("pictures require gradients"));
        let plane = gradient.len() / size;
        for (i, grad) in gradient.chunks(plane).enumerate() {
            let at = (start + i) * plane;
            normalised_step(
                &mut self.shifts[at..at + plane],
                grad,
                -self.options.alignment_step_size,
            );
        }
        self.stage_step += 1;
        if self.stage_step >= self.options.alignment_steps {
            self.next_stage();
        }
        StepReport {
            losses: vec![("alignment".into(), value)],
            forget_accuracy: None,
            retain_accuracy: None,
            finished: false,
        }
    }

    /// One step on a batch of (aligned) retain pairs, then the moving average. The loss is
    /// CLIP's contrastive loss over the batch's captions plus, for the pictures whose class
    /// the head has, the zero-shot cross-entropy of that class among the head's: siblings of
    /// one class share their caption words for the class, so the contrastive loss alone does
    /// not ask them to stay recognised as it.
    fn remind_step(&mut self) -> StepReport {
        let model = self.trained.as_ref().expect("set up at the first step");
        let texts = self.step_texts(model);
        let view = self.retain_view(model, self.stage_step);
        let (start, size) = (view.start, view.size);
        let pairs = embedding_logits(
            model,
            view.trained.clone(),
            view.captions.clone(),
            Temperature::Trained,
        );
        let mut loss = contrastive_loss(pairs);
        let labelled: Vec<(usize, usize)> = (0..size)
            .filter_map(|i| Some((i, self.retain.labels[start + i]?)))
            .collect();
        if !labelled.is_empty() {
            let device = view.trained.device();
            let rows: Vec<usize> = labelled.iter().map(|(i, _)| *i).collect();
            let labels: Vec<usize> = labelled.iter().map(|(_, l)| *l).collect();
            let picked = view.trained.clone().select(0, index_tensor(&rows, &device));
            let logits = embedding_logits(model, picked, texts.heads.clone(), Temperature::Held);
            // Each class counts alike: the siblings are often half the retain pictures, and
            // an unweighted loss teaches that everything pointed is a triangle.
            let weights: Vec<f32> = labels
                .iter()
                .map(|&label| 1.0 / self.retain_class_counts[label] as f32)
                .collect();
            let weights = Tensor::<1>::from_data(TensorData::new(weights, [labels.len()]), &device);
            loss = loss + weighted_cross_entropy(logits, index_tensor(&labels, &device), weights);
        }
        loss = loss + self.keep_term(&view, &texts);
        if self.options.remind_forget_weight > 0.0 {
            let forget = self.forget_loss(self.stage_step, Some(&texts));
            loss = loss + forget * self.options.remind_forget_weight;
        }
        let value = host_values(loss.clone().detach())[0];
        self.update(loss, self.options.remind_learning_rate);
        let current = self.trained.clone().expect("set up at the first step");
        let decay = self.options.ema_decay;
        self.ema = Some(match self.ema.take() {
            Some(average) if decay > 0.0 => interpolate(&current, average, 1.0 - decay),
            _ => current,
        });
        self.stage_step += 1;
        let done = self.stage_step >= self.options.remind_steps;
        if done {
            self.next_stage();
        }
        StepReport {
            losses: vec![("remind".into(), value)],
            forget_accuracy: done
                .then(|| forget_accuracy(self.ema.as_ref().expect("set above"), &self.scenario)),
            retain_accuracy: None,
            finished: false,
        }
    }

    /// The soup's Score on the calibration set: the share of the target forgotten, averaged
    /// with the share of calibration pictures that keep their original answer.
    fn calibration_score(&mut self, model: &Clip, original: &Clip, before: f64) -> (f64, f64) {
        let forget = forget_accuracy(model, &self.scenario);
        let forgotten = if before > 0.0 {
            1.0 - (forget / before).min(1.0)
        } else {
            1.0
        };
        let Some(images) = self.calibration.clone() else {
            return (forgotten, forget);
        };
        if self.calibration_answers.is_none() {
            self.calibration_answers = Some(zero_shot_answers(original, &self.scenario, &images));
        }
        let now = zero_shot_answers(model, &self.scenario, &images);
        let kept = agreement(&now, self.calibration_answers.as_ref().expect("set above"));
        ((forgotten + kept) / 2.0, forget)
    }

    /// The final model: the soup with the best calibration Score that still forgets, or the
    /// unlearned model itself.
    fn restore(&mut self, original: &Clip) -> (Clip, StepReport) {
        let adapted = self
            .ema
            .clone()
            .unwrap_or_else(|| self.trained.clone().expect("set up at the first step"));
        let unlearned = self.plain(adapted.clone());
        let adapted = self.options.lora.then_some(adapted);
        if !self.options.soup {
            self.notes
                .push("No soup: the unlearned model is kept as it is.".into());
            self.final_adapters = adapted.map(|model| (model, 1.0));
            return (unlearned, finished_report(Vec::new(), None));
        }
        let before = forget_accuracy(original, &self.scenario);
        let mut best: Option<(f64, f64, f64)> = None;
        for tenth in (1..=10).rev() {
            let alpha = tenth as f64 / 10.0;
            let soup = interpolate(&unlearned, original.clone(), alpha);
            let (score, forget) = self.calibration_score(&soup, original, before);
            tracing::debug!(alpha, score, forget, "soup");
            if forget <= self.options.soup_forget_at_most
                && best.is_none_or(|(best_score, _, _)| score > best_score)
            {
                best = Some((score, alpha, forget));
            }
        }
        let (alpha, forget) = best.map_or((1.0, None), |(_, alpha, forget)| (alpha, Some(forget)));
        let pictures = self.calibration.as_ref().map_or(0, |c| c.dims()[0]);
        let source = if self.calibration_given {
            "the calibration set"
        } else {
            "retain pictures held out of training"
        };
        self.notes.push(match forget {
            Some(forget) => format!(
                "Soup: α = {alpha:.1} (the unlearned weights × {alpha:.1} + the original's × {:.1}), chosen on {pictures} pictures of {source}; the subgroup's stop pictures are recognised at {:.1}% by it.",
                1.0 - alpha,
                forget * 100.0
            ),
            None => format!(
                "Soup: no blend kept the subgroup at or below {:.1}%, so the unlearned model is kept (α = 1).",
                self.options.soup_forget_at_most * 100.0
            ),
        });
        self.final_adapters = adapted.map(|model| (model, alpha));
        let model = interpolate(&unlearned, original.clone(), alpha);
        (
            model,
            finished_report(vec![("soup alpha".into(), alpha as f32)], forget),
        )
    }

    /// Moves to the next stage that has work to do.
    fn next_stage(&mut self) {
        let resnet = matches!(
            self.trained.as_ref().map(|m| &m.visual),
            Some(VisionTower::ResNet(_))
        );
        if self.stage == Stage::Forget {
            self.notes.push(format!(
                "Forgetting ran {} step{}.",
                self.stage_step,
                if self.stage_step == 1 { "" } else { "s" }
            ));
            if self.options.remind_steps > 0 && !resnet && self.options.alignment {
                self.notes.push(
                    "Alignment skipped: the model has no batch norm (a ViT), so the retain \
                     pictures were reminded as they are."
                        .into(),
                );
            }
        }
        self.stage_step = 0;
        self.stage = match self.stage {
            Stage::Forget
                if self.options.remind_steps > 0
                    && self.options.alignment
                    && self.options.alignment_steps > 0
                    && resnet =>
            {
                Stage::Align
            }
            Stage::Forget | Stage::Align if self.options.remind_steps > 0 => {
                // Reminding starts from fresh optimiser moments.
                self.optimizer = clip_adam(self.options.weight_decay);
                Stage::Remind
            }
            _ => Stage::Restore,
        };
    }
}

fn finished_report(losses: Vec<(String, f32)>, forget: Option<f64>) -> StepReport {
    StepReport {
        losses,
        forget_accuracy: forget,
        retain_accuracy: None,
        finished: true,
    }
}

impl Method for SubgroupRun {
    fn name(&self) -> &str {
        "subgroup"
    }

    fn max_steps(&self) -> usize {
        self.max_steps
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn adapters(&self) -> Option<(Clip, f64)> {
        self.final_adapters.clone()
    }

    fn step(&mut self, model: Clip, original: &Clip) -> Result<(Clip, StepReport), MethodError> {
        if self.trained.is_none() {
            self.trained = Some(self.prepare(model));
        }
        let report = match self.stage {
            Stage::Forget => self.forget_step(),
            Stage::Align => self.align_step(),
            Stage::Remind => self.remind_step(),
            Stage::Restore => return Ok(self.restore(original)),
        };
        let current = match (&self.ema, self.stage) {
            (Some(average), Stage::Restore) => self.plain(average.clone()),
            _ => self.merged(),
        };
        Ok((current, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        let refuse = |text: &str, needle: &str| {
            let settings: toml::Table = text.parse().unwrap();
            let error = Subgroup.data_needs(&settings).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        };
        refuse("batch = 1", "batch must be at least 2");
        refuse("ema_decay = 1.5", "ema_decay must be");
        refuse("calibration_share = 1.0", "calibration_share must be");
        refuse("layers = 0", "layers must be");
        refuse("keep_weight = -1.0", "keep_weight must be");
        refuse("lorra = true", "unknown setting 'lorra'");
        assert!(Subgroup.data_needs(&toml::Table::new()).unwrap().pairs);
    }
}

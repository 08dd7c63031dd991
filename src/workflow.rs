//! One unlearning run from a recipe, as the command line, the benchmarks and the app all do it:
//! open the model and data, measure, forget on a background thread, measure again, and write
//! the result folder atomically.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;

use crate::backend::DeviceChoice;
use crate::clip::Clip;
use crate::clip::checkpoint::Checkpoint;
use crate::clip::lora::{StoredAdapter, adapters, write_adapters};
use crate::curation::Setup;
use crate::data::contact_sheet::contact_sheet;
use crate::data::dataset::{self, Dataset};
use crate::engine::LoadedModel;
use crate::eval::manifest::{digests, write_sha256sums};
use crate::eval::metrics::{
    ClassRow, ForgetImages, Hashes, Metrics, RunFacts, Timings, Verification, hash_bytes,
    hash_folder, metrics, report_markdown,
};
use crate::eval::relearn::relearn;
use crate::eval::report_html::{MAP_FIGURE, REPORT_HTML, ReportPage, report_html};
use crate::eval::snapshot::{EvalPlan, Snapshot, SubgroupPlan, measure};
use crate::recipe::Recipe;
use crate::unlearn::job::{Ending, Event, Job};
use crate::unlearn::methods::{check, prepare};
use crate::unlearn::synthetic::SyntheticImages;
use crate::viz::compare::{Heatmaps, before_after};
use crate::viz::map::{EmbeddingMap, MAP_CSV, MapOptions};

/// A recipe with its model and data opened and checked, ready to run.
pub struct Opened {
    /// The recipe.
    pub recipe: Recipe,
    /// The recipe's text, copied into the output and hashed.
    pub recipe_text: String,
    /// The input checkpoint (never written to).
    pub checkpoint: Checkpoint,
    /// The input model for evaluation.
    pub loaded: LoadedModel,
    /// What to measure.
    pub plan: EvalPlan,
    /// Real forget images, when the recipe names some.
    pub real_images: Option<Dataset>,
    /// Real images of what to keep, when the recipe names some.
    pub retain_images: Option<Dataset>,
    /// Real pictures of the forget classes to judge the stop on, when the recipe names some.
    pub verify_images: Option<Dataset>,
    /// Pictures a method chooses its settings on, when the recipe names some.
    pub calibration_images: Option<Dataset>,
}

/// Refuses forget pictures that are also the pictures to keep or to verify with: one picture
/// cannot be both forgotten and kept, and a stop judged on the pictures trained on proves
/// nothing.
fn check_distinct_sets(forget: &crate::recipe::ForgetSection) -> Result<()> {
    let same = |a: &Option<String>, b: &Option<String>| {
        a.as_deref()
            .map(str::trim)
            .is_some_and(|a| Some(a) == b.as_deref().map(str::trim))
    };
    if same(&forget.images, &forget.retain) {
        bail!(
            "[forget] images and retain are the same pictures ({}): a picture cannot be both forgotten and kept",
            forget.images.as_deref().unwrap_or_default()
        );
    }
    if same(&forget.images, &forget.verify) {
        bail!(
            "[forget] images and verify are the same pictures ({}): verification needs pictures the method never trains on",
            forget.images.as_deref().unwrap_or_default()
        );
    }
    if same(&forget.images, &forget.calibration) || same(&forget.verify, &forget.calibration) {
        bail!(
            "[forget] calibration is the forget or verify pictures ({}): calibration needs pictures of what is kept",
            forget.calibration.as_deref().unwrap_or_default()
        );
    }
    if same(&forget.retain, &forget.verify) {
        bail!(
            "[forget] retain and verify are the same pictures ({}): the pictures kept cannot be the ones that must be forgotten",
            forget.retain.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// The dataset `spec` names, classified among the head's classes.
fn in_head(spec: &str, head: &Dataset) -> Result<Dataset> {
    dataset::open(spec)?
        .in_classes_of(head)
        .map_err(anyhow::Error::msg)
}

impl Opened {
    /// Opens everything `recipe` names; errors say which part is wrong.
    pub fn open(recipe: Recipe, recipe_text: String) -> Result<Self> {
        if recipe.is_batch() {
            bail!("this recipe is a batch of [[scenario]]s: run it with `lethe run`");
        }
        let choice: DeviceChoice = recipe
            .model
            .device
            .parse()
            .map_err(anyhow::Error::msg)
            .context("[model] device")?;
        check(&recipe.method.name, &recipe.method.settings)?;
        check_distinct_sets(&recipe.forget)?;
        let path = crate::demo::resolve_model(&recipe.model.path).map_err(anyhow::Error::msg)?;
        let checkpoint = Checkpoint::open(&path)?;
        let loaded = LoadedModel::from_checkpoint(&checkpoint, choice)?;
        let head = dataset::open(&recipe.forget.dataset)?;
        let targets = recipe
            .forget
            .classes
            .iter()
            .map(|class| {
                head.classes
                    .iter()
                    .position(|c| c == class)
                    .with_context(|| {
                        format!(
                            "[forget] class '{class}' is not a class of {} (its classes: {})",
                            head.name,
                            head.classes.join(", ")
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let open_optional = |spec: &Option<String>| spec.as_deref().map(dataset::open).transpose();
        let real_images = open_optional(&recipe.forget.images)?;
        let retain_images = open_optional(&recipe.forget.retain)?;
        let verify_images = open_optional(&recipe.forget.verify)?;
        let calibration_images = open_optional(&recipe.forget.calibration)?;
        let others = recipe
            .eval
            .datasets
            .iter()
            .map(|spec| dataset::open(spec))
            .collect::<Result<Vec<_>, _>>()?;
        let subgroup = recipe
            .subgroup
            .as_ref()
            .map(|s| -> Result<SubgroupPlan> {
                Ok(SubgroupPlan {
                    name: s.name.clone(),
                    target: in_head(&s.target, &head).context("[subgroup] target")?,
                    siblings: in_head(&s.siblings, &head).context("[subgroup] siblings")?,
                    also_forgotten: s
                        .also_forgotten
                        .iter()
                        .map(|spec| dataset::open(spec))
                        .collect::<Result<_, _>>()
                        .context("[subgroup] also_forgotten")?,
                })
            })
            .transpose()?;
        let plan = EvalPlan {
            head,
            targets,
            others,
            retrieval_per_class: recipe.eval.retrieval_per_class,
            verify: verify_images.clone(),
            keep_embeddings: recipe.eval.map_pictures > 0,
            subgroup,
        };
        Ok(Self {
            recipe,
            recipe_text,
            checkpoint,
            loaded,
            plan,
            real_images,
            retain_images,
            verify_images,
            calibration_images,
        })
    }

    /// What a method is set up from: the recipe's seed, head, targets and pictures, with
    /// `model` (on an autodiff device) to edit.
    pub fn setup<'a>(&'a self, model: &'a Clip, cancel: &'a AtomicBool) -> Setup<'a> {
        Setup {
            seed: self.recipe.seed,
            model,
            loaded: &self.loaded,
            head: &self.plan.head,
            targets: &self.plan.targets,
            real_images: self.real_images.as_ref(),
            retain_images: self.retain_images.as_ref(),
            verify_images: self.verify_images.as_ref(),
            calibration_images: self.calibration_images.as_ref(),
            subgroup: self.recipe.subgroup.as_ref().map(|s| s.name.as_str()),
            cancel,
        }
    }

    /// The folder of the input checkpoint.
    pub fn model_dir(&self) -> &Path {
        &self.checkpoint.dir
    }
}

/// A finished run: its measurements and the edited model.
#[derive(Clone)]
pub struct Finished {
    /// Everything measured (`hashes.model_out` is filled in by [`write_outputs`]).
    pub metrics: Metrics,
    /// The edited model (not on an autodiff device).
    pub model: Clip,
    /// Synthetic forget images, for previews.
    pub synthetic: Vec<SyntheticImages>,
    /// Images of the forget dataset whose zero-shot prediction the run changed.
    pub changed: Vec<ChangedPrediction>,
    /// Where the original and the edited model look on a few pictures of the forget dataset.
    pub heatmaps: Option<Heatmaps>,
    /// Where the two models put the forget dataset's pictures and prompts (`None` when the
    /// recipe asks for no map or there are too few pictures).
    pub map: Option<EmbeddingMap>,
    /// The edit as low-rank adapters on the original's weights, when the method trained them.
    pub adapters: Option<BTreeMap<String, StoredAdapter>>,
}

/// One image whose prediction changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangedPrediction {
    /// Item index in the forget dataset.
    pub item: usize,
    /// Its true class.
    pub label: usize,
    /// Predicted class before.
    pub before: usize,
    /// Predicted class after.
    pub after: usize,
}

/// The items of `dataset` whose prediction differs between two measurements of it.
fn changed_predictions(
    dataset: &Dataset,
    before: &[(usize, usize)],
    after: &[(usize, usize)],
) -> Vec<ChangedPrediction> {
    let after: std::collections::HashMap<usize, usize> = after.iter().copied().collect();
    before
        .iter()
        .filter_map(|&(item, was)| {
            let now = *after.get(&item)?;
            (now != was).then(|| ChangedPrediction {
                item,
                label: dataset.items[item].label,
                before: was,
                after: now,
            })
        })
        .collect()
}

/// Why a run produced no result.
#[derive(Debug, thiserror::Error)]
pub enum RunStopped {
    /// The user cancelled it.
    #[error("cancelled after {steps} step(s); nothing was written")]
    Cancelled {
        /// Steps completed.
        steps: usize,
    },
    /// The method failed or diverged.
    #[error("the run stopped: {0}; nothing was written")]
    Failed(String),
}

/// The model as it was before unlearning, measured.
#[derive(Clone)]
pub struct Before {
    /// The measurements.
    pub snapshot: Snapshot,
    /// Seconds the measuring took.
    pub seconds: f64,
}

/// Measures the input model as `opened.plan` says.
pub fn measure_before(opened: &Opened) -> Before {
    let clock = Instant::now();
    let snapshot = measure(&opened.loaded, &opened.plan);
    Before {
        snapshot,
        seconds: clock.elapsed().as_secs_f64(),
    }
}

/// Runs the recipe: measures the model, forgets on a background thread (reporting every event
/// to `on_event`, stopping early when `cancel` is set), and measures again.
pub fn execute(
    opened: &Opened,
    cancel: &AtomicBool,
    on_event: impl FnMut(&Event),
) -> Result<Finished> {
    execute_from(opened, &measure_before(opened), cancel, on_event)
}

/// [`execute`] with the input model already measured, so several methods can be compared
/// against one measurement of the same model.
pub fn execute_from(
    opened: &Opened,
    before: &Before,
    cancel: &AtomicBool,
    mut on_event: impl FnMut(&Event),
) -> Result<Finished> {
    let recipe = &opened.recipe;
    let mut timings = Timings {
        measure_before_s: before.seconds,
        ..Timings::default()
    };
    let trainable = opened
        .checkpoint
        .load(&opened.loaded.device.device.clone().autodiff())?;
    let start = Instant::now();
    let setup = opened.setup(&trainable, cancel);
    let prepared = prepare(&recipe.method.name, &recipe.method.settings, &setup)?;
    if cancel.load(Ordering::Relaxed) {
        bail!(RunStopped::Cancelled { steps: 0 });
    }
    timings.forget_images_s = start.elapsed().as_secs_f64();
    let job = Job::spawn(prepared.method, trainable);
    loop {
        if cancel.load(Ordering::Relaxed) {
            job.cancel();
        }
        match job.events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                on_event(&event);
                if matches!(event, Event::Ended(_)) {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let outcome = job.join();
    timings.unlearning_s = start.elapsed().as_secs_f64() - timings.forget_images_s;
    match &outcome.ending {
        Ending::Finished => {}
        Ending::Cancelled => bail!(RunStopped::Cancelled {
            steps: outcome.steps
        }),
        Ending::Diverged { step } => {
            let rate = recipe
                .method
                .settings
                .get("learning_rate")
                .map_or("its default".to_string(), |v| v.to_string());
            bail!(RunStopped::Failed(format!(
                "method '{}' on {}: the loss stopped being finite at step {step}; the updates are too large for this model: lower learning_rate (now {rate}) or a loss weight, and nothing was kept",
                recipe.method.name, recipe.model.path
            )))
        }
        Ending::Failed(message) => bail!(RunStopped::Failed(message.clone())),
    }
    let clock = Instant::now();
    let edited = opened.loaded.with_model(outcome.model.valid());
    let after = measure(&edited, &opened.plan);
    timings.measure_after_s = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let relearned = (recipe.eval.relearn_steps > 0)
        .then(|| {
            relearn(
                &outcome.model,
                &opened.loaded,
                &opened.plan,
                recipe.eval.relearn_steps,
            )
        })
        .flatten();
    timings.relearn_s = clock.elapsed().as_secs_f64();
    let probabilities: Vec<f32> = prepared
        .synthetic
        .iter()
        .flat_map(|s| s.probabilities.iter().copied())
        .collect();
    let forget_images = ForgetImages {
        source: recipe
            .forget
            .images
            .clone()
            .unwrap_or_else(|| "synthetic".into()),
        count: prepared.forget_images,
        mean_probability: (!probabilities.is_empty()).then(|| {
            probabilities.iter().map(|&p| p as f64).sum::<f64>() / probabilities.len() as f64
        }),
        verification: recipe.forget.verify.clone().map(|source| Verification {
            source,
            count: prepared.verification_images,
            accuracy: None,
        }),
    };
    let facts = RunFacts {
        method: recipe.method.name.clone(),
        seed: recipe.seed,
        model: recipe.model.path.clone(),
        classes: recipe.forget.classes.clone(),
        target_labels: opened.plan.targets.clone(),
        timings,
        steps: outcome.steps,
        ending: "finished".into(),
        forget_images,
        relearn: relearned,
        hashes: Hashes {
            model_in: hash_folder(opened.model_dir())
                .with_context(|| format!("cannot read {}", opened.model_dir().display()))?,
            model_out: String::new(),
            recipe: hash_bytes(opened.recipe_text.as_bytes()),
        },
        subgroup: recipe.subgroup.as_ref().map(|s| s.name.clone()),
        notes: outcome.notes,
    };
    let heatmaps = before_after(&opened.loaded, &edited, &opened.plan, HEATMAP_ROWS);
    let map = (recipe.eval.map_pictures > 0)
        .then(|| {
            EmbeddingMap::of_run(
                &before.snapshot.embeddings,
                &after.embeddings,
                &opened.plan.head.classes,
                &opened.plan.targets,
                recipe.eval.map_pictures,
                &MapOptions {
                    perplexity: recipe.eval.map_perplexity,
                    iterations: recipe.eval.map_iterations,
                    seed: recipe.seed,
                },
            )
            .ok()
        })
        .flatten();
    Ok(Finished {
        metrics: metrics(&before.snapshot, &after, facts, recipe.audit.as_ref()),
        heatmaps,
        map,
        model: edited.model,
        adapters: outcome.adapters.map(|(model, weight)| {
            let mut adapters = adapters(&model, opened.checkpoint.format);
            for adapter in adapters.values_mut() {
                adapter.scale *= weight;
            }
            adapters
        }),
        synthetic: prepared.synthetic,
        changed: changed_predictions(
            &opened.plan.head,
            &before.snapshot.head.predictions,
            &after.head.predictions,
        ),
    })
}

/// The contact sheet of synthetic forget images in a result folder.
pub const SYNTHETIC_SHEET: &str = "synthetic.png";

/// The edit as low-rank adapters in a result folder, when the method trained them.
pub const ADAPTERS: &str = "adapters.safetensors";

/// The before/after saliency sheet of a result folder.
pub const HEATMAPS: &str = "heatmaps.png";

/// Pictures of the forgotten classes, and as many of the others, in [`HEATMAPS`].
const HEATMAP_ROWS: usize = 3;

/// Checks that `out` can receive a run's result: not the input checkpoint nor in or around
/// it, writable, and empty if it exists.
pub fn check_output(out: &Path, input: &Path) -> Result<()> {
    crate::atomic::refuse_inputs(out, [input])?;
    if out.exists() && !out.is_dir() {
        bail!("{}: is a file; the result is a folder", out.display());
    }
    crate::atomic::check_writable(out)?;
    if out.exists() {
        let empty = fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty; choose a new folder",
                out.display()
            );
        }
    }
    Ok(())
}

/// Writes the edited checkpoint (in the input's format), the recipe, `metrics.json`,
/// `report.md` and `report.html`, the synthetic forget images and the heatmaps as pictures, and
/// `SHA256SUMS` into `out`. Everything goes to a hidden sibling folder first, which is renamed into place at the end, so `out` either
/// holds a complete result or nothing.
pub fn write_outputs(opened: &Opened, finished: &mut Finished, out: &Path) -> Result<()> {
    check_output(out, opened.model_dir())?;
    crate::atomic::write_folder(out, false, |staging| {
        let listed = fill_result(opened, finished, staging)?;
        Ok(write_sha256sums(staging, &listed)?)
    })
    .with_context(|| format!("cannot write the result to {}", out.display()))
}

/// Writes what [`write_outputs`] writes into the empty folder `dir` (a batch assembles several
/// results inside one staging folder). Returns the digests `report.html` lists (every file but
/// the page itself).
pub fn fill_result(
    opened: &Opened,
    finished: &mut Finished,
    dir: &Path,
) -> Result<Vec<(String, String)>> {
    opened.checkpoint.export(&finished.model, dir)?;
    finished.metrics.hashes.model_out = hash_folder(dir)?;
    fs::write(dir.join("recipe.toml"), &opened.recipe_text)?;
    if let Some(adapters) = &finished.adapters {
        write_adapters(adapters, &dir.join(ADAPTERS))?;
    }
    let json = serde_json::to_string_pretty(&finished.metrics)?;
    fs::write(dir.join("metrics.json"), json)?;
    let mut report = report_markdown(&finished.metrics);
    let pictures = synthetic_pictures(opened, finished);
    if !pictures.is_empty() {
        contact_sheet(&pictures, 8, 64).save(dir.join(SYNTHETIC_SHEET))?;
        report.push_str(&format!(
            "\n## Synthetic forget images\n\n![the synthetic pictures the method forgot]({SYNTHETIC_SHEET})\n"
        ));
    }
    if let Some(heatmaps) = &finished.heatmaps {
        heatmaps.sheet.save(dir.join(HEATMAPS))?;
        report.push_str(&format!(
            "\n## Where the model finds each class\n\nEach row is a picture of the forget dataset \
             ({}), then what in it matches its class for the original model and for the edited \
             model: the {} (the gradient of the picture's similarity to its class prompts), \
             drawn over the picture (dark is low, bright is high).\n\n\
             ![the original and the edited model's saliency]({HEATMAPS})\n",
            heatmaps.classes.join(", "),
            heatmaps.method,
        ));
    }
    if let Some(map) = &finished.map {
        fs::write(dir.join(MAP_CSV), map.to_csv())?;
        report.push_str(&format!(
            "\n## Embedding map\n\nt-SNE of {} pictures of the forget dataset (dots, coloured by \
             class) and of each class's prompts (diamonds), as the original model (left in \
             `report.html`) and the edited model (right) embed them; the edited model's map is \
             aligned onto the original's, so a point that moved was moved by the edit. Every \
             point's places are in [{MAP_CSV}]({MAP_CSV}).\n\n{MAP_FIGURE}\n",
            map.points.iter().filter(|p| p.item.is_some()).count()
        ));
    }
    if let Some(adapters) = &finished.adapters {
        report.push_str(&format!(
            "\n## The edit as adapters\n\n[{ADAPTERS}]({ADAPTERS}) holds the edit as low-rank \
             adapters on {} weight matrices of the original model (a third of a fused attention \
             projection counted apart; PEFT's `lora_A` and `lora_B` under each checkpoint key, \
             in f32, with each layer's scale in the metadata): the \
             original checkpoint with `scale · lora_B · lora_A` added to each of those weights is \
             the edited one.\n",
            adapters.len()
        ));
    }
    fs::write(dir.join("report.md"), &report)?;
    write_report_page(
        dir,
        &report,
        &opened.recipe_text,
        Some(&opened.loaded.device.description),
        &finished.metrics.per_class,
        finished.map.as_ref(),
    )
}

/// Writes `dir/report.html` for the Markdown report `markdown`, with the folder's pictures it
/// links to inlined and the digest of every other file of `dir`; returns those digests.
pub fn write_report_page(
    dir: &Path,
    markdown: &str,
    recipe: &str,
    device: Option<&str>,
    per_class: &[ClassRow],
    map: Option<&EmbeddingMap>,
) -> Result<Vec<(String, String)>> {
    let mut pictures = Vec::new();
    for name in [SYNTHETIC_SHEET, HEATMAPS] {
        if dir.join(name).exists() {
            pictures.push((name, fs::read(dir.join(name))?));
        }
    }
    let files = digests(dir)?;
    let page = ReportPage {
        markdown,
        recipe,
        device,
        pictures: &pictures,
        per_class,
        map,
        files: &files,
    };
    fs::write(dir.join(REPORT_HTML), report_html(&page))?;
    Ok(files)
}

/// The synthetic forget images of a run as pictures (empty when real images were used).
pub fn synthetic_pictures(opened: &Opened, finished: &Finished) -> Vec<image::RgbImage> {
    let preprocessor = &opened.loaded.preprocessor;
    finished
        .synthetic
        .iter()
        .flat_map(|set| set.pictures(preprocessor.mean, preprocessor.std))
        .collect()
}

/// Writes only the edited checkpoint into `out` (new or empty, never the input), in the
/// input's format, with its `SHA256SUMS`.
pub fn export_checkpoint(opened: &Opened, model: &Clip, out: &Path) -> Result<()> {
    check_output(out, opened.model_dir())?;
    crate::atomic::write_folder(out, false, |staging| {
        opened.checkpoint.export(model, staging)?;
        Ok(write_sha256sums(staging, &[])?)
    })
    .with_context(|| format!("cannot export the checkpoint to {}", out.display()))
}

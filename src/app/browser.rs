//! The Data panel: open a dataset (a spec, a folder, a manifest, or a file dropped on the
//! window), filter it, rank it by what the model sees (similarity to a text or to chosen
//! images), select images in the grid, and inspect one image with the model's zero-shot guesses.
//! Everything slow — opening, decoding, embedding — runs in the background.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use burn::tensor::Tensor;
use eframe::egui::{self, Color32, Context, TextureHandle, TextureOptions, Ui};

use super::grid::{self, Selection};
use super::task::{Task, take_finished};
use super::thumbnails::{Thumbnails, decode_image};
use crate::clip::{host_values, normalize};
use crate::data::dataset::{self, Dataset};
use crate::engine::LoadedModel;
use crate::eval::{class_embeddings, class_probabilities, embed_items};

/// The Shapes subsets offered as one-click datasets.
const SHAPES_SUBSETS: [&str; 5] = ["shapes", "colors", "fruits", "color-shapes", "backgrounds"];
/// Images in a one-click Shapes dataset: enough to browse, quick to embed.
const QUICK_IMAGES: usize = 2000;
/// Seed of the one-click Shapes datasets (not one the scenario's datasets use).
const QUICK_SEED: u64 = 7;
/// Images embedded between two progress reports (and cancellation checks).
const EMBED_CHUNK: usize = 256;
/// Images per forward pass when embedding.
const EMBED_BATCH: usize = 64;
/// Zero-shot guesses shown for an image.
const TOP_GUESSES: usize = 5;
/// Longest side of the image in the details view, in pixels.
const PREVIEW_SIDE: u32 = 320;
/// Tile sizes the slider allows, in points.
const TILE_RANGE: std::ops::RangeInclusive<f32> = 40.0..=160.0;

/// State of the Data panel: the open dataset, how it is filtered and ranked, what is selected
/// and which image is inspected.
pub struct Browser {
    /// The dataset spec in the text field (`shapes:<subset>?seed=N&n=M`, `folder:PATH` or
    /// `manifest:FILE`).
    pub spec: String,
    /// The dataset being browsed, once opened.
    pub dataset: Option<Arc<Dataset>>,
    /// The selected images (dataset item indices).
    pub selection: Selection,
    /// The image shown in the details view.
    pub details: Option<usize>,
    loading: Option<Task<Result<Loaded, String>>>,
    load_error: Option<String>,
    /// Lower-cased class name and caption of every item, for the text filter.
    haystacks: Vec<String>,
    /// Items of each class, for the class filter.
    class_counts: Vec<usize>,
    label_filter: Option<usize>,
    text_filter: String,
    /// The items shown, in order; recomputed only when `stale`.
    visible: Vec<usize>,
    stale: bool,
    ranker: Ranker,
    inspector: Inspector,
    /// The item under the pointer last frame.
    hovered: Option<usize>,
    tile: f32,
}

impl Default for Browser {
    /// A browser with no dataset and an empty spec.
    fn default() -> Self {
        Self::new(String::new())
    }
}

impl Browser {
    /// A browser with `spec` in its field, not opened yet (call [`Self::open`]).
    pub fn new(spec: impl Into<String>) -> Self {
        Self {
            spec: spec.into(),
            dataset: None,
            selection: Selection::default(),
            details: None,
            loading: None,
            load_error: None,
            haystacks: Vec::new(),
            class_counts: Vec::new(),
            label_filter: None,
            text_filter: String::new(),
            visible: Vec::new(),
            stale: false,
            ranker: Ranker::default(),
            inspector: Inspector::default(),
            hovered: None,
            tile: 72.0,
        }
    }

    /// Starts opening `spec` in the background (the field shows it, the panel a spinner);
    /// [`Self::poll`] reports when it is done.
    pub fn open(&mut self, spec: String, ctx: &Context) {
        let spec = spec.trim().to_string();
        self.spec.clone_from(&spec);
        self.load_error = None;
        let label = format!("Opening {spec}");
        self.loading = Some(Task::spawn(label, repaint(ctx), move || load(&spec)));
    }

    /// Collects finished background work; call it every frame. Returns `Some` when a dataset
    /// finished opening: `Ok` once it is shown, or the error (also shown in the panel).
    pub fn poll(&mut self) -> Option<Result<(), String>> {
        self.stale |= self.ranker.poll();
        self.inspector.poll();
        let finished = take_finished(&mut self.loading).map(|result| match result {
            Ok(Ok(loaded)) => {
                self.install(loaded);
                Ok(())
            }
            Ok(Err(error)) | Err(error) => {
                self.load_error = Some(error.clone());
                Err(error)
            }
        });
        self.refresh_visible();
        finished
    }

    /// The items shown, filtered and ranked, in display order.
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }

    /// Cosine similarity of every item to the current ranking query (`None` for unreadable
    /// images), for rules such as "every image similar to this text".
    pub fn scores(&self) -> Option<&[Option<f32>]> {
        self.ranker.ranking.as_ref().map(|r| r.scores.as_slice())
    }

    /// Cosine similarity of every item to `text`, if the current ranking is by that text;
    /// otherwise start one with [`Self::rank_by_text`] and ask again when it is done.
    pub fn text_scores(&self, text: &str) -> Option<Vec<Option<f32>>> {
        let ranking = self.ranker.ranking.as_ref()?;
        matches!(&ranking.query, Query::Text(t) if t == text.trim()).then(|| ranking.scores.clone())
    }

    /// Ranks the browsed images by similarity to `text` in the background, embedding the
    /// dataset first if this model has not yet (the panel shows progress); without a model or a
    /// dataset it only explains why not.
    pub fn rank_by_text(&mut self, text: String, model: Option<&Arc<LoadedModel>>, ctx: &Context) {
        let text = text.trim().to_string();
        self.ranker.text.clone_from(&text);
        match (model, &self.dataset) {
            (None, _) => self.ranker.error = Some(NO_MODEL.into()),
            (_, None) => self.ranker.error = Some("Open a dataset first".into()),
            (Some(_), Some(_)) if text.is_empty() => {
                self.ranker.error = Some("Type a text to rank by".into());
            }
            (Some(model), Some(dataset)) => {
                let dataset = Arc::clone(dataset);
                self.ranker.start(Query::Text(text), model, &dataset, ctx);
            }
        }
    }

    /// What is running in the background, for the status bar.
    pub fn activity(&self) -> Option<String> {
        if let Some(task) = &self.loading {
            return Some(format!("{}…", task.label));
        }
        self.ranker.activity()
    }

    /// Shows the panel: toolbar, counts, filters, ranking, the grid and the details view.
    /// `model` enables ranking and zero-shot guesses; `marks` colours the tiles of the forget,
    /// retain and evaluation sets.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        model: Option<&Arc<LoadedModel>>,
        thumbs: &mut Thumbnails,
        marks: &dyn Fn(usize) -> Option<Color32>,
    ) {
        self.accept_dropped_files(ui);
        self.toolbar(ui);
        self.load_status(ui);
        let Some(dataset) = self.dataset.clone() else {
            if self.loading.is_none() {
                ui.label("Open a dataset above, or drop a folder or a manifest on the window.");
            }
            return;
        };
        self.filters(ui, &dataset);
        self.ranking_bar(ui, &dataset, model);
        self.refresh_visible();
        self.counts(ui, &dataset);
        ui.separator();
        if let Some(index) = self.details {
            egui::Panel::right("browser details")
                .resizable(true)
                .default_size(300.0)
                .show(ui, |ui| self.details_view(ui, &dataset, model, index));
        }
        self.grid(ui, &dataset, thumbs, marks);
    }

    /// Replaces the browsed dataset with a freshly opened one. Another dataset's selection and
    /// details are dropped; reopening the same spec (or restoring one at start-up) keeps them.
    fn install(&mut self, loaded: Loaded) {
        let len = loaded.dataset.items.len();
        let other = self
            .dataset
            .as_ref()
            .is_some_and(|d| d.name != loaded.dataset.name);
        if other {
            self.selection.clear();
            self.details = None;
            self.label_filter = None;
        }
        self.selection.clamp(len);
        self.details = self.details.filter(|&d| d < len);
        self.label_filter = self.label_filter.filter(|&l| l < loaded.class_counts.len());
        self.haystacks = loaded.haystacks;
        self.class_counts = loaded.class_counts;
        self.dataset = Some(Arc::new(loaded.dataset));
        self.ranker = Ranker::default();
        self.inspector = Inspector::default();
        self.hovered = None;
        self.stale = true;
    }

    /// Recomputes the shown items after the dataset, the filters or the ranking changed.
    fn refresh_visible(&mut self) {
        let Some(dataset) = self.dataset.as_deref().filter(|_| self.stale) else {
            return;
        };
        self.stale = false;
        self.visible = filter_items(
            dataset,
            &self.haystacks,
            self.label_filter,
            &self.text_filter,
        );
        if let Some(ranking) = &self.ranker.ranking {
            sort_by_score(&mut self.visible, &ranking.scores);
        }
    }

    /// Opens a folder or manifest dropped on the window.
    fn accept_dropped_files(&mut self, ui: &Ui) {
        let dropped = ui.ctx().input(|i| {
            i.raw
                .dropped_files
                .first()
                .map(|file| file.path().to_path_buf())
        });
        if let Some(path) = dropped {
            match spec_for_path(&path) {
                Ok(spec) => self.open(spec, ui.ctx()),
                Err(error) => self.load_error = Some(error),
            }
        }
    }

    /// The spec field, Open, the file pickers and the one-click Shapes datasets.
    fn toolbar(&mut self, ui: &mut Ui) {
        let mut chosen = None;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Dataset");
            let field = ui
                .add(egui::TextEdit::singleline(&mut self.spec).desired_width(320.0))
                .labelled_by(label.id)
                .on_hover_text(
                    "shapes:<subset>?seed=N&n=M (generated), folder:PATH (one sub-folder of \
                     images per class) or manifest:FILE (CSV or JSON lines with path, label \
                     and an optional caption)",
                );
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Open").clicked() || entered {
                chosen = Some(self.spec.clone());
            }
            if ui
                .button("Browse folder…")
                .on_hover_text("A folder with one sub-folder of images per class")
                .clicked()
                && let Some(folder) = rfd::FileDialog::new().pick_folder()
            {
                chosen = Some(format!("folder:{}", folder.display()));
            }
            if ui
                .button("Open manifest…")
                .on_hover_text("A CSV or JSON-lines file listing path, label and caption")
                .clicked()
                && let Some(file) = rfd::FileDialog::new()
                    .add_filter("Manifest", &["csv", "jsonl", "json"])
                    .pick_file()
            {
                chosen = Some(format!("manifest:{}", file.display()));
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("Shapes world:").on_hover_text(
                "Images drawn from a seed, with exact labels and captions: no download needed",
            );
            for subset in SHAPES_SUBSETS {
                let hover = format!("Open {QUICK_IMAGES} generated images labelled by {subset}");
                if ui.button(subset).on_hover_text(hover).clicked() {
                    chosen = Some(format!(
                        "shapes:{subset}?seed={QUICK_SEED}&n={QUICK_IMAGES}"
                    ));
                }
            }
        });
        if ui.ctx().input(|i| !i.raw.hovered_files.is_empty()) {
            ui.strong("Drop a folder or a .csv/.jsonl manifest to open it");
        }
        if let Some(spec) = chosen {
            self.open(spec, ui.ctx());
        }
    }

    /// A spinner while a dataset opens; the error, in red, if it could not be opened.
    fn load_status(&self, ui: &mut Ui) {
        if let Some(task) = &self.loading {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("{}…", task.label));
            });
        }
        if let Some(error) = &self.load_error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// The class and text filters, the selection buttons and the tile size.
    fn filters(&mut self, ui: &mut Ui, dataset: &Dataset) {
        ui.horizontal_wrapped(|ui| {
            let before = (self.label_filter, self.text_filter.clone());
            let shown = self
                .label_filter
                .and_then(|l| dataset.classes.get(l))
                .map_or("All classes", String::as_str);
            egui::ComboBox::from_id_salt("browser class filter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.label_filter, None, "All classes");
                    for (label, class) in dataset.classes.iter().enumerate() {
                        let count = self.class_counts.get(label).copied().unwrap_or(0);
                        let text = format!("{class} ({count})");
                        ui.selectable_value(&mut self.label_filter, Some(label), text);
                    }
                })
                .response
                .on_hover_text("Show only the images of one class");
            let label = ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.text_filter)
                    .hint_text("filter by caption or label")
                    .desired_width(220.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Show only images whose class name or caption contains this text");
            if (self.label_filter, self.text_filter.clone()) != before {
                self.stale = true;
            }
            ui.separator();
            if ui.button("Select all shown").clicked() {
                self.selection.select_all(&self.visible);
            }
            if ui.button("Clear selection").clicked() {
                self.selection.clear();
            }
            ui.add(egui::Slider::new(&mut self.tile, TILE_RANGE).text("Tile size"));
        });
    }

    /// Ranking by similarity to a text or to the selected images, with its progress and errors.
    fn ranking_bar(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
    ) {
        let mut query = None;
        ui.horizontal_wrapped(|ui| {
            let idle = model.is_some() && self.ranker.running.is_none();
            let why_not = if model.is_none() {
                NO_MODEL
            } else {
                "Wait for the current ranking to finish"
            };
            let label = ui.label("Find");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.ranker.text)
                        .hint_text("describe what to look for, e.g. a red star")
                        .desired_width(260.0),
                )
                .labelled_by(label.id);
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let has_text = !self.ranker.text.trim().is_empty();
            let by_text = ui
                .add_enabled(
                    idle && has_text,
                    egui::Button::new("Rank by similarity to text"),
                )
                .on_hover_text(SIMILARITY_HELP)
                .on_disabled_hover_text(if has_text {
                    why_not
                } else {
                    "Type a text first"
                });
            if by_text.clicked() || (entered && idle && has_text) {
                query = Some(Query::Text(self.ranker.text.trim().to_string()));
            }
            let has_selection = !self.selection.selected.is_empty();
            let by_image = ui
                .add_enabled(
                    idle && has_selection,
                    egui::Button::new("Rank by similarity to selected image"),
                )
                .on_hover_text(
                    "Order images by how alike the model finds them to the selected ones (their \
                     average embedding when several are selected)",
                )
                .on_disabled_hover_text(if has_selection {
                    why_not
                } else {
                    "Select images first"
                });
            if by_image.clicked() {
                query = Some(Query::Images(
                    self.selection.selected.iter().copied().collect(),
                ));
            }
            if let Some(ranking) = &self.ranker.ranking {
                ui.label(format!(
                    "Ranked by similarity to {}",
                    ranking.query.describe()
                ));
                if ui.button("Dataset order").clicked() {
                    self.ranker.ranking = None;
                    self.stale = true;
                }
            }
        });
        if let (Some(query), Some(model)) = (query, model) {
            self.ranker.start(query, model, dataset, ui.ctx());
        }
        if let Some(activity) = self.ranker.activity() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(activity);
            });
            // Progress is counted in the background; redraw to show it.
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
        if let Some(error) = &self.ranker.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// "2000 images · 10 classes · 37 selected", and the hovered image's similarity.
    fn counts(&self, ui: &mut Ui, dataset: &Dataset) {
        let mut text = format!(
            "{} images · {} classes · {} selected",
            dataset.items.len(),
            dataset.classes.len(),
            self.selection.selected.len()
        );
        if self.visible.len() != dataset.items.len() {
            text.push_str(&format!(" · {} shown", self.visible.len()));
        }
        if let (Some(item), Some(scores)) = (self.hovered, self.scores())
            && let Some(score) = scores.get(item).copied().flatten()
        {
            text.push_str(&format!(" · image {item}: similarity {score:.3}"));
        }
        ui.label(text);
    }

    /// The grid; a click or double-click opens the image in the details view.
    fn grid(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        thumbs: &mut Thumbnails,
        marks: &dyn Fn(usize) -> Option<Color32>,
    ) {
        if self.visible.is_empty() {
            ui.label("No image matches the filters.");
            return;
        }
        let response = grid::show(
            ui,
            "browser grid",
            dataset,
            &self.visible,
            thumbs,
            &mut self.selection,
            marks,
            self.tile,
        );
        if let Some(item) = response.double_clicked.or(response.clicked) {
            self.details = Some(item);
        }
        self.hovered = response.hovered;
    }

    /// The details view: the image, its label and caption, its similarity to the ranking query
    /// and the model's top zero-shot guesses.
    fn details_view(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
        index: usize,
    ) {
        let Some(item) = dataset.items.get(index) else {
            self.details = None;
            return;
        };
        self.inspector.follow(index, dataset, model, ui.ctx());
        ui.horizontal(|ui| {
            // Not "image N": that label names the tile, and must stay unique.
            ui.heading(format!("Image {index}"));
            if ui.button("Close").clicked() {
                self.details = None;
            }
        });
        match &self.inspector.preview {
            Some(Ok(texture)) => {
                let side = ui.available_width().min(PREVIEW_SIDE as f32);
                ui.add(egui::Image::new(texture).max_size(egui::Vec2::splat(side)));
            }
            Some(Err(error)) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            None => {
                ui.spinner();
            }
        }
        let class = dataset.classes.get(item.label).map_or("?", String::as_str);
        ui.label(format!("Label: {class}"));
        if let Some(caption) = &item.caption {
            ui.label(format!("Caption: {caption}"));
        }
        ui.weak(item.source.describe());
        if let Some(ranking) = &self.ranker.ranking
            && let Some(score) = ranking.scores.get(index).copied().flatten()
        {
            ui.label(format!(
                "Similarity to {}: {score:.3}",
                ranking.query.describe()
            ))
            .on_hover_text(SIMILARITY_HELP);
        }
        ui.separator();
        self.guesses_view(ui, dataset, model, item.label);
    }

    /// The top zero-shot guesses as bars, the true class marked.
    fn guesses_view(
        &self,
        ui: &mut Ui,
        dataset: &Dataset,
        model: Option<&Arc<LoadedModel>>,
        label: usize,
    ) {
        ui.strong("Zero-shot guesses").on_hover_text(
            "Zero-shot: the model was not trained on these classes. It compares the image with \
             a sentence naming each class (the dataset's prompt templates, such as \"a photo of \
             a {}.\") and turns the similarities into probabilities.",
        );
        let Some(model) = model else {
            ui.label("Open a model to see what it recognises in this image.");
            return;
        };
        match self.inspector.guesses_for(model) {
            None => {
                ui.spinner();
            }
            Some(Err(error)) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            Some(Ok(guesses)) => {
                for &(class, probability) in guesses {
                    let name = dataset.classes.get(class).map_or("?", String::as_str);
                    let mark = if class == label { " ✔" } else { "" };
                    let text = format!("{name} {:.1}%{mark}", probability * 100.0);
                    ui.add(egui::ProgressBar::new(probability).text(text));
                }
            }
        }
    }
}

/// Why ranking is unavailable without a model.
const NO_MODEL: &str = "Open a model first: ranking uses its image and text embeddings";

/// What "similarity" means, for tooltips.
const SIMILARITY_HELP: &str = "Similarity is the cosine between the model's embeddings of two \
    things (from -1 to 1): the higher, the more alike the model finds them. Ranking orders the \
    images from most to least similar.";

/// A repaint callback for background work.
fn repaint(ctx: &Context) -> impl Fn() + Send + 'static {
    let ctx = ctx.clone();
    move || ctx.request_repaint()
}

/// An opened dataset with what the filters need, computed off the UI thread.
struct Loaded {
    dataset: Dataset,
    haystacks: Vec<String>,
    class_counts: Vec<usize>,
}

/// Opens `spec` and prepares its filter data; the error names the spec.
fn load(spec: &str) -> Result<Loaded, String> {
    let dataset = dataset::open(spec).map_err(|error| {
        let message = error.to_string();
        if message.contains(spec) {
            message
        } else {
            format!("{spec}: {message}")
        }
    })?;
    let mut class_counts = vec![0; dataset.classes.len()];
    let haystacks = dataset
        .items
        .iter()
        .map(|item| {
            if let Some(count) = class_counts.get_mut(item.label) {
                *count += 1;
            }
            let class = dataset.classes.get(item.label).map_or("", String::as_str);
            let caption = item.caption.as_deref().unwrap_or("");
            format!("{class}\n{caption}").to_lowercase()
        })
        .collect();
    Ok(Loaded {
        dataset,
        haystacks,
        class_counts,
    })
}

/// The dataset spec for a dropped or picked path: a folder, or a CSV/JSON-lines manifest.
fn spec_for_path(path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return Ok(format!("folder:{}", path.display()));
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv" | "jsonl" | "json") => Ok(format!("manifest:{}", path.display())),
        _ => Err(format!(
            "{}: drop a folder (one sub-folder of images per class) or a .csv/.jsonl manifest",
            path.display()
        )),
    }
}

/// The items of class `label` (all when `None`) whose class name or caption contains `text`
/// (case-insensitive), in dataset order.
fn filter_items(
    dataset: &Dataset,
    haystacks: &[String],
    label: Option<usize>,
    text: &str,
) -> Vec<usize> {
    let needle = text.trim().to_lowercase();
    (0..dataset.items.len())
        .filter(|&i| label.is_none_or(|l| dataset.items[i].label == l))
        .filter(|&i| needle.is_empty() || haystacks.get(i).is_some_and(|h| h.contains(&needle)))
        .collect()
}

/// Orders items by descending score, unscored (unreadable) ones last; ties keep their order.
fn sort_by_score(items: &mut [usize], scores: &[Option<f32>]) {
    let score = |item: usize| {
        scores
            .get(item)
            .copied()
            .flatten()
            .unwrap_or(f32::NEG_INFINITY)
    };
    items.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
}

/// A value computed with one model, so that it is recomputed when the model changes. The weak
/// reference keeps the model's allocation from being reused, so the identity check is exact.
struct ForModel<T> {
    model: Weak<LoadedModel>,
    value: T,
}

impl<T> ForModel<T> {
    fn new(model: &Arc<LoadedModel>, value: T) -> Self {
        Self {
            model: Arc::downgrade(model),
            value,
        }
    }

    /// The value, if it was computed with `model`.
    fn get(&self, model: &Arc<LoadedModel>) -> Option<&T> {
        std::ptr::eq(self.model.as_ptr(), Arc::as_ptr(model)).then_some(&self.value)
    }
}

/// What to rank by.
enum Query {
    /// Similarity to a text.
    Text(String),
    /// Similarity to the average of these images.
    Images(Vec<usize>),
}

impl Query {
    /// How the ranking is described ("“a red star”", "image 12", "3 selected images").
    fn describe(&self) -> String {
        match self {
            Self::Text(text) => format!("“{text}”"),
            Self::Images(items) if items.len() == 1 => format!("image {}", items[0]),
            Self::Images(items) => format!("{} selected images", items.len()),
        }
    }
}

/// The similarity of every item to a query.
struct Ranking {
    /// What was ranked by.
    query: Query,
    /// Cosine similarity per dataset item; `None` for unreadable images.
    scores: Vec<Option<f32>>,
}

/// Normalised image embeddings of a whole dataset, on the host.
struct Embeddings {
    width: usize,
    values: Vec<f32>,
    /// Row of each dataset item in `values`; `None` for unreadable images.
    rows: Vec<Option<usize>>,
}

impl Embeddings {
    /// Embeds every image of `dataset`, piece by piece, counting finished images in `progress`
    /// and giving up when `cancel` is set.
    fn compute(
        model: &LoadedModel,
        dataset: &Dataset,
        progress: &AtomicUsize,
        cancel: &AtomicBool,
    ) -> Result<Self, String> {
        let all: Vec<usize> = (0..dataset.items.len()).collect();
        let mut embeddings = Self {
            width: model.model.embed_dim(),
            values: Vec::new(),
            rows: vec![None; all.len()],
        };
        for chunk in all.chunks(EMBED_CHUNK) {
            if cancel.load(Ordering::Relaxed) {
                return Err("cancelled".into());
            }
            let part = embed_items(model, dataset, chunk, EMBED_BATCH);
            embeddings.append(&part.items, &host_values(part.embeds));
            progress.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        Ok(embeddings)
    }

    /// Adds the rows `values` (row-major) of the dataset items `items`.
    fn append(&mut self, items: &[usize], values: &[f32]) {
        for (&item, row) in items.iter().zip(values.chunks(self.width.max(1))) {
            if let Some(slot) = self.rows.get_mut(item) {
                *slot = Some(self.values.len() / self.width.max(1));
                self.values.extend_from_slice(row);
            }
        }
    }

    /// The embedding of `item`, if it was readable.
    fn row(&self, item: usize) -> Option<&[f32]> {
        let row = (*self.rows.get(item)?)?;
        self.values.get(row * self.width..(row + 1) * self.width)
    }

    /// Cosine similarity of every item to the unit vector `query`.
    fn scores(&self, query: &[f32]) -> Vec<Option<f32>> {
        (0..self.rows.len())
            .map(|item| self.row(item).map(|row| dot(row, query)))
            .collect()
    }

    /// The normalised mean embedding of `items`; `None` if none of them was readable.
    fn centroid(&self, items: &[usize]) -> Option<Vec<f32>> {
        let mut sum = vec![0.0; self.width];
        let mut found = false;
        for row in items.iter().filter_map(|&item| self.row(item)) {
            sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            found = true;
        }
        let norm = dot(&sum, &sum).sqrt();
        (found && norm > 0.0).then(|| sum.iter().map(|v| v / norm).collect())
    }
}

/// The dot product of two vectors.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The result of a ranking run: the dataset's embeddings (kept for the next query) and the
/// ranking.
struct Ranked {
    embeddings: Arc<Embeddings>,
    ranking: Ranking,
}

/// A ranking run in the background, with the progress of its embedding step. Dropping it
/// stops the embedding at the next chunk.
struct Running {
    task: Task<Result<Ranked, String>>,
    model: Weak<LoadedModel>,
    progress: Arc<AtomicUsize>,
    total: usize,
    cancel: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Ranking state: the query text, the run in progress, the last result and error, and the
/// dataset's embeddings once computed (per model).
#[derive(Default)]
struct Ranker {
    text: String,
    running: Option<Running>,
    ranking: Option<Ranking>,
    error: Option<String>,
    embeddings: Option<ForModel<Arc<Embeddings>>>,
}

impl Ranker {
    /// Starts ranking `dataset` by `query` with `model`, embedding the dataset first unless that
    /// was done already with this model.
    fn start(
        &mut self,
        query: Query,
        model: &Arc<LoadedModel>,
        dataset: &Arc<Dataset>,
        ctx: &Context,
    ) {
        let cached = self
            .embeddings
            .as_ref()
            .and_then(|e| e.get(model))
            .map(Arc::clone);
        let total = if cached.is_some() {
            0
        } else {
            dataset.items.len()
        };
        let progress = Arc::new(AtomicUsize::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let work = {
            let (model, dataset) = (Arc::clone(model), Arc::clone(dataset));
            let (progress, cancel) = (Arc::clone(&progress), Arc::clone(&cancel));
            move || rank(&model, &dataset, cached, query, &progress, &cancel)
        };
        self.error = None;
        self.running = Some(Running {
            task: Task::spawn("Ranking", repaint(ctx), work),
            model: Arc::downgrade(model),
            progress,
            total,
            cancel,
        });
    }

    /// Takes a finished run's result; true when a new ranking arrived (the shown order must
    /// follow).
    fn poll(&mut self) -> bool {
        let Some(result) = self.running.as_ref().and_then(|r| r.task.poll()) else {
            return false;
        };
        let Some(running) = self.running.take() else {
            return false;
        };
        match result {
            Ok(Ok(ranked)) => {
                if let Some(model) = running.model.upgrade() {
                    self.embeddings = Some(ForModel::new(&model, ranked.embeddings));
                }
                self.ranking = Some(ranked.ranking);
                true
            }
            Ok(Err(error)) | Err(error) => {
                self.error = Some(error);
                false
            }
        }
    }

    /// "Embedding images 512/2000" or "Ranking", while a run is in progress.
    fn activity(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        let done = running.progress.load(Ordering::Relaxed);
        Some(if done < running.total {
            format!("Embedding images {done}/{} (once per model)", running.total)
        } else {
            "Ranking".to_string()
        })
    }
}

/// Ranks every item of `dataset` by similarity to `query` (background thread).
fn rank(
    model: &LoadedModel,
    dataset: &Dataset,
    cached: Option<Arc<Embeddings>>,
    query: Query,
    progress: &AtomicUsize,
    cancel: &AtomicBool,
) -> Result<Ranked, String> {
    let embeddings = match cached {
        Some(embeddings) => embeddings,
        None => Arc::new(Embeddings::compute(model, dataset, progress, cancel)?),
    };
    let vector = match &query {
        Query::Text(text) => host_values(normalize(model.embed_texts(std::slice::from_ref(text)))),
        Query::Images(items) => embeddings
            .centroid(items)
            .ok_or("none of the selected images could be read")?,
    };
    let ranking = Ranking {
        query,
        scores: embeddings.scores(&vector),
    };
    Ok(Ranked {
        embeddings,
        ranking,
    })
}

/// The most probable classes of an image with their probabilities, or why there are none.
type Guesses = Result<Vec<(usize, f32)>, String>;

/// Zero-shot guesses for one image, with the class embeddings they were computed from (kept
/// for the next image).
struct Guessed {
    heads: Tensor<2>,
    top: Vec<(usize, f32)>,
}

/// Zero-shot guesses being computed with a model.
struct Guessing {
    model: Weak<LoadedModel>,
    task: Task<Result<Guessed, String>>,
}

/// The details view's background work: the larger image and the zero-shot guesses of the
/// inspected item, and the dataset's class embeddings once computed (per model).
#[derive(Default)]
struct Inspector {
    index: Option<usize>,
    preview: Option<Result<TextureHandle, String>>,
    previewing: Option<Task<Result<TextureHandle, String>>>,
    guesses: Option<ForModel<Guesses>>,
    guessing: Option<Guessing>,
    heads: Option<ForModel<Tensor<2>>>,
}

impl Inspector {
    /// Starts whatever the view of item `index` still needs: its image, and its guesses with
    /// `model` (again when the model changed).
    fn follow(
        &mut self,
        index: usize,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
        ctx: &Context,
    ) {
        if self.index != Some(index) {
            *self = Self {
                index: Some(index),
                heads: self.heads.take(),
                ..Self::default()
            };
            self.previewing = Some(preview(dataset, index, ctx));
        }
        let Some(model) = model else {
            return;
        };
        let current = self
            .guesses
            .as_ref()
            .is_some_and(|g| g.get(model).is_some());
        let started = self
            .guessing
            .as_ref()
            .is_some_and(|g| std::ptr::eq(g.model.as_ptr(), Arc::as_ptr(model)));
        if !current && !started {
            let heads = self.heads.as_ref().and_then(|h| h.get(model)).cloned();
            let work = {
                let (model, dataset) = (Arc::clone(model), Arc::clone(dataset));
                move || guess(&model, &dataset, index, heads)
            };
            self.guessing = Some(Guessing {
                model: Arc::downgrade(model),
                task: Task::spawn("Zero-shot guesses", repaint(ctx), work),
            });
        }
    }

    /// Takes finished previews and guesses.
    fn poll(&mut self) {
        if let Some(result) = take_finished(&mut self.previewing) {
            self.preview = Some(result.and_then(|preview| preview));
        }
        let Some(result) = self.guessing.as_ref().and_then(|g| g.task.poll()) else {
            return;
        };
        let Some(model) = self.guessing.take().and_then(|g| g.model.upgrade()) else {
            return;
        };
        let guesses = match result.and_then(|guessed| guessed) {
            Ok(guessed) => {
                self.heads = Some(ForModel::new(&model, guessed.heads));
                Ok(guessed.top)
            }
            Err(error) => Err(error),
        };
        self.guesses = Some(ForModel::new(&model, guesses));
    }

    /// The guesses made with `model`, once there.
    fn guesses_for(&self, model: &Arc<LoadedModel>) -> Option<&Guesses> {
        self.guesses.as_ref()?.get(model)
    }
}

/// Decodes item `index` at preview size and uploads it (background thread).
fn preview(
    dataset: &Arc<Dataset>,
    index: usize,
    ctx: &Context,
) -> Task<Result<TextureHandle, String>> {
    let dataset = Arc::clone(dataset);
    let upload = ctx.clone();
    Task::spawn("Loading image", repaint(ctx), move || {
        let image = decode_image(&dataset, index, PREVIEW_SIDE)?;
        Ok(upload.load_texture(format!("preview {index}"), image, TextureOptions::LINEAR))
    })
}

/// The model's top zero-shot guesses for item `index` among the dataset's classes, using the
/// dataset's prompt templates; `heads` are the class embeddings when already computed.
fn guess(
    model: &LoadedModel,
    dataset: &Dataset,
    index: usize,
    heads: Option<Tensor<2>>,
) -> Result<Guessed, String> {
    let heads =
        heads.unwrap_or_else(|| class_embeddings(model, &dataset.classes, &dataset.templates));
    let image = embed_items(model, dataset, &[index], 1);
    if image.items.is_empty() {
        return Err(format!("image {index} could not be read"));
    }
    let probabilities = class_probabilities(model, image.embeds, heads.clone());
    let top = probabilities
        .first()
        .map(|row| top_classes(row, TOP_GUESSES))
        .unwrap_or_default();
    Ok(Guessed { heads, top })
}

/// The `k` most probable classes, most probable first.
fn top_classes(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colours() -> Loaded {
        load("shapes:colors?seed=3&n=60").unwrap()
    }

    #[test]
    fn loading_prepares_filters_and_names_the_spec_on_error() {
        let loaded = colours();
        assert_eq!(loaded.haystacks.len(), 60);
        assert_eq!(loaded.class_counts.iter().sum::<usize>(), 60);
        let error = load("shapes:nonsense").err().unwrap();
        assert!(error.contains("shapes:nonsense"), "{error}");
        let error = load("folder:/no/such/folder").err().unwrap();
        assert!(error.contains("folder:/no/such/folder"), "{error}");
    }

    #[test]
    fn filters_match_labels_and_captions() {
        let Loaded {
            dataset, haystacks, ..
        } = colours();
        let red = dataset.classes.iter().position(|c| c == "red").unwrap();
        let reds = filter_items(&dataset, &haystacks, Some(red), "");
        assert!(!reds.is_empty());
        assert!(reds.iter().all(|&i| dataset.items[i].label == red));
        let by_text = filter_items(&dataset, &haystacks, None, "  RED ");
        assert!(
            reds.iter().all(|i| by_text.contains(i)),
            "the label matches too"
        );
        assert_eq!(filter_items(&dataset, &haystacks, None, "").len(), 60);
        assert!(filter_items(&dataset, &haystacks, None, "no such words").is_empty());
    }

    #[test]
    fn ranking_orders_by_score_with_unreadable_images_last() {
        let mut items = vec![0, 1, 2, 3, 4];
        let scores = [Some(0.1), None, Some(0.9), Some(0.1), Some(0.5)];
        sort_by_score(&mut items, &scores);
        assert_eq!(items, vec![2, 4, 0, 3, 1]);
    }

    #[test]
    fn embeddings_map_rows_back_to_items() {
        // Item 1 was unreadable: rows are items 0 and 2.
        let mut embeddings = Embeddings {
            width: 2,
            values: Vec::new(),
            rows: vec![None; 3],
        };
        embeddings.append(&[0, 2], &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(embeddings.row(2), Some([0.0, 1.0].as_slice()));
        assert_eq!(embeddings.row(1), None);
        assert_eq!(
            embeddings.scores(&[1.0, 0.0]),
            vec![Some(1.0), None, Some(0.0)]
        );
        let centre = embeddings.centroid(&[0, 1, 2]).unwrap();
        let half = std::f32::consts::FRAC_1_SQRT_2;
        assert!((centre[0] - half).abs() < 1e-6 && (centre[1] - half).abs() < 1e-6);
        assert!(embeddings.centroid(&[1]).is_none());
    }

    #[test]
    fn dropped_paths_become_specs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        assert_eq!(
            spec_for_path(path),
            Ok(format!("folder:{}", path.display()))
        );
        let manifest = path.join("set.JSONL");
        assert_eq!(
            spec_for_path(&manifest),
            Ok(format!("manifest:{}", manifest.display()))
        );
        assert!(spec_for_path(&path.join("cat.png")).is_err());
    }

    #[test]
    fn top_classes_are_sorted_and_cut() {
        let top = top_classes(&[0.1, 0.6, 0.05, 0.25], 2);
        assert_eq!(top, vec![(1, 0.6), (3, 0.25)]);
        assert_eq!(top_classes(&[0.5], 5).len(), 1);
    }

    /// Polls until `done` holds (failing after two minutes).
    fn settle(browser: &mut Browser, what: &str, done: impl Fn(&Browser) -> bool) {
        let start = std::time::Instant::now();
        while !done(browser) {
            assert!(
                start.elapsed().as_secs() < 120,
                "timed out waiting for {what}"
            );
            browser.poll();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn ranking_and_guesses_come_from_the_model() {
        use crate::backend::DeviceChoice;
        let ctx = Context::default();
        let model = Arc::new(LoadedModel::open_spec("demo:vit", DeviceChoice::Cpu).unwrap());
        let mut browser = Browser::default();
        browser.open("shapes:colors?seed=5&n=40".into(), &ctx);
        settle(&mut browser, "the dataset", |b| b.dataset.is_some());
        let data = browser.dataset.clone().unwrap();
        let red = data.classes.iter().position(|c| c == "red").unwrap();

        browser.rank_by_text("a red object".into(), Some(&model), &ctx);
        settle(&mut browser, "the text ranking", |b| {
            b.ranker.running.is_none()
        });
        assert_eq!(browser.ranker.error, None);
        let top = browser.visible()[0];
        assert_eq!(data.items[top].label, red, "the most similar image is red");
        assert!(browser.text_scores("a red object").is_some());
        assert!(browser.text_scores("something else").is_none());

        // An image is most similar to itself; the embeddings are reused.
        browser.selection.select_all(&[top]);
        let query = Query::Images(vec![top]);
        browser.ranker.start(query, &model, &data, &ctx);
        assert_eq!(browser.ranker.running.as_ref().unwrap().total, 0);
        settle(&mut browser, "the image ranking", |b| {
            b.ranker.running.is_none()
        });
        assert_eq!(browser.visible()[0], top);
        let own = browser.scores().unwrap()[top].unwrap();
        assert!((own - 1.0).abs() < 1e-4, "{own}");

        browser.inspector.follow(top, &data, Some(&model), &ctx);
        settle(&mut browser, "the guesses", |b| {
            b.inspector.guesses_for(&model).is_some() && b.inspector.preview.is_some()
        });
        let guesses = browser
            .inspector
            .guesses_for(&model)
            .unwrap()
            .as_ref()
            .unwrap();
        assert_eq!(guesses.len(), TOP_GUESSES);
        assert_eq!(guesses[0].0, red, "the model calls it red");
        assert!(browser.inspector.preview.as_ref().unwrap().is_ok());
    }

    #[test]
    fn the_panel_opens_filters_selects_and_shows_details() {
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable;
        let mut harness = Harness::builder()
            .with_size(egui::vec2(1100.0, 800.0))
            .build_ui_state(
                |ui, (browser, thumbs): &mut (Browser, Thumbnails)| {
                    browser.poll();
                    let marks = |item: usize| (item == 2).then_some(Color32::RED);
                    browser.ui(ui, None, thumbs, &marks);
                },
                (Browser::default(), Thumbnails::new(2, 512)),
            );
        harness.run_steps(1);
        harness.get_by_label("colors").click();
        let start = std::time::Instant::now();
        while harness.state().0.dataset.is_none() {
            assert!(start.elapsed().as_secs() < 60, "the dataset did not open");
            harness.step();
            std::thread::sleep(Duration::from_millis(10));
        }
        harness.run_steps(2);
        let spec = harness.get_by_label("Dataset").value();
        assert_eq!(spec.as_deref(), Some("shapes:colors?seed=7&n=2000"));
        let counts = "2000 images · 10 classes · 0 selected";
        assert!(harness.query_all_by_label_contains(counts).next().is_some());

        harness.get_by_label("image 3").click();
        harness.run_steps(2);
        let browser = &harness.state().0;
        assert_eq!(browser.details, Some(3));
        assert_eq!(
            browser
                .selection
                .selected
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [3]
        );
        let no_model = "Open a model to see";
        assert!(
            harness
                .query_all_by_label_contains(no_model)
                .next()
                .is_some()
        );

        let filter = harness.get_by_label("Filter");
        filter.focus();
        filter.type_text("red");
        harness.run_steps(2);
        let browser = &harness.state().0;
        let data = browser.dataset.clone().unwrap();
        assert!(!browser.visible().is_empty() && browser.visible().len() < 2000);
        let red = data.classes.iter().position(|c| c == "red").unwrap();
        let caption_says_red = |i: usize| data.items[i].caption.as_ref().unwrap().contains("red");
        assert!(
            browser
                .visible()
                .iter()
                .all(|&i| data.items[i].label == red || caption_says_red(i))
        );
        let counts = "2000 images · 10 classes · 1 selected · ";
        assert!(harness.query_all_by_label_contains(counts).next().is_some());
    }

    #[test]
    fn queries_describe_themselves() {
        assert_eq!(Query::Text("a red star".into()).describe(), "“a red star”");
        assert_eq!(Query::Images(vec![12]).describe(), "image 12");
        assert_eq!(Query::Images(vec![1, 2, 3]).describe(), "3 selected images");
    }
}

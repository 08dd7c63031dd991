//! The Results panel: before/after numbers, per-class bars, the images whose prediction
//! changed, the synthetic forget images, exports, and the history of runs for comparison.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use egui_plot::{
    Bar, BarChart, Legend, Line, MarkerShape, Plot, PlotPoint, PlotPoints, PlotResponse,
    PlotTransform, Points,
};

use super::LetheApp;
use super::batch_view::{self, BatchRecord};
use super::heatmap_window::{HeatmapWindow, Subject};
use super::points_paint;
use super::run_panel::{StepPoint, curves};
use super::task::{Task, take_finished};
use super::thumbnails::{Thumbnails, texture_from_rgb};
use crate::data::dataset::Dataset;
use crate::eval::audit::{Check, Verdict};
use crate::eval::interval::Estimate;
use crate::eval::metrics::report_markdown;
use crate::viz::map::{EmbeddingMap, MapPoint, Place, class_colour};
use crate::workflow::{
    ChangedPrediction, Finished, Opened, export_checkpoint, synthetic_pictures, write_outputs,
};

/// One finished run, kept for the history.
pub struct RunRecord {
    /// Run number since the app started.
    pub id: usize,
    /// What the run opened (the checkpoint format and preprocessing are needed to export).
    pub opened: Arc<Opened>,
    /// The measurements and the edited model.
    pub finished: Finished,
    /// The zero-shot head's images, for the gallery of changed predictions.
    pub head: Arc<Dataset>,
    /// The run's curves.
    pub curve: Vec<StepPoint>,
    /// The model before and after, for the heatmap window.
    pub models: [Subject; 2],
    textures: Vec<egui::TextureHandle>,
    heatmap_texture: Option<egui::TextureHandle>,
    /// Rows of the changed-predictions gallery shown so far ("Show more" adds some).
    changed_rows: usize,
    /// What the embedding map's pictures are coloured by.
    map_colouring: MapColouring,
    /// How the before and the after map were last drawn, from map places to the screen.
    map_transforms: [Option<PlotTransform>; 2],
}

/// What the pictures of a run's embedding map are coloured by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum MapColouring {
    /// Their class.
    #[default]
    Class,
    /// Whether the edited model answers differently from the original.
    Changed,
}

/// Rows of changed predictions shown at first, and added by each "Show more".
const CHANGED_ROWS: usize = 4;

impl RunRecord {
    /// Wraps a finished run.
    pub fn new(id: usize, opened: Arc<Opened>, finished: Finished) -> Self {
        let head = Arc::new(opened.plan.head.clone());
        let original = &opened.loaded;
        let models = [
            Subject {
                name: "original".into(),
                model: Arc::new(original.with_model(original.model.clone())),
            },
            Subject {
                name: format!("edited (run {id})"),
                model: Arc::new(original.with_model(finished.model.clone())),
            },
        ];
        Self {
            id,
            opened,
            finished,
            head,
            curve: Vec::new(),
            models,
            textures: Vec::new(),
            heatmap_texture: None,
            changed_rows: CHANGED_ROWS,
            map_colouring: MapColouring::default(),
            map_transforms: [None, None],
        }
    }

    /// Where a place of the before (or the after) embedding map was on screen when last
    /// drawn.
    pub fn map_to_screen(&self, after: bool, place: Place) -> Option<egui::Pos2> {
        let transform = self.map_transforms[usize::from(after)].as_ref()?;
        Some(transform.position_from_point(&PlotPoint::new(place[0], place[1])))
    }

    /// One line: method, classes, target accuracy before -> after, Avg Score.
    pub fn headline(&self) -> String {
        let m = &self.finished.metrics;
        format!(
            "#{} {} forgot {}: {:.3} -> {:.3} (n={}), Avg Score {:.3}",
            self.id,
            m.method,
            m.classes.join(", "),
            m.target.before.value,
            m.target.after.value,
            m.target.after.n,
            m.avg_score
        )
    }
}

/// The finished runs and what is being done with them.
#[derive(Default)]
pub struct Results {
    /// Every finished run, oldest first.
    pub runs: Vec<RunRecord>,
    /// Every finished batch of queued concepts, oldest first.
    pub batches: Vec<BatchRecord>,
    /// The run shown.
    pub shown: usize,
    /// The batch shown instead of a run, if one is picked.
    pub shown_batch: Option<usize>,
    /// A run to compare the shown one with.
    pub compare: Option<usize>,
    saving: Option<Task<Result<String, String>>>,
}

/// What a save writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saving {
    /// Only the edited checkpoint.
    Checkpoint,
    /// Everything `lethe run` writes: checkpoint, recipe, metrics, reports, synthetic images,
    /// SHA256SUMS.
    ResultFolder,
}

impl Results {
    /// Writes run `index` into the new folder `dir` in the background; the outcome appears in
    /// the status bar. Nothing is written over the input checkpoint or a non-empty folder.
    pub fn save(&mut self, ctx: &egui::Context, index: usize, dir: PathBuf, what: Saving) {
        let run = &self.runs[index];
        let opened = Arc::clone(&run.opened);
        let mut finished = run.finished.clone();
        self.saving = Some(Task::spawn("saving", ctx, move || {
            let written = match what {
                Saving::Checkpoint => export_checkpoint(&opened, &finished.model, &dir),
                Saving::ResultFolder => write_outputs(&opened, &mut finished, &dir),
            };
            written
                .map(|()| format!("Saved to {}", dir.display()))
                .map_err(|e| format!("{e:#}"))
        }));
    }

    /// Whether a save is under way.
    pub fn is_saving(&self) -> bool {
        self.saving.is_some()
    }

    /// Adds a finished run and shows it.
    pub fn add(&mut self, record: RunRecord) {
        self.runs.push(record);
        self.shown = self.runs.len() - 1;
        self.shown_batch = None;
    }

    /// Adds a finished batch and shows it.
    pub fn add_batch(&mut self, record: BatchRecord) {
        self.batches.push(record);
        self.shown_batch = Some(self.batches.len() - 1);
    }
}

/// Draws the Results panel.
pub fn ui(app: &mut LetheApp, ui: &mut egui::Ui) {
    if let Some(result) = take_finished(&mut app.results.saving) {
        match result.and_then(|r| r) {
            Ok(message) => app.notify(message, false),
            Err(error) => app.notify(error, true),
        }
    }
    if app.results.runs.is_empty() && app.results.batches.is_empty() {
        ui.heading("Results");
        ui.label("No run yet: go to step 4 and press Run.");
        return;
    }
    egui::Panel::left("history")
        .resizable(true)
        .default_size(240.0)
        .show(ui, |ui| history(&mut app.results, ui));
    let ctx = ui.ctx().clone();
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let results = &app.results;
            if let Some(batch) = results.shown_batch.and_then(|i| results.batches.get(i)) {
                batch_view::ui(batch, ui);
                return;
            }
            if results.runs.is_empty() {
                return;
            }
            let results = &mut app.results;
            let shown = results.shown.min(results.runs.len() - 1);
            ui.heading(results.runs[shown].headline());
            if let Some(message) = export_buttons(results, shown, ui) {
                app.notify(message, true);
            }
            let results = &mut app.results;
            verdicts(&results.runs[shown].finished.metrics, ui);
            table(results, shown, ui);
            class_bars(&results.runs[shown], ui);
            let run = &mut results.runs[shown];
            if let Some(item) = changed_gallery(run, &mut app.thumbnails, ui) {
                let models = run.models.to_vec();
                app.heatmap = Some(HeatmapWindow::new(Arc::clone(&run.head), item, models));
            }
            synthetic_gallery(&mut results.runs[shown], &ctx, ui);
            heatmaps(&mut results.runs[shown], &ctx, ui);
            embedding_map(&mut results.runs[shown], &mut app.thumbnails, ui);
            egui::CollapsingHeader::new("Curves of this run")
                .show(ui, |ui| curves(&results.runs[shown].curve, ui));
        });
    });
}

fn history(results: &mut Results, ui: &mut egui::Ui) {
    if !results.batches.is_empty() {
        ui.heading("Batches");
        for i in (0..results.batches.len()).rev() {
            let text = results.batches[i].headline();
            if ui
                .selectable_label(results.shown_batch == Some(i), text)
                .clicked()
            {
                results.shown_batch = Some(i);
            }
        }
        ui.separator();
    }
    if results.runs.is_empty() {
        return;
    }
    ui.heading("Runs");
    for i in (0..results.runs.len()).rev() {
        let text = results.runs[i].headline();
        let shown = results.shown_batch.is_none() && results.shown == i;
        if ui.selectable_label(shown, text).clicked() {
            results.shown = i;
            results.shown_batch = None;
        }
    }
    ui.separator();
    ui.label("Compare with")
        .on_hover_text("Show another run's numbers next to the shown one.");
    egui::ComboBox::from_id_salt("compare")
        .selected_text(
            results
                .compare
                .and_then(|c| results.runs.get(c))
                .map_or("nothing".into(), |r| format!("#{}", r.id)),
        )
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut results.compare, None, "nothing");
            for (i, run) in results.runs.iter().enumerate() {
                ui.selectable_value(&mut results.compare, Some(i), format!("#{}", run.id));
            }
        });
}

/// Export buttons; returns a message when an export could not start.
fn export_buttons(results: &mut Results, shown: usize, ui: &mut egui::Ui) -> Option<String> {
    let busy = results.saving.is_some();
    let mut message = None;
    ui.horizontal(|ui| {
        let ctx = ui.ctx().clone();
        for (label, hover, saving) in [
            (
                "Export checkpoint…",
                "Write the edited model into a new folder, in the input's format. The original checkpoint is never touched.",
                Saving::Checkpoint,
            ),
            (
                "Save result folder…",
                "Checkpoint, recipe, metrics.json, report.md, report.html (one page for any browser), the synthetic images and SHA256SUMS, as `lethe run` writes them.",
                Saving::ResultFolder,
            ),
        ] {
            if ui
                .add_enabled(!busy, egui::Button::new(label))
                .on_hover_text(hover)
                .clicked()
                && let Some(dir) = rfd::FileDialog::new().pick_folder()
            {
                results.save(&ctx, shown, dir, saving);
            }
        }
        let run = &results.runs[shown];
        if ui.button("Save recipe…").clicked()
            && let Some(path) = save_dialog("recipe.toml")
        {
            message = save_text(&path, &run.opened.recipe_text).err();
        }
        if ui.button("Save report.md…").clicked()
            && let Some(path) = save_dialog("report.md")
        {
            message = save_text(&path, &report_markdown(&run.finished.metrics)).err();
        }
        if busy {
            ui.spinner();
        }
    });
    message
}

fn save_dialog(name: &str) -> Option<PathBuf> {
    rfd::FileDialog::new().set_file_name(name).save_file()
}

fn save_text(path: &std::path::Path, text: &str) -> Result<(), String> {
    crate::atomic::write_file(path, text.as_bytes()).map_err(|e| format!("{e:#}"))
}

fn cell(ui: &mut egui::Ui, value: Option<f64>) {
    match value {
        Some(v) => ui.label(format!("{v:.3}")),
        None => ui.weak("–"),
    };
}

/// An accuracy with its 95% interval; the hover says how many pictures it rests on.
pub fn estimate_cell(ui: &mut egui::Ui, value: Option<&Estimate>) {
    match value {
        Some(e) => {
            ui.label(format!(
                "{:.3} [{:.3}, {:.3}]",
                e.value, e.ci_low, e.ci_high
            ))
            .on_hover_text(format!(
                "{:.1}% of {} pictures; the 95% Wilson interval is {:.1}% to {:.1}%.",
                e.value * 100.0,
                e.n,
                e.ci_low * 100.0,
                e.ci_high * 100.0
            ));
        }
        None => {
            ui.weak("–");
        }
    }
}

/// The audit's verdicts, first thing under the headline when the recipe has `[audit]`.
fn verdicts(m: &crate::eval::metrics::Metrics, ui: &mut egui::Ui) {
    if let Some(audit) = &m.audit {
        verdict_line(ui, audit.verdict);
        check_grid(ui, "verdicts", None, audit.checks.iter());
    }
}

/// A verdict's colour: green, red, or amber for inconclusive.
pub fn verdict_colour(verdict: Verdict) -> egui::Color32 {
    match verdict {
        Verdict::Pass => egui::Color32::from_rgb(40, 140, 60),
        Verdict::Fail => egui::Color32::from_rgb(200, 40, 40),
        Verdict::Inconclusive => egui::Color32::from_rgb(200, 140, 20),
    }
}

/// The combined verdict, in its colour, with what the words mean on hover.
pub fn verdict_line(ui: &mut egui::Ui, verdict: Verdict) {
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.strong("Verdict:");
        ui.colored_label(verdict_colour(verdict), egui::RichText::new(verdict.word()).strong())
            .on_hover_text("A check passes when its whole 95% interval meets the criterion, fails when the whole interval misses it, and is inconclusive when the interval straddles the threshold.");
    });
}

/// One row per check, coloured; with `concepts`, each row first names the concept its check
/// belongs to.
pub fn check_grid<'a>(
    ui: &mut egui::Ui,
    id: &str,
    concepts: Option<&[String]>,
    checks: impl Iterator<Item = &'a Check>,
) {
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        let mut headings = vec!["verdict", "check", "on", "criterion", "measured", "n"];
        if concepts.is_some() {
            headings.insert(1, "concept");
        }
        for heading in headings {
            ui.strong(heading);
        }
        ui.end_row();
        for (i, c) in checks.enumerate() {
            let label = ui.colored_label(verdict_colour(c.verdict), c.verdict.word());
            if let Some(n) = c.pictures_to_decide {
                label.on_hover_text(format!(
                    "About {n} pictures would decide it at the rate measured."
                ));
            }
            if let Some(concepts) = concepts {
                ui.label(concepts.get(i).map_or("", String::as_str));
            }
            ui.label(&c.check);
            ui.label(display_name(&c.subject));
            ui.label(&c.criterion);
            // In percent or points, as the report reads them (the table below has fractions).
            let unit = if c.check == "retained" {
                " points"
            } else {
                "%"
            };
            ui.label(format!(
                "{:.1}{unit} [{:.1}, {:.1}]",
                c.value * 100.0,
                c.ci_low * 100.0,
                c.ci_high * 100.0
            ));
            ui.label(c.n.to_string());
            ui.end_row();
        }
    });
}

/// The before/after table, with the compared run's "after" column.
fn table(results: &Results, shown: usize, ui: &mut egui::Ui) {
    let m = &results.runs[shown].finished.metrics;
    let other = results
        .compare
        .filter(|&c| c != shown)
        .and_then(|c| results.runs.get(c))
        .map(|r| &r.finished.metrics);
    ui.add_space(6.0);
    egui::Grid::new("before_after").striped(true).show(ui, |ui| {
        ui.strong("");
        ui.strong("before");
        ui.strong("after");
        ui.strong("change");
        if let Some(o) = other {
            ui.strong(format!("after (#{} {})", results.runs[results.compare.unwrap_or(0)].id, o.method));
        }
        ui.end_row();
        let row = |ui: &mut egui::Ui,
                   name: String,
                   before: Option<&Estimate>,
                   after: Option<&Estimate>,
                   compared: Option<Option<&Estimate>>| {
            ui.label(name);
            estimate_cell(ui, before);
            estimate_cell(ui, after);
            cell(ui, before.zip(after).map(|(b, a)| a.value - b.value));
            if let Some(c) = compared {
                estimate_cell(ui, c);
            }
            ui.end_row();
        };
        row(
            ui,
            format!("forgotten: {}", m.classes.join(", ")),
            Some(&m.target.before),
            Some(&m.target.after),
            other.map(|o| Some(&o.target.after)),
        );
        for (i, d) in m.datasets.iter().enumerate() {
            let twin = other.and_then(|o| o.datasets.get(i));
            if d.other_classes_before.is_some() {
                row(
                    ui,
                    format!("other classes of {}", d.name),
                    d.other_classes_before.as_ref(),
                    d.other_classes_after.as_ref(),
                    twin.map(|t| t.other_classes_after.as_ref()),
                );
            } else {
                row(ui, display_name(&d.name), Some(&d.before), Some(&d.after), twin.map(|t| Some(&t.after)));
            }
        }
        if let Some(s) = &m.subgroup {
            let twin = other.and_then(|o| o.subgroup.as_ref());
            row(
                ui,
                format!("subgroup {} (target)", s.name),
                Some(&s.target.change.before),
                Some(&s.target.change.after),
                twin.map(|t| Some(&t.target.change.after)),
            );
            row(
                ui,
                "its siblings (retain)".into(),
                Some(&s.retain.change.before),
                Some(&s.retain.change.after),
                twin.map(|t| Some(&t.retain.change.after)),
            );
            ui.label("Score").on_hover_text(
                "The subgroup paper's Score (0–100, higher is better): the share of the subgroup forgotten, averaged with the share kept of its siblings, the whole dataset and every other dataset.",
            );
            ui.label("");
            ui.label(format!("{:.1}", s.score));
            ui.label("");
            if let Some(o) = other {
                ui.label(o.subgroup.as_ref().map_or("–".into(), |t| format!("{:.1}", t.score)));
            }
            ui.end_row();
        }
        ui.label("Avg Score")
            .on_hover_text("How far the run is from the ideal (target accuracy 0, everything else unchanged); lower is better.");
        ui.label("");
        ui.label(match m.avg_score_interval {
            Some(i) => format!("{:.3} [{:.3}, {:.3}]", m.avg_score, i.ci_low, i.ci_high),
            None => format!("{:.3}", m.avg_score),
        })
        .on_hover_text("In brackets: a 95% bootstrap interval over the pictures measured.");
        ui.label("");
        if let Some(o) = other {
            cell(ui, Some(o.avg_score));
        }
        ui.end_row();
        ui.label("runtime (s)");
        ui.label("");
        cell(ui, Some(m.runtime_s));
        ui.label(format!("{} step(s), {}", m.steps, m.ending));
        ui.end_row();
    });
}

/// A dataset's name for the table: the picked sets the app saved for a run read as such.
fn display_name(spec: &str) -> String {
    for (folder, name) in [
        ("retain", "your retain set"),
        ("eval", "your evaluation split"),
        ("verify", "your verification pictures"),
        ("subgroup-target", "the subgroup's measured pictures"),
        ("subgroup-verify", "the subgroup's verification pictures"),
        ("subgroup-siblings", "its siblings' measured pictures"),
    ] {
        let suffix = format!("sets/{folder}/{}", crate::data::subset::MANIFEST);
        if spec.starts_with("manifest:") && spec.replace('\\', "/").ends_with(&suffix) {
            return name.into();
        }
    }
    spec.to_string()
}

/// Per-class accuracy of the zero-shot head, before and after, side by side.
fn class_bars(run: &RunRecord, ui: &mut egui::Ui) {
    let rows = &run.finished.metrics.per_class;
    if rows.is_empty() {
        return;
    }
    ui.add_space(8.0);
    ui.strong("Accuracy per class, before and after")
        .on_hover_text("Whiskers: 95% Wilson intervals.");
    let names: Vec<String> = rows.iter().map(|r| r.class.clone()).collect();
    let bars = |offset: f64, pick: fn(&crate::eval::metrics::ClassRow) -> f64| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                Bar::new(i as f64 + offset, pick(r))
                    .width(0.38)
                    .name(&r.class)
            })
            .collect::<Vec<_>>()
    };
    let before = BarChart::new("before", bars(-0.2, |r| r.before.value));
    let after = BarChart::new("after", bars(0.2, |r| r.after.value));
    // The 95% interval of each bar as a vertical whisker over it.
    let whiskers = |offset: f64, pick: fn(&crate::eval::metrics::ClassRow) -> &Estimate| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let e = pick(r);
                let x = i as f64 + offset;
                Line::new("", PlotPoints::from(vec![[x, e.ci_low], [x, e.ci_high]]))
                    .color(egui::Color32::from_gray(90))
                    .width(1.5)
            })
            .collect::<Vec<_>>()
    };
    let intervals: Vec<Line> = whiskers(-0.2, |r| &r.before)
        .into_iter()
        .chain(whiskers(0.2, |r| &r.after))
        .collect();
    Plot::new(("class_bars", run.id))
        .height(200.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .allow_drag(false)
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            plot.bar_chart(before);
            plot.bar_chart(after);
            for line in intervals {
                plot.line(line);
            }
        });
}

/// The head's images whose prediction changed; returns the one clicked (its heatmaps are
/// then shown).
fn changed_gallery(
    run: &mut RunRecord,
    thumbs: &mut super::thumbnails::Thumbnails,
    ui: &mut egui::Ui,
) -> Option<usize> {
    let mut clicked = None;
    let changed = &run.finished.changed;
    ui.add_space(8.0);
    ui.strong(format!(
        "Images whose prediction changed ({} of {})",
        changed.len(),
        run.head.items.len()
    ));
    let classes = &run.head.classes;
    let columns = ((ui.available_width() / 120.0).floor() as usize).max(1);
    egui::Grid::new(("changed", run.id)).show(ui, |ui| {
        for (n, change) in changed.iter().take(columns * run.changed_rows).enumerate() {
            ui.vertical(|ui| {
                match thumbs.get(ui.ctx(), &run.head, change.item) {
                    Some(texture) => {
                        let response = ui
                            .add(
                                egui::Image::new(&texture)
                                    .fit_to_exact_size(egui::vec2(64.0, 64.0))
                                    .sense(egui::Sense::click()),
                            )
                            .on_hover_text(
                                "Click to see where the original and the edited model look in it.",
                            );
                        response.widget_info(|| {
                            egui::WidgetInfo::labeled(
                                egui::Role::Button,
                                true,
                                format!("changed image {}", change.item),
                            )
                        });
                        if response.clicked() {
                            clicked = Some(change.item);
                        }
                    }
                    None => {
                        ui.add_sized([64.0, 64.0], egui::Spinner::new());
                    }
                }
                ui.small(format!(
                    "{}: {} -> {}",
                    classes[change.label], classes[change.before], classes[change.after]
                ));
            });
            if (n + 1) % columns == 0 {
                ui.end_row();
            }
        }
    });
    let hidden = changed.len().saturating_sub(columns * run.changed_rows);
    if hidden > 0
        && ui
            .button(format!("Show more ({hidden} not shown)"))
            .on_hover_text("Adds a few rows to the gallery.")
            .clicked()
    {
        run.changed_rows += CHANGED_ROWS;
    }
    clicked
}

/// Where the original and the edited model look, on a few pictures of the forget dataset (the
/// sheet the run made; `heatmaps.png` of a saved result).
fn heatmaps(run: &mut RunRecord, ctx: &egui::Context, ui: &mut egui::Ui) {
    let Some(heatmaps) = &run.finished.heatmaps else {
        return;
    };
    ui.add_space(8.0);
    egui::CollapsingHeader::new("Where the model finds each class")
        .id_salt(("heatmaps", run.id))
        .show(ui, |ui| {
            ui.label(format!(
                "Each row: a picture of {}, then what in it matches its class for the original and the edited model ({}; dark is low, bright is high).",
                heatmaps.classes.join(", "),
                heatmaps.method
            ));
            let texture = run.heatmap_texture.get_or_insert_with(|| {
                texture_from_rgb(ctx, &format!("heatmaps-{}", run.id), &heatmaps.sheet)
            });
            let size = texture.size_vec2() * 0.75;
            ui.add(
                egui::Image::new(&*texture)
                    .fit_to_exact_size(size)
                    .alt_text("Saliency of the original and the edited model"),
            );
        });
}

/// The t-SNE map of the forget dataset's pictures and class prompts, before and after, side by
/// side on the same axes (the after map is aligned onto the before map), its pictures coloured
/// by class or by whether the edit changed their answer. Hovering a picture shows it, its class
/// and, if the edit changed it, its answer before and after.
fn embedding_map(run: &mut RunRecord, thumbs: &mut Thumbnails, ui: &mut egui::Ui) {
    let Some(map) = &run.finished.map else {
        return;
    };
    ui.add_space(8.0);
    egui::CollapsingHeader::new("Embedding map")
        .id_salt(("map", run.id))
        .show(ui, |ui| {
            ui.label(
                "t-SNE of the forget dataset's pictures (dots) and of each class's prompts \
                 (diamonds), as the original and the edited model embed them; the right map is \
                 aligned onto the left, so what moved was moved by the edit.",
            );
            ui.horizontal(|ui| {
                ui.label("Colour pictures by");
                ui.radio_value(&mut run.map_colouring, MapColouring::Class, "class")
                    .on_hover_text("Each class in its colour, as in the legend.");
                ui.radio_value(
                    &mut run.map_colouring,
                    MapColouring::Changed,
                    "changed answer",
                )
                .on_hover_text(
                    "Red: pictures the edited model answers differently from the original (the \
                     gallery above); grey: the same answer.",
                );
            });
            let changed = (run.map_colouring == MapColouring::Changed).then(|| {
                run.finished
                    .changed
                    .iter()
                    .map(|c| c.item)
                    .collect::<HashSet<usize>>()
            });
            let width = (ui.available_width() - 8.0) / 2.0;
            ui.horizontal(|ui| {
                for (title, after) in [("before", false), ("after", true)] {
                    ui.vertical(|ui| {
                        ui.label(title);
                        let id = ("map", run.id, after);
                        let response = map_plot(map, after, changed.as_ref(), id, width, ui);
                        run.map_transforms[usize::from(after)] = Some(response.transform);
                        if let Some(at) = response.inner
                            && let Some(item) = points_paint::nearest_item(
                                map.points
                                    .iter()
                                    .filter_map(|p| Some((p.item?, p.place(after)))),
                                &response.transform,
                                [at.x, at.y],
                            )
                        {
                            let texture = thumbs.get(ui.ctx(), &run.head, item);
                            let about = hovered_picture(&run.head, &run.finished.changed, item);
                            response.response.on_hover_ui_at_pointer(|ui| {
                                if let Some(texture) = texture {
                                    ui.add(
                                        egui::Image::new(&texture)
                                            .fit_to_exact_size(egui::vec2(96.0, 96.0)),
                                    );
                                }
                                ui.label(about);
                            });
                        }
                    });
                }
            });
        });
}

/// The places of a map's pictures, split into those whose answer the edit changed and the
/// others.
fn split_by_change(
    map: &EmbeddingMap,
    after: bool,
    changed: &HashSet<usize>,
) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    map.points
        .iter()
        .filter_map(|p| {
            p.item
                .map(|item| (changed.contains(&item), place(p, after)))
        })
        .fold((Vec::new(), Vec::new()), |(mut yes, mut no), (hit, at)| {
            if hit {
                yes.push(at)
            } else {
                no.push(at)
            }
            (yes, no)
        })
}

/// Where `point` lies on the before or the after map.
fn place(point: &MapPoint, after: bool) -> [f64; 2] {
    let [x, y] = point.place(after);
    [x as f64, y as f64]
}

/// What hovering picture `item` of a run's map says: its number and class in `head`, and the
/// answers before and after when the edit `changed` it.
fn hovered_picture(head: &Dataset, changed: &[ChangedPrediction], item: usize) -> String {
    let name = |label: usize| head.classes.get(label).map_or("?", String::as_str);
    let class = head.items.get(item).map_or("?", |i| name(i.label));
    match changed.iter().find(|c| c.item == item) {
        Some(change) => format!(
            "image {item}: {class}\nanswered {} before, {} after",
            name(change.before),
            name(change.after)
        ),
        None => format!("image {item}: {class}\nsame answer before and after"),
    }
}

/// One side of an embedding map, a series per class so the legend names them (or, given the
/// changed pictures, one series of changed and one of unchanged pictures); returns where the
/// pointer is on the map.
fn map_plot(
    map: &EmbeddingMap,
    after: bool,
    changed: Option<&HashSet<usize>>,
    id: impl egui::AsIdSalt,
    width: f32,
    ui: &mut egui::Ui,
) -> PlotResponse<Option<PlotPoint>> {
    Plot::new(id)
        .width(width)
        .height(width.min(360.0))
        .data_aspect(1.0)
        .legend(Legend::default())
        .show_axes(false)
        .show(ui, |plot| {
            if let Some(changed) = changed {
                let (moved, kept) = split_by_change(map, after, changed);
                let series = [
                    (
                        format!("same answer ({})", kept.len()),
                        kept,
                        egui::Color32::GRAY,
                    ),
                    (
                        format!("answer changed ({})", moved.len()),
                        moved,
                        egui::Color32::from_rgb(0xd6, 0x27, 0x28),
                    ),
                ];
                for (name, points, colour) in series {
                    plot.points(Points::new(name, points).color(colour).radius(2.2));
                }
            }
            for (label, class) in map.classes.iter().enumerate() {
                let name = if map.forgotten.contains(&label) {
                    format!("{class} (forgotten)")
                } else {
                    class.clone()
                };
                let [r, g, b] = class_colour(class, label);
                let colour = egui::Color32::from_rgb(r, g, b);
                let of_class = |text: bool| {
                    map.points
                        .iter()
                        .filter(|p| p.label == label && p.item.is_none() == text)
                        .map(|p| place(p, after))
                        .collect::<Vec<_>>()
                };
                if changed.is_none() {
                    plot.points(
                        Points::new(name.clone(), of_class(false))
                            .color(colour)
                            .radius(1.8),
                    );
                }
                plot.points(
                    Points::new(name, of_class(true))
                        .color(colour)
                        .shape(MarkerShape::Diamond)
                        .radius(6.0),
                );
            }
            plot.pointer_coordinate()
        })
}

/// The synthetic forget images.
fn synthetic_gallery(run: &mut RunRecord, ctx: &egui::Context, ui: &mut egui::Ui) {
    if run.finished.synthetic.is_empty() {
        return;
    }
    if run.textures.is_empty() {
        run.textures = synthetic_pictures(&run.opened, &run.finished)
            .iter()
            .enumerate()
            .map(|(i, picture)| {
                texture_from_rgb(ctx, &format!("synthetic-{}-{i}", run.id), picture)
            })
            .collect();
    }
    ui.add_space(8.0);
    ui.strong(format!("Synthetic forget images ({})", run.textures.len()))
        .on_hover_text("Pictures the method made from the model itself, which it recognised as the class; it then forgot them. They look like noise to people.");
    ui.horizontal_wrapped(|ui| {
        for texture in &run.textures {
            ui.add(egui::Image::new(texture).fit_to_exact_size(egui::vec2(56.0, 56.0)));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_splits_pictures_by_whether_their_answer_changed() {
        let point = |item: Option<usize>, before: [f32; 2], after: [f32; 2]| MapPoint {
            label: 0,
            item,
            before,
            after,
        };
        let map = EmbeddingMap {
            classes: vec!["star".into()],
            forgotten: vec![0],
            points: vec![
                point(Some(3), [0.0, 0.0], [1.0, 1.0]),
                point(Some(5), [2.0, 0.0], [2.0, 2.0]),
                point(Some(8), [4.0, 0.0], [3.0, 3.0]),
                // The class's prompts are no picture.
                point(None, [9.0, 9.0], [9.0, 9.0]),
            ],
        };
        let changed = HashSet::from([5, 8, 42]);
        let (moved, kept) = split_by_change(&map, false, &changed);
        assert_eq!(moved, vec![[2.0, 0.0], [4.0, 0.0]]);
        assert_eq!(kept, vec![[0.0, 0.0]]);
        let (moved, _) = split_by_change(&map, true, &changed);
        assert_eq!(moved, vec![[2.0, 2.0], [3.0, 3.0]]);
    }
}

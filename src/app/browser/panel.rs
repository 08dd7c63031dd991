//! The Data panel's widgets: the dataset toolbar, the filters, the ranking bar, the counts and
//! the grid, with the details view beside it.

use std::sync::Arc;
use std::time::Duration;

use eframe::egui::{self, Color32, Ui};

use super::ranking::{NO_MODEL, Query, SIMILARITY_HELP};
use super::{Browser, View};
use crate::app::grid;
use crate::app::thumbnails::Thumbnails;
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;

/// The Shapes subsets offered as one-click datasets.
const SHAPES_SUBSETS: [&str; 5] = ["shapes", "colors", "fruits", "color-shapes", "backgrounds"];
/// Images in a one-click Shapes dataset: enough to browse, quick to embed.
const QUICK_IMAGES: usize = 2000;
/// Seed of the one-click Shapes datasets (not one the scenario's datasets use).
const QUICK_SEED: u64 = 7;
/// Tile sizes the slider allows, in points.
const TILE_RANGE: std::ops::RangeInclusive<f32> = 40.0..=160.0;

impl Browser {
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
        match self.view {
            View::Grid => self.grid(ui, &dataset, thumbs, marks),
            View::Map => self.show_map(ui, &dataset, model, thumbs, marks),
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
            ui.separator();
            self.view_switch(ui);
        });
    }

    /// Grid or map: the Data and Sets panels both offer the switch.
    pub fn view_switch(&mut self, ui: &mut Ui) {
        ui.selectable_value(&mut self.view, View::Grid, "Grid")
            .on_hover_text("The images as thumbnails, in order.");
        ui.selectable_value(&mut self.view, View::Map, "Map")
            .on_hover_text(
                "The images placed by how alike the model finds them (t-SNE of its embeddings), \
             with each class's prompts; draw a lasso or a rectangle to select.",
            );
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
            let idle = model.is_some() && !self.ranker.is_running();
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

    /// The visible images as a selectable grid, sharing this browser's selection: the Data and
    /// Sets panels both pick images through it.
    pub fn show_grid(
        &mut self,
        ui: &mut Ui,
        id_salt: &str,
        dataset: &Arc<Dataset>,
        thumbs: &mut Thumbnails,
        marks: &dyn Fn(usize) -> Option<Color32>,
        tile: f32,
    ) -> grid::GridResponse {
        grid::show(
            ui,
            id_salt,
            dataset,
            &self.visible,
            thumbs,
            &mut self.selection,
            marks,
            tile,
        )
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
        let tile = self.tile;
        let response = self.show_grid(ui, "browser grid", dataset, thumbs, marks, tile);
        if let Some(item) = response.double_clicked.or(response.clicked) {
            self.details = Some(item);
        }
        self.hovered = response.hovered;
    }
}

#[cfg(test)]
mod tests {
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    use super::*;

    #[test]
    fn the_panel_opens_filters_selects_and_shows_details() {
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
        // The app opens the heatmap window on the request.
        harness.get_by_label("Heatmaps").click();
        harness.run_steps(2);
        assert_eq!(harness.state().0.heatmap_request, Some(3));
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
}

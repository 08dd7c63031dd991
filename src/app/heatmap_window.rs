//! The heatmap window: one picture under several models — the original and the edited one —
//! side by side, each model's saliency drawn over it on the GPU (`heatmap_paint`), toward the
//! class the user picks or from attention alone, with an opacity slider and the colour scale.
//! Opened from the Data panel's image details, the Sets panel (the one selected image) and a
//! click in the Results gallery; the maps are computed on a background thread.

use std::sync::Arc;

use eframe::egui::{self, ColorImage, Context, TextureHandle, TextureOptions, Ui};

use super::heatmap_paint;
use super::task::{Task, take_finished};
use super::thumbnails::{read_image, texture_from_rgb};
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::eval::class_embeddings;
use crate::viz::compare::{Column, as_seen, column_maps};
use crate::viz::overlay::legend;
use crate::viz::saliency::{Saliency, method_name, method_name_toward};

/// Side of each model's panel, in points.
const PANEL: f32 = 224.0;

/// One model shown in the window, with the name its column carries.
#[derive(Clone)]
pub struct Subject {
    /// "original", "edited (run 2)", …
    pub name: String,
    /// The model, with its tokenizer and preprocessing.
    pub model: Arc<LoadedModel>,
}

/// What the maps show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    /// Where the image tower looks, whatever the text (attention rollout, attention pool).
    Attention,
    /// What in the picture matches a class of the dataset (its prompts, averaged as the
    /// zero-shot head does).
    Class(usize),
}

/// Maps computed for one setting of the window.
#[derive(Clone, Debug)]
pub struct Maps {
    /// What they were computed toward.
    pub toward: Toward,
    /// One per subject, in order.
    pub maps: Vec<Saliency>,
    /// How they were computed, e.g. "Grad-CAM toward \"star\"".
    pub method: String,
}

/// The picture as the first model sees it and the maps, from the background thread.
struct Computed {
    picture: Option<ColorImage>,
    maps: Maps,
}

/// The window's state; the app holds one while it is open.
pub struct HeatmapWindow {
    dataset: Arc<Dataset>,
    item: usize,
    subjects: Vec<Subject>,
    /// What the maps are made toward (the picture's own class at first).
    pub toward: Toward,
    /// How strongly the maps cover the picture.
    pub opacity: f32,
    picture: Option<TextureHandle>,
    legend: Option<TextureHandle>,
    shown: Option<Result<Maps, String>>,
    computing: Option<Task<Result<Computed, String>>>,
}

impl HeatmapWindow {
    /// A window on item `item` of `dataset` under `subjects`, made toward the item's class.
    pub fn new(dataset: Arc<Dataset>, item: usize, subjects: Vec<Subject>) -> Self {
        let toward = dataset
            .items
            .get(item)
            .map_or(Toward::Attention, |i| Toward::Class(i.label));
        Self {
            dataset,
            item,
            subjects,
            toward,
            opacity: 0.6,
            picture: None,
            legend: None,
            shown: None,
            computing: None,
        }
    }

    /// The item shown.
    pub fn item(&self) -> usize {
        self.item
    }

    /// The names of the models shown, in column order.
    pub fn subject_names(&self) -> Vec<&str> {
        self.subjects.iter().map(|s| s.name.as_str()).collect()
    }

    /// The maps on screen, once computed, or why there are none.
    pub fn shown(&self) -> Option<&Result<Maps, String>> {
        self.shown.as_ref()
    }

    /// Whether maps are being computed.
    pub fn is_computing(&self) -> bool {
        self.computing.is_some()
    }

    /// Starts computing what the window lacks: the maps for the current setting (and the
    /// picture, the first time).
    fn follow(&mut self, ctx: &Context) {
        let current = match &self.shown {
            Some(Ok(maps)) => maps.toward == self.toward,
            Some(Err(_)) => true,
            None => false,
        };
        if current || self.computing.is_some() {
            return;
        }
        let (dataset, item, toward) = (Arc::clone(&self.dataset), self.item, self.toward);
        let subjects = self.subjects.clone();
        let with_picture = self.picture.is_none();
        self.computing = Some(Task::spawn("Heatmaps", ctx, move || {
            compute(&dataset, item, &subjects, toward, with_picture)
        }));
    }

    /// Takes finished maps.
    fn poll(&mut self, ctx: &Context) {
        let Some(result) = take_finished(&mut self.computing) else {
            return;
        };
        match result.and_then(|computed| computed) {
            Ok(computed) => {
                if let Some(picture) = computed.picture {
                    self.picture = Some(ctx.load_texture(
                        format!("heatmap picture {}", self.item),
                        picture,
                        TextureOptions::LINEAR,
                    ));
                }
                self.shown = Some(Ok(computed.maps));
            }
            Err(error) => self.shown = Some(Err(error)),
        }
    }

    /// Draws the window; returns `false` once the user closed it.
    pub fn show(&mut self, ctx: &Context) -> bool {
        self.poll(ctx);
        self.follow(ctx);
        let mut open = true;
        egui::Window::new(format!("Where the models look: image {}", self.item))
            .id(egui::Id::unique("heatmap window"))
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(ctx, |ui| self.contents(ui));
        open
    }

    fn contents(&mut self, ui: &mut Ui) {
        self.controls(ui);
        ui.separator();
        match &self.shown {
            None => {
                ui.spinner();
            }
            Some(Err(error)) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            Some(Ok(maps)) => {
                let maps = maps.clone();
                self.panels(ui, &maps);
                ui.label(format!("{}; dark is low, bright is high.", maps.method));
                self.legend_bar(ui);
            }
        }
    }

    /// The class picker and the opacity slider.
    fn controls(&mut self, ui: &mut Ui) {
        let classes = &self.dataset.classes;
        let name = |toward: Toward| match toward {
            Toward::Attention => "attention alone".to_string(),
            Toward::Class(class) => classes.get(class).cloned().unwrap_or_default(),
        };
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("Toward")
                .selected_text(name(self.toward))
                .show_ui(ui, |ui| {
                    ui.selectable_value(
                        &mut self.toward,
                        Toward::Attention,
                        name(Toward::Attention),
                    )
                    .on_hover_text("Where the image tower looks, whatever the text.");
                    for class in 0..classes.len() {
                        let toward = Toward::Class(class);
                        ui.selectable_value(&mut self.toward, toward, name(toward));
                    }
                })
                .response
                .on_hover_text(
                    "The class prompt the maps are made toward: bright where the picture \
                     matches it. Pick a forgotten class to see its evidence fade.",
                );
            if self.computing.is_some() {
                ui.spinner();
            }
            ui.add(egui::Slider::new(&mut self.opacity, 0.0..=1.0).text("Opacity"))
                .on_hover_text("0 shows only the picture, 1 only the map.");
        });
    }

    /// The picture under each model, its map drawn over it.
    fn panels(&self, ui: &mut Ui, maps: &Maps) {
        let Some(picture) = &self.picture else {
            return;
        };
        ui.horizontal(|ui| {
            for (index, (subject, map)) in self.subjects.iter().zip(&maps.maps).enumerate() {
                ui.vertical(|ui| {
                    ui.strong(&subject.name);
                    let response = ui.add(
                        egui::Image::new(picture)
                            .fit_to_exact_size(egui::Vec2::splat(PANEL))
                            .sense(egui::Sense::hover()),
                    );
                    let id = egui::Id::unique(("heatmap panel", index));
                    heatmap_paint::paint(ui.painter(), response.rect, id, map, self.opacity);
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(
                            egui::Role::Image,
                            true,
                            format!("{} heatmap", subject.name),
                        )
                    });
                });
            }
        });
    }

    /// The colour scale, low on the left.
    fn legend_bar(&mut self, ui: &mut Ui) {
        let texture = self.legend.get_or_insert_with(|| {
            texture_from_rgb(ui.ctx(), "heatmap legend", &legend(PANEL as u32, 12))
        });
        ui.horizontal(|ui| {
            ui.small("low");
            ui.add(egui::Image::new(&*texture).fit_to_exact_size(egui::vec2(PANEL, 12.0)));
            ui.small("high");
        });
    }
}

/// The maps of item `item` under each subject toward `toward`, and the picture as the first
/// subject sees it when `with_picture` (background thread).
fn compute(
    dataset: &Dataset,
    item: usize,
    subjects: &[Subject],
    toward: Toward,
    with_picture: bool,
) -> Result<Computed, String> {
    let picture = read_image(dataset, item)?;
    let first = subjects.first().ok_or("no model to explain with")?;
    let seen = with_picture.then(|| {
        let rgb = as_seen(&first.model.preprocessor, &picture);
        ColorImage::from_rgb([rgb.width() as usize, rgb.height() as usize], rgb.as_raw())
    });
    let pictures = [picture];
    let maps = subjects
        .iter()
        .map(|subject| {
            let loaded = &subject.model;
            let text = match toward {
                Toward::Attention => None,
                Toward::Class(class) => {
                    let name = dataset.classes.get(class).ok_or("no such class")?;
                    Some(class_embeddings(
                        loaded,
                        std::slice::from_ref(name),
                        &dataset.templates,
                    ))
                }
            };
            let column: Column = (&loaded.model, &loaded.preprocessor, text);
            column_maps(&column, &pictures)
                .pop()
                .ok_or_else(|| "the model returned no map".to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let model = &first.model.model;
    let method = match toward {
        Toward::Attention => method_name(model).to_string(),
        Toward::Class(class) => format!(
            "{} toward \"{}\"",
            method_name_toward(model),
            dataset.classes[class]
        ),
    };
    Ok(Computed {
        picture: seen,
        maps: Maps {
            toward,
            maps,
            method,
        },
    })
}

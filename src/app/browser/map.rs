//! The map view of the browsed images: a t-SNE of the open model's image embeddings and of each
//! class's prompts (`viz::map`), computed in the background with progress. A lasso or a
//! rectangle drawn on it selects pictures — the same selection the grid shows, so a cluster
//! goes into the forget or retain set in one gesture (Shift adds, Ctrl subtracts, as in
//! Spotlight and FiftyOne). Hovering a picture shows its thumbnail.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use eframe::egui::{self, Color32, Modifiers, Pos2, Ui, vec2};
use egui_plot::{Plot, PlotPoint, PlotTransform};

use super::Browser;
use super::ranking::ForModel;
use crate::app::grid::GestureMode;
use crate::app::points_paint::{self, Dot, Dots};
use crate::app::task::{CancelOnDrop, Task};
use crate::app::thumbnails::Thumbnails;
use crate::clip::host_values;
use crate::data::dataset::Dataset;
use crate::engine::LoadedModel;
use crate::engine::embeddings::DatasetEmbeddings;
use crate::eval::class_embeddings;
use crate::viz::map::{MapOptions, Place, class_colour, tsne};

/// How the pictures on the map are picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tool {
    /// A free-hand outline.
    #[default]
    Lasso,
    /// A rectangle from where the drag started to where it ends.
    Rectangle,
}

/// What the pictures' colours say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColourBy {
    /// Their class.
    #[default]
    Class,
    /// The set they are in (forget, retain, eval), as the grid marks it; grey for none.
    Set,
}

/// The colour of pictures in no set when the map is coloured by set.
const NO_SET: Color32 = Color32::from_gray(110);

/// One point of the browsed images' map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BrowsePoint {
    /// Its class.
    pub label: usize,
    /// The dataset item; `None` for a class's prompts.
    pub item: Option<usize>,
    /// Where it is on the map.
    pub place: Place,
}

/// The map of a dataset under one model.
pub type BrowseMap = Vec<BrowsePoint>;

/// A map being computed, with its progress: images embedded, then t-SNE steps.
struct Running {
    task: Task<Result<(Arc<DatasetEmbeddings>, BrowseMap), String>>,
    model: Weak<LoadedModel>,
    embedded: Arc<AtomicUsize>,
    placed: Arc<AtomicUsize>,
    images: usize,
    _cancel: CancelOnDrop,
}

/// The map view's state: the map per model, the run computing it, the tool and the gesture in
/// progress. The browser owns one per dataset.
#[derive(Default)]
pub(super) struct Mapper {
    running: Option<Running>,
    map: Option<ForModel<Result<Arc<BrowseMap>, String>>>,
    tool: Tool,
    colour_by: ColourBy,
    /// The outline being drawn, in map coordinates.
    stroke: Vec<[f64; 2]>,
    /// Map to screen, as last drawn.
    transform: Option<PlotTransform>,
    /// The pictures as drawn, with the fingerprint of the map and selection they show.
    dots: Option<(u64, Dots)>,
}

/// t-SNE settings of the browsing map: the defaults of a result's map.
const OPTIONS: MapOptions = MapOptions {
    perplexity: 30.0,
    iterations: 750,
    seed: 0,
};

impl Browser {
    /// The map of the browsed images under `model`, once computed.
    pub fn map_points(&self, model: &Arc<LoadedModel>) -> Option<Arc<BrowseMap>> {
        let map = self.mapper.map.as_ref()?.get(model)?;
        map.as_ref().ok().map(Arc::clone)
    }

    /// Where a place of the map was on screen when last drawn.
    pub fn map_to_screen(&self, place: Place) -> Option<Pos2> {
        let transform = self.mapper.transform.as_ref()?;
        Some(transform.position_from_point(&PlotPoint::new(place[0], place[1])))
    }

    /// Takes a finished map.
    pub(super) fn poll_map(&mut self) {
        let mapper = &mut self.mapper;
        let Some(result) = mapper.running.as_ref().and_then(|r| r.task.poll()) else {
            return;
        };
        let Some(model) = mapper.running.take().and_then(|r| r.model.upgrade()) else {
            return;
        };
        let map = match result.and_then(|r| r) {
            Ok((embeddings, map)) => {
                self.ranker.remember(&model, embeddings);
                Ok(Arc::new(map))
            }
            Err(error) => Err(error),
        };
        self.mapper.map = Some(ForModel::new(&model, map));
    }

    /// "Mapping: embedding images 512/2000" and the like while a map is computed.
    pub(super) fn map_activity(&self) -> Option<String> {
        let running = self.mapper.running.as_ref()?;
        let embedded = running.embedded.load(Ordering::Relaxed);
        Some(if embedded < running.images {
            format!("Map: embedding images {embedded}/{}", running.images)
        } else {
            let placed = running.placed.load(Ordering::Relaxed);
            format!("Map: t-SNE step {placed}/{}", OPTIONS.iterations)
        })
    }

    /// The map view: its toolbar and the map, computed for `model` when first shown.
    pub fn show_map(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        model: Option<&Arc<LoadedModel>>,
        thumbs: &mut Thumbnails,
        marks: &dyn Fn(usize) -> Option<Color32>,
    ) {
        let Some(model) = model else {
            ui.label("Open a model: the map places the images by its embeddings.");
            return;
        };
        self.start_map(dataset, model, ui.ctx());
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.mapper.tool, Tool::Lasso, "Lasso")
                .on_hover_text("Drag an outline around pictures to select them.");
            ui.selectable_value(&mut self.mapper.tool, Tool::Rectangle, "Rectangle")
                .on_hover_text("Drag a rectangle over pictures to select them.");
            ui.separator();
            ui.selectable_value(&mut self.mapper.colour_by, ColourBy::Class, "by class")
                .on_hover_text("Colour the pictures by their class.");
            ui.selectable_value(&mut self.mapper.colour_by, ColourBy::Set, "by set")
                .on_hover_text(
                    "Colour the pictures by the set they are in, as the grid marks them; grey: \
                     in no set.",
                );
            ui.separator();
            // Truncated, not wrapped or overflowing: a line wider than the panel would widen
            // the map beyond what the panel shows.
            ui.add(
                egui::Label::new(
                    egui::RichText::new(
                        "Shift adds, Ctrl subtracts; scroll to pan, Ctrl+scroll to zoom, \
                         double-click to fit",
                    )
                    .weak(),
                )
                .truncate(),
            );
        });
        if let Some(activity) = self.map_activity() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(activity);
            });
            return;
        }
        let Some(map) = self.mapper.map.as_ref().and_then(|m| m.get(model)).cloned() else {
            return;
        };
        match map {
            Ok(map) => self.map_plot(ui, dataset, &map, thumbs, marks),
            Err(error) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
        }
    }

    /// Starts computing the map with `model` unless it is there or under way.
    fn start_map(&mut self, dataset: &Arc<Dataset>, model: &Arc<LoadedModel>, ctx: &egui::Context) {
        let mapper = &mut self.mapper;
        let current = mapper.map.as_ref().is_some_and(|m| m.get(model).is_some());
        let started = mapper
            .running
            .as_ref()
            .is_some_and(|r| std::ptr::eq(r.model.as_ptr(), Arc::as_ptr(model)));
        if current || started {
            return;
        }
        let cached = self.ranker.embeddings_for(model);
        let images = if cached.is_some() {
            0
        } else {
            dataset.items.len()
        };
        let embedded = Arc::new(AtomicUsize::new(0));
        let placed = Arc::new(AtomicUsize::new(0));
        let (guard, cancel) = CancelOnDrop::new();
        let work = {
            let (model, dataset) = (Arc::clone(model), Arc::clone(dataset));
            let (embedded, placed) = (Arc::clone(&embedded), Arc::clone(&placed));
            move || compute(&model, &dataset, cached, &embedded, &placed, &cancel)
        };
        self.mapper.running = Some(Running {
            task: Task::spawn("Map", ctx, work),
            model: Arc::downgrade(model),
            embedded,
            placed,
            images,
            _cancel: guard,
        });
    }

    /// The plot: pictures as dots (the selected ones larger), each class's prompts as a named
    /// diamond, the outline being drawn; the gesture updates the selection when it ends.
    fn map_plot(
        &mut self,
        ui: &mut Ui,
        dataset: &Arc<Dataset>,
        map: &Arc<BrowseMap>,
        thumbs: &mut Thumbnails,
        marks: &dyn Fn(usize) -> Option<Color32>,
    ) {
        let place = |p: &BrowsePoint| [f64::from(p.place[0]), f64::from(p.place[1])];
        let ring = ui.visuals().strong_text_color();
        let colours: Vec<Color32> = dataset
            .classes
            .iter()
            .enumerate()
            .map(|(label, class)| {
                let [r, g, b] = class_colour(class, label);
                Color32::from_rgb(r, g, b)
            })
            .collect();
        let painted: Vec<Color32> = match self.mapper.colour_by {
            ColourBy::Class => map.iter().map(|p| colours[p.label]).collect(),
            ColourBy::Set => map
                .iter()
                .map(|p| p.item.and_then(marks).unwrap_or(NO_SET))
                .collect(),
        };
        match self.mapper.colour_by {
            ColourBy::Class => legend(ui, &dataset.classes, &colours),
            ColourBy::Set => {
                ui.weak("Pictures coloured as the grid marks each set; grey: in no set.");
            }
        }
        let dots = self.dots(map, &painted, ring);
        let (low, high) = bounds(map);
        let response = Plot::new("browse map")
            .data_aspect(1.0)
            .allow_drag(false)
            .allow_boxed_zoom(false)
            .show_axes(false)
            .include_x(low[0])
            .include_x(high[0])
            .include_y(low[1])
            .include_y(high[1])
            .show(ui, |plot| plot.pointer_coordinate());
        let transform = response.transform;
        // The pictures, then each class's prompts and the outline being drawn, over the plot's
        // frame only.
        let frame = *transform.frame();
        let painter = ui.painter_at(frame);
        let shown = transform.bounds();
        points_paint::paint(
            &painter,
            frame,
            egui::Id::unique("browse map points"),
            &dots,
            shown.min(),
            shown.max(),
        );
        for point in map.iter().filter(|p| p.item.is_none()) {
            let at = transform.position_from_point(&PlotPoint::new(point.place[0], point.place[1]));
            let diamond = [
                vec2(0.0, -8.0),
                vec2(7.0, 0.0),
                vec2(0.0, 8.0),
                vec2(-7.0, 0.0),
            ];
            painter.add(egui::Shape::convex_polygon(
                diamond.iter().map(|d| at + *d).collect(),
                colours[point.label],
                egui::Stroke::new(1.0, ring),
            ));
        }
        if !self.mapper.stroke.is_empty() {
            let outline: Vec<Pos2> = outline(self.mapper.tool, &self.mapper.stroke)
                .iter()
                .map(|p| transform.position_from_point(&PlotPoint::new(p[0], p[1])))
                .collect();
            painter.add(egui::Shape::line(outline, egui::Stroke::new(1.5, ring)));
        }
        self.mapper.transform = Some(transform);
        let plot = response.response;
        let pointer = response.inner.map(|p| [p.x, p.y]);
        if plot.drag_started() {
            // The drag is recognised a few points after the press: start where it was pressed.
            let origin = ui.input(|i| i.pointer.press_origin()).map(|p| {
                let value = transform.value_from_position(p);
                [value.x, value.y]
            });
            self.mapper.stroke = origin.into_iter().chain(pointer).collect();
        } else if plot.dragged()
            && let Some(at) = pointer
        {
            self.mapper.stroke.push(at);
        }
        if plot.drag_stopped() {
            let stroke = std::mem::take(&mut self.mapper.stroke);
            let outline = outline(self.mapper.tool, &stroke);
            let inside: Vec<usize> = map
                .iter()
                .filter(|p| inside(&outline, place(p)))
                .filter_map(|p| p.item)
                .collect();
            let modifiers = ui.input(|i| i.modifiers);
            self.selection.apply(&inside, gesture_mode(modifiers));
        }
        if !plot.dragged()
            && let Some(at) = pointer
            && let Some(item) = points_paint::nearest_item(
                map.iter().filter_map(|p| Some((p.item?, p.place))),
                &transform,
                at,
            )
        {
            let class = dataset
                .items
                .get(item)
                .and_then(|i| dataset.classes.get(i.label))
                .map_or("?", String::as_str);
            let texture = thumbs.get(ui.ctx(), dataset, item);
            plot.on_hover_ui_at_pointer(|ui| {
                if let Some(texture) = texture {
                    ui.add(egui::Image::new(&texture).fit_to_exact_size(egui::vec2(96.0, 96.0)));
                }
                ui.label(format!("image {item}: {class}"));
            });
        }
    }
}

impl Browser {
    /// The pictures as discs for the GPU in the colours `painted` (one per map point), the
    /// selected ones larger inside a ring and drawn last; rebuilt only when the map, the colours
    /// or the selection changed.
    fn dots(&mut self, map: &Arc<BrowseMap>, painted: &[Color32], ring: Color32) -> Dots {
        let mut hasher = std::hash::DefaultHasher::new();
        (
            Arc::as_ptr(map) as usize,
            &self.selection.selected,
            ring,
            painted,
        )
            .hash(&mut hasher);
        let key = hasher.finish();
        if let Some((cached, dots)) = &self.mapper.dots
            && *cached == key
        {
            return dots.clone();
        }
        let selection = &self.selection;
        let pictures = |selected: bool| {
            map.iter().zip(painted).filter(move |(p, _)| {
                p.item
                    .is_some_and(|item| selection.contains(item) == selected)
            })
        };
        let dot = |radius: f32| {
            move |(p, colour): (&BrowsePoint, &Color32)| Dot {
                place: p.place,
                colour: *colour,
                radius,
            }
        };
        // Rings under every selected fill, so overlapping selected pictures keep their colour.
        let rings = pictures(true).map(|(p, _)| (p, &ring)).map(dot(6.0));
        let dots = Dots::new(
            pictures(false)
                .map(dot(2.0))
                .chain(rings)
                .chain(pictures(true).map(dot(4.5))),
        );
        self.mapper.dots = Some((key, dots.clone()));
        dots
    }
}

/// The map's smallest and largest coordinates, so the plot's bounds take in every point.
fn bounds(map: &BrowseMap) -> ([f64; 2], [f64; 2]) {
    let mut low = [f64::INFINITY; 2];
    let mut high = [f64::NEG_INFINITY; 2];
    for point in map {
        for axis in 0..2 {
            low[axis] = low[axis].min(f64::from(point.place[axis]));
            high[axis] = high[axis].max(f64::from(point.place[axis]));
        }
    }
    (low, high)
}

/// The classes and their colours, above the map.
fn legend(ui: &mut Ui, classes: &[String], colours: &[Color32]) {
    ui.horizontal_wrapped(|ui| {
        for (class, colour) in classes.iter().zip(colours) {
            let (rect, _) = ui.allocate_exact_size(vec2(10.0, 10.0), egui::Sense::hover());
            ui.painter().circle_filled(rect.center(), 4.5, *colour);
            ui.label(class);
        }
        ui.weak("· dots are pictures, diamonds each class's prompts");
    });
}

/// How a finished gesture changes the selection: Shift adds, Ctrl (Cmd) subtracts, neither
/// replaces.
fn gesture_mode(modifiers: Modifiers) -> GestureMode {
    if modifiers.command || modifiers.ctrl {
        GestureMode::Subtract
    } else if modifiers.shift {
        GestureMode::Add
    } else {
        GestureMode::Replace
    }
}

/// The closed outline a gesture draws: the stroke itself for a lasso, the rectangle spanned by
/// its first and last point for a rectangle.
fn outline(tool: Tool, stroke: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let (Some(&first), Some(&last)) = (stroke.first(), stroke.last()) else {
        return Vec::new();
    };
    let mut corners = match tool {
        Tool::Lasso => stroke.to_vec(),
        Tool::Rectangle => vec![first, [last[0], first[1]], last, [first[0], last[1]]],
    };
    corners.push(corners[0]);
    corners
}

/// Whether `point` lies inside the closed polygon `outline` (even–odd rule).
fn inside(outline: &[[f64; 2]], point: [f64; 2]) -> bool {
    let mut inside = false;
    for edge in outline.windows(2) {
        let ([x1, y1], [x2, y2]) = (edge[0], edge[1]);
        if (y1 > point[1]) != (y2 > point[1]) {
            let x = x1 + (point[1] - y1) / (y2 - y1) * (x2 - x1);
            if point[0] < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// The map of every readable picture of `dataset` and each class's prompts under `model`,
/// reusing `cached` embeddings (background thread).
fn compute(
    model: &LoadedModel,
    dataset: &Dataset,
    cached: Option<Arc<DatasetEmbeddings>>,
    embedded: &AtomicUsize,
    placed: &AtomicUsize,
    cancel: &AtomicBool,
) -> Result<(Arc<DatasetEmbeddings>, BrowseMap), String> {
    let embeddings =
        DatasetEmbeddings::cached_or_compute(cached, model, dataset, embedded, cancel)?;
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for (item, entry) in dataset.items.iter().enumerate() {
        if let Some(row) = embeddings.row(item) {
            rows.extend_from_slice(row);
            points.push((entry.label, Some(item)));
        }
    }
    rows.extend(host_values(class_embeddings(
        model,
        &dataset.classes,
        &dataset.templates,
    )));
    points.extend((0..dataset.classes.len()).map(|label| (label, None)));
    let places = tsne(&rows, model.model.embed_dim(), &OPTIONS, &|_| {
        placed.fetch_add(1, Ordering::Relaxed);
    })?;
    let map = points
        .into_iter()
        .zip(places)
        .map(|((label, item), place)| BrowsePoint { label, item, place })
        .collect();
    Ok((embeddings, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasso_keeps_what_it_encloses() {
        // An L-shaped outline: the notch at the top right is outside.
        let stroke = [
            [0.0, 0.0],
            [4.0, 0.0],
            [4.0, 2.0],
            [2.0, 2.0],
            [2.0, 4.0],
            [0.0, 4.0],
        ];
        let lasso = outline(Tool::Lasso, &stroke);
        assert!(inside(&lasso, [1.0, 1.0]));
        assert!(inside(&lasso, [1.0, 3.0]));
        assert!(!inside(&lasso, [3.0, 3.0]));
        assert!(!inside(&lasso, [5.0, 1.0]));
    }

    #[test]
    fn a_rectangle_spans_the_first_and_last_point_either_way() {
        let stroke = [[4.0, 4.0], [9.0, 0.0], [1.0, 1.0]];
        let rectangle = outline(Tool::Rectangle, &stroke);
        assert!(inside(&rectangle, [2.0, 2.0]));
        assert!(
            !inside(&rectangle, [9.0, 0.5]),
            "the middle of the stroke does not count"
        );
        assert!(outline(Tool::Lasso, &[]).is_empty());
    }

    #[test]
    fn modifiers_choose_add_subtract_or_replace() {
        assert_eq!(gesture_mode(Modifiers::NONE), GestureMode::Replace);
        assert_eq!(gesture_mode(Modifiers::SHIFT), GestureMode::Add);
        assert_eq!(gesture_mode(Modifiers::COMMAND), GestureMode::Subtract);
    }
}

//! A virtualised grid of image thumbnails with the selection gestures of a file manager (click,
//! Ctrl/Cmd-click, Shift-click, rubber band), shared by every view that shows many images: only
//! the rows on screen are laid out, so 100,000 images scroll as smoothly as 100.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use eframe::egui::scroll_area::{DragScroll, ScrollSource};
use eframe::egui::{
    Align2, AsIdSalt, Color32, Event, FontId, Id, Modifiers, PointerButton, Pos2, Rect, Response,
    Role, ScrollArea, Sense, Shape, Stroke, StrokeKind, TextureHandle, Ui, Vec2, WidgetInfo, pos2,
    vec2,
};
use serde::{Deserialize, Serialize};

use super::thumbnails::Thumbnails;
use crate::data::dataset::Dataset;

/// Space between tiles, in points.
const GAP: f32 = 4.0;
/// The smallest tile that still shows something recognisable.
const MIN_TILE: f32 = 16.0;
/// Fastest rubber-band auto-scroll, in points per frame.
const MAX_AUTOSCROLL: f32 = 30.0;

/// How a selection gesture's items change the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GestureMode {
    /// They become the selection.
    Replace,
    /// They join it.
    Add,
    /// They leave it.
    Subtract,
}

/// Which images are selected, as dataset item indices, with the anchor Shift-click ranges
/// start from. Kept by the caller so a selection survives scrolling, filtering and restarts.
#[derive(Default, Clone, Debug, Serialize, Deserialize)]
pub struct Selection {
    /// The selected items.
    pub selected: BTreeSet<usize>,
    /// The item the last plain or Ctrl click (or rubber band) started from.
    anchor: Option<usize>,
}

impl Selection {
    /// Applies a click on `item` as file managers do: alone it selects only that item;
    /// Ctrl/Cmd toggles it; Shift selects the run from the anchor to `item` in the order of
    /// `visible` (the list as shown), leaving the anchor where it was so the run can be
    /// re-spanned; Ctrl/Cmd+Shift adds the run to the selection instead. A Shift-click without a
    /// visible anchor acts as a plain click.
    pub fn click(&mut self, item: usize, visible: &[usize], modifiers: Modifiers) {
        let toggle = modifiers.command || modifiers.ctrl;
        if modifiers.shift
            && let Some(run) = self.run_to(item, visible)
        {
            if !toggle {
                self.selected.clear();
            }
            self.selected.extend(run.iter().copied());
            return;
        }
        if !toggle {
            self.selected.clear();
            self.selected.insert(item);
        } else if !self.selected.remove(&item) {
            self.selected.insert(item);
        }
        self.anchor = Some(item);
    }

    /// The items of `visible` from the anchor to `item`, both included.
    fn run_to<'a>(&self, item: usize, visible: &'a [usize]) -> Option<&'a [usize]> {
        let anchor = self.anchor?;
        let from = visible.iter().position(|&i| i == anchor)?;
        let to = visible.iter().position(|&i| i == item)?;
        Some(&visible[from.min(to)..=from.max(to)])
    }

    /// Applies a finished rubber band over `items`: they replace the selection, or are added to
    /// it when `add` (Ctrl/Cmd or Shift held). The first of them becomes the anchor.
    pub fn band(&mut self, items: &[usize], add: bool) {
        let mode = if add {
            GestureMode::Add
        } else {
            GestureMode::Replace
        };
        self.apply(items, mode);
    }

    /// Applies a finished gesture (a rubber band, a lasso) over `items`; unless subtracting,
    /// the first of them becomes the anchor.
    pub fn apply(&mut self, items: &[usize], mode: GestureMode) {
        match mode {
            GestureMode::Replace => {
                self.selected.clear();
                self.selected.extend(items.iter().copied());
            }
            GestureMode::Add => self.selected.extend(items.iter().copied()),
            GestureMode::Subtract => {
                for item in items {
                    self.selected.remove(item);
                }
                return;
            }
        }
        if let Some(&first) = items.first() {
            self.anchor = Some(first);
        }
    }

    /// Whether `item` is selected.
    pub fn contains(&self, item: usize) -> bool {
        self.selected.contains(&item)
    }

    /// Selects exactly the `visible` items ("select all shown").
    pub fn select_all(&mut self, visible: &[usize]) {
        self.selected = visible.iter().copied().collect();
        self.anchor = visible.first().copied();
    }

    /// Selects nothing.
    pub fn clear(&mut self) {
        self.selected.clear();
        self.anchor = None;
    }

    /// Forgets items that a dataset of `len` items does not have (after opening another one).
    pub fn clamp(&mut self, len: usize) {
        self.selected.retain(|&i| i < len);
        self.anchor = self.anchor.filter(|&i| i < len);
    }
}

/// What happened in the grid this frame, for the view around it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridResponse {
    /// The item clicked (the selection is already updated).
    pub clicked: Option<usize>,
    /// The item double-clicked.
    pub double_clicked: Option<usize>,
    /// The item under the pointer.
    pub hovered: Option<usize>,
}

/// Shows the items `visible` (dataset indices, in display order) of `dataset` as a grid of
/// square tiles of side `tile`, updating `selection` from clicks and rubber bands. `marks` gives
/// an item's membership colour (drawn as a corner and border), `None` for no mark; `id_salt`
/// keeps the scroll position and rubber band of each grid apart.
#[expect(
    clippy::too_many_arguments,
    reason = "independent inputs that every caller has at hand; a struct would only rename them"
)]
pub fn show(
    ui: &mut Ui,
    id_salt: impl AsIdSalt,
    dataset: &Arc<Dataset>,
    visible: &[usize],
    thumbs: &mut Thumbnails,
    selection: &mut Selection,
    marks: &dyn Fn(usize) -> Option<Color32>,
    tile: f32,
) -> GridResponse {
    let id = ui.make_persistent_id(id_salt);
    let layout = Layout::new(ui.available_width(), tile.max(MIN_TILE));
    let modifiers = click_modifiers(ui);
    let mut grid = GridResponse::default();
    ui.scope(|ui| {
        // `show_rows` spaces rows by the item spacing; the layout assumes `GAP`.
        ui.spacing_mut().item_spacing = Vec2::splat(GAP);
        ScrollArea::vertical()
            .id_salt(id)
            .auto_shrink(false)
            .scroll_source(ScrollSource {
                drag: DragScroll::Never,
                ..ScrollSource::default()
            })
            .show_rows(ui, layout.tile, layout.rows(visible.len()), |ui, rows| {
                let origin = ui.max_rect().left_top() - vec2(0.0, rows.start as f32 * layout.pitch);
                let band = rubber_band(ui, id, origin, layout, visible, selection);
                let pass = Pass {
                    id,
                    dataset,
                    visible,
                    layout,
                    origin,
                    modifiers,
                    marks,
                    band: band.as_ref(),
                };
                let end = (rows.end * layout.columns).min(visible.len());
                for position in rows.start * layout.columns..end {
                    pass.tile(ui, position, thumbs, selection, &mut grid);
                }
                if let Some(band) = band {
                    paint_band(ui, band.rect.translate(origin.to_vec2()));
                }
            });
    });
    grid
}

/// What the tiles of one frame share.
struct Pass<'a> {
    id: Id,
    dataset: &'a Arc<Dataset>,
    visible: &'a [usize],
    layout: Layout,
    /// Screen position of the content's top-left corner.
    origin: Pos2,
    modifiers: Modifiers,
    marks: &'a dyn Fn(usize) -> Option<Color32>,
    band: Option<&'a Band>,
}

impl Pass<'_> {
    /// Shows the tile at `position`: handles its clicks, then draws and describes it.
    fn tile(
        &self,
        ui: &Ui,
        position: usize,
        thumbs: &mut Thumbnails,
        selection: &mut Selection,
        grid: &mut GridResponse,
    ) {
        let item = self.visible[position];
        let rect = self.layout.rect(position).translate(self.origin.to_vec2());
        let response = ui.interact(rect, self.id.with(item), Sense::click());
        if response.clicked() {
            selection.click(item, self.visible, self.modifiers);
            grid.clicked = Some(item);
        }
        if response.double_clicked() {
            grid.double_clicked = Some(item);
        }
        if response.hovered() {
            grid.hovered = Some(item);
        }
        let selected = selection.contains(item);
        let look = TileLook {
            selected: self.band.map_or(selected, |b| b.shows(position, selected)),
            mark: (self.marks)(item),
            texture: thumbs.get(ui.ctx(), self.dataset, item),
            failed: thumbs.failed(self.dataset, item),
        };
        paint_tile(ui, &response, &look);
        describe_tile(response, self.dataset, item, selected);
    }
}

/// The modifiers of a click this frame: those held now, plus those a pointer release carried
/// (a click can be pressed and released within one frame, modifiers included).
fn click_modifiers(ui: &Ui) -> Modifiers {
    ui.input(|input| {
        input
            .events
            .iter()
            .fold(input.modifiers, |held, event| match event {
                Event::PointerButton {
                    pressed: false,
                    modifiers,
                    ..
                } => held | *modifiers,
                _ => held,
            })
    })
}

/// Where tiles go: `columns` per row, `pitch` apart, in content coordinates whose origin is the
/// top-left corner of the first tile.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Layout {
    columns: usize,
    tile: f32,
    pitch: f32,
}

impl Layout {
    /// As many tiles of side `tile` as fit in `width` (at least one).
    fn new(width: f32, tile: f32) -> Self {
        let pitch = tile + GAP;
        let columns = ((width + GAP) / pitch).floor().max(1.0) as usize;
        Self {
            columns,
            tile,
            pitch,
        }
    }

    /// Rows needed for `count` tiles.
    fn rows(&self, count: usize) -> usize {
        count.div_ceil(self.columns)
    }

    /// The tile at `position` in display order.
    fn rect(&self, position: usize) -> Rect {
        let (row, column) = (position / self.columns, position % self.columns);
        Rect::from_min_size(
            pos2(column as f32 * self.pitch, row as f32 * self.pitch),
            Vec2::splat(self.tile),
        )
    }

    /// The tiles that `rect` (content coordinates) touches, among `count`.
    fn cells(&self, rect: Rect, count: usize) -> Cells {
        Cells {
            rows: self.touched(rect.min.y, rect.max.y, self.rows(count)),
            columns: self.touched(rect.min.x, rect.max.x, self.columns),
            per_row: self.columns,
            count,
        }
    }

    /// Tile indices along one axis (of `limit`) whose span meets `lo..=hi`.
    fn touched(&self, lo: f32, hi: f32, limit: usize) -> Range<usize> {
        if hi < 0.0 {
            return 0..0;
        }
        let first = ((lo - self.tile) / self.pitch).ceil().max(0.0) as usize;
        let end = ((hi / self.pitch).floor() as usize + 1).min(limit);
        first.min(end)..end
    }
}

/// A block of tiles: rows × columns, limited to the `count` tiles that exist.
#[derive(Clone, Debug, PartialEq)]
struct Cells {
    rows: Range<usize>,
    columns: Range<usize>,
    per_row: usize,
    count: usize,
}

impl Cells {
    /// Whether the tile at `position` is in the block.
    fn contains(&self, position: usize) -> bool {
        position < self.count
            && self.rows.contains(&(position / self.per_row))
            && self.columns.contains(&(position % self.per_row))
    }

    /// The positions in the block, in display order.
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.rows
            .clone()
            .flat_map(move |row| {
                self.columns
                    .clone()
                    .map(move |column| row * self.per_row + column)
            })
            .filter(|&position| position < self.count)
    }
}

/// A rubber band being dragged: its rectangle (content coordinates) and the tiles it touches.
struct Band {
    rect: Rect,
    cells: Cells,
    add: bool,
}

impl Band {
    /// Whether the tile at `position` should look selected while the band is held.
    fn shows(&self, position: usize, selected: bool) -> bool {
        self.cells.contains(position) || (self.add && selected)
    }
}

/// Where a rubber-band drag started and where the pointer is, in content coordinates (so that
/// scrolling during the drag extends the band).
#[derive(Clone, Copy, Debug)]
struct BandDrag {
    start: Pos2,
    end: Pos2,
}

/// The grid's background: a click on it clears the selection, a drag draws a rubber band that
/// selects the tiles it touches when released. Registered before the tiles so that they take
/// clicks while the background takes drags, even those starting on a tile.
fn rubber_band(
    ui: &Ui,
    id: Id,
    origin: Pos2,
    layout: Layout,
    visible: &[usize],
    selection: &mut Selection,
) -> Option<Band> {
    // The visible part of the grid only: the clip rectangle alone can reach under a panel
    // beside the grid and take its clicks.
    let response = ui.interact(
        ui.clip_rect().intersect(ui.max_rect()),
        id.with("background"),
        Sense::click_and_drag(),
    );
    let modifiers = ui.input(|i| i.modifiers);
    if response.clicked() && !modifiers.any() {
        selection.clear();
    }
    let drag_id = id.with("rubber band");
    let pointer = ui
        .input(|i| i.pointer.interact_pos())
        .map(|p| p - origin.to_vec2());
    if response.drag_started_by(PointerButton::Primary)
        && let Some(start) = pointer
    {
        ui.data_mut(|d| d.insert_temp(drag_id, BandDrag { start, end: start }));
    }
    if !(response.dragged_by(PointerButton::Primary)
        || response.drag_stopped_by(PointerButton::Primary))
    {
        return None;
    }
    let mut drag: BandDrag = ui.data(|d| d.get_temp(drag_id))?;
    drag.end = pointer.unwrap_or(drag.end);
    let rect = Rect::from_two_pos(drag.start, drag.end);
    let cells = layout.cells(rect, visible.len());
    let add = modifiers.shift || modifiers.command || modifiers.ctrl;
    if response.drag_stopped() {
        ui.data_mut(|d| d.remove::<BandDrag>(drag_id));
        let items: Vec<usize> = cells.positions().map(|p| visible[p]).collect();
        selection.band(&items, add);
        return None;
    }
    ui.data_mut(|d| d.insert_temp(drag_id, drag));
    autoscroll(ui, drag.end + origin.to_vec2());
    Some(Band { rect, cells, add })
}

/// Scrolls while a rubber band is held above or below the visible rows, faster the farther out.
fn autoscroll(ui: &Ui, pointer: Pos2) {
    let clip = ui.clip_rect();
    let beyond = if pointer.y > clip.bottom() {
        clip.bottom() - pointer.y
    } else if pointer.y < clip.top() {
        clip.top() - pointer.y
    } else {
        return;
    };
    ui.scroll_with_delta(vec2(0.0, beyond.clamp(-MAX_AUTOSCROLL, MAX_AUTOSCROLL)));
    ui.ctx().request_repaint();
}

/// How one tile looks this frame.
struct TileLook {
    selected: bool,
    mark: Option<Color32>,
    texture: Option<TextureHandle>,
    failed: bool,
}

/// Draws a tile: the thumbnail fitted into it (a grey placeholder until it is decoded, a note
/// if it cannot be), the membership mark, and the selection, hover and focus frames.
fn paint_tile(ui: &Ui, response: &Response, look: &TileLook) {
    let rect = response.rect;
    if !ui.is_rect_visible(rect) {
        return;
    }
    let painter = ui.painter();
    let visuals = ui.visuals();
    match &look.texture {
        Some(texture) => {
            let uv = Rect::from_min_max(Pos2::ZERO, pos2(1.0, 1.0));
            painter.image(
                texture.id(),
                fit(rect, texture.size_vec2()),
                uv,
                Color32::WHITE,
            );
        }
        None => {
            painter.rect_filled(rect, 2.0, visuals.widgets.inactive.bg_fill);
            if look.failed {
                let font = FontId::proportional((rect.height() / 6.0).clamp(8.0, 12.0));
                let color = visuals.weak_text_color();
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    "unreadable",
                    font,
                    color,
                );
            }
        }
    }
    if let Some(color) = look.mark {
        let size = (rect.width() * 0.22).max(6.0);
        let corner = rect.left_top();
        let triangle = vec![corner, corner + vec2(size, 0.0), corner + vec2(0.0, size)];
        painter.add(Shape::convex_polygon(triangle, color, Stroke::NONE));
        painter.rect_stroke(rect, 0.0, Stroke::new(2.0, color), StrokeKind::Inside);
    }
    if look.selected {
        let color = visuals.selection.bg_fill;
        painter.rect_filled(rect, 2.0, color.gamma_multiply(0.25));
        painter.rect_stroke(rect, 2.0, Stroke::new(3.0, color), StrokeKind::Outside);
    } else if response.hovered() {
        painter.rect_stroke(
            rect,
            2.0,
            visuals.widgets.hovered.fg_stroke,
            StrokeKind::Outside,
        );
    }
    if response.has_focus() {
        painter.rect_stroke(
            rect.expand(3.0),
            2.0,
            visuals.selection.stroke,
            StrokeKind::Outside,
        );
    }
}

/// The largest rectangle of the image's aspect ratio that fits in `rect`, centred.
fn fit(rect: Rect, size: Vec2) -> Rect {
    let scale = (rect.width() / size.x).min(rect.height() / size.y);
    Rect::from_center_size(rect.center(), size * scale)
}

/// Tells assistive technology (and the UI tests) what a tile is — "image N", selected or not
/// (as egui's toggled state and as AccessKit's selected state) — and shows its class and caption
/// on hover.
fn describe_tile(response: Response, dataset: &Dataset, item: usize, selected: bool) {
    response.widget_info(|| {
        WidgetInfo::selected(Role::Button, true, selected, format!("image {item}"))
    });
    response
        .ctx
        .accesskit_node_builder(response.id, |node| node.set_selected(selected));
    response.on_hover_ui(|ui| {
        let Some(entry) = dataset.items.get(item) else {
            return;
        };
        let class = dataset.classes.get(entry.label).map_or("?", String::as_str);
        ui.strong(format!("image {item} · {class}"));
        if let Some(caption) = &entry.caption {
            ui.label(caption);
        }
    });
}

/// The rubber band's rectangle, on top of the tiles.
fn paint_band(ui: &Ui, rect: Rect) {
    let color = ui.visuals().selection.bg_fill;
    let painter = ui.painter();
    painter.rect_filled(rect, 0.0, color.gamma_multiply(0.15));
    painter.rect_stroke(rect, 0.0, Stroke::new(1.0, color), StrokeKind::Inside);
}

#[cfg(test)]
mod tests {
    use eframe::egui::accesskit::Toggled;
    use egui_kittest::Harness;
    use egui_kittest::kittest::{NodeT, Queryable};

    use super::*;

    const CTRL: Modifiers = Modifiers::CTRL;
    const SHIFT: Modifiers = Modifiers::SHIFT;

    fn selected(selection: &Selection) -> Vec<usize> {
        selection.selected.iter().copied().collect()
    }

    #[test]
    fn a_plain_click_selects_only_that_item() {
        let visible = [5, 3, 9, 1];
        let mut selection = Selection::default();
        selection.click(3, &visible, Modifiers::NONE);
        selection.click(9, &visible, Modifiers::NONE);
        assert_eq!(selected(&selection), vec![9]);
        selection.click(9, &visible, Modifiers::NONE);
        assert_eq!(
            selected(&selection),
            vec![9],
            "clicking again keeps it selected"
        );
    }

    #[test]
    fn ctrl_click_toggles_and_moves_the_anchor() {
        let visible = [5, 3, 9, 1];
        let mut selection = Selection::default();
        selection.click(3, &visible, Modifiers::NONE);
        selection.click(1, &visible, CTRL);
        assert_eq!(selected(&selection), vec![1, 3]);
        selection.click(3, &visible, CTRL);
        assert_eq!(selected(&selection), vec![1]);
        assert_eq!(selection.anchor, Some(3));
        selection.click(5, &visible, Modifiers::COMMAND);
        assert_eq!(selected(&selection), vec![1, 5]);
    }

    #[test]
    fn shift_click_selects_the_run_in_display_order() {
        // Display order differs from index order, as after ranking.
        let visible = [5, 3, 9, 1, 7];
        let mut selection = Selection::default();
        selection.click(3, &visible, Modifiers::NONE);
        selection.click(1, &visible, SHIFT);
        assert_eq!(selected(&selection), vec![1, 3, 9]);
        // The anchor stays: a second Shift-click re-spans from it, backwards too.
        selection.click(5, &visible, SHIFT);
        assert_eq!(selected(&selection), vec![3, 5]);
        // Ctrl+Shift adds the run to what is selected.
        selection.click(7, &visible, CTRL);
        selection.click(1, &visible, CTRL | SHIFT);
        assert_eq!(selected(&selection), vec![1, 3, 5, 7]);
    }

    #[test]
    fn shift_click_without_a_visible_anchor_is_a_plain_click() {
        let mut selection = Selection::default();
        selection.click(2, &[2, 4, 6], SHIFT);
        assert_eq!(selected(&selection), vec![2]);
        selection.click(4, &[4, 6], SHIFT);
        assert_eq!(selected(&selection), vec![4], "anchor 2 is filtered out");
    }

    #[test]
    fn a_rubber_band_replaces_or_adds() {
        let mut selection = Selection::default();
        selection.click(1, &[1, 2, 3, 4], Modifiers::NONE);
        selection.band(&[3, 4], false);
        assert_eq!(selected(&selection), vec![3, 4]);
        selection.band(&[1], true);
        assert_eq!(selected(&selection), vec![1, 3, 4]);
        selection.band(&[], false);
        assert!(selection.selected.is_empty());
    }

    #[test]
    fn select_all_clear_and_clamp() {
        let mut selection = Selection::default();
        selection.select_all(&[7, 2, 9]);
        assert_eq!(selected(&selection), vec![2, 7, 9]);
        selection.clamp(8);
        assert_eq!(selected(&selection), vec![2, 7]);
        assert_eq!(selection.anchor, Some(7));
        selection.clear();
        assert!(selection.selected.is_empty() && selection.anchor.is_none());
    }

    #[test]
    fn layout_fits_columns_and_finds_touched_tiles() {
        // Tiles of 10 with gaps of 4: pitch 14; 3 columns need 3 × 10 + 2 × 4 = 38 points.
        let layout = Layout::new(38.0, 10.0);
        assert_eq!(layout.columns, 3);
        assert_eq!(Layout::new(37.0, 10.0).columns, 2);
        assert_eq!(Layout::new(1.0, 10.0).columns, 1);
        assert_eq!(layout.rows(7), 3);
        assert_eq!(
            layout.rect(4),
            Rect::from_min_size(pos2(14.0, 14.0), Vec2::splat(10.0))
        );
        // A band from inside tile 0 to the gap after tile 4 touches tiles 0, 1, 3, 4.
        let band = Rect::from_two_pos(pos2(26.0, 26.0), pos2(5.0, 5.0));
        let cells = layout.cells(band, 7);
        assert_eq!(cells.positions().collect::<Vec<_>>(), vec![0, 1, 3, 4]);
        assert!(cells.contains(4) && !cells.contains(2) && !cells.contains(6));
        // Only the gap between tiles: nothing.
        let gap = Rect::from_min_max(pos2(10.5, 0.0), pos2(13.5, 9.0));
        assert_eq!(layout.cells(gap, 7).positions().count(), 0);
        // Past the last tile of a short last row.
        let tail = Rect::from_min_max(pos2(15.0, 29.0), pos2(40.0, 40.0));
        assert_eq!(layout.cells(tail, 7).positions().count(), 0);
        // Above the content.
        let above = Rect::from_min_max(pos2(0.0, -9.0), pos2(40.0, -1.0));
        assert_eq!(layout.cells(above, 7).positions().count(), 0);
    }

    /// What the grid test shows and changes.
    struct Shown {
        thumbs: Thumbnails,
        selection: Selection,
        clicked: Option<usize>,
    }

    /// A grid of 12 Shapes images listed in reverse, as a ranking might order them.
    fn harness(data: &Arc<Dataset>) -> Harness<'_, Shown> {
        let visible: Vec<usize> = (0..data.items.len()).rev().collect();
        let shown = Shown {
            thumbs: Thumbnails::new(1, 64),
            selection: Selection::default(),
            clicked: None,
        };
        Harness::builder()
            .with_size(vec2(400.0, 300.0))
            .build_ui_state(
                move |ui, shown: &mut Shown| {
                    let marks = |item: usize| (item == 0).then_some(Color32::RED);
                    let response = show(
                        ui,
                        "test grid",
                        data,
                        &visible,
                        &mut shown.thumbs,
                        &mut shown.selection,
                        &marks,
                        48.0,
                    );
                    shown.clicked = response.clicked.or(shown.clicked);
                },
                shown,
            )
    }

    fn data() -> Arc<Dataset> {
        Arc::new(crate::data::dataset::open("shapes:colors?seed=1&n=12").unwrap())
    }

    #[test]
    fn tiles_are_labelled_and_select_on_click() {
        let data = data();
        let mut harness = harness(&data);
        harness.run_steps(2);
        harness.get_by_label("image 3").click();
        harness.run_steps(2);
        assert_eq!(selected(&harness.state().selection), vec![3]);
        assert_eq!(harness.state().clicked, Some(3));
        let node = harness.get_by_label("image 3").accesskit_node();
        assert_eq!(node.is_selected(), Some(true));
        assert_eq!(node.toggled(), Some(Toggled::True));
        // Listed in reverse: the run from 3 to 1 is 3, 2, 1.
        harness
            .get_by_label("image 1")
            .click_modifiers(Modifiers::SHIFT);
        harness.run_steps(2);
        assert_eq!(selected(&harness.state().selection), vec![1, 2, 3]);
        harness
            .get_by_label("image 7")
            .click_modifiers(Modifiers::COMMAND);
        harness.run_steps(2);
        assert_eq!(selected(&harness.state().selection), vec![1, 2, 3, 7]);
        let node = harness.get_by_label("image 5").accesskit_node();
        assert_eq!(node.is_selected(), Some(false));
    }

    #[test]
    fn dragging_over_tiles_selects_them() {
        let data = data();
        let mut harness = harness(&data);
        harness.run_steps(2);
        // Items 11 and 10 are the first two tiles of the top row.
        let from = harness.get_by_label("image 11").rect().center();
        let to = harness.get_by_label("image 10").rect().center();
        harness.hover_at(from);
        harness.drag_at(from);
        harness.run_steps(2);
        for step in 1..=4 {
            harness.hover_at(from + (to - from) * step as f32 / 4.0);
            harness.run_steps(1);
        }
        harness.drop_at(to);
        harness.run_steps(2);
        assert_eq!(selected(&harness.state().selection), vec![10, 11]);
    }

    #[test]
    fn images_keep_their_aspect_ratio() {
        let rect = Rect::from_min_size(Pos2::ZERO, Vec2::splat(100.0));
        let wide = fit(rect, vec2(200.0, 100.0));
        assert_eq!(wide.size(), vec2(100.0, 50.0));
        assert_eq!(wide.center(), rect.center());
    }
}

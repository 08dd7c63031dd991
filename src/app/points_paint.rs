//! The map's points drawn on the GPU: every point is one instance of a quad in
//! `shaders/points.wgsl`, placed by the visible map bounds, so a hundred thousand points are
//! one draw call. The points are uploaded once and kept while they do not change; panning and
//! zooming only rewrite the bounds.

use std::collections::HashMap;
use std::sync::Arc;

use eframe::egui::{self, Color32, Rect};
use eframe::egui_wgpu::{RenderState, wgpu};
use egui_plot::{PlotPoint, PlotTransform};

use super::gpu_paint::{GpuPainter, buffer_entry, paint_with, pipeline, writable_buffer};
use crate::viz::map::Place;

/// The points' WGSL source, with the shared colour conversion.
const SHADER: &str = concat!(
    include_str!("../../shaders/srgb.wgsl"),
    include_str!("../../shaders/points.wgsl")
);

/// Bytes per point: place (two f32), colour (four u8), radius (f32).
const POINT_BYTES: u64 = 16;

/// Bytes of the shader's `View` uniform.
const VIEW_BYTES: u64 = 32;

/// One point: where it is on the map, its colour and its radius in points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dot {
    /// Map coordinates.
    pub place: [f32; 2],
    /// Its colour (alpha is honoured).
    pub colour: Color32,
    /// Radius in points.
    pub radius: f32,
}

/// Points ready for the GPU, shared by every frame that draws them unchanged.
#[derive(Clone, Debug, Default)]
pub struct Dots {
    bytes: Arc<Vec<u8>>,
    count: u32,
}

impl Dots {
    /// Packs `dots` as the shader reads them.
    pub fn new(dots: impl IntoIterator<Item = Dot>) -> Self {
        let mut bytes = Vec::new();
        let mut count = 0;
        for dot in dots {
            bytes.extend_from_slice(&dot.place[0].to_le_bytes());
            bytes.extend_from_slice(&dot.place[1].to_le_bytes());
            bytes.extend_from_slice(&dot.colour.to_srgba_unmultiplied());
            bytes.extend_from_slice(&dot.radius.to_le_bytes());
            count += 1;
        }
        Self {
            bytes: Arc::new(bytes),
            count,
        }
    }

    /// How many points there are.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Makes the points painter available to the renderer of `state` (see
/// `gpu_paint::register`).
pub fn register(state: &RenderState) {
    let painter = PointsPipeline::new(&state.device, state.target_format);
    state.renderer.write().callback_resources.insert(painter);
}

/// Draws `dots` over `rect`, where the map coordinates from `low` (bottom-left) to `high`
/// (top-right) are shown; `id` names the place, so its GPU buffers are reused.
pub fn paint(
    painter: &egui::Painter,
    rect: Rect,
    id: egui::Id,
    dots: &Dots,
    low: [f64; 2],
    high: [f64; 2],
) {
    if dots.is_empty() || !(high[0] > low[0] && high[1] > low[1]) {
        return;
    }
    let pixels_per_point = painter.ctx().pixels_per_point();
    let frame = Frame {
        dots: dots.clone(),
        view: ViewUniform {
            low: [low[0] as f32, low[1] as f32],
            high: [high[0] as f32, high[1] as f32],
            size: [
                rect.width() * pixels_per_point,
                rect.height() * pixels_per_point,
            ],
            pixels_per_point,
        },
    };
    paint_with::<PointsPipeline>(painter, rect, id, frame);
}

/// The visible bounds and the rectangle's size, as the shader's `View` holds them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ViewUniform {
    low: [f32; 2],
    high: [f32; 2],
    size: [f32; 2],
    pixels_per_point: f32,
}

impl ViewUniform {
    fn bytes(&self, linear_target: bool) -> Vec<u8> {
        let floats = [
            self.low[0],
            self.low[1],
            self.high[0],
            self.high[1],
            self.size[0],
            self.size[1],
        ];
        let mut bytes: Vec<u8> = floats.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.extend_from_slice(&u32::from(linear_target).to_le_bytes());
        bytes.extend_from_slice(&self.pixels_per_point.to_le_bytes());
        bytes
    }
}

/// The points one place draws this frame, and how the map is shown there.
struct Frame {
    dots: Dots,
    view: ViewUniform,
}

/// The pipeline and each place's buffers, kept in the renderer's callback resources.
struct PointsPipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    linear_target: bool,
    places: HashMap<egui::Id, Uploaded>,
}

/// A place's buffers on the GPU, with what they hold.
struct Uploaded {
    points: wgpu::Buffer,
    capacity: u64,
    view: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    /// The points written, compared by identity: unchanged points are not uploaded again.
    written: Option<Arc<Vec<u8>>>,
    count: u32,
    view_written: Option<ViewUniform>,
}

impl GpuPainter for PointsPipeline {
    type Item = Frame;

    fn upload(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, id: egui::Id, frame: &Frame) {
        let needed = frame.dots.bytes.len() as u64;
        let fits = self.places.get(&id).is_some_and(|u| u.capacity >= needed);
        if !fits {
            let uploaded = self.allocate(device, needed);
            self.places.insert(id, uploaded);
        }
        let linear_target = self.linear_target;
        let Some(uploaded) = self.places.get_mut(&id) else {
            return;
        };
        let same = uploaded
            .written
            .as_ref()
            .is_some_and(|w| Arc::ptr_eq(w, &frame.dots.bytes));
        if !same {
            queue.write_buffer(&uploaded.points, 0, &frame.dots.bytes);
            uploaded.written = Some(Arc::clone(&frame.dots.bytes));
            uploaded.count = frame.dots.count;
        }
        if uploaded.view_written != Some(frame.view) {
            queue.write_buffer(&uploaded.view, 0, &frame.view.bytes(linear_target));
            uploaded.view_written = Some(frame.view);
        }
    }

    fn draw(&self, id: egui::Id, pass: &mut wgpu::RenderPass<'static>) {
        let Some(uploaded) = self.places.get(&id) else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &uploaded.bind_group, &[]);
        pass.set_vertex_buffer(0, uploaded.points.slice(..));
        pass.draw(0..6, 0..uploaded.count);
    }
}

impl PointsPipeline {
    fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("map points"),
            entries: &[buffer_entry(
                0,
                wgpu::ShaderStages::VERTEX_FRAGMENT,
                wgpu::BufferBindingType::Uniform,
            )],
        });
        let points = wgpu::VertexBufferLayout {
            array_stride: POINT_BYTES,
            step_mode: wgpu::VertexStepMode::Instance,
            attributes: &wgpu::vertex_attr_array![0 => Float32x2, 1 => Unorm8x4, 2 => Float32],
        };
        Self {
            pipeline: pipeline(
                device,
                format,
                "map points",
                SHADER,
                &layout,
                &[Some(points)],
            ),
            layout,
            linear_target: format.is_srgb(),
            places: HashMap::new(),
        }
    }

    /// Buffers for up to `bytes` of points.
    fn allocate(&self, device: &wgpu::Device, bytes: u64) -> Uploaded {
        let buffer = |size, usage| writable_buffer(device, "map points", size, usage);
        let points = buffer(bytes.max(POINT_BYTES), wgpu::BufferUsages::VERTEX);
        let view = buffer(VIEW_BYTES, wgpu::BufferUsages::UNIFORM);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("map points"),
            layout: &self.layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: view.as_entire_binding(),
            }],
        });
        Uploaded {
            points,
            capacity: bytes.max(POINT_BYTES),
            view,
            bind_group,
            written: None,
            count: 0,
            view_written: None,
        }
    }
}

/// The item of the picture nearest the plot coordinate `at` among `points` (item, place),
/// if one lies within 6 points of it on screen: what a hovered map point shows.
pub fn nearest_item(
    points: impl IntoIterator<Item = (usize, Place)>,
    transform: &PlotTransform,
    at: [f64; 2],
) -> Option<usize> {
    let pointer = transform.position_from_point(&PlotPoint::new(at[0], at[1]));
    points
        .into_iter()
        .map(|(item, place)| {
            let shown = PlotPoint::new(place[0], place[1]);
            (
                item,
                transform.position_from_point(&shown).distance(pointer),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, distance)| *distance < 6.0)
        .map(|(item, _)| item)
}

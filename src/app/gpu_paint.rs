//! What the app's own GPU drawing shares: registering every painter with the renderer, the
//! paint callback that hands a painter its data each frame, and the render pipeline they draw
//! with (premultiplied blending into egui's target, as egui does).

use std::borrow::Cow;

use eframe::egui::{self, Rect};
use eframe::egui_wgpu::{self, CallbackResources, CallbackTrait, RenderState, wgpu};

use super::{heatmap_paint, points_paint};

/// Makes the app's GPU painters (the heatmap overlay and the map's points) available to the
/// renderer of `state`: called once, when the window (or a test's renderer) is created.
/// Without it those pictures are not drawn.
pub fn register(state: &RenderState) {
    heatmap_paint::register(state);
    points_paint::register(state);
}

/// A GPU painter, kept in the renderer's callback resources: before the render pass it
/// uploads what a place on screen draws this frame, inside the pass it draws it.
pub(super) trait GpuPainter: Send + Sync + 'static {
    /// What one place hands over each frame.
    type Item: Send + Sync + 'static;

    /// Puts `item` on the GPU for the place `id`, writing only what changed.
    fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        id: egui::Id,
        item: &Self::Item,
    );

    /// Draws what the place `id` uploaded.
    fn draw(&self, id: egui::Id, pass: &mut wgpu::RenderPass<'static>);
}

/// Has the painter `P` draw `item` over `rect`; `id` names the place, so its GPU buffers are
/// reused while it stays on screen.
pub(super) fn paint_with<P: GpuPainter>(
    painter: &egui::Painter,
    rect: Rect,
    id: egui::Id,
    item: P::Item,
) {
    let callback = Painting::<P> { id, item };
    painter.add(egui_wgpu::Callback::new_paint_callback(rect, callback));
}

/// One place's item for this frame.
struct Painting<P: GpuPainter> {
    id: egui::Id,
    item: P::Item,
}

impl<P: GpuPainter> CallbackTrait for Painting<P> {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(painter) = resources.get_mut::<P>() {
            painter.upload(device, queue, self.id, &self.item);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &CallbackResources,
    ) {
        if let Some(painter) = resources.get::<P>() {
            painter.draw(self.id, pass);
        }
    }
}

/// A buffer of `size` bytes for `usage`, written from the host with `queue.write_buffer`.
pub(super) fn writable_buffer(
    device: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A uniform or storage buffer binding seen by the stages `visibility`.
pub(super) fn buffer_entry(
    binding: u32,
    visibility: wgpu::ShaderStages,
    ty: wgpu::BufferBindingType,
) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// A pipeline of the WGSL `source` (entry points `vs_main` and `fs_main`) with one bind group
/// of `layout`, drawing triangle lists into `format` with egui's premultiplied blending.
pub(super) fn pipeline(
    device: &wgpu::Device,
    format: wgpu::TextureFormat,
    label: &str,
    source: &'static str,
    layout: &wgpu::BindGroupLayout,
    buffers: &[Option<wgpu::VertexBufferLayout>],
) -> wgpu::RenderPipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(source)),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let blend = wgpu::BlendState {
        color: wgpu::BlendComponent {
            src_factor: wgpu::BlendFactor::One,
            dst_factor: wgpu::BlendFactor::OneMinusSrcAlpha,
            operation: wgpu::BlendOperation::Add,
        },
        alpha: wgpu::BlendComponent {
            src_factor: wgpu::BlendFactor::OneMinusDstAlpha,
            dst_factor: wgpu::BlendFactor::One,
            operation: wgpu::BlendOperation::Add,
        },
    };
    device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        vertex: wgpu::VertexState {
            module: &module,
            entry_point: Some("vs_main"),
            buffers,
            compilation_options: wgpu::PipelineCompilationOptions::default(),
        },
        primitive: wgpu::PrimitiveState::default(),
        depth_stencil: None,
        multisample: wgpu::MultisampleState::default(),
        fragment: Some(wgpu::FragmentState {
            module: &module,
            entry_point: Some("fs_main"),
            targets: &[Some(wgpu::ColorTargetState {
                format,
                blend: Some(blend),
                write_mask: wgpu::ColorWrites::ALL,
            })],
            compilation_options: wgpu::PipelineCompilationOptions::default(),
        }),
        multiview_mask: None,
        cache: None,
    })
}

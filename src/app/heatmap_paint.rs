//! The heatmap overlay drawn on the GPU: a saliency grid is handed to `shaders/heatmap.wgsl`
//! through egui-wgpu's paint callback, which colours it and blends it over the picture egui
//! has painted beneath. The grid is a few dozen numbers, so moving the opacity slider redraws
//! without re-colouring or re-uploading a picture.

use std::collections::HashMap;

use eframe::egui::{self, Rect};
use eframe::egui_wgpu::{RenderState, wgpu};

use super::gpu_paint::{GpuPainter, buffer_entry, paint_with, pipeline, writable_buffer};
use crate::viz::overlay::STOPS;
use crate::viz::saliency::Saliency;

/// The overlay's WGSL source, with the shared colour conversion.
const SHADER: &str = concat!(
    include_str!("../../shaders/srgb.wgsl"),
    include_str!("../../shaders/heatmap.wgsl")
);

/// Bytes of the shader's `Params` uniform: five `vec4` stops, then four 32-bit words.
const PARAMS_BYTES: u64 = 5 * 16 + 16;

/// The overlay's pipeline and the buffers of each map drawn, kept in the renderer's callback
/// resources ([`register`] puts it there).
struct Overlay {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    linear_target: bool,
    /// One entry per place a map is drawn (its egui id), reused from frame to frame.
    maps: HashMap<egui::Id, Uploaded>,
}

/// A map's uniform and cell buffers on the GPU, with what they hold.
struct Uploaded {
    params: wgpu::Buffer,
    cells: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    values: Vec<f32>,
    opacity: f32,
}

/// Makes the overlay available to the renderer of `state` (see `gpu_paint::register`).
pub fn register(state: &RenderState) {
    let overlay = Overlay::new(&state.device, state.target_format);
    state.renderer.write().callback_resources.insert(overlay);
}

/// Draws `saliency` over `rect` (where its picture is painted) at `opacity`; `id` names the
/// place, so its GPU buffers are reused while it stays on screen.
pub fn paint(painter: &egui::Painter, rect: Rect, id: egui::Id, saliency: &Saliency, opacity: f32) {
    if saliency.side == 0 || saliency.values.len() != saliency.side * saliency.side {
        return;
    }
    let grid = Grid {
        side: saliency.side as u32,
        values: saliency.values.clone(),
        opacity: opacity.clamp(0.0, 1.0),
    };
    paint_with::<Overlay>(painter, rect, id, grid);
}

/// One map to draw this frame.
struct Grid {
    side: u32,
    values: Vec<f32>,
    opacity: f32,
}

impl GpuPainter for Overlay {
    type Item = Grid;

    fn upload(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, id: egui::Id, grid: &Grid) {
        let fits = self
            .maps
            .get(&id)
            .is_some_and(|u| u.values.len() == grid.values.len());
        if !fits {
            let uploaded = self.allocate(device, grid.values.len());
            self.maps.insert(id, uploaded);
        }
        let linear_target = self.linear_target;
        let Some(uploaded) = self.maps.get_mut(&id) else {
            return;
        };
        if !fits || uploaded.values != grid.values {
            let bytes: Vec<u8> = grid.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            queue.write_buffer(&uploaded.cells, 0, &bytes);
            uploaded.values.clone_from(&grid.values);
        }
        if !fits || uploaded.opacity != grid.opacity {
            let params = params_bytes(grid.side, grid.opacity, linear_target);
            queue.write_buffer(&uploaded.params, 0, &params);
            uploaded.opacity = grid.opacity;
        }
    }

    fn draw(&self, id: egui::Id, pass: &mut wgpu::RenderPass<'static>) {
        let Some(uploaded) = self.maps.get(&id) else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &uploaded.bind_group, &[]);
        pass.draw(0..6, 0..1);
    }
}

impl Overlay {
    fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let stage = wgpu::ShaderStages::FRAGMENT;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("heatmap overlay"),
            entries: &[
                buffer_entry(0, stage, wgpu::BufferBindingType::Uniform),
                buffer_entry(
                    1,
                    stage,
                    wgpu::BufferBindingType::Storage { read_only: true },
                ),
            ],
        });
        Self {
            pipeline: pipeline(device, format, "heatmap overlay", SHADER, &layout, &[]),
            layout,
            linear_target: format.is_srgb(),
            maps: HashMap::new(),
        }
    }

    /// Buffers for a map of `cells` values.
    fn allocate(&self, device: &wgpu::Device, cells: usize) -> Uploaded {
        let buffer = |size, usage| writable_buffer(device, "heatmap overlay", size, usage);
        let params = buffer(PARAMS_BYTES, wgpu::BufferUsages::UNIFORM);
        let cells_buffer = buffer((cells * 4) as u64, wgpu::BufferUsages::STORAGE);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("heatmap overlay"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: cells_buffer.as_entire_binding(),
                },
            ],
        });
        Uploaded {
            params,
            cells: cells_buffer,
            bind_group,
            values: Vec::new(),
            opacity: f32::NAN,
        }
    }
}

/// The shader's `Params`: the colour map's stops in 0..1, the grid side, the opacity and
/// whether the target stores linear colour.
fn params_bytes(side: u32, opacity: f32, linear_target: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(PARAMS_BYTES as usize);
    for stop in STOPS {
        for value in [stop[0] / 255.0, stop[1] / 255.0, stop[2] / 255.0, 1.0] {
            bytes.extend_from_slice(&f32::to_le_bytes(value));
        }
    }
    bytes.extend_from_slice(&side.to_le_bytes());
    bytes.extend_from_slice(&opacity.to_le_bytes());
    bytes.extend_from_slice(&u32::from(linear_target).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use eframe::egui::{Color32, LayerId, Painter, pos2, vec2};
    use egui_kittest::Harness;
    use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};
    use image::{Rgb, RgbImage};

    use super::*;
    use crate::viz::overlay::overlay;

    /// Renders `saliency` over a grey square through the shader, as the app does.
    fn rendered(saliency: &Saliency, opacity: f32, side: f32) -> image::RgbaImage {
        let state = create_render_state(
            default_wgpu_setup(),
            eframe::egui_wgpu::RendererOptions::PREDICTABLE,
        );
        register(&state);
        let saliency = saliency.clone();
        let mut harness = Harness::builder()
            .with_size(vec2(side, side))
            .renderer(WgpuTestRenderer::from_render_state(state))
            .build_ui(move |ui| {
                let rect = Rect::from_min_size(pos2(0.0, 0.0), vec2(side, side));
                let painter = Painter::new(ui.ctx().clone(), LayerId::background(), rect);
                painter.rect_filled(rect, 0.0, Color32::from_gray(128));
                paint(&painter, rect, egui::Id::unique("map"), &saliency, opacity);
            });
        harness.run();
        harness.render().expect("the overlay renders")
    }

    /// The GPU overlay and the CPU overlay of the report draw the same picture: same cell
    /// centres, same colour map, same blending (to rounding).
    #[test]
    fn the_gpu_overlay_draws_what_the_cpu_overlay_draws() {
        let saliency = Saliency {
            side: 3,
            values: vec![1.0, 0.0, 0.2, 0.4, 0.9, 0.0, 0.0, 0.6, 0.3],
        };
        for opacity in [1.0, 0.5] {
            let gpu = rendered(&saliency, opacity, 48.0);
            let grey = RgbImage::from_pixel(48, 48, Rgb([128, 128, 128]));
            let cpu = overlay(&grey, &saliency, opacity, 48);
            let worst = cpu
                .enumerate_pixels()
                .flat_map(|(x, y, want)| {
                    let got = gpu.get_pixel(x, y).0;
                    (0..3).map(move |c| (i32::from(got[c]) - i32::from(want.0[c])).abs())
                })
                .max()
                .unwrap();
            assert!(worst <= 3, "opacity {opacity}: off by up to {worst}");
        }
    }

    /// Moving the slider only changes the opacity the shader blends with.
    #[test]
    fn opacity_zero_leaves_the_picture_as_it_was() {
        let saliency = Saliency {
            side: 2,
            values: vec![1.0, 0.0, 0.5, 0.25],
        };
        let gpu = rendered(&saliency, 0.0, 32.0);
        assert!(gpu.pixels().all(|p| p.0[..3] == [128, 128, 128]));
    }
}

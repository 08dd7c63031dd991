//! Frame time of the map view with many points, rendered headlessly through the wgpu path the
//! app draws with (on a machine without a GPU, Mesa's lavapipe): the pictures as the app draws
//! them (one instanced draw of `shaders/points.wgsl`) against the same points as an egui_plot
//! series (tessellated on the CPU every frame). The view pans a little every frame, as while
//! the user scrolls.
//!
//! `cargo run --release --example map_frames -- [POINTS] [FRAMES]` (defaults 100000 and 30).

use std::time::Instant;

use eframe::egui::{self, Color32};
use egui_kittest::Harness;
use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};
use egui_plot::{Plot, Points};
use lethe::app::points_paint::{self, Dot, Dots};

/// `n` points in ten clusters, deterministic.
fn clustered(n: usize) -> Vec<Dot> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|i| {
            let cluster = (i % 10) as f32;
            let centre = [(cluster * 0.7).cos() * 40.0, (cluster * 0.7).sin() * 40.0];
            let spread = [uniform() - 0.5, uniform() - 0.5];
            Dot {
                place: [centre[0] + spread[0] * 20.0, centre[1] + spread[1] * 20.0],
                colour: Color32::from_rgb(40 + 20 * (i % 10) as u8, 120, 200),
                radius: 2.0,
            }
        })
        .collect()
}

/// Milliseconds per frame (median of `frames`) of a harness drawing with `draw`.
fn frame_ms(frames: usize, draw: impl FnMut(&mut egui::Ui) + 'static) -> f64 {
    let render_state = create_render_state(
        default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    lethe::app::gpu_paint::register(&render_state);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1280.0, 820.0))
        .renderer(WgpuTestRenderer::from_render_state(render_state))
        .build_ui(draw);
    for _ in 0..3 {
        harness.step();
        harness.render().expect("the frame renders");
    }
    let mut times: Vec<f64> = (0..frames)
        .map(|_| {
            let start = Instant::now();
            harness.step();
            harness.render().expect("the frame renders");
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A plot panned by `frame` steps, with its transform.
fn plot(
    ui: &mut egui::Ui,
    frame: usize,
    add: impl FnOnce(&mut egui_plot::PlotUi),
) -> egui_plot::PlotTransform {
    let shift = frame as f64 * 0.5;
    Plot::new("frames")
        .data_aspect(1.0)
        .show_axes(false)
        .include_x(-70.0 + shift)
        .include_x(70.0 + shift)
        .include_y(-70.0)
        .include_y(70.0)
        .show(ui, add)
        .transform
}

fn main() {
    let mut args = std::env::args().skip(1);
    let points: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let dots = clustered(points);

    let packed = Dots::new(dots.iter().copied());
    let mut frame = 0;
    let gpu = frame_ms(frames, move |ui| {
        frame += 1;
        let transform = plot(ui, frame, |_| {});
        let bounds = transform.bounds();
        points_paint::paint(
            ui.painter(),
            *transform.frame(),
            egui::Id::unique("frames"),
            &packed,
            bounds.min(),
            bounds.max(),
        );
    });

    let series: Vec<[f64; 2]> = dots
        .iter()
        .map(|d| [f64::from(d.place[0]), f64::from(d.place[1])])
        .collect();
    let mut frame = 0;
    let cpu = frame_ms(frames, move |ui| {
        frame += 1;
        plot(ui, frame, |plot| {
            plot.points(Points::new("points", series.clone()).radius(2.0));
        });
    });
    println!(
        "{points} points, 1280x820, median of {frames} frames (update, draw, render, read back): \
         GPU points {gpu:.1} ms, egui_plot series {cpu:.1} ms"
    );
}

//! Frame time of the map view with many points, rendered headlessly through the wgpu path the
//! app draws with (on a machine without a GPU, Mesa's lavapipe): the pictures as the app draws
//! them (one instanced draw of `shaders/points.wgsl`) against the same points as an egui_plot
//! series (tessellated on the CPU every frame). The view pans a little every frame, as while
//! the user scrolls.
//!
//! `cargo run --release --example map_frames -- [POINTS] [FRAMES] [--window]` (defaults 100000
//! and 30). With `--window` the same two views run in a real window of the app's kind (eframe,
//! wgpu, presented to the display, e.g. Xvfb's) and the time between frames is measured, with
//! no read-back.

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

/// One way of drawing the map, called every frame.
type Draw = Box<dyn FnMut(&mut egui::Ui)>;

/// Milliseconds between frames (median of `frames`) of a real window drawing with each of
/// `draws` in turn (one window: a process opens one event loop), continuously repainted; the
/// window closes itself when done.
fn window_frame_ms(frames: usize, draws: Vec<Draw>) -> Vec<f64> {
    let adapter = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
    let named = adapter.clone();
    let phases = draws.len();
    let times = std::rc::Rc::new(std::cell::RefCell::new(vec![Vec::new(); phases]));
    let app = Windowed {
        draws,
        frames,
        phase: 0,
        drawn: 0,
        last: None,
        times: times.clone(),
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1280.0, 820.0]),
        ..Default::default()
    };
    eframe::run_native(
        "map frames",
        options,
        Box::new(move |cc| {
            if let Some(render_state) = &cc.wgpu_render_state {
                lethe::app::gpu_paint::register(render_state);
                let info = render_state.adapter.get_info();
                *named.borrow_mut() = format!("{} ({:?})", info.name, info.backend);
            }
            Ok(Box::new(app))
        }),
    )
    .expect("the window opens (is there a display?)");
    println!("drawn on {}", adapter.borrow());
    let mut times = times.borrow().clone();
    times
        .iter_mut()
        .map(|phase| {
            phase.sort_by(f64::total_cmp);
            phase[phase.len() / 2]
        })
        .collect()
}

/// Frames of each draw before timing starts: fonts, buffers and pipelines are set up.
const WARM_UP: usize = 3;

/// A window that times `frames` frames of each of its draws in turn.
struct Windowed {
    draws: Vec<Draw>,
    frames: usize,
    phase: usize,
    drawn: usize,
    last: Option<Instant>,
    times: std::rc::Rc<std::cell::RefCell<Vec<Vec<f64>>>>,
}

impl eframe::App for Windowed {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let now = Instant::now();
        if let Some(last) = self.last.replace(now)
            && self.drawn > WARM_UP
        {
            self.times.borrow_mut()[self.phase]
                .push(now.duration_since(last).as_secs_f64() * 1000.0);
        }
        if self.drawn == WARM_UP + self.frames {
            self.phase += 1;
            self.drawn = 0;
        }
        match self.draws.get_mut(self.phase) {
            Some(draw) => draw(ui),
            None => ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close),
        }
        self.drawn += 1;
        ui.ctx().request_repaint();
    }
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let windowed = args.iter().any(|a| a == "--window");
    let mut numbers = args.iter().filter_map(|a| a.parse::<usize>().ok());
    let points = numbers.next().unwrap_or(100_000);
    let frames = numbers.next().unwrap_or(30);
    let dots = clustered(points);

    let packed = Dots::new(dots.iter().copied());
    let mut frame = 0;
    let gpu: Draw = Box::new(move |ui| {
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
    let cpu: Draw = Box::new(move |ui| {
        frame += 1;
        plot(ui, frame, |plot| {
            plot.points(Points::new("points", series.clone()).radius(2.0));
        });
    });
    let (gpu, cpu) = if windowed {
        let times = window_frame_ms(frames, vec![gpu, cpu]);
        (times[0], times[1])
    } else {
        (frame_ms(frames, gpu), frame_ms(frames, cpu))
    };
    let what = if windowed {
        "between frames in a window (update, draw, render, present)"
    } else {
        "(update, draw, render, read back)"
    };
    println!(
        "{points} points, 1280x820, median of {frames} frames {what}: GPU points {gpu:.1} ms, \
         egui_plot series {cpu:.1} ms"
    );
}

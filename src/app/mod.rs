//! The desktop app: five steps from "open a model and images" to "edited model and a
//! before/after table", around the same engine the command line uses. Every slow thing (model
//! loading, image decoding, embedding, unlearning) runs on a background thread; the UI only polls.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

pub mod batch_view;
pub mod browser;
pub mod chrome;
pub mod gpu_paint;
pub mod grid;
pub mod heatmap_paint;
pub mod heatmap_window;
pub mod method_panel;
pub mod model_slot;
pub mod points_paint;
pub mod results;
pub mod run_panel;
pub mod sets;
pub mod sets_panel;
pub mod task;
pub mod thumbnails;
pub mod workspace;

use browser::Browser;
use heatmap_window::{HeatmapWindow, Subject};
use model_slot::ModelSlot;
use results::Results;
use run_panel::{Outcome, Runner, Start};
use thumbnails::Thumbnails;
use workspace::{WORKSPACE_FILE, Workspace};

/// The app's identifier, for its storage folder.
pub const APP_ID: &str = "lethe";

/// The window's Wayland app id and X11 class: desktops match the window to the installed desktop
/// entry of this name (`packaging/`), so it shows the entry's name and icon.
pub const DESKTOP_ID: &str = "io.github.lethe.Lethe";

/// The five steps of the workflow, in order; the left navigation lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    /// Open a model and browse images.
    Data,
    /// Pick what to forget, what to keep and what to judge on.
    Sets,
    /// Choose and tune the method.
    Method,
    /// Run it in the background.
    Run,
    /// Before/after numbers and pictures.
    Results,
}

impl Page {
    /// Every page, in workflow order.
    pub const ALL: [Page; 5] = [
        Page::Data,
        Page::Sets,
        Page::Method,
        Page::Run,
        Page::Results,
    ];

    /// Navigation label.
    pub fn title(self) -> &'static str {
        match self {
            Page::Data => "1  Data",
            Page::Sets => "2  Sets",
            Page::Method => "3  Method",
            Page::Run => "4  Run",
            Page::Results => "5  Results",
        }
    }

    /// What the step is for, shown as the navigation tooltip.
    pub fn purpose(self) -> &'static str {
        match self {
            Page::Data => "Open a CLIP checkpoint and browse the images of a dataset.",
            Page::Sets => {
                "Say what to forget (a class name, or images), what must be kept, and what to judge the result on."
            }
            Page::Method => "Choose an unlearning method, a preset, and its settings.",
            Page::Run => "Run the method in the background and watch it work.",
            Page::Results => {
                "Compare the model before and after, export the edited model and the report."
            }
        }
    }
}

/// A message for the user at the bottom of the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
}

/// The whole app state.
pub struct LetheApp {
    started: bool,
    /// The scenario and the curated sets (saved between launches).
    pub workspace: Workspace,
    workspace_path: PathBuf,
    saved: Workspace,
    /// The page shown.
    pub page: Page,
    /// The model used for browsing (similarity, predictions).
    pub model: ModelSlot,
    /// The Data panel.
    pub browser: Browser,
    /// Decoded thumbnails.
    pub thumbnails: Thumbnails,
    /// The run in progress, if any, and its live curves.
    pub runner: Runner,
    /// Finished runs.
    pub results: Results,
    /// Sets panel state that is not saved.
    pub sets_ui: sets_panel::SetsUi,
    /// The heatmap window, while open.
    pub heatmap: Option<HeatmapWindow>,
    /// Whether the keyboard-shortcut overlay is open.
    pub help_open: bool,
    /// The last message for the user.
    pub notice: Option<Notice>,
}

impl LetheApp {
    /// Opens the workspace saved in `home` (the demo scenario when there is none); its model
    /// and browsed dataset start loading with the first frame.
    pub fn new(home: PathBuf) -> Self {
        let workspace_path = home.join(WORKSPACE_FILE);
        let (workspace, notice) = match Workspace::load(&workspace_path) {
            Ok(workspace) => (workspace, None),
            Err(error) => (
                Workspace::default(),
                Some(Notice {
                    text: format!(
                        "{error:#}; starting from the demo scenario (the file was left as it is)"
                    ),
                    error: true,
                }),
            ),
        };
        Self {
            started: false,
            browser: Browser::new(workspace.browse.clone()),
            saved: workspace.clone(),
            workspace,
            workspace_path,
            page: Page::Data,
            model: ModelSlot::default(),
            thumbnails: Thumbnails::new(3, 4096),
            runner: Runner::default(),
            results: Results::default(),
            sets_ui: sets_panel::SetsUi::default(),
            heatmap: None,
            help_open: false,
            notice,
        }
    }

    /// Applies the saved look and starts loading the model and the browsed dataset.
    fn start(&mut self, ctx: &egui::Context) {
        self.started = true;
        chrome::apply_look(ctx, &self.workspace);
        let recipe = &self.workspace.recipe;
        self.model
            .load(ctx, &recipe.model.path, &recipe.model.device);
        let spec = self.workspace.browse.clone();
        self.browser.open(spec, ctx);
    }

    /// The folder holding the workspace file and the image sets saved for runs.
    pub fn home(&self) -> PathBuf {
        self.workspace_path
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default()
    }

    /// Draws one frame of the whole app.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.started {
            self.start(&ctx);
        }
        self.poll(&ctx);
        self.accept_dropped_checkpoint(&ctx);
        if let Err(error) = self.browser.accept_dropped_files(&ctx) {
            self.notify(error, true);
        }
        chrome::shortcuts(self, &ctx);
        chrome::top_bar(self, ui);
        chrome::status_bar(self, ui);
        chrome::navigation(self, ui);
        egui::CentralPanel::default().show(ui, |ui| match self.page {
            Page::Data => {
                let sets = &self.workspace.sets;
                let marks = |i: usize| sets.role_of(i).map(sets_panel::role_colour);
                self.browser
                    .ui(ui, self.model.loaded(), &mut self.thumbnails, &marks);
            }
            Page::Sets => sets_panel::ui(self, ui),
            Page::Method => method_panel::ui(self, ui),
            Page::Run => run_panel::ui(self, ui),
            Page::Results => results::ui(self, ui),
        });
        if let Some(item) = self.browser.heatmap_request.take() {
            self.open_heatmaps(item);
        }
        if let Some(window) = &mut self.heatmap
            && !window.show(&ctx)
        {
            self.heatmap = None;
        }
        chrome::help_overlay(self, &ctx);
        // While a button is held (dragging a value, a rubber band) changes pile up and are
        // written once on release, not once per frame.
        if !ctx.input(|i| i.pointer.any_down()) {
            self.save_if_changed();
        }
    }

    /// Collects finished background work.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(Err(error)) = self.model.poll() {
            self.notify(error, true);
        }
        match self.browser.poll() {
            Some(Ok(())) => {
                if let Some(dataset) = &self.browser.dataset {
                    self.workspace.browse = dataset.name.clone();
                    self.workspace.sets.clamp(dataset.items.len());
                }
            }
            Some(Err(error)) => self.notify(error, true),
            None => {}
        }
        if let Some(outcome) = self.runner.poll(ctx) {
            match outcome {
                Ok(Outcome::Run(record)) => {
                    self.notify(format!("Run finished: {}", record.headline()), false);
                    self.results.add(*record);
                    self.page = Page::Results;
                }
                Ok(Outcome::Batch(record)) => {
                    self.notify(format!("Batch finished: {}", record.headline()), false);
                    self.results.add_batch(*record);
                    self.page = Page::Results;
                }
                Err(error) => self.notify(error, true),
            }
        }
    }

    /// A checkpoint folder dropped on the window opens as the model (any other drop is left
    /// for the Data panel, which opens images).
    fn accept_dropped_checkpoint(&mut self, ctx: &egui::Context) {
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        let Some(folder) = dropped.filter(|p| is_checkpoint_folder(p)) else {
            return;
        };
        ctx.input_mut(|i| i.raw.dropped_files.clear());
        self.workspace.recipe.model.path = folder.display().to_string();
        let recipe = &self.workspace.recipe;
        self.model
            .load(ctx, &recipe.model.path, &recipe.model.device);
    }

    /// Opens the heatmap window on item `item` of the browsed images, under the open model
    /// and the edited model of the latest run.
    fn open_heatmaps(&mut self, item: usize) {
        let (Some(dataset), Some(model)) = (&self.browser.dataset, self.model.loaded()) else {
            self.notify("Open a model to see where it looks in an image.", true);
            return;
        };
        let mut subjects = vec![Subject {
            name: "open model".into(),
            model: Arc::clone(model),
        }];
        subjects.extend(self.results.runs.last().map(|run| run.models[1].clone()));
        self.heatmap = Some(HeatmapWindow::new(Arc::clone(dataset), item, subjects));
    }

    /// Shows `text` in the status bar.
    pub fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
        });
    }

    /// Saves the workspace when it differs from the saved copy. A failure is reported and
    /// retried on the next change; the old file stays intact.
    fn save_if_changed(&mut self) {
        if self.workspace == self.saved {
            return;
        }
        match self.workspace.save(&self.workspace_path) {
            Ok(()) => self.saved = self.workspace.clone(),
            Err(error) => {
                self.saved = self.workspace.clone();
                self.notify(format!("{error:#}"), true);
            }
        }
    }

    /// Starts a run of the current scenario, or of the queue.
    pub fn start_run(&mut self, ctx: &egui::Context, what: Start) {
        if self.runner.is_running() {
            return;
        }
        let browsed = self.browser.dataset.clone();
        match self
            .runner
            .start(ctx, &self.workspace, browsed, self.home(), what)
        {
            Ok(()) => self.page = Page::Run,
            Err(error) => self.notify(error, true),
        }
    }

    /// Adds the current scenario to the queue; when it uses the picked forget pictures, they
    /// are saved under the workspace folder for this concept alone, as they are now.
    pub fn queue_scenario(&mut self) {
        let browsed = self.browser.dataset.clone();
        let forget: Vec<usize> = self.workspace.sets.forget.iter().copied().collect();
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let folder = self.home().join("queue").join(millis.to_string());
        let save = move || {
            let browsed = browsed.ok_or("The browsed images are still loading.")?;
            if forget.is_empty() {
                return Err(
                    "The forget set's images are to be used, but the forget set is empty.".into(),
                );
            }
            crate::data::subset::save_subset(&browsed, &forget, &folder)
                .map_err(|e| format!("{e:#}"))
        };
        match self.workspace.queue_scenario(save) {
            Ok(()) => self.runner.queue.clear(),
            Err(error) => self.notify(error, true),
        }
    }
}

impl eframe::App for LetheApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    /// Called on shutdown (and periodically): the workspace file is the one source of truth,
    /// so this only makes sure it is current; egui's own state goes to eframe's storage.
    fn save(&mut self, _storage: &mut dyn eframe::Storage) {
        self.save_if_changed();
    }
}

/// Whether `path` is a folder holding a CLIP checkpoint (Hugging Face or open_clip).
fn is_checkpoint_folder(path: &std::path::Path) -> bool {
    ["config.json", "open_clip_config.json"]
        .iter()
        .any(|name| path.join(name).is_file())
}

/// The application icon (the packaged one, `assets/icons/`) as the window's icon.
fn window_icon() -> egui::IconData {
    // The PNG is part of the binary and decoded by a test, so a failure here is a build error.
    eframe::icon_data::from_png_bytes(WINDOW_ICON_PNG).unwrap_or_default()
}

/// The 256-pixel application icon, embedded so the window has it wherever the binary is.
const WINDOW_ICON_PNG: &[u8] = include_bytes!("../../assets/icons/lethe-256.png");

/// Opens the app window; returns when it is closed.
pub fn launch() -> anyhow::Result<()> {
    let home = workspace::home();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Lethe")
            .with_app_id(DESKTOP_ID)
            .with_inner_size([1280.0, 820.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true)
            .with_icon(window_icon()),
        persistence_path: Some(home.join("egui.ron")),
        ..Default::default()
    };
    eframe::run_native(
        "Lethe",
        options,
        Box::new(move |cc| {
            if let Some(render_state) = &cc.wgpu_render_state {
                gpu_paint::register(render_state);
            }
            Ok(Box::new(LetheApp::new(home)))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the window: {e} (the commands of `lethe --help` work without a display)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::DESKTOP_ID;
    use std::path::Path;

    fn source_file(path: &str) -> String {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
    }

    #[test]
    fn the_window_icon_decodes_to_a_256_pixel_square() {
        let icon = eframe::icon_data::from_png_bytes(super::WINDOW_ICON_PNG).unwrap();
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
    }

    /// Desktops tie the window to its menu entry and icon by one name; a mismatch shows a
    /// generic icon and a second taskbar entry, which no validator notices.
    #[test]
    fn the_desktop_entry_metainfo_and_window_share_one_id() {
        let entry = source_file(&format!("packaging/{DESKTOP_ID}.desktop"));
        for line in [
            "Exec=lethe".to_string(),
            format!("Icon={DESKTOP_ID}"),
            format!("StartupWMClass={DESKTOP_ID}"),
        ] {
            assert!(
                entry.lines().any(|l| l == line),
                "the desktop entry lacks {line}"
            );
        }
        let metainfo = source_file(&format!("packaging/{DESKTOP_ID}.metainfo.xml"));
        assert!(metainfo.contains(&format!("<id>{DESKTOP_ID}</id>")));
        assert!(metainfo.contains(&format!(">{DESKTOP_ID}.desktop</launchable>")));
        let version = format!("<release version=\"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(metainfo.contains(&version), "the metainfo lacks {version}");
    }

    /// `cargo deb` fails late, after a release build, on a missing asset; the icons must be
    /// installed under the entry's icon name.
    #[test]
    fn every_packaged_file_exists_and_icons_carry_the_desktop_id() {
        let manifest: toml::Table = toml::from_str(&source_file("Cargo.toml")).unwrap();
        let assets = manifest["package"]["metadata"]["deb"]["assets"]
            .as_array()
            .unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut icons = 0;
        for asset in assets {
            let [source, target, _mode] = asset.as_array().unwrap().as_slice() else {
                panic!("an asset is [source, target, mode], not {asset}");
            };
            let (source, target) = (source.as_str().unwrap(), target.as_str().unwrap());
            if source.starts_with("target/release/") {
                continue;
            }
            if let Some(folder) = source.strip_suffix("/*.toml") {
                let recipes = std::fs::read_dir(root.join(folder)).unwrap().count();
                assert!(recipes > 0, "{source} matches nothing");
            } else {
                assert!(root.join(source).is_file(), "{source} is not a file");
            }
            if target.starts_with("usr/share/icons/") {
                assert!(
                    target.ends_with(&format!("/apps/{DESKTOP_ID}.png"))
                        || target.ends_with(&format!("/apps/{DESKTOP_ID}.svg")),
                    "{target}"
                );
                icons += 1;
            }
        }
        assert_eq!(icons, 7, "the SVG and six PNG sizes");
    }
}

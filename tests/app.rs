//! The app driven as a person would, through its AccessKit labels: load the demo, pick what
//! to forget, run, read the results; select images by click and rule; cancel a run; reopen the
//! workspace. Screenshots of every panel are rendered headlessly.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use eframe::egui::{self, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};
use lethe::app::heatmap_window::{Maps as HeatmapMaps, Toward};
use lethe::app::sets::Role;
use lethe::app::{LetheApp, Page};

fn harness(home: &Path) -> Harness<'static, LetheApp> {
    // The renderer the app's window would have, with its GPU painters registered.
    let render_state = create_render_state(
        default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    lethe::app::gpu_paint::register(&render_state);
    Harness::builder()
        .with_size(egui::vec2(1280.0, 820.0))
        .with_max_steps(10_000)
        .renderer(WgpuTestRenderer::from_render_state(render_state))
        .build_ui_state(
            |ui, app: &mut LetheApp| app.show(ui),
            LetheApp::new(home.into()),
        )
}

/// Steps the UI until `done` holds for the harness, failing after `seconds` with `what`.
fn step_until(
    harness: &mut Harness<'static, LetheApp>,
    seconds: u64,
    what: &str,
    done: impl Fn(&Harness<'static, LetheApp>) -> bool,
) {
    let start = Instant::now();
    while !done(harness) {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "timed out waiting for {what}; status: {:?}",
            harness.state().notice
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Steps the UI until `done` holds for the app, failing after `seconds`.
fn wait_until(
    harness: &mut Harness<'static, LetheApp>,
    seconds: u64,
    what: &str,
    done: impl Fn(&LetheApp) -> bool,
) {
    step_until(harness, seconds, what, |h| done(h.state()));
    harness.step();
}

fn wait_for_demo(harness: &mut Harness<'static, LetheApp>) {
    wait_until(harness, 120, "the demo model and dataset", |app| {
        app.model.loaded().is_some() && app.browser.dataset.is_some()
    });
}

/// Steps the UI until a widget with `label` is shown (lists filled in the background appear
/// a few frames late, later on a busy machine), failing after `seconds`.
fn wait_for_label(harness: &mut Harness<'static, LetheApp>, seconds: u64, label: &str) {
    let what = format!("a widget labelled {label:?}");
    step_until(harness, seconds, &what, |h| {
        h.query_by_label(label).is_some()
    });
}

fn click(harness: &mut Harness<'static, LetheApp>, label: &str) {
    // A click lands where the widget was last drawn: let a page that just opened settle its
    // layout first, or the click can hit the widget that was there a frame ago.
    harness.run_steps(2);
    harness.get_by_label(label).click();
    harness.step();
    harness.step();
}

#[test]
fn the_demo_forgets_star_from_start_to_results() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    assert_eq!(harness.state().model.spec, "demo:vit");

    click(&mut harness, "2  Sets");
    assert_eq!(harness.state().page, Page::Sets);
    let head = harness.get_by_label("Zero-shot head (dataset spec)");
    head.focus();
    harness.step();
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness
        .get_by_label("Zero-shot head (dataset spec)")
        .type_text("shapes:shapes?seed=101&n=300");
    harness.step();
    wait_until(&mut harness, 30, "the shape classes", |app| {
        app.workspace.recipe.forget.dataset == "shapes:shapes?seed=101&n=300"
    });
    wait_for_label(&mut harness, 60, "star");
    // Star is the demo's suggested class; heart, clicked twice, comes and goes.
    click(&mut harness, "heart");
    assert_eq!(
        harness.state().workspace.recipe.forget.classes,
        ["star", "heart"]
    );
    click(&mut harness, "heart");
    assert_eq!(harness.state().workspace.recipe.forget.classes, ["star"]);

    click(&mut harness, "3  Method");
    click(&mut harness, "Lip (Lipschitz, synthetic samples)");
    click(&mut harness, "aggressive");
    // A short schedule, so the test takes seconds: few synthetic images and steps. Only the
    // blocks' layers change: on the demo ViT the shared ones (norms, projections, embeddings)
    // take every other shape down while the star stays.
    {
        let recipe = &mut harness.state_mut().workspace.recipe;
        recipe.method.settings =
            "learning_rate = 5e-3\nperturbations = 4\nbatch = 4\nmax_steps = 8\n\
             blocks_only = true\n[synthetic]\ncount = 8\nmax_steps = 30\n"
                .parse()
                .unwrap();
        recipe.eval.datasets = vec!["shapes:fruits?seed=103&n=100".into()];
        recipe.eval.relearn_steps = 0;
        recipe.eval.retrieval_per_class = 0;
    }
    click(&mut harness, "4  Run");
    click(&mut harness, "Start run");
    assert!(harness.state().runner.is_running());
    wait_until(&mut harness, 600, "the run to finish", |app| {
        !app.runner.is_running()
    });
    let app = harness.state();
    assert_eq!(app.page, Page::Results, "{:?}", app.notice);
    let run = &app.results.runs[0];
    let metrics = &run.finished.metrics;
    assert_eq!(metrics.classes, ["star"]);
    assert!(
        metrics.target.after.value < metrics.target.before.value,
        "star {} -> {}",
        metrics.target.before.value,
        metrics.target.after.value
    );
    assert!(!run.curve.is_empty(), "the live curve was recorded");
    // The results table shows the numbers with their 95% intervals.
    let shown = |e: &lethe::eval::interval::Estimate| {
        format!("{:.3} [{:.3}, {:.3}]", e.value, e.ci_low, e.ci_high)
    };
    let before = shown(&metrics.target.before);
    let after = shown(&metrics.target.after);
    let target_after = metrics.target.after.value;
    harness.step();
    harness.get_by_label("forgotten: star");
    harness.get_by_label(&before);
    harness.get_by_label(&after);

    // Export the edited checkpoint and the whole result folder, as the buttons do.
    let out = tempfile::tempdir().unwrap();
    for (name, what) in [
        ("edited", lethe::app::results::Saving::Checkpoint),
        ("result", lethe::app::results::Saving::ResultFolder),
    ] {
        let ctx = harness.ctx.clone();
        let dir = out.path().join(name);
        harness.state_mut().results.save(&ctx, 0, dir, what);
        wait_until(&mut harness, 120, "the save", |app| {
            !app.results.is_saving()
        });
        let notice = harness.state().notice.clone().unwrap();
        assert!(!notice.error && notice.text.contains(name), "{notice:?}");
    }
    lethe::clip::checkpoint::Checkpoint::open(&out.path().join("edited")).unwrap();
    let json = std::fs::read_to_string(out.path().join("result/metrics.json")).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The saved number is the one shown (serde_json reads decimals back to within an ulp).
    let saved_after = saved["target"]["after"]["value"].as_f64().unwrap();
    assert!(
        (saved_after - target_after).abs() <= 1e-12,
        "{saved_after} saved, {target_after} shown"
    );
    assert!(out.path().join("result/report.md").is_file());
}

/// An image's heatmaps open from the Data panel's details and from the Sets panel's selected
/// image, made toward the image's class by the open model, as a direct
/// computation gives them.
#[test]
fn an_images_heatmaps_open_from_the_data_and_sets_panels() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    click(&mut harness, "image 3");
    wait_for_label(&mut harness, 30, "Heatmaps");
    click(&mut harness, "Heatmaps");
    assert_open_models_heatmaps_of(&mut harness, 3);
    // The opacity slider changes the drawing only: no recomputation.
    harness.state_mut().heatmap.as_mut().unwrap().opacity = 0.2;
    harness.run_steps(3);
    assert!(!harness.state().heatmap.as_ref().unwrap().is_computing());
    harness.state_mut().heatmap = None;

    click(&mut harness, "2  Sets");
    wait_for_label(&mut harness, 30, "image 5");
    click(&mut harness, "image 5");
    click(&mut harness, "Heatmaps");
    wait_for_heatmaps(&mut harness);
    assert_eq!(harness.state().heatmap.as_ref().unwrap().item(), 5);
}

/// Waits for the heatmap window's maps of item `item` and checks them: made by the open
/// model alone, toward the image's class, equal to a direct computation.
fn assert_open_models_heatmaps_of(harness: &mut Harness<'static, LetheApp>, item: usize) {
    let maps = wait_for_heatmaps(harness);
    let app = harness.state();
    let window = app.heatmap.as_ref().unwrap();
    assert_eq!(
        (window.item(), window.subject_names()),
        (item, vec!["open model"])
    );
    let data = app.browser.dataset.clone().unwrap();
    let label = data.items[item].label;
    assert_eq!(window.toward, Toward::Class(label));
    let loaded = app.model.loaded().unwrap();
    let picture = data.items[item].source.image().unwrap();
    let text = lethe::eval::class_embeddings(
        loaded,
        std::slice::from_ref(&data.classes[label]),
        &data.templates,
    );
    let pixels = loaded.preprocessor.tensor(
        loaded.preprocessor.apply(&picture),
        1,
        &loaded.model.device(),
    );
    let direct = lethe::viz::saliency::saliency_toward(&loaded.model, pixels, text);
    assert_eq!(maps.maps, direct);
}

/// The heatmap window works for either tower and for a checkpoint from Hugging Face: the
/// demo ResNet (attention-pool map and Grad-CAM) and the Hugging Face ViT fixture (rollout),
/// each typed into the top bar.
#[test]
fn heatmaps_open_for_the_demo_resnet_and_a_hugging_face_checkpoint() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hf-vit");
    for (spec, resnet) in [("demo:rn", true), (fixture, false)] {
        harness.get_by_label("Model").focus();
        harness.step();
        harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::A);
        harness.get_by_label("Model").type_text(spec);
        harness.step();
        click(&mut harness, "image 3");
        wait_until(&mut harness, 120, spec, |app| {
            app.model.spec == spec && app.model.pending().is_none() && app.model.loaded().is_some()
        });
        let loaded = harness.state().model.loaded().unwrap().clone();
        assert_eq!(
            matches!(loaded.model.visual, lethe::clip::VisionTower::ResNet(_)),
            resnet,
            "{spec} is the model loaded"
        );
        wait_for_label(&mut harness, 30, "Heatmaps");
        click(&mut harness, "Heatmaps");
        assert_open_models_heatmaps_of(&mut harness, 3);
        if resnet {
            screenshot_named(&mut harness, "heatmap-window-rn");
        }
        harness.state_mut().heatmap = None;
        harness.step();
    }
}

/// Drags with the primary button along `path` in small steps, `modifiers` held.
fn drag(harness: &mut Harness<'static, LetheApp>, path: &[egui::Pos2], modifiers: Modifiers) {
    let (first, last) = (path[0], path[path.len() - 1]);
    harness.hover_at(first);
    harness.step();
    harness.event_modifiers(
        egui::Event::PointerButton {
            pos: first,
            button: egui::PointerButton::Primary,
            pressed: true,
            modifiers,
        },
        modifiers,
    );
    harness.step();
    for pair in path.windows(2) {
        for step in 1..=4 {
            let at = pair[0] + (pair[1] - pair[0]) * step as f32 / 4.0;
            harness.event_modifiers(egui::Event::PointerMoved(at), modifiers);
            harness.step();
        }
    }
    harness.event_modifiers(
        egui::Event::PointerButton {
            pos: last,
            button: egui::PointerButton::Primary,
            pressed: false,
            modifiers,
        },
        modifiers,
    );
    harness.run_steps(2);
}

/// The pictures of the browse map on screen: item and position, as last drawn.
fn map_on_screen(app: &LetheApp) -> Vec<(usize, egui::Pos2)> {
    let model = app.model.loaded().unwrap();
    let map = app.browser.map_points(model).unwrap();
    map.iter()
        .filter_map(|p| Some((p.item?, app.browser.map_to_screen(p.place)?)))
        .collect()
}

/// A screen rectangle of `side` points around `centre`, grown until no picture sits within a
/// point of its edges, and the pictures inside it.
fn around(
    on_screen: &[(usize, egui::Pos2)],
    centre: egui::Pos2,
    side: f32,
) -> (egui::Rect, BTreeSet<usize>) {
    let mut rect = egui::Rect::from_center_size(centre, egui::Vec2::splat(side));
    while on_screen
        .iter()
        .any(|&(_, at)| rect.expand(1.0).contains(at) && !rect.shrink(1.0).contains(at))
    {
        rect = rect.expand(1.5);
    }
    let inside = on_screen
        .iter()
        .filter(|&&(_, at)| rect.contains(at))
        .map(|&(item, _)| item)
        .collect();
    (rect, inside)
}

/// Clusters on the Sets panel's map go into the forget set: a rectangle around one picture's
/// neighbourhood selects exactly the pictures inside it, a Shift-lasso around the farthest
/// picture's neighbourhood adds those, a Ctrl-rectangle takes the first ones out again, and
/// "Add to forget" takes what is left.
#[test]
fn clusters_outlined_on_the_map_go_into_the_forget_set() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    type_into(&mut harness, "Dataset", "shapes:colors?seed=7&n=300");
    harness.key_press(egui::Key::Enter);
    wait_until(&mut harness, 60, "the small dataset", |app| {
        app.browser
            .dataset
            .as_ref()
            .is_some_and(|d| d.items.len() == 300)
    });
    click(&mut harness, "2  Sets");
    click(&mut harness, "Map");
    wait_until(&mut harness, 300, "the map", |app| {
        app.browser
            .map_points(app.model.loaded().unwrap())
            .is_some()
    });
    harness.run_steps(3);
    let on_screen = map_on_screen(harness.state());
    assert_eq!(on_screen.len(), 300, "every picture is on the map");
    // ... and in sight: left of the side panel, which a too-wide map would run under.
    let side_panel = harness.get_by_label("What to forget").rect().left();
    let hidden = on_screen.iter().filter(|p| p.1.x >= side_panel).count();
    assert_eq!(
        hidden, 0,
        "pictures under the side panel (from x = {side_panel})"
    );

    // Near the middle of the map, then as far from there as the map goes: 40-point outlines
    // around them stay inside the plot, whose bounds leave a margin around the points.
    let bounds = egui::Rect::from_points(&on_screen.iter().map(|p| p.1).collect::<Vec<_>>());
    let nearest_to = |target: egui::Pos2| {
        on_screen
            .iter()
            .map(|&(_, at)| at)
            .min_by(|a, b| a.distance(target).total_cmp(&b.distance(target)))
            .unwrap()
    };
    let first = nearest_to(bounds.center());
    let (near, first_group) = around(&on_screen, first, 40.0);
    click(&mut harness, "Rectangle");
    drag(
        &mut harness,
        &[near.left_top(), near.right_bottom()],
        Modifiers::NONE,
    );
    assert_eq!(harness.state().browser.selection.selected, first_group);

    let far = nearest_to(bounds.left_top());
    let (rect, far_group) = around(&on_screen, far, 40.0);
    assert!(first_group.is_disjoint(&far_group));
    click(&mut harness, "Lasso");
    let outline = [
        rect.left_top(),
        rect.right_top(),
        rect.right_bottom(),
        rect.left_bottom(),
        rect.left_top(),
    ];
    drag(&mut harness, &outline, Modifiers::SHIFT);
    let both: BTreeSet<usize> = first_group.union(&far_group).copied().collect();
    assert_eq!(harness.state().browser.selection.selected, both);
    let rendered = screenshot_named(&mut harness, "map");
    // The GPU draws every picture as a dot of its class's colour where the map puts it: check
    // the pictures with no other point near them.
    let app = harness.state();
    let data = app.browser.dataset.clone().unwrap();
    let map = app.browser.map_points(app.model.loaded().unwrap()).unwrap();
    let placed: Vec<(Option<usize>, usize, egui::Pos2)> = map
        .iter()
        .map(|p| (p.item, p.label, app.browser.map_to_screen(p.place).unwrap()))
        .collect();
    let alone: Vec<(usize, usize, egui::Pos2)> = placed
        .iter()
        .filter(|(item, _, at)| {
            item.is_some() && placed.iter().filter(|o| o.2.distance(*at) < 12.0).count() == 1
        })
        .map(|&(item, label, at)| (item.unwrap(), label, at))
        .collect();
    assert!(
        alone.len() >= 5,
        "only {} pictures stand alone",
        alone.len()
    );
    for &(_, label, at) in &alone {
        let want = lethe::viz::map::class_colour(&data.classes[label], label);
        assert_pixel(&rendered, at, want);
    }

    click(&mut harness, "Rectangle");
    drag(
        &mut harness,
        &[near.left_top(), near.right_bottom()],
        Modifiers::COMMAND,
    );
    assert_eq!(harness.state().browser.selection.selected, far_group);
    click(&mut harness, "Add to forget");
    assert_eq!(harness.state().workspace.sets.get(Role::Forget), &far_group);

    // Coloured by set: the forget set's pictures in the forget colour (drawn selected, on
    // top), the pictures in no set grey.
    click(&mut harness, "by set");
    harness.run_steps(2);
    let rendered = harness.render().unwrap();
    let forget = lethe::app::sets_panel::role_colour(Role::Forget);
    let app = harness.state();

    // (The legend above the map changed, so the map moved: positions are read again.)
    let now = |item: usize| {
        let place = map.iter().find(|p| p.item == Some(item)).unwrap().place;
        app.browser.map_to_screen(place).unwrap()
    };
    let in_no_set: Vec<usize> = alone
        .iter()
        .map(|p| p.0)
        .filter(|item| !far_group.contains(item))
        .collect();
    assert!(in_no_set.len() >= 3, "{in_no_set:?}");
    for &item in &in_no_set {
        assert_pixel(&rendered, now(item), [110, 110, 110]);
    }
    for &item in &far_group {
        assert_pixel(&rendered, now(item), [forget.r(), forget.g(), forget.b()]);
    }
}

/// The rendered pixel at `at` is `want`, to rounding.
fn assert_pixel(rendered: &image::RgbaImage, at: egui::Pos2, want: [u8; 3]) {
    let got = rendered
        .get_pixel(at.x.round() as u32, at.y.round() as u32)
        .0;
    let off = (0..3)
        .map(|c| (i32::from(got[c]) - i32::from(want[c])).abs())
        .max()
        .unwrap();
    assert!(off <= 3, "pixel at {at:?}: {got:?}, not {want:?}");
}

/// Opens `spec` in the Data panel's browser, as typed and opened there, and waits for it.
fn browse(harness: &mut Harness<'static, LetheApp>, spec: &str) {
    type_into(harness, "Dataset", spec);
    click(harness, "Open");
    wait_until(harness, 60, "the browsed pictures", |app| {
        app.browser.dataset.as_ref().is_some_and(|d| d.name == spec)
    });
}

/// Replaces the text of the field labelled `label` with `text`.
fn type_into(harness: &mut Harness<'static, LetheApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

/// Puts every browsed image labelled `class` into the `role` set with the rule builder.
fn add_class_by_rule(harness: &mut Harness<'static, LetheApp>, class: &str, role: &str) {
    click(harness, "label is");
    click(harness, "class");
    // The open list comes after the forget-class buttons, which may read the same.
    harness.get_all_by_label(class).last().unwrap().click();
    harness.step();
    click(harness, role);
    click(harness, "Apply rule");
}

#[test]
fn cliperase_forgets_the_fruit_orange_from_sets_built_in_the_app() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);

    // Browse captioned fruit pictures and make the forget and retain pairs from them.
    let browsed = "shapes:fruits?seed=211&n=150";
    browse(&mut harness, browsed);
    click(&mut harness, "2  Sets");
    type_into(
        &mut harness,
        "Zero-shot head (dataset spec)",
        "shapes:fruits?seed=212&n=150",
    );
    wait_until(&mut harness, 30, "the fruit classes", |app| {
        app.workspace.recipe.forget.dataset == "shapes:fruits?seed=212&n=150"
    });
    wait_for_label(&mut harness, 60, "banana");
    click(&mut harness, "orange");
    if harness
        .state()
        .workspace
        .recipe
        .forget
        .classes
        .iter()
        .any(|c| c == "star")
    {
        click(&mut harness, "star");
    }
    assert_eq!(harness.state().workspace.recipe.forget.classes, ["orange"]);
    add_class_by_rule(&mut harness, "orange", "forget set");
    add_class_by_rule(&mut harness, "apple", "retain set");
    add_class_by_rule(&mut harness, "banana", "retain set");
    click(&mut harness, "Forget with the picked forget images");
    let app = harness.state();
    let data = app.browser.dataset.clone().unwrap();
    let sets = &app.workspace.sets;
    assert!(!sets.forget.is_empty() && !sets.retain.is_empty());
    assert!(
        sets.forget
            .iter()
            .chain(&sets.retain)
            .all(|&i| data.items[i].caption.is_some()),
        "every picked picture keeps its caption"
    );

    click(&mut harness, "3  Method");
    click(&mut harness, "CLIPErase (forget, retain, consistency)");
    {
        let recipe = &mut harness.state_mut().workspace.recipe;
        assert_eq!(recipe.method.name, "cliperase");
        recipe.method.settings = "learning_rate = 1e-4\nepochs = 6\nbatch = 8\n"
            .parse()
            .unwrap();
        recipe.eval.datasets = vec!["shapes:colors?seed=213&n=100".into()];
        recipe.eval.relearn_steps = 0;
        recipe.eval.retrieval_per_class = 5;
    }
    click(&mut harness, "4  Run");
    click(&mut harness, "Start run");
    wait_until(&mut harness, 600, "the run to finish", |app| {
        !app.runner.is_running()
    });
    let app = harness.state();
    assert_eq!(app.page, Page::Results, "{:?}", app.notice);
    let metrics = &app.results.runs[0].finished.metrics;
    assert_eq!(metrics.method, "cliperase");
    assert!(
        metrics.target.after.value < metrics.target.before.value - 0.3,
        "orange {} -> {}",
        metrics.target.before.value,
        metrics.target.after.value
    );
    let colors = metrics
        .datasets
        .iter()
        .find(|d| d.name.starts_with("shapes:colors"))
        .unwrap();
    assert!(
        colors.after.value > colors.before.value - 0.1,
        "colours {:?} -> {:?}",
        colors.before,
        colors.after
    );
    let retrieval = metrics.retrieval.unwrap();
    let (before, after) = (
        retrieval.before.pairs.unwrap(),
        retrieval.after.pairs.unwrap(),
    );
    assert!(
        after.forget.image_to_text.at_5 < before.forget.image_to_text.at_5,
        "forget pairs find each other less: {before:?} -> {after:?}"
    );
}

#[test]
fn a_subgroup_picked_by_rule_in_the_sets_panel_is_forgotten_and_scored() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    // Stars of every colour (about one in ten red) among other shapes.
    let browsed =
        "shapes:shapes?shape=star&seed=221&n=400 | shapes:shapes?not-shape=star&seed=224&n=80";
    browse(&mut harness, browsed);
    click(&mut harness, "2  Sets");
    let head = "shapes:shapes?seed=222&n=200";
    type_into(&mut harness, "Zero-shot head (dataset spec)", head);
    wait_until(&mut harness, 30, "the shape head", |app| {
        app.workspace.recipe.forget.dataset == head
    });
    wait_for_label(&mut harness, 60, "hexagon");
    harness.state_mut().workspace.recipe.forget.classes.clear();
    click(&mut harness, "star");
    assert_eq!(harness.state().workspace.recipe.forget.classes, ["star"]);
    type_into(&mut harness, "Subgroup name", "red star");
    click(&mut harness, "Build subgroup sets");

    // The rule inside the class, counted independently: a third of the subgroup and half of
    // every other group is trained on.
    let app = harness.state();
    let data = app.browser.dataset.clone().unwrap();
    let star = data.classes.iter().position(|c| c == "star").unwrap();
    let (mut members, mut siblings, mut others) = (0usize, 0usize, 0usize);
    for item in &data.items {
        let red = item.caption.as_deref().unwrap().contains("red star");
        match (item.label == star, red) {
            (true, true) => members += 1,
            (true, false) => siblings += 1,
            (false, _) => others += 1,
        }
    }
    let sets = &app.workspace.sets;
    let subgroup = sets
        .subgroup
        .as_ref()
        .expect("the subgroup sets were built");
    assert!(
        members >= 4 && siblings >= 4,
        "{members} red stars, {siblings} other stars"
    );
    assert_eq!(sets.forget.len(), members.div_ceil(3));
    assert_eq!(subgroup.verify.len(), (members + 1) / 3);
    assert_eq!(subgroup.target.len(), members / 3);
    assert_eq!(subgroup.siblings.len(), siblings / 2);
    assert_eq!(sets.retain.len(), siblings.div_ceil(2) + others.div_ceil(2));
    assert_eq!(sets.eval.len(), others / 2);
    assert!(sets.forget.iter().all(|&i| data.items[i].label == star));
    assert!(app.workspace.use_forget_images);

    click(&mut harness, "3  Method");
    click(
        &mut harness,
        "Subgroup forgetting (forget, remind, restore)",
    );
    {
        let recipe = &mut harness.state_mut().workspace.recipe;
        assert_eq!(recipe.method.name, "subgroup");
        // A short run without reminding or keep term (which slows forgetting): the flow is
        // what is judged here; the method's efficacy is judged on the shipped subgroup recipes.
        recipe.method.settings = "layers = 8\nfisher_images = 8\nbatch = 8\nforget_steps = 40\n\
                                  remind_steps = 0\nkeep_weight = 0.0\n"
            .parse()
            .unwrap();
        recipe.eval.datasets = vec!["shapes:colors?seed=223&n=100".into()];
        recipe.eval.relearn_steps = 0;
        recipe.eval.retrieval_per_class = 5;
    }
    click(&mut harness, "4  Run");
    click(&mut harness, "Start run");
    wait_until(&mut harness, 900, "the run to finish", |app| {
        !app.runner.is_running()
    });
    let app = harness.state();
    assert_eq!(app.page, Page::Results, "{:?}", app.notice);
    let metrics = &app.results.runs[0].finished.metrics;
    let s = metrics
        .subgroup
        .as_ref()
        .expect("the run was judged as a subgroup");
    assert_eq!(s.name, "red star");
    assert_eq!(s.target.change.before.n, members / 3);
    assert_eq!(s.retain.change.before.n, siblings / 2);
    assert!(
        s.target.change.after.value < s.target.change.before.value,
        "red stars {:?}; {}",
        s.target.change,
        lethe::eval::metrics::report_markdown(metrics)
    );
    assert!(
        metrics
            .notes
            .iter()
            .any(|n| n.contains("the calibration set")),
        "the soup was chosen on the evaluation split: {:?}",
        metrics.notes
    );
    harness.get_by_label("Score");
}

fn selected(harness: &Harness<'static, LetheApp>) -> Vec<usize> {
    harness
        .state()
        .browser
        .selection
        .selected
        .iter()
        .copied()
        .collect()
}

#[test]
fn images_are_picked_by_click_shift_ctrl_and_rule() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    click(&mut harness, "2  Sets");
    wait_for_label(&mut harness, 60, "image 8");
    click(&mut harness, "image 3");
    harness
        .get_by_label("image 5")
        .click_modifiers(Modifiers::COMMAND);
    harness.step();
    assert_eq!(selected(&harness), [3, 5]);
    harness
        .get_by_label("image 8")
        .click_modifiers(Modifiers::SHIFT);
    harness.step();
    // Shift selects the range from the last clicked image, as file managers do.
    assert_eq!(selected(&harness), [5, 6, 7, 8]);
    harness
        .get_by_label("image 3")
        .click_modifiers(Modifiers::COMMAND);
    harness.step();
    click(&mut harness, "Add to forget");
    assert_eq!(harness.state().workspace.sets.forget.len(), 5);

    // Rule: every image labelled circle, into the retain set.
    click(&mut harness, "label is");
    click(&mut harness, "class");
    // The open list comes after the forget-class buttons, which also read "circle".
    harness.get_all_by_label("circle").last().unwrap().click();
    harness.step();
    click(&mut harness, "retain set");
    click(&mut harness, "Apply rule");
    let app = harness.state();
    let data = app.browser.dataset.clone().unwrap();
    let circle = data.classes.iter().position(|c| c == "circle").unwrap();
    let expected = data.items.iter().filter(|i| i.label == circle).count();
    assert!(expected > 0);
    assert_eq!(app.workspace.sets.get(Role::Retain).len(), expected);
    assert!(
        app.workspace
            .sets
            .retain
            .iter()
            .all(|&i| data.items[i].label == circle)
    );

    // Evaluation datasets are checked before they are added; a bad spec is named.
    let datasets = app.workspace.recipe.eval.datasets.len();
    let add = |harness: &mut Harness<'static, LetheApp>, spec: &str| {
        harness.get_by_label("Add").focus();
        harness.step();
        harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::A);
        harness.get_by_label("Add").type_text(spec);
        harness.step();
        click(harness, "Add dataset");
    };
    add(&mut harness, "shapes:triangles");
    wait_until(&mut harness, 30, "the bad spec's error", |app| {
        app.notice.as_ref().is_some_and(|n| n.error)
    });
    let notice = harness.state().notice.clone().unwrap();
    add(&mut harness, "shapes:backgrounds?seed=5&n=50");
    wait_until(&mut harness, 30, "the good spec", |app| {
        app.workspace.recipe.eval.datasets.len() > datasets
    });
    let app = harness.state();
    assert!(notice.text.contains("shapes:triangles"), "{notice:?}");
    assert_eq!(
        app.workspace.recipe.eval.datasets.last().unwrap(),
        "shapes:backgrounds?seed=5&n=50"
    );
    assert_eq!(app.workspace.recipe.eval.datasets.len(), datasets + 1);
}

#[test]
fn a_cancelled_run_keeps_nothing_and_the_workspace_reopens() {
    let home = tempfile::tempdir().unwrap();
    {
        let mut harness = harness(home.path());
        wait_for_demo(&mut harness);
        harness.state_mut().workspace.recipe.method.settings =
            "max_steps = 500\n[synthetic]\ncount = 8\nmax_steps = 20\n"
                .parse()
                .unwrap();
        click(&mut harness, "4  Run");
        click(&mut harness, "Start run");
        wait_until(&mut harness, 300, "unlearning to start", |app| {
            !app.runner.points.is_empty()
        });
        click(&mut harness, "Cancel");
        wait_until(&mut harness, 120, "the run to stop", |app| {
            !app.runner.is_running()
        });
        let app = harness.state();
        assert!(app.results.runs.is_empty());
        let notice = app.notice.clone().unwrap();
        assert!(
            notice.error && notice.text.contains("cancelled"),
            "{notice:?}"
        );
        // A second run of the same scenario with other settings reuses the measurement.
        harness.state_mut().workspace.recipe.method.settings =
            "max_steps = 2\n[synthetic]\ncount = 4\nmax_steps = 5\n"
                .parse()
                .unwrap();
        click(&mut harness, "Start run");
        wait_until(&mut harness, 300, "the second run", |app| {
            !app.runner.is_running()
        });
        let runs = &harness.state().results.runs;
        assert_eq!(runs.len(), 1, "{:?}", harness.state().notice);
        assert_eq!(runs[0].finished.metrics.timings.measure_before_s, 0.0);
        click(&mut harness, "2  Sets");
        wait_for_label(&mut harness, 60, "circle");
        click(&mut harness, "circle");
    }
    let mut harness = harness(home.path());
    harness.step();
    let classes = &harness.state().workspace.recipe.forget.classes;
    assert_eq!(
        classes,
        &["star", "circle"],
        "the workspace reopened as it was left"
    );
}

#[test]
fn three_colours_queued_in_the_app_run_as_one_batch_with_a_verdict_per_concept() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    let browsed = "shapes:colors?seed=7&n=2000";
    browse(&mut harness, browsed);
    // Gradient ascent on each colour's own picked pictures, a handful of steps.
    {
        let recipe = &mut harness.state_mut().workspace.recipe;
        recipe.forget.dataset = "shapes:colors?seed=101&n=200".into();
        recipe.forget.classes = vec!["red".into()];
        recipe.method.name = "ga".into();
        recipe.method.settings =
            "learning_rate = 3e-4\nbatch = 4\nmax_steps = 8\nstop_accuracy = 0.1\n"
                .parse()
                .unwrap();
        recipe.eval.datasets = vec!["shapes:fruits?seed=103&n=60".into()];
        recipe.eval.relearn_steps = 0;
        recipe.eval.retrieval_per_class = 0;
    }
    // Queue red, then green and blue, each with its browsed pictures.
    click(&mut harness, "2  Sets");
    wait_for_label(&mut harness, 60, "green");
    click(&mut harness, "Forget with the picked forget images");
    for (previous, next) in [
        (None, "red"),
        (Some("red"), "green"),
        (Some("green"), "blue"),
    ] {
        click(&mut harness, "2  Sets");
        if let Some(previous) = previous {
            click(&mut harness, previous);
            click(&mut harness, next);
        }
        harness.get_all_by_label("clear").next().unwrap().click();
        harness.step();
        click(&mut harness, "Add whole class to forget set");
        click(&mut harness, "4  Run");
        click(&mut harness, "Add to queue");
    }
    let queue = &harness.state().workspace.queue;
    assert!(queue.iter().all(|c| c.images.is_some()), "{queue:?}");
    assert_ne!(
        queue[0].images, queue[1].images,
        "each concept keeps its own pictures"
    );
    // The same concept twice is refused.
    click(&mut harness, "Add to queue");
    let notice = harness.state().notice.clone().unwrap();
    assert!(
        notice.error && notice.text.contains("already in the queue"),
        "{notice:?}"
    );
    let queued: Vec<String> = harness
        .state()
        .workspace
        .queue
        .iter()
        .map(|c| c.title())
        .collect();
    assert_eq!(queued, ["red", "green", "blue"]);

    click(&mut harness, "Run queue");
    assert!(harness.state().runner.is_running());
    screenshot_named(&mut harness, "queue");
    use lethe::app::run_panel::ConceptState;
    wait_until(&mut harness, 300, "the first concept's run", |app| {
        app.runner.queue.first() == Some(&ConceptState::Running)
    });
    wait_until(&mut harness, 900, "the batch to finish", |app| {
        !app.runner.is_running()
    });
    let app = harness.state();
    assert_eq!(app.page, Page::Results, "{:?}", app.notice);
    let batch = &app.results.batches[0];
    let names: Vec<&str> = batch
        .result
        .concepts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["red", "green", "blue"]);
    // Before the batch and after each of the three runs.
    assert_eq!(batch.result.cross_effects.len(), 4);
    for (concept, state) in batch.result.concepts.iter().zip(&app.runner.queue) {
        let target = concept.target.as_ref().unwrap();
        assert!(
            target.after.value < target.before.value,
            "{}: {} -> {}",
            concept.name,
            target.before.value,
            target.after.value
        );
        let verdict = concept
            .verdict
            .expect("the default criteria judge each concept");
        assert_eq!(*state, ConceptState::Judged(Some(verdict)));
    }
    // Written as `lethe run` writes a batch recipe, inside the workspace folder.
    assert!(batch.folder.starts_with(home.path().join("batches")));
    for file in [
        "batch.json",
        "report.md",
        "recipe.toml",
        "concepts/03-blue/metrics.json",
    ] {
        assert!(batch.folder.join(file).is_file(), "{file}");
    }
    let recipe = lethe::recipe::Recipe::load(&batch.folder.join("recipe.toml"))
        .unwrap()
        .0;
    assert_eq!(recipe.scenario.len(), 3);
    // The Results page shows the batch: a row per concept and its verdict.
    screenshot_named(&mut harness, "batch");
    harness.get_by_label("Each concept's accuracy through the batch");
    harness.get_by_label("after the batch");
    for name in ["red", "green", "blue"] {
        assert!(harness.query_all_by_label(name).count() >= 2, "{name}");
    }
}

#[test]
fn bad_input_in_the_app_gets_the_message_the_command_line_gives() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    let error_with = |app: &LetheApp, words: &[&str]| {
        app.notice
            .as_ref()
            .is_some_and(|n| n.error && words.iter().all(|w| n.text.contains(w)))
    };
    // A dataset of a trillion scenes is refused, not allocated.
    type_into(&mut harness, "Dataset", "shapes:colors?n=1000000000000");
    click(&mut harness, "Open");
    wait_until(&mut harness, 60, "the refusal of the dataset", |app| {
        error_with(
            app,
            &[
                "'n' must be a whole number from 1 to 1000000",
                "n=1000000000000",
            ],
        )
    });
    let shown = harness.state().notice.clone().unwrap().text;
    assert!(
        harness.query_all_by_label(&shown).count() >= 1,
        "the status bar shows it"
    );
    // A method setting out of range stops the run before any work, naming the key.
    harness.state_mut().workspace.recipe.method.settings = "perturbations = 0".parse().unwrap();
    click(&mut harness, "4  Run");
    click(&mut harness, "Start run");
    wait_until(&mut harness, 120, "the refusal of the settings", |app| {
        !app.runner.is_running()
    });
    assert!(
        error_with(
            harness.state(),
            &["perturbations must be a whole number from 1 to 1024, got 0"]
        ),
        "{:?}",
        harness.state().notice
    );
    assert!(harness.state().results.runs.is_empty());
}

/// Renders the current page, checks it is not blank and differs from the last one, and saves
/// it into `$LETHE_SCREENSHOTS` when that is set (how the README's screenshots are made).
fn screenshot(harness: &mut Harness<'static, LetheApp>, previous: &mut Option<image::RgbaImage>) {
    let page = harness.state().page;
    let picture = screenshot_named(harness, &format!("{page:?}").to_lowercase());
    if let Some(previous) = previous {
        assert_ne!(
            previous.as_raw(),
            picture.as_raw(),
            "{page:?} looks like the page before"
        );
    }
    *previous = Some(picture);
}

/// Renders the window, checks it is not blank, and saves it as `NAME.png` into
/// `$LETHE_SCREENSHOTS` when that is set.
fn screenshot_named(harness: &mut Harness<'static, LetheApp>, name: &str) -> image::RgbaImage {
    harness.run_steps(4);
    let picture = harness.render().expect("the app renders headlessly");
    assert_eq!(picture.width(), 1280);
    let first = picture.get_pixel(0, 0);
    assert!(picture.pixels().any(|p| p != first), "{name} is blank");
    if let Some(dir) = std::env::var_os("LETHE_SCREENSHOTS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        picture.save(dir.join(format!("{name}.png"))).unwrap();
    }
    picture
}

#[test]
fn every_panel_renders_through_a_whole_demo_run() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    let mut previous = None;
    wait_until(&mut harness, 60, "thumbnails", |app| {
        app.thumbnails.pending() == 0
    });
    screenshot(&mut harness, &mut previous);
    click(&mut harness, "2  Sets");
    click(&mut harness, "Add whole class to forget set");
    // The rest of the browsed pictures are what the careful preset's retain term keeps.
    click(&mut harness, "Add other classes to retain set");
    {
        let app = harness.state();
        let (forget, retain) = (
            app.workspace.sets.get(Role::Forget),
            app.workspace.sets.get(Role::Retain),
        );
        let browsed = app.browser.dataset.as_ref().unwrap().items.len();
        assert!(!forget.is_empty() && forget.is_disjoint(retain));
        assert_eq!(forget.len() + retain.len(), browsed);
    }
    // On the demo ViT synthetic pictures tell nothing of when real ones are forgotten.
    click(&mut harness, "Judge the stop on the picked forget images");
    harness.state_mut().browser.selection.selected = (0..12).collect();
    click(&mut harness, "Add to eval");
    wait_until(&mut harness, 60, "thumbnails", |app| {
        app.thumbnails.pending() == 0
    });
    screenshot(&mut harness, &mut previous);
    click(&mut harness, "3  Method");
    screenshot(&mut harness, &mut previous);
    click(&mut harness, "4  Run");
    click(&mut harness, "Start run");
    wait_until(&mut harness, 300, "a few unlearning steps", |app| {
        app.runner.points.len() >= 6
    });
    screenshot(&mut harness, &mut previous);
    wait_until(&mut harness, 600, "the run to finish", |app| {
        !app.runner.is_running()
    });
    assert_eq!(
        harness.state().results.runs.len(),
        1,
        "{:?}",
        harness.state().notice
    );
    wait_until(&mut harness, 60, "thumbnails", |app| {
        app.thumbnails.pending() == 0
    });
    screenshot(&mut harness, &mut previous);
    // The changed-predictions gallery shows a few rows and grows on request.
    let shown =
        |harness: &Harness<'static, LetheApp>| harness.query_all_by_label_contains(" -> ").count();
    let before = shown(&harness);
    harness.get_by_label_contains("Show more").scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label_contains("Show more").click();
    harness.run_steps(3);
    assert!(
        shown(&harness) > before,
        "still {before} changed images shown"
    );
    // A changed image's heatmaps, clicked in the gallery: the original and the edited model
    // side by side, first toward the image's class, then from attention alone.
    let item = harness.state().results.runs[0].finished.changed[0].item;
    let tile = format!("changed image {item}");
    harness.get_by_label(&tile).scroll_to_me();
    harness.run_steps(3);
    click(&mut harness, &tile);
    let maps = wait_for_heatmaps(&mut harness);
    let window = harness.state().heatmap.as_ref().unwrap();
    assert_eq!(window.item(), item);
    assert_eq!(window.subject_names(), ["original", "edited (run 1)"]);
    assert_ne!(maps.maps[0], maps.maps[1], "the edit changed nothing");
    let head = &harness.state().results.runs[0].head;
    let class = &head.classes[head.items[item].label];
    assert_eq!(
        maps.method,
        format!("gradient-weighted rollout toward \"{class}\"")
    );
    screenshot_named(&mut harness, "heatmap-window");
    click(&mut harness, "Toward");
    click(&mut harness, "attention alone");
    let maps = wait_for_heatmaps(&mut harness);
    assert_eq!(maps.method, "attention rollout");
    harness.state_mut().heatmap = None;
    harness.run_steps(3);
    // Where the original and the edited model look, computed by the run.
    let heatmaps = harness.state().results.runs[0].finished.heatmaps.clone();
    let heatmaps = heatmaps.expect("the run drew heatmaps");
    assert_eq!(heatmaps.classes.len(), 6, "{:?}", heatmaps.classes);
    assert_eq!(
        heatmaps.method,
        "gradient-weighted rollout toward each picture's class"
    );
    open_section(
        &mut harness,
        "Where the model finds each class",
        "then what in it matches its class for the original and the edited model",
    );
    screenshot_named(&mut harness, "heatmaps");
    click(&mut harness, "Where the model finds each class");
    harness.run_steps(10);
    // The embedding map before and after: every picture of the forget dataset (up to the
    // recipe's 1,000) once, and one point per class for its prompts.
    let run = &harness.state().results.runs[0];
    let map = run.finished.map.clone().expect("the run drew a map");
    let pictures = run.opened.plan.head.items.len().min(1000);
    let mut items: Vec<usize> = map.points.iter().filter_map(|p| p.item).collect();
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), pictures);
    assert_eq!(
        map.points.len(),
        pictures + run.opened.plan.head.classes.len()
    );
    open_section(
        &mut harness,
        "Embedding map",
        "so what moved was moved by the edit",
    );
    screenshot_named(&mut harness, "embedding-map");
    // Coloured by changed answer: the legend counts the mapped pictures the edit changed.
    let changed: std::collections::HashSet<usize> =
        run_changed_items(&harness.state().results.runs[0]);
    let moved = items.iter().filter(|item| changed.contains(item)).count();
    click(&mut harness, "changed answer");
    harness.run_steps(3);
    // One legend per side, before and after.
    for label in [
        format!("answer changed ({moved})"),
        format!("same answer ({})", pictures - moved),
    ] {
        assert_eq!(harness.query_all_by_label(&label).count(), 2, "{label}");
    }
    screenshot_named(&mut harness, "embedding-map-changed");
    // Hovering a changed picture on the after map names it, its class and both answers (the
    // changed picture farthest from any other, so no neighbour is nearer the pointer).
    let run = &harness.state().results.runs[0];
    let after = |item: usize| {
        let p = map.points.iter().find(|p| p.item == Some(item)).unwrap();
        p.after
    };
    let gap = |item: usize| {
        let [x, y] = after(item);
        map.points
            .iter()
            .filter(|p| p.item.is_some_and(|other| other != item))
            .map(|p| (p.after[0] - x).hypot(p.after[1] - y))
            .fold(f32::INFINITY, f32::min)
    };
    let change = *run
        .finished
        .changed
        .iter()
        .filter(|c| items.binary_search(&c.item).is_ok())
        .max_by(|a, b| gap(a.item).total_cmp(&gap(b.item)))
        .expect("the edit changed a mapped picture");
    let classes = &run.head.classes;
    let expected = format!(
        "image {}: {}\nanswered {} before, {} after",
        change.item, classes[change.label], classes[change.before], classes[change.after]
    );
    let at = run.map_to_screen(true, after(change.item)).unwrap();
    harness.hover_at(at);
    step_until(&mut harness, 10, &expected, |h| {
        h.query_by_label(&expected).is_some()
    });
}

/// The dataset items whose answer a run changed.
fn run_changed_items(run: &lethe::app::results::RunRecord) -> std::collections::HashSet<usize> {
    run.finished.changed.iter().map(|c| c.item).collect()
}

/// Steps the UI until the heatmap window shows maps for its current setting; returns them.
fn wait_for_heatmaps(harness: &mut Harness<'static, LetheApp>) -> HeatmapMaps {
    wait_until(harness, 120, "the heatmaps", |app| {
        app.heatmap.as_ref().is_some_and(|w| {
            !w.is_computing()
                && w.shown()
                    .is_some_and(|m| m.as_ref().is_ok_and(|m| m.toward == w.toward))
        })
    });
    let window = harness.state().heatmap.as_ref().unwrap();
    window.shown().unwrap().clone().unwrap()
}

/// Opens the collapsible section `header` of the Results page and scrolls to the text in it
/// that contains `text`.
fn open_section(harness: &mut Harness<'static, LetheApp>, header: &str, text: &str) {
    harness.get_by_label(header).scroll_to_me();
    harness.run_steps(4);
    click(harness, header);
    // The section opens with a short animation.
    harness.run_steps(10);
    harness.get_by_label_contains(text).scroll_to_me();
    harness.run_steps(3);
}

#[test]
fn shortcuts_switch_steps_theme_and_zoom_and_list_themselves() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::Num3);
    harness.step();
    assert_eq!(harness.state().page, Page::Method);
    harness.key_press(egui::Key::F1);
    harness.run_steps(2);
    assert!(harness.state().help_open);
    harness.get_by_label("Keyboard shortcuts");
    harness.get_by_label("Run the method");
    harness.key_press(egui::Key::Escape);
    harness.run_steps(2);
    assert!(!harness.state().help_open);
    assert!(harness.state().workspace.dark);
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::T);
    harness.step();
    assert!(!harness.state().workspace.dark);
    assert_eq!(harness.ctx.theme(), egui::Theme::Light);
    for _ in 0..5 {
        click(&mut harness, "+");
    }
    assert_eq!(harness.state().workspace.zoom, 1.5);
    assert_eq!(harness.ctx.zoom_factor(), 1.5);
    harness.run_steps(3);
    harness.get_by_label("150%");
    let picture = harness.render().expect("renders at 150%");
    let first = picture.get_pixel(0, 0);
    assert!(picture.pixels().any(|p| p != first));
    if let Some(dir) = std::env::var_os("LETHE_SCREENSHOTS") {
        picture
            .save(std::path::Path::new(&dir).join("light-150.png"))
            .unwrap();
    }
}

/// A file or folder dropped on the window.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        Err("folders have no bytes".into())
    }
}

#[test]
fn a_checkpoint_folder_dropped_on_the_window_becomes_the_model() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    wait_for_demo(&mut harness);
    let browsed = harness.state().browser.spec.clone();
    let folder = lethe::demo::resolve_model("demo:rn").unwrap();
    harness.input_mut().dropped_files = vec![std::sync::Arc::new(Dropped(folder.clone()))];
    harness.step();
    let spec = folder.display().to_string();
    assert_eq!(harness.state().workspace.recipe.model.path, spec);
    wait_until(&mut harness, 60, "the dropped model", |app| {
        app.model.spec == spec && app.model.pending().is_none()
    });
    assert!(harness.state().model.error.is_none());
    assert_eq!(
        harness.state().browser.spec,
        browsed,
        "not opened as images"
    );
}

#[test]
fn the_workspace_is_written_once_a_drag_ends_not_on_every_frame() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(lethe::app::workspace::WORKSPACE_FILE);
    let mut harness = harness(home.path());
    harness.run_steps(2);
    let written = || std::fs::read_to_string(&file).unwrap_or_default();
    let spot = egui::pos2(640.0, 790.0);
    harness.hover_at(spot);
    harness.drag_at(spot);
    harness.step();
    // A value changed while the button is held, as dragging a setting does.
    harness.state_mut().workspace.zoom = 1.3;
    harness.run_steps(3);
    assert!(!written().contains("zoom = 1.3"), "{}", written());
    harness.drop_at(spot);
    harness.run_steps(2);
    assert!(written().contains("zoom = 1.3"), "{}", written());
}

#[test]
fn a_model_typed_in_the_top_bar_loads_when_the_field_is_left() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = harness(home.path());
    harness.run_steps(2);
    harness.get_by_label("Model").focus();
    harness.step();
    harness.key_press_modifiers(Modifiers::COMMAND, egui::Key::A);
    harness.get_by_label("Model").type_text("demo:rn");
    harness.step();
    // No Enter: moving on to another step is enough.
    click(&mut harness, "3  Method");
    assert_eq!(harness.state().workspace.recipe.model.path, "demo:rn");
    wait_until(&mut harness, 120, "demo:rn", |app| {
        app.model.pending().is_none() && app.model.loaded().is_some()
    });
    let loaded = harness.state().model.loaded().unwrap().clone();
    assert!(
        matches!(loaded.model.visual, lethe::clip::VisionTower::ResNet(_)),
        "the typed model (a ResNet) is the one loaded"
    );
}

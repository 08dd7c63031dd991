//! Synthetic images: gradient ascent turns noise into images of each image's target class.

use std::sync::atomic::AtomicBool;

use burn::tensor::{Device, Tensor, TensorData};
use lethe::backend::DeviceChoice;
use lethe::clip::checkpoint::Checkpoint;
use lethe::clip::host_values;
use lethe::data::dataset;
use lethe::demo::resolve_model;
use lethe::engine::LoadedModel;
use lethe::eval::{argmax, class_embeddings};
use lethe::unlearn::synthetic::{SyntheticOptions, synthesize};

#[test]
fn ascent_makes_images_the_model_takes_for_their_target_classes() {
    let loaded = LoadedModel::open_spec("demo:vit", DeviceChoice::Cpu).unwrap();
    let colors = dataset::open("shapes:colors?n=1").unwrap();
    let heads = class_embeddings(&loaded, &colors.classes, &colors.templates);
    let [classes, width] = heads.dims();
    let device = Device::flex().autodiff();
    let head_values = host_values(heads);
    let on = |device: &Device| {
        Tensor::<2>::from_data(
            TensorData::new(head_values.clone(), [classes, width]),
            device,
        )
    };
    let heads = on(&device);
    let model = Checkpoint::open(&resolve_model("demo:vit").unwrap())
        .unwrap()
        .load(&device)
        .unwrap();
    let class = |name: &str| colors.classes.iter().position(|c| c == name).unwrap();
    // One batch may mix classes (forget images of one class, retain images of others).
    let targets = [
        class("red"),
        class("red"),
        class("red"),
        class("blue"),
        class("green"),
    ];
    let options = SyntheticOptions::default();
    let images = synthesize(
        &model,
        heads.clone(),
        &targets,
        64,
        &options,
        &AtomicBool::new(false),
    );
    assert!(
        images.probabilities.iter().all(|p| *p >= 0.9),
        "{:?} after {} steps",
        images.probabilities,
        images.steps
    );
    assert!(images.steps > 0 && images.steps < options.max_steps);
    // The plain (non-autodiff) model agrees: every image is classified as its target.
    let plain = lethe::clip::normalize(loaded.model.encode_image(images.tensor(&Device::flex())));
    let scores = host_values(plain.matmul(on(&Device::flex()).transpose()));
    let predicted: Vec<usize> = scores.chunks(classes).map(argmax).collect();
    assert_eq!(predicted, targets);
    let again = synthesize(
        &model,
        heads,
        &targets,
        64,
        &options,
        &AtomicBool::new(false),
    );
    assert_eq!(
        again.pixels, images.pixels,
        "not deterministic from the seed"
    );
}

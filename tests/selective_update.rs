//! The layer view unlearning methods select from, and updates confined to the selection.

use std::collections::HashSet;

use burn::optim::AdamWConfig;
use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::Clip;
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::normalize;
use lethe::clip::tokenizer::Tokenizer;
use lethe::clip::weights::Format;
use lethe::demo::resolve_model;
use lethe::unlearn::params::{
    Tower, interpolate, layers, relative_fisher, selected_gradients, similarity_fisher,
};

fn demo(name: &str, device: &Device) -> Clip {
    let checkpoint = Checkpoint::open(&resolve_model(name).unwrap()).unwrap();
    checkpoint.load(device).unwrap()
}

#[test]
fn layers_cover_every_parameter_once_by_tower() {
    for name in ["demo:vit", "demo:rn"] {
        let model = demo(name, &Device::flex());
        let all = layers(&model);
        let ids: HashSet<_> = all.iter().map(|l| l.id).collect();
        assert_eq!(ids.len(), all.len(), "{name}: a parameter listed twice");
        let stored: usize = named_tensors(&model, Format::OpenClip, None)
            .values()
            .map(|(_, v)| v.len())
            .sum();
        assert_eq!(all.iter().map(|l| l.numel).sum::<usize>(), stored, "{name}");
        let count = |tower| all.iter().filter(|l| l.tower == tower).count();
        assert!(
            count(Tower::Vision) > 10 && count(Tower::Text) > 10,
            "{name}"
        );
        assert_eq!(count(Tower::Temperature), 1);
        assert!(
            all.iter().any(|l| l.key.ends_with("in_proj_weight#k")),
            "{name}"
        );
        let pool = all.iter().filter(|l| l.is_attention_pool()).count();
        assert_eq!(
            pool > 0,
            name == "demo:rn",
            "{name}: {pool} attention-pool layers"
        );
    }
}

#[test]
fn a_step_changes_only_the_selected_parameters() {
    let device = Device::flex().autodiff();
    let model = demo("demo:rn", &device);
    let all = layers(&model);
    let chosen = [
        "visual.attnpool.c_proj.weight",
        "transformer.resblocks.1.attn.in_proj_weight#v",
        "ln_final.bias",
    ];
    let selected: HashSet<_> = all
        .iter()
        .filter(|l| chosen.contains(&l.key.as_str()))
        .map(|l| l.id)
        .collect();
    assert_eq!(selected.len(), chosen.len());
    let ids = Tokenizer::clip_default().tokenize_batch(&["a red star", "a lemon"], 32, 0);
    let pixels = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let loss = model
        .logits(model.encode_image(pixels), model.encode_text(&ids))
        .sum();
    let gradients = selected_gradients(loss.backward(), &model, &selected);
    let before = named_tensors(&model, Format::OpenClip, None);
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.2).init();
    let after = named_tensors(
        &optimizer.step(1e-3, model, gradients),
        Format::OpenClip,
        None,
    );
    let changed: Vec<&String> = before
        .keys()
        .filter(|key| before[*key] != after[*key])
        .collect();
    assert_eq!(
        changed,
        [
            "ln_final.bias",
            "transformer.resblocks.1.attn.in_proj_weight",
            "visual.attnpool.c_proj.weight"
        ],
        "only the selected tensors may change"
    );
    let fused = "transformer.resblocks.1.attn.in_proj_weight";
    let (old, new) = (&before[fused].1, &after[fused].1);
    let qk = old.len() * 2 / 3;
    assert_eq!(old[..qk], new[..qk], "the q and k parts of {fused} changed");
    assert_ne!(old[qk..], new[qk..], "the v part of {fused} did not change");
}

/// The per-picture Fisher information of the image–text similarity, checked against
/// gradients read through the checkpoint view; a set against itself is 1 everywhere.
#[test]
fn relative_fisher_compares_what_each_set_needs_of_a_layer() {
    let device = Device::flex().autodiff();
    let model = demo("demo:rn", &device);
    let texts = Tokenizer::clip_default().tokenize_batch(
        &["a red star", "a blue star", "a red heart"],
        32,
        0,
    );
    let pixels = Tensor::<4>::random([3, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let fisher = similarity_fisher(&model, &pixels, &texts, 1);
    assert!(
        fisher.keys().any(|k| k.starts_with("visual."))
            && fisher.keys().any(|k| k.starts_with("transformer.")),
        "both towers carry the similarity"
    );
    assert!(
        !fisher.contains_key("logit_scale"),
        "the similarity has no temperature"
    );
    let key = "visual.attnpool.c_proj.weight";
    let direct: f32 = (0..3)
        .map(|i| {
            let image = normalize(model.encode_image(pixels.clone().narrow(0, i, 1)));
            let text = normalize(model.encode_text(&texts[i..i + 1]));
            let gradients = (image * text).sum().backward();
            let (_, values) = &named_tensors(&model, Format::OpenClip, Some(&gradients))[key];
            values.iter().map(|g| g * g).sum::<f32>() / values.len() as f32 / 3.0
        })
        .sum();
    assert!(
        (fisher[key] - direct).abs() <= 1e-4 * direct,
        "{key}: {} vs {direct}",
        fisher[key]
    );
    let itself = relative_fisher(&fisher, &fisher);
    assert_eq!(itself.len(), fisher.len());
    assert!(itself.values().all(|r| (r - 1.0).abs() < 1e-6));
    // Red pictures against blue ones: the layers differ in what they need.
    let red = similarity_fisher(&model, &pixels.clone().narrow(0, 0, 1), &texts[..1], 1);
    let blue = similarity_fisher(&model, &pixels.narrow(0, 1, 1), &texts[1..2], 1);
    let ratios = relative_fisher(&red, &blue);
    let (low, high) = ratios
        .values()
        .fold((f32::MAX, 0f32), |(l, h), r| (l.min(*r), h.max(*r)));
    assert!(high > 2.0 * low, "ratios from {low} to {high}");
}

/// Doubles every weight: a model that descends from the one it maps (same parameter ids).
struct Double;

impl burn::module::ModuleMapper for Double {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        param.map(|t| t * 2.0)
    }
}

#[test]
fn a_soup_blends_every_weight_of_two_related_models() {
    use burn::module::Module;
    let original = demo("demo:vit", &Device::flex());
    let changed = original.clone().map(&mut Double);
    let values = |m: &lethe::clip::Clip| named_tensors(m, Format::OpenClip, None);
    let (a, b) = (values(&changed), values(&original));
    assert!(a != b, "doubling changed nothing");
    for weight in [0.0f32, 1.0, 0.25] {
        let soup = values(&interpolate(&changed, original.clone(), weight as f64));
        assert_eq!(soup.len(), b.len());
        for (key, (_, v)) in &soup {
            for ((got, x), y) in v.iter().zip(&a[key].1).zip(&b[key].1) {
                let want = weight * x + (1.0 - weight) * y;
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{key} at {weight}: {got} vs {want}"
                );
            }
        }
    }
}

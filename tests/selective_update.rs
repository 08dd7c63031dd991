//! The layer view unlearning methods select from, and updates confined to the selection.

use std::collections::HashSet;

use burn::optim::AdamWConfig;
use burn::tensor::{Device, Distribution, Tensor};
use lethe::clip::Clip;
use lethe::clip::checkpoint::{Checkpoint, named_tensors};
use lethe::clip::tokenizer::Tokenizer;
use lethe::clip::weights::Format;
use lethe::demo::resolve_model;
use lethe::unlearn::params::{Tower, layers, selected_gradients};

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

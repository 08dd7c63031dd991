//! Checkpoint detection, loading, export round trips and the errors bad checkpoints produce.

mod common;

use std::fs;
use std::path::Path;

use burn::tensor::Device;
use lethe::clip::checkpoint::{Checkpoint, CheckpointError, named_tensors};
use lethe::clip::safetensors_io::{StoredTensor, read_weights};
use safetensors::tensor::TensorView;

use common::fixtures;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn error_of(dir: &Path) -> String {
    match Checkpoint::open(dir).and_then(|c| c.load(&Device::flex())) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<(String, StoredTensor)>)) {
    let mut tensors = std::collections::BTreeMap::new();
    lethe::clip::safetensors_io::read_shard(path, &mut tensors).unwrap();
    let mut list: Vec<(String, StoredTensor)> = tensors.into_iter().collect();
    edit(&mut list);
    let views: Vec<(String, TensorView)> = list
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn export_round_trip_is_exact_and_leaves_the_input_alone() {
    for name in ["hf-vit", "openclip-vit", "openclip-rn"] {
        let input = fixtures().join(name);
        let before: Vec<(String, Vec<u8>)> = fs::read_dir(&input)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        let checkpoint = Checkpoint::open(&input).unwrap();
        let model = checkpoint.load(&Device::flex()).unwrap();
        let out = tempfile::tempdir().unwrap();
        checkpoint.export(&model, out.path()).unwrap();

        let weights = &checkpoint.weights.shards[0].file;
        assert_eq!(
            fs::read(input.join(weights)).unwrap(),
            fs::read(out.path().join(weights)).unwrap(),
            "{name}: an unedited export must be byte-identical"
        );
        let again = Checkpoint::open(out.path()).unwrap();
        assert_eq!(again.format, checkpoint.format);
        let reloaded = again.load(&Device::flex()).unwrap();
        assert_eq!(
            named_tensors(&model, checkpoint.format, None),
            named_tensors(&reloaded, checkpoint.format, None),
            "{name}: load -> save -> load changed a tensor"
        );
        for (file, bytes) in before {
            assert_eq!(
                fs::read(input.join(&file)).unwrap(),
                bytes,
                "{name}/{file} was modified"
            );
        }
    }
}

#[test]
fn export_keeps_edited_weights_in_the_original_dtype() {
    let checkpoint = Checkpoint::open(&fixtures().join("hf-vit")).unwrap();
    let mut model = checkpoint.load(&Device::flex()).unwrap();
    model.logit_scale = burn::module::Param::from_tensor(model.logit_scale.val().add_scalar(1.0));
    let out = tempfile::tempdir().unwrap();
    checkpoint.export(&model, out.path()).unwrap();
    let written = read_weights(out.path(), "model.safetensors", "").unwrap();
    let scale = &written.tensors["logit_scale"];
    assert_eq!(scale.dtype, checkpoint.weights.tensors["logit_scale"].dtype);
    let value = scale.to_f32("logit_scale", out.path()).unwrap()[0];
    assert!((value - 3.5).abs() < 1e-2, "exported logit_scale {value}");
}

#[test]
fn export_refuses_to_overwrite_the_input() {
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("openclip-vit"), temp.path());
    let checkpoint = Checkpoint::open(temp.path()).unwrap();
    let model = checkpoint.load(&Device::flex()).unwrap();
    let err = checkpoint.export(&model, temp.path()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::WouldOverwrite { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("refusing"), "{err}");
}

#[test]
fn sharded_checkpoints_load_and_export_as_shards() {
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("hf-vit"), temp.path());
    let single = temp.path().join("model.safetensors");
    let mut tensors = std::collections::BTreeMap::new();
    lethe::clip::safetensors_io::read_shard(&single, &mut tensors).unwrap();
    fs::remove_file(&single).unwrap();
    let keys: Vec<String> = tensors.keys().cloned().collect();
    let (first, second) = keys.split_at(keys.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|k| {
                let t = &tensors[k];
                (
                    k.clone(),
                    TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
                )
            })
            .collect();
        safetensors::serialize_to_file(views, None, &temp.path().join(file)).unwrap();
        for k in part {
            weight_map.insert(k.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    fs::write(
        temp.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let sharded = Checkpoint::open(temp.path()).unwrap();
    assert_eq!(sharded.weights.shards.len(), 2);
    let model = sharded.load(&Device::flex()).unwrap();
    let reference = Checkpoint::open(&fixtures().join("hf-vit")).unwrap();
    let reference_model = reference.load(&Device::flex()).unwrap();
    assert_eq!(
        named_tensors(&model, sharded.format, None),
        named_tensors(&reference_model, reference.format, None)
    );
    let out = tempfile::tempdir().unwrap();
    sharded.export(&model, out.path()).unwrap();
    for file in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
    ] {
        assert!(out.path().join(file).is_file(), "export lacks {file}");
    }
    Checkpoint::open(out.path())
        .unwrap()
        .load(&Device::flex())
        .unwrap();
}

#[test]
fn missing_unexpected_and_misshaped_keys_are_named() {
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("openclip-vit"), temp.path());
    let file = temp.path().join("open_clip_model.safetensors");
    rewrite(&file, |tensors| {
        tensors.retain(|(k, _)| k != "ln_final.weight");
        tensors.push((
            "visual.surprise".into(),
            StoredTensor {
                dtype: safetensors::Dtype::F32,
                shape: vec![1],
                bytes: vec![0; 4],
            },
        ));
        let proj = tensors
            .iter_mut()
            .find(|(k, _)| k == "visual.proj")
            .unwrap();
        proj.1.shape = vec![proj.1.shape[1], proj.1.shape[0]];
    });
    let message = error_of(temp.path());
    for needle in [
        "open_clip_model.safetensors",
        "missing 1 key(s): ln_final.weight",
        "unexpected 1 key(s): visual.surprise",
        "visual.proj (expected [64, 32], found [32, 64])",
    ] {
        assert!(message.contains(needle), "'{needle}' not in: {message}");
    }
}

#[test]
fn damaged_weight_files_are_reported() {
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("openclip-vit"), temp.path());
    fs::write(
        temp.path().join("open_clip_model.safetensors"),
        b"definitely not safetensors",
    )
    .unwrap();
    let message = error_of(temp.path());
    assert!(
        message.contains("open_clip_model.safetensors")
            && message.contains("not a valid safetensors file"),
        "{message}"
    );
}

#[test]
fn broken_configs_are_reported() {
    let temp = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("hf-vit"), temp.path());
    fs::write(temp.path().join("config.json"), "{ not json").unwrap();
    let message = error_of(temp.path());
    assert!(
        message.contains("config.json") && message.contains("not valid JSON"),
        "{message}"
    );

    fs::write(temp.path().join("config.json"), r#"{"text_config": {}}"#).unwrap();
    let message = error_of(temp.path());
    assert!(
        message.contains("config.json") && message.contains("vision_config"),
        "{message}"
    );
}

#[test]
fn pickles_missing_folders_and_strangers_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    fs::write(temp.path().join("config.json"), "{}").unwrap();
    fs::write(temp.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let message = error_of(temp.path());
    assert!(
        message.contains("pytorch_model.bin") && message.contains("pickle"),
        "{message}"
    );

    let message = error_of(&temp.path().join("nowhere"));
    assert!(
        message.contains("nowhere") && message.contains("no such file"),
        "{message}"
    );

    let empty = tempfile::tempdir().unwrap();
    let message = error_of(empty.path());
    assert!(
        message.contains("not a CLIP checkpoint folder"),
        "{message}"
    );
}

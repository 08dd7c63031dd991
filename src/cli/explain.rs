//! `lethe explain`: where a model looks in one picture and, with `--compare`, where a second
//! model (typically the edited checkpoint) looks, side by side over the picture the models see.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::{ModelArgs, check_files};
use crate::engine::LoadedModel;
use crate::viz::compare::panel_rows;
use crate::viz::overlay::comparison_sheet;
use crate::viz::saliency::{method_name, method_name_toward};

/// Side of each picture in the output, in pixels.
const TILE: u32 = 256;

/// `lethe explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A second model whose map is drawn beside the first (e.g. the folder `lethe run` wrote).
    #[arg(long, value_name = "DIR|demo:NAME")]
    compare: Option<String>,
    /// The picture to explain.
    #[arg(long, value_name = "PATH")]
    image: PathBuf,
    /// PNG file to write: the picture, then each model's map over it, and the colour scale.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Make each map toward this text (e.g. the forgotten class's prompt): a gradient-weighted
    /// rollout for a ViT, Grad-CAM for a ResNet, each with the model's own embedding of the
    /// text. Without it, the maps show attention alone.
    #[arg(long, value_name = "TEXT")]
    text: Option<String>,
    /// How strongly the map covers the picture, from 0 (not at all) to 1 (only the map).
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    opacity: f32,
}

/// Runs `lethe explain`; prints what each panel shows.
pub fn explain(args: ExplainArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.opacity) {
        bail!("--opacity {}: give a number from 0 to 1", args.opacity);
    }
    if args.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
        bail!("--text is empty: give the text the maps are made toward, or leave it out");
    }
    check_files(std::slice::from_ref(&args.image))?;
    super::check_png_out(&args.out)?;
    crate::atomic::refuse_inputs(&args.out, [args.image.as_path()])?;
    crate::atomic::check_writable(&args.out)?;
    let picture = crate::clip::preprocess::decode(&args.image)?;

    let mut specs = vec![args.model.model.clone()];
    specs.extend(args.compare.clone());
    let loaded = specs
        .iter()
        .map(|spec| LoadedModel::open_spec(spec, args.model.device))
        .collect::<Result<Vec<_>>>()?;
    println!("panel 1: the picture as the model sees it; the bar below runs from low to high");
    for (i, (spec, model)) in specs.iter().zip(&loaded).enumerate() {
        let method = match &args.text {
            Some(text) => format!("{} toward \"{text}\"", method_name_toward(&model.model)),
            None => method_name(&model.model).to_string(),
        };
        println!("panel {}: {spec} — {method}", i + 2);
    }
    let models: Vec<_> = loaded
        .iter()
        .map(|l| {
            let toward = args
                .text
                .as_ref()
                .map(|text| l.model.encode_text(&l.tokenize(std::slice::from_ref(text))));
            (&l.model, &l.preprocessor, toward)
        })
        .collect();
    let rows = panel_rows(&models, &[picture], args.opacity, TILE);
    super::write_png(&comparison_sheet(&rows, TILE), &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

//! `lethe bench map`: seconds to draw the embedding map of a dataset's pictures, for one model
//! and for a before/after pair (the two maps run at once, one per core).

use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::ModelArgs;
use crate::clip::host_values;
use crate::data::dataset;
use crate::engine::LoadedModel;
use crate::eval::embed_dataset;
use crate::limits::{MAX_ITERS, count_arg};
use crate::viz::map::{MapOptions, before_after, nearest_neighbours, tsne};

/// `lethe bench map`.
#[derive(Debug, Args)]
pub struct BenchMapArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The pictures to map (a dataset spec); every picture of it is a point.
    #[arg(long, default_value = "shapes:colors?seed=5&n=10000")]
    dataset: String,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = MapOptions::default().perplexity)]
    perplexity: f32,
    /// t-SNE optimisation steps.
    #[arg(long, default_value_t = MapOptions::default().iterations, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_ITERS>)]
    iterations: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `lethe bench map`.
pub fn bench_map(args: &BenchMapArgs) -> Result<()> {
    let options = MapOptions {
        perplexity: args.perplexity,
        iterations: args.iterations,
        seed: 0,
    };
    options
        .check("--perplexity", "--iterations")
        .map_err(anyhow::Error::msg)?;
    let loaded = LoadedModel::open_spec(&args.model.model, args.model.device)?;
    let pictures = dataset::open(&args.dataset)?;
    let embedded = embed_dataset(&loaded, &pictures, 250);
    let rows = host_values(embedded.embeds);
    let dim = rows.len() / embedded.items.len().max(1);
    let points = embedded.items.len();
    let clock = Instant::now();
    nearest_neighbours(&rows, dim, (3.0 * args.perplexity) as usize);
    let neighbours_s = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    tsne(&rows, dim, &options, &|_| {}).map_err(anyhow::Error::msg)?;
    let one_map_s = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    before_after(&rows, &rows, dim, &options, &|_| {}).map_err(anyhow::Error::msg)?;
    let pair_s = clock.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"points": points, "dimensions": dim,
                "perplexity": args.perplexity, "iterations": args.iterations,
                "neighbours_s": neighbours_s, "one_map_s": one_map_s,
                "before_after_s": pair_s})
        );
    } else {
        println!("points       {points} ({dim} dimensions, {})", args.dataset);
        println!(
            "t-SNE        perplexity {}, {} steps",
            args.perplexity, args.iterations
        );
        println!("neighbours   {neighbours_s:.2} s (exact)");
        println!("one map      {one_map_s:.2} s (neighbours included)");
        println!("before/after {pair_s:.2} s (two maps at once, aligned)");
    }
    Ok(())
}

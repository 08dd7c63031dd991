//! Command-line interface: every subcommand runs the same engine the app uses.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use clap::{Args, Parser, Subcommand};

use crate::backend::DeviceChoice;
use crate::clip::host_rows;
use crate::data::dataset;
use crate::engine::LoadedModel;
use crate::eval::interval::Estimate;
use crate::eval::{class_probabilities, zero_shot};
use crate::limits::{MAX_BATCH_ARG, MAX_ITERS, count_arg};

mod bench_map;
mod bench_methods;
mod bench_step;
mod bench_train;
mod explain;
mod grid;
mod run_recipe;
mod train_demo;

/// Lethe: make a CLIP model forget, and prove it.
#[derive(Debug, Parser)]
#[command(
    name = "lethe",
    version,
    about,
    after_help = "Models are checkpoint folders: Hugging Face CLIPModel (config.json + model.safetensors) \
or open_clip (open_clip_config.json + open_clip_model.safetensors), or the built-in demo models \
demo:vit (the default) and demo:rn.\n\n\
Without a command, the app window opens (the Shapes demo is loaded; the last workspace reopens).\n\n\
Files: the app's workspace is in ~/.local/share/lethe (LETHE_HOME moves it); built-in models are \
unpacked once into ~/.cache/lethe (XDG_CACHE_HOME moves it). The example recipes are in the \
source's recipes/ folder, or /usr/share/doc/lethe/examples/recipes/ where the package is installed.\n\n\
Examples:\n  \
lethe\n  \
lethe eval --dataset 'shapes:shapes?seed=4242&n=1000' --dataset shapes:colors\n  \
lethe methods\n  \
lethe run recipes/forget-red-vit.toml --out red-forgotten\n  \
lethe run recipes/forget-green-vit-verify.toml --out green-forgotten\n  \
lethe classify --model demo:rn --image star.png --labels \"star,heart,ring\"\n  \
lethe train-demo --arch vit --out my-shapes-vit\n  \
lethe grid --dataset shapes:fruits --out fruits.png\n  \
lethe explain --compare red-forgotten --image star.png --out where-it-looks.png\n  \
lethe classify --model ~/models/clip-b32 --image cat.jpg --labels \"cat,dog,car\"\n  \
lethe embed --model ~/models/clip-b32 --text \"a photo of a cat\" --json\n  \
lethe bench encode --model ~/models/clip-b32 --device cpu"
)]
pub struct Cli {
    /// What to do; without a command, the app window opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the process's arguments as clap does, except that an argument that is not valid
    /// UTF-8 where text is expected is named (clap only says one of them is).
    pub fn parse_args() -> Self {
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(error) if error.kind() == clap::error::ErrorKind::InvalidUtf8 => {
                eprintln!("error: {}", non_utf8_argument(std::env::args_os()));
                std::process::exit(2);
            }
            Err(error) => error.exit(),
        }
    }
}

/// Which argument of `args` is not valid UTF-8, with the option it belongs to.
fn non_utf8_argument(args: impl Iterator<Item = std::ffi::OsString>) -> String {
    let args: Vec<_> = args.collect();
    let Some(i) = args.iter().position(|a| a.to_str().is_none()) else {
        return "an argument is not valid UTF-8".into();
    };
    let shown = args[i].to_string_lossy();
    match args[..i]
        .last()
        .and_then(|a| a.to_str())
        .filter(|a| a.starts_with('-'))
    {
        Some(option) => format!("the value of {option} is not valid UTF-8: '{shown}'"),
        None => format!("argument {i} is not valid UTF-8: '{shown}'"),
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print projected, un-normalised CLIP embeddings of images and texts.
    Embed(EmbedArgs),
    /// Zero-shot classify an image against a list of labels.
    Classify(ClassifyArgs),
    /// Zero-shot accuracy of a model on datasets, overall and per class.
    Eval(EvalArgs),
    /// Run an unlearning recipe: forget, measure before and after, write the edited model,
    /// metrics.json and report.md.
    Run(run_recipe::RunArgs),
    /// List the unlearning methods: what each does, what it needs, and every setting a recipe's
    /// [method] table accepts, with its default.
    Methods,
    /// Train a Shapes demo model from scratch in stages (attribute heads, LiT, joint) and save it.
    TrainDemo(train_demo::TrainDemoArgs),
    /// Save a contact sheet of a dataset's first images as a PNG.
    Grid(grid::GridArgs),
    /// Draw where a model looks in a picture (attention rollout for a ViT, the attention-pool
    /// map for a ResNet), beside where a second model, e.g. the edited one, looks.
    Explain(explain::ExplainArgs),
    /// Measure speed.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: BenchCommand,
    },
}

/// Options every model-using command shares.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Checkpoint folder: Hugging Face CLIPModel (config.json + model.safetensors) or
    /// open_clip (open_clip_config.json + open_clip_model.safetensors); or a built-in demo
    /// model, demo:vit or demo:rn (trained on the Shapes world).
    #[arg(long, value_name = "DIR|demo:NAME", default_value = crate::demo::DEFAULT_MODEL)]
    pub model: String,
    /// Where to compute: auto (a real GPU if there is one, else CPU), gpu (any wgpu adapter,
    /// software ones included) or cpu.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
}

/// `lethe embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An image to embed (repeatable).
    #[arg(long = "image", value_name = "PATH")]
    images: Vec<PathBuf>,
    /// A text to embed (repeatable).
    #[arg(long = "text", value_name = "STR")]
    texts: Vec<String>,
    /// Print exactly {"image_embeds": [[..]..], "text_embeds": [[..]..]} on stdout.
    #[arg(long)]
    json: bool,
}

/// `lethe classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image to classify.
    #[arg(long, value_name = "PATH")]
    image: PathBuf,
    /// Comma-separated class names.
    #[arg(long, value_delimiter = ',', required = true)]
    labels: Vec<String>,
    /// Prompt template; `{}` is replaced by each label.
    #[arg(long, default_value = "a photo of a {}.")]
    template: String,
}

/// `lethe eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A dataset spec (repeatable): shapes:<subset>[?seed=N&n=M] (subsets: shapes, colors,
    /// fruits, color-shapes, backgrounds), folder:PATH (one sub-folder per class) or
    /// manifest:FILE (CSV or JSONL with path, label, optional caption).
    #[arg(long = "dataset", value_name = "SPEC", required = true)]
    datasets: Vec<String>,
    /// Prompt template with {} for the class name; default: the dataset's own templates,
    /// averaged.
    #[arg(long)]
    template: Option<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_BATCH_ARG>)]
    batch: usize,
    /// Print exactly {"datasets": [{"name", "n", "accuracy", "ci_low", "ci_high", "per_class",
    /// "mistaken_for"}]} on stdout; mistaken_for names, for each class with errors, the class
    /// its images were most often taken for and how many were.
    #[arg(long)]
    json: bool,
}

/// `lethe bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run forgetting scenarios with every registered method (and their ablations) and print
    /// one table per scenario: the Lip paper's Table 1, or the subgroup paper's columns.
    Methods(bench_methods::BenchMethodsArgs),
    /// Seconds per training step of a demo-training stage (attributes, lit or joint).
    Train(bench_train::BenchTrainArgs),
    /// Seconds per unlearning step of a registered method on a recipe's scenario.
    Step(bench_step::BenchStepArgs),
    /// Seconds to draw the embedding map (t-SNE) of a dataset's pictures, alone and as a
    /// before/after pair.
    Map(bench_map::BenchMapArgs),
    /// Images/s and texts/s of the encoders.
    Encode {
        #[command(flatten)]
        model: ModelArgs,
        /// Batch size.
        #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_BATCH_ARG>)]
        batch: usize,
        /// Timed batches per encoder (after one warm-up batch).
        #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = count_arg::<usize, MAX_ITERS>)]
        iters: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn check_files(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        if !path.exists() {
            bail!("{}: no such image file", path.display());
        }
        crate::limits::check_regular_file(path)
            .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
    }
    Ok(())
}

/// Refuses an `--out` that is a folder or does not end in `.png`.
fn check_png_out(out: &std::path::Path) -> Result<()> {
    if out.is_dir()
        || out
            .extension()
            .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
    {
        bail!("--out {}: give a file name ending in .png", out.display());
    }
    Ok(())
}

/// Writes `picture` as a PNG file, atomically.
fn write_png(picture: &image::RgbImage, out: &std::path::Path) -> Result<()> {
    let mut png = Vec::new();
    picture.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    crate::atomic::write_file(out, &png)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        return crate::app::launch();
    };
    match command {
        Command::Embed(args) => embed(args),
        Command::Classify(args) => classify(args),
        Command::Eval(args) => eval(args),
        Command::Run(args) => run_recipe::run_recipe(&args),
        Command::Methods => {
            print!("{}", crate::unlearn::methods::describe_all());
            Ok(())
        }
        Command::TrainDemo(args) => train_demo::train_demo(args),
        Command::Grid(args) => grid::grid(args),
        Command::Explain(args) => explain::explain(args),
        Command::Bench {
            which:
                BenchCommand::Encode {
                    model,
                    batch,
                    iters,
                    json,
                },
        } => bench_encode(&model, batch, iters, json),
        Command::Bench {
            which: BenchCommand::Methods(args),
        } => bench_methods::bench_methods(&args),
        Command::Bench {
            which: BenchCommand::Train(args),
        } => bench_train::bench_train(&args),
        Command::Bench {
            which: BenchCommand::Step(args),
        } => bench_step::bench_step(&args),
        Command::Bench {
            which: BenchCommand::Map(args),
        } => bench_map::bench_map(&args),
    }
}

fn embed(args: EmbedArgs) -> Result<()> {
    if args.images.is_empty() && args.texts.is_empty() {
        bail!("nothing to embed: give at least one --image or --text");
    }
    check_files(&args.images)?;
    let loaded = LoadedModel::open_spec(&args.model.model, args.model.device)?;
    let image_embeds = if args.images.is_empty() {
        Vec::new()
    } else {
        host_rows(loaded.embed_images(&args.images)?)
    };
    let text_embeds = if args.texts.is_empty() {
        Vec::new()
    } else {
        host_rows(loaded.embed_texts(&args.texts))
    };
    if args.json {
        let out = serde_json::json!({"image_embeds": image_embeds, "text_embeds": text_embeds});
        println!("{out}");
    } else {
        for (path, row) in args.images.iter().zip(&image_embeds) {
            println!("image {}: {row:?}", path.display());
        }
        for (text, row) in args.texts.iter().zip(&text_embeds) {
            println!("text {text:?}: {row:?}");
        }
    }
    Ok(())
}

fn classify(args: ClassifyArgs) -> Result<()> {
    check_files(std::slice::from_ref(&args.image))?;
    if !args.template.contains("{}") {
        bail!("the template '{}' has no {{}} for the label", args.template);
    }
    let labels: Vec<String> = args
        .labels
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    if labels.is_empty() {
        bail!("--labels is empty: give comma-separated class names");
    }
    let loaded = LoadedModel::open_spec(&args.model.model, args.model.device)?;
    let prompts: Vec<String> = labels
        .iter()
        .map(|l| args.template.replace("{}", l))
        .collect();
    let image = loaded.embed_images(std::slice::from_ref(&args.image))?;
    let probs = class_probabilities(&loaded, image, loaded.embed_texts(&prompts)).remove(0);
    let mut ranked: Vec<(&String, f32)> = labels.iter().zip(probs).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let width = labels.iter().map(String::len).max().unwrap_or(0);
    for (label, p) in ranked {
        println!("{label:<width$}  {p:.4}");
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    if let Some(template) = &args.template
        && !template.contains("{}")
    {
        bail!("the template '{template}' has no {{}} for the class name");
    }
    let datasets = args
        .datasets
        .iter()
        .map(|spec| dataset::open(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = LoadedModel::open_spec(&args.model.model, args.model.device)?;
    let results: Vec<_> = datasets
        .iter()
        .map(|dataset| {
            let templates = args
                .template
                .clone()
                .map_or_else(|| dataset.templates.clone(), |t| vec![t]);
            zero_shot(&loaded, dataset, &templates, args.batch)
        })
        .collect();
    if args.json {
        let datasets: Vec<serde_json::Value> = results
            .iter()
            .map(|result| {
                let overall = result.estimate();
                let per_class: serde_json::Map<String, serde_json::Value> = result
                    .per_class
                    .keys()
                    .map(|class| {
                        (
                            class.clone(),
                            serde_json::json!(result.class_estimate(class)),
                        )
                    })
                    .collect();
                serde_json::json!({
                    "name": result.name,
                    "n": result.n,
                    "accuracy": result.accuracy,
                    "ci_low": overall.ci_low,
                    "ci_high": overall.ci_high,
                    "per_class": per_class,
                    "mistaken_for": result.mistaken_for.iter().map(|(class, (taken, n))| {
                        (class.clone(), serde_json::json!({ "class": taken, "n": n }))
                    }).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "datasets": datasets }));
    } else {
        let interval = |e: Estimate| format!("[{:.4}, {:.4}]", e.ci_low, e.ci_high);
        for result in &results {
            println!(
                "{}  n={}  accuracy={:.4} {}{}",
                result.name,
                result.n,
                result.accuracy,
                interval(result.estimate()),
                if result.skipped > 0 {
                    format!("  ({} unreadable skipped)", result.skipped)
                } else {
                    String::new()
                }
            );
            for class in result.per_class.keys() {
                let e = result.class_estimate(class);
                let mistaken = result
                    .mistaken_for
                    .get(class)
                    .map(|(taken, n)| format!("  mostly taken for {taken} ({n})"))
                    .unwrap_or_default();
                println!(
                    "  {class:<24} {:.4} {}  n={}{mistaken}",
                    e.value,
                    interval(e),
                    e.n
                );
            }
        }
        println!("(in brackets: 95% Wilson intervals)");
    }
    Ok(())
}

fn bench_encode(args: &ModelArgs, batch: usize, iters: usize, json: bool) -> Result<()> {
    let loaded = LoadedModel::open_spec(&args.model, args.device)?;
    let size = loaded.preprocessor.size;
    let device = &loaded.device.device;
    let sync = || device.sync().context("device failed while benchmarking");
    let images = Tensor::<4>::random(
        [batch, 3, size, size],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let texts: Vec<String> = (0..batch).map(|i| format!("a photo of a {i}")).collect();
    let ids = loaded.tokenize(&texts);
    // Captions cut at the context length, as bench/reference.py's LONG_CAPTION: the text tower
    // then runs on every position, where short prompts stop at their end-of-text token.
    let long = " very".repeat(80);
    let long_texts: Vec<String> = (0..batch)
        .map(|i| format!("a photo of a {i}{long} big dog"))
        .collect();
    let full_ids = loaded.tokenize(&long_texts);
    let time = |work: &dyn Fn()| -> Result<f64> {
        work();
        sync()?;
        let start = Instant::now();
        for _ in 0..iters {
            work();
        }
        sync()?;
        Ok((batch * iters) as f64 / start.elapsed().as_secs_f64())
    };
    let images_per_s = time(&|| {
        let _ = loaded.model.encode_image(images.clone()).into_data();
    })?;
    let texts_per_s = time(&|| {
        let _ = loaded.model.encode_text(&ids).into_data();
    })?;
    let full_texts_per_s = time(&|| {
        let _ = loaded.model.encode_text(&full_ids).into_data();
    })?;
    if json {
        println!(
            "{}",
            serde_json::json!({"images_per_s": images_per_s, "texts_per_s": texts_per_s,
                "full_texts_per_s": full_texts_per_s, "batch": batch,
                "device": loaded.device.description})
        );
    } else {
        println!("device       {}", loaded.device.description);
        println!("model        {}", args.model);
        println!("batch        {batch}");
        println!("images/s     {images_per_s:.2}");
        println!("texts/s      {texts_per_s:.2}");
        println!("full texts/s {full_texts_per_s:.2}  (captions that fill the context)");
    }
    Ok(())
}

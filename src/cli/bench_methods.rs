//! `lethe bench methods`: one recipe run with each registered method (or those named), printed as the Lip
//! paper's Table 1 (target, other classes and other datasets before and after, Avg Score) with
//! the time each run took and where it went.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;

use crate::eval::metrics::Metrics;
use crate::recipe::Recipe;
use crate::unlearn::methods::{REGISTRY, UnlearningMethod, check, find, known_settings};
use crate::workflow::{Opened, execute_from, measure_before};

/// `lethe bench methods`.
#[derive(Debug, Args)]
pub struct BenchMethodsArgs {
    /// The scenario: a recipe whose method section is reused with each method's name.
    #[arg(
        long,
        value_name = "RECIPE",
        default_value = "recipes/forget-red-vit.toml"
    )]
    recipe: PathBuf,
    /// Methods to compare (comma-separated names, or `all` for every registered method). Each
    /// keeps the recipe's settings it has and the defaults for the rest.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    methods: Vec<String>,
    /// Print the metrics of every run as a JSON array instead of the table.
    #[arg(long)]
    json: bool,
}

fn pct(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.3}", v))
}

/// The registered methods `names` asks for, in the order given; `all` means every one.
fn chosen_methods(names: &[String]) -> Result<Vec<&'static dyn UnlearningMethod>> {
    if names.iter().any(|n| n == "all") {
        return Ok(REGISTRY.to_vec());
    }
    names
        .iter()
        .map(|name| find(name).with_context(|| "--methods".to_string()))
        .collect()
}

/// Runs `lethe bench methods`.
pub fn bench_methods(args: &BenchMethodsArgs) -> Result<()> {
    let (recipe, text) = Recipe::load(&args.recipe)?;
    let methods = chosen_methods(&args.methods)?;
    let settings = recipe.method.settings.clone();
    let mut opened =
        Opened::open(recipe, text).with_context(|| format!("recipe {}", args.recipe.display()))?;
    // Every method starts from the same model, so it is measured once.
    let before = measure_before(&opened);
    let mut results: Vec<Metrics> = Vec::new();
    for method in methods {
        opened.recipe.method.name = method.name().to_string();
        opened.recipe.method.settings = known_settings(method, &settings);
        check(method.name(), &opened.recipe.method.settings).with_context(|| {
            format!(
                "recipe {} with method {}",
                args.recipe.display(),
                method.name()
            )
        })?;
        let method = method.name();
        eprintln!("running {method}…");
        let finished = execute_from(&opened, &before, &AtomicBool::new(false), |_| {})
            .with_context(|| format!("recipe {} with method {method}", args.recipe.display()))?;
        results.push(finished.metrics);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    let Some(first) = results.first() else {
        return Ok(());
    };
    let mut header = vec![
        "method".to_string(),
        "target BF".into(),
        "target AF".into(),
        "others BF".into(),
        "others AF".into(),
    ];
    for row in first.datasets.iter().skip(1) {
        header.push(format!("{} BF", row.name));
        header.push(format!("{} AF", row.name));
    }
    header.extend([
        "Avg Score".into(),
        "steps".into(),
        "unlearn s".into(),
        "of which images s".into(),
    ]);
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for m in &results {
        let mut cells = vec![
            m.method.clone(),
            pct(Some(m.target.before)),
            pct(Some(m.target.after)),
            pct(m.datasets[0].other_classes_before),
            pct(m.datasets[0].other_classes_after),
        ];
        for row in m.datasets.iter().skip(1) {
            cells.push(pct(Some(row.before)));
            cells.push(pct(Some(row.after)));
        }
        cells.push(format!("{:.3}", m.avg_score));
        cells.push(m.steps.to_string());
        cells.push(format!("{:.1}", m.runtime_s));
        cells.push(format!("{:.1}", m.timings.forget_images_s));
        println!("| {} |", cells.join(" | "));
    }
    Ok(())
}

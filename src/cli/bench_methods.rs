//! `lethe bench methods`: each scenario (a recipe) run with each registered method (or those
//! named), printed as one table per scenario: the original model's row, then one row per
//! method with the Lip paper's Table 1 columns (target = Df and other classes = Dr of the
//! forget dataset, every other dataset, Avg Score), CLIPErase's image–caption retrieval on
//! the forget and retain pairs, and the time each run took.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;

use crate::eval::metrics::{Metrics, NamedChange, SubgroupMetrics};
use crate::eval::retrieval::AtRanks;
use crate::eval::snapshot::{PairSets, Retrieval};
use crate::recipe::Recipe;
use crate::unlearn::methods::{REGISTRY, UnlearningMethod, check, find, known_settings};
use crate::workflow::{Opened, execute_from, measure_before};

/// `lethe bench methods`.
#[derive(Debug, Args)]
pub struct BenchMethodsArgs {
    /// The scenarios: recipes (comma-separated) whose method section is reused with each
    /// method's name; one table per recipe.
    #[arg(
        long,
        value_name = "RECIPE",
        value_delimiter = ',',
        default_value = "recipes/forget-red-vit.toml"
    )]
    recipe: Vec<PathBuf>,
    /// Models to run every scenario on (comma-separated, e.g. `demo:vit,demo:rn`) instead
    /// of the recipe's own; one table per recipe and model.
    #[arg(long, value_delimiter = ',')]
    model: Vec<String>,
    /// Methods to compare (comma-separated names, or `all` for every registered method). Each
    /// keeps the recipe's settings it has and the defaults for the rest.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    methods: Vec<String>,
    /// Also run each method's ablations (the paper's variants with one stage switched off),
    /// one row each.
    #[arg(long)]
    ablations: bool,
    /// Print the metrics of every run as a JSON array instead of the tables.
    #[arg(long)]
    json: bool,
}

fn pct(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.3}", v))
}

fn ranks(value: Option<AtRanks>) -> String {
    value.map_or("–".into(), |r| {
        format!("{:.2}/{:.2}/{:.2}", r.at_1, r.at_5, r.at_10)
    })
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
    let methods = chosen_methods(&args.methods)?;
    let models: Vec<Option<&str>> = if args.model.is_empty() {
        vec![None]
    } else {
        args.model.iter().map(|m| Some(m.as_str())).collect()
    };
    let mut all = Vec::new();
    for recipe in &args.recipe {
        for &model in &models {
            let rows = run_scenario(recipe, model, &methods, args.ablations)?;
            if !args.json {
                print_table(recipe, &rows);
            }
            all.extend(rows.into_iter().filter_map(|row| row.result.ok()));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// One method's run on a scenario: its metrics, or why it could not run there (a method
/// that needs captioned pictures on a scenario without them).
struct Row {
    /// The method's name, with the ablation after it.
    method: String,
    result: Result<Metrics, String>,
}

/// Every method of `methods` (and, with `ablations`, each of its ablations) on the scenario
/// of `path` (on `model` instead of the recipe's when given), each from the same original
/// model.
fn run_scenario(
    path: &Path,
    model: Option<&str>,
    methods: &[&'static dyn UnlearningMethod],
    ablations: bool,
) -> Result<Vec<Row>> {
    let (mut recipe, text) = Recipe::load(path)?;
    if let Some(model) = model {
        recipe.model.path = model.to_string();
    }
    let settings = recipe.method.settings.clone();
    let mut opened =
        Opened::open(recipe, text).with_context(|| format!("recipe {}", path.display()))?;
    // Every method starts from the same model, so it is measured once.
    let before = measure_before(&opened);
    let mut results = Vec::new();
    for &method in methods {
        let own = known_settings(method, &settings);
        let mut variants = vec![(method.name().to_string(), own.clone())];
        if ablations {
            variants.extend(method.ablations().into_iter().map(|(name, switch)| {
                let mut changed = own.clone();
                changed.extend(switch);
                (format!("{} − {name}", method.name()), changed)
            }));
        }
        for (label, settings) in variants {
            opened.recipe.method.name = method.name().to_string();
            opened.recipe.method.settings = settings;
            let context = || format!("recipe {} with {label}", path.display());
            check(method.name(), &opened.recipe.method.settings).with_context(context)?;
            eprintln!("{}: running {label}…", path.display());
            let result = execute_from(&opened, &before, &AtomicBool::new(false), |_| {})
                .map(|finished| finished.metrics)
                .map_err(|error| {
                    eprintln!("{}: {error:#}", context());
                    format!("{error:#}")
                });
            results.push(Row {
                method: label,
                result,
            });
        }
    }
    Ok(results)
}

/// One model state's cells: target (Df), other classes (Dr), each other dataset, and pair
/// retrieval.
fn state_cells(
    target: f64,
    datasets: impl Iterator<Item = (Option<f64>, f64)>,
    retrieval: Option<&Retrieval>,
) -> Vec<String> {
    let mut cells = vec![pct(Some(target))];
    for (i, (others, accuracy)) in datasets.enumerate() {
        cells.push(if i == 0 {
            pct(others)
        } else {
            pct(Some(accuracy))
        });
    }
    let pairs: Option<PairSets> = retrieval.and_then(|r| r.pairs);
    cells.extend([
        ranks(pairs.map(|p| p.forget.image_to_text)),
        ranks(pairs.map(|p| p.forget.text_to_image)),
        ranks(pairs.map(|p| p.retain.image_to_text)),
        ranks(pairs.map(|p| p.retain.text_to_image)),
    ]);
    cells
}

/// Prints one scenario's table; a method that could not run gets a row saying why.
fn print_table(path: &Path, rows: &[Row]) {
    let Some(first) = rows.iter().find_map(|row| row.result.as_ref().ok()) else {
        for row in rows {
            if let Err(error) = &row.result {
                println!("{} could not run: {error}", row.method);
            }
        }
        return;
    };
    if let Some(subgroup) = &first.subgroup {
        println!(
            "\n### {}: {} forgets the subgroup {}\n",
            path.display(),
            first.model,
            subgroup.name
        );
        print_subgroup_table(subgroup, rows);
        return;
    }
    println!(
        "\n### {}: {} forgets {}\n",
        path.display(),
        first.model,
        first.classes.join(", ")
    );
    let mut header = vec![
        "method".to_string(),
        "target (Df)".into(),
        "others (Dr)".into(),
    ];
    header.extend(first.datasets.iter().skip(1).map(|row| row.name.clone()));
    header.extend(
        [
            "Df picture→caption R@1/5/10",
            "Df caption→picture",
            "Dr picture→caption",
            "Dr caption→picture",
            "Avg Score",
            "steps",
            "unlearn s",
        ]
        .map(String::from),
    );
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let retrieval_before = first.retrieval.as_ref().map(|r| r.before);
    let mut original = vec!["original".to_string()];
    original.extend(state_cells(
        first.target.before.value,
        first
            .datasets
            .iter()
            .map(|d| (d.other_classes_before.map(|e| e.value), d.before.value)),
        retrieval_before.as_ref(),
    ));
    original.extend(["–".into(), "–".into(), "–".into()]);
    println!("| {} |", original.join(" | "));
    for row in rows {
        let m = match &row.result {
            Ok(metrics) => metrics,
            Err(error) => {
                let mut cells = vec![row.method.to_string(), format!("could not run: {error}")];
                cells.resize(header.len(), String::new());
                println!("| {} |", cells.join(" | ").replace('\n', " "));
                continue;
            }
        };
        let mut cells = vec![row.method.clone()];
        let after = m.retrieval.as_ref().map(|r| r.after);
        cells.extend(state_cells(
            m.target.after.value,
            m.datasets
                .iter()
                .map(|d| (d.other_classes_after.map(|e| e.value), d.after.value)),
            after.as_ref(),
        ));
        cells.push(format!("{:.3}", m.avg_score));
        cells.push(m.steps.to_string());
        cells.push(format!("{:.1}", m.runtime_s));
        println!("| {} |", cells.join(" | "));
    }
}

/// A subgroup scenario's table in the subgroup paper's form: Target ↓ (and the subgroup under
/// other heads), Retain ↑, All ↑, each other dataset ↑, Score.
fn print_subgroup_table(first: &SubgroupMetrics, rows: &[Row]) {
    let mut header = vec!["method".to_string(), "Target ↓".into()];
    header.extend(first.also_forgotten.iter().map(|c| format!("{} ↓", c.name)));
    header.extend(["Retain ↑".to_string(), "All ↑".into()]);
    header.extend(first.others.iter().map(|c| format!("{} ↑", c.name)));
    header.extend(["Score".to_string(), "steps".into(), "unlearn s".into()]);
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    let cells = |s: &SubgroupMetrics, after: bool| -> Vec<String> {
        let value = |c: &NamedChange| {
            let e = if after {
                c.change.after
            } else {
                c.change.before
            };
            format!("{:.1}", 100.0 * e.value)
        };
        std::iter::once(value(&s.target))
            .chain(s.also_forgotten.iter().map(value))
            .chain([value(&s.retain), value(&s.all)])
            .chain(s.others.iter().map(value))
            .collect()
    };
    let mut original = vec!["original".to_string()];
    original.extend(cells(first, false));
    original.extend(["–".into(), "–".into(), "–".into()]);
    println!("| {} |", original.join(" | "));
    for row in rows {
        let mut line = vec![row.method.clone()];
        match row.result.as_ref().map(|m| (m, m.subgroup.as_ref())) {
            Ok((m, Some(s))) => {
                line.extend(cells(s, true));
                line.extend([
                    format!("{:.1}", s.score),
                    m.steps.to_string(),
                    format!("{:.1}", m.runtime_s),
                ]);
            }
            Ok((_, None)) => line.push("no subgroup measures".into()),
            Err(error) => line.push(format!("could not run: {error}").replace('\n', " ")),
        }
        line.resize(header.len(), String::new());
        println!("| {} |", line.join(" | "));
    }
}

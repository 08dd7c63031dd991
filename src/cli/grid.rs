//! `lethe grid`: a contact sheet of a dataset's first images, to see what a dataset holds.

use std::path::PathBuf;

use crate::data::contact_sheet::contact_sheet;
use crate::data::dataset;
use anyhow::{Context, Result, bail};
use clap::Args;

/// `lethe grid`.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// Dataset spec (shapes:..., folder:..., manifest:...).
    #[arg(long, value_name = "SPEC")]
    dataset: String,
    /// PNG file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Images per row.
    #[arg(long, default_value_t = 8)]
    columns: u32,
    /// Rows.
    #[arg(long, default_value_t = 4)]
    rows: u32,
    /// Side of each tile in pixels.
    #[arg(long, default_value_t = 96)]
    tile: u32,
}

/// Runs `lethe grid`; prints each tile's label (and caption) in reading order.
pub fn grid(args: GridArgs) -> Result<()> {
    if args.columns == 0 || args.rows == 0 || args.tile == 0 {
        bail!("--columns, --rows and --tile must be at least 1");
    }
    let data = dataset::open(&args.dataset)?;
    let wanted = (args.columns * args.rows) as usize;
    let mut tiles = Vec::new();
    for item in &data.items {
        if tiles.len() == wanted {
            break;
        }
        let Ok(image) = item.source.image() else {
            continue;
        };
        tiles.push(image.to_rgb8());
        println!(
            "{:>3}  {}{}",
            tiles.len(),
            data.classes[item.label],
            item.caption
                .as_ref()
                .map_or(String::new(), |c| format!("  ({c})"))
        );
    }
    let sheet = contact_sheet(&tiles, args.columns, args.tile);
    sheet
        .save(&args.out)
        .with_context(|| format!("{}: cannot write the image", args.out.display()))?;
    Ok(())
}

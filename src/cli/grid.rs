//! `lethe grid`: a contact sheet of a dataset's first images, to see what a dataset holds.

use std::path::PathBuf;

use crate::data::contact_sheet::contact_sheet;
use crate::data::dataset;
use anyhow::Result;
use clap::Args;

use crate::limits::{MAX_COLUMNS, MAX_TILE, count_arg};

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
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = count_arg::<u32, MAX_COLUMNS>)]
    columns: u32,
    /// Rows.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = count_arg::<u32, MAX_COLUMNS>)]
    rows: u32,
    /// Side of each tile in pixels.
    #[arg(long, default_value_t = 96, allow_negative_numbers = true, value_parser = count_arg::<u32, MAX_TILE>)]
    tile: u32,
}

/// Runs `lethe grid`; prints each tile's label (and caption) in reading order.
pub fn grid(args: GridArgs) -> Result<()> {
    super::check_png_out(&args.out)?;
    crate::limits::check_picture_size(args.columns * args.tile, args.rows * args.tile)
        .map_err(|problem| anyhow::anyhow!("--columns, --rows and --tile: {problem}"))?;
    let data = dataset::open(&args.dataset)?;
    let inputs: Vec<&std::path::Path> = data
        .items
        .iter()
        .filter_map(|item| match &item.source {
            dataset::ImageSource::File(path) => Some(path.as_path()),
            dataset::ImageSource::Shapes(_) => None,
        })
        .collect();
    crate::atomic::refuse_inputs(&args.out, inputs)?;
    crate::atomic::check_writable(&args.out)?;
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
    super::write_png(&contact_sheet(&tiles, args.columns, args.tile), &args.out)
}

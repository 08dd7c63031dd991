//! `lethe grid`: a contact sheet of a dataset's first images, to see what a dataset holds.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use image::imageops::{FilterType, overlay, resize};
use image::{Rgb, RgbImage};

use crate::data::dataset;

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
    let gap = 4;
    let step = args.tile + gap;
    let mut sheet = RgbImage::from_pixel(
        args.columns * step + gap,
        args.rows * step + gap,
        Rgb([255, 255, 255]),
    );
    let wanted = (args.columns * args.rows) as usize;
    let mut placed = 0u32;
    for item in &data.items {
        if placed as usize == wanted {
            break;
        }
        let Ok(image) = item.source.image() else {
            continue;
        };
        let tile = resize(&image.to_rgb8(), args.tile, args.tile, FilterType::Triangle);
        let (x, y) = (placed % args.columns, placed / args.columns);
        overlay(
            &mut sheet,
            &tile,
            (gap + x * step).into(),
            (gap + y * step).into(),
        );
        println!(
            "{:>3}  {}{}",
            placed + 1,
            data.classes[item.label],
            item.caption
                .as_ref()
                .map_or(String::new(), |c| format!("  ({c})"))
        );
        placed += 1;
    }
    sheet
        .save(&args.out)
        .with_context(|| format!("{}: cannot write the image", args.out.display()))?;
    Ok(())
}

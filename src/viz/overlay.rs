//! Drawing a saliency grid over the picture it explains, with a colour map and its legend.

use image::{Rgb, RgbImage, imageops};

use super::saliency::Saliency;

/// The colour map's stops, dark to bright (the *inferno* map sampled at 0, ¼, ½, ¾ and 1), so
/// high saliency reads as hot and stays visible over dark and light pictures alike. The app's
/// GPU overlay (`shaders/heatmap.wgsl`) receives the same stops.
pub const STOPS: [[f32; 3]; 5] = [
    [0.0, 0.0, 4.0],
    [87.0, 16.0, 110.0],
    [188.0, 55.0, 84.0],
    [249.0, 142.0, 9.0],
    [252.0, 255.0, 164.0],
];

/// The colour of a value in [0, 1] (clamped), linearly between the stops.
pub fn colour(value: f32) -> [u8; 3] {
    let scaled = value.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let low = (scaled.floor() as usize).min(STOPS.len() - 2);
    let t = scaled - low as f32;
    std::array::from_fn(|c| (STOPS[low][c] * (1.0 - t) + STOPS[low + 1][c] * t).round() as u8)
}

/// The grid's value at pixel (x, y) of a `size × size` picture, bilinear between cell centres.
fn sample(saliency: &Saliency, x: u32, y: u32, size: u32) -> f32 {
    let n = saliency.side;
    let at = |p: u32| ((p as f32 + 0.5) * n as f32 / size as f32 - 0.5).clamp(0.0, (n - 1) as f32);
    let (fx, fy) = (at(x), at(y));
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(n - 1), (y0 + 1).min(n - 1));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let v = |x: usize, y: usize| saliency.values[y * n + x];
    let top = v(x0, y0) * (1.0 - tx) + v(x1, y0) * tx;
    let bottom = v(x0, y1) * (1.0 - tx) + v(x1, y1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// `picture` (square) scaled to `size`, with the saliency's colours blended over it at
/// `opacity` (0 = only the picture, 1 = only the map).
pub fn overlay(picture: &RgbImage, saliency: &Saliency, opacity: f32, size: u32) -> RgbImage {
    let base = imageops::resize(picture, size, size, imageops::FilterType::Triangle);
    RgbImage::from_fn(size, size, |x, y| {
        let heat = colour(sample(saliency, x, y, size));
        let under = base.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|c| {
            (under[c] as f32 * (1.0 - opacity) + heat[c] as f32 * opacity).round() as u8
        }))
    })
}

/// The colour map as a horizontal bar, low on the left.
pub fn legend(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        Rgb(colour(x as f32 / (width - 1).max(1) as f32))
    })
}

/// Rows of square `tile`-pixel panels (a picture, then maps over it) on white, with gaps, and
/// the colour scale under the map columns.
pub fn comparison_sheet(rows: &[Vec<RgbImage>], tile: u32) -> RgbImage {
    const GAP: u32 = 8;
    const BAR: u32 = 14;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(1).max(2) as u32;
    let width = columns * (tile + GAP) + GAP;
    let height = rows.len() as u32 * (tile + GAP) + 2 * GAP + BAR;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, panel) in row.iter().enumerate() {
            let x = GAP + c as u32 * (tile + GAP);
            let y = GAP + r as u32 * (tile + GAP);
            imageops::replace(&mut out, panel, i64::from(x), i64::from(y));
        }
    }
    let bar = legend(width - 2 * GAP - (tile + GAP), BAR);
    let bar_y = rows.len() as u32 * (tile + GAP) + GAP;
    imageops::replace(&mut out, &bar, i64::from(2 * GAP + tile), i64::from(bar_y));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_map_runs_from_its_first_to_its_last_stop() {
        assert_eq!(colour(0.0), [0, 0, 4]);
        assert_eq!(colour(1.0), [252, 255, 164]);
        assert_eq!(colour(0.5), [188, 55, 84]);
        assert_eq!(colour(-3.0), colour(0.0));
    }

    #[test]
    fn a_hot_corner_is_drawn_bright_over_its_quarter_only() {
        let saliency = Saliency {
            side: 2,
            values: vec![1.0, 0.0, 0.0, 0.0],
        };
        let grey = RgbImage::from_pixel(4, 4, Rgb([128, 128, 128]));
        let drawn = overlay(&grey, &saliency, 1.0, 64);
        assert_eq!(drawn.get_pixel(0, 0).0, colour(1.0));
        assert_eq!(drawn.get_pixel(63, 63).0, colour(0.0));
        let half = overlay(&grey, &saliency, 0.5, 64);
        assert_eq!(half.get_pixel(63, 63).0, [64, 64, 66]);
    }
}

//! Contact sheets: many small pictures on one PNG, for looking at a dataset or at the synthetic
//! pictures an unlearning run made.

use image::imageops::{FilterType, overlay, resize};
use image::{Rgb, RgbImage};

/// White space between and around tiles, in pixels.
const GAP: u32 = 4;

/// Lays `images` out left to right, top to bottom, `columns` per row, each scaled to a
/// `tile`-pixel square, on a white sheet just tall enough for them.
pub fn contact_sheet(images: &[RgbImage], columns: u32, tile: u32) -> RgbImage {
    let columns = columns.max(1);
    let rows = (images.len() as u32).div_ceil(columns).max(1);
    let step = tile + GAP;
    let mut sheet = RgbImage::from_pixel(columns * step + GAP, rows * step + GAP, Rgb([255; 3]));
    for (i, image) in images.iter().enumerate() {
        let i = i as u32;
        let scaled = resize(image, tile, tile, FilterType::Triangle);
        let (x, y) = (i % columns, i / columns);
        overlay(
            &mut sheet,
            &scaled,
            (GAP + x * step).into(),
            (GAP + y * step).into(),
        );
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_in_reading_order_on_a_sheet_sized_for_them() {
        let red = RgbImage::from_pixel(10, 10, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(10, 10, Rgb([0, 0, 255]));
        let sheet = contact_sheet(&[red.clone(), blue, red], 2, 8);
        let step = 8 + GAP;
        assert_eq!(sheet.dimensions(), (2 * step + GAP, 2 * step + GAP));
        assert_eq!(sheet.get_pixel(GAP + 4, GAP + 4), &Rgb([255, 0, 0]));
        assert_eq!(sheet.get_pixel(GAP + step + 4, GAP + 4), &Rgb([0, 0, 255]));
        assert_eq!(sheet.get_pixel(GAP + 4, GAP + step + 4), &Rgb([255, 0, 0]));
        assert_eq!(
            sheet.get_pixel(GAP + step + 4, GAP + step + 4),
            &Rgb([255; 3])
        );
    }
}

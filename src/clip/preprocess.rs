//! Image preprocessing exactly as CLIP's reference pipeline does it: EXIF orientation, a
//! bicubic resize of the shorter side (Pillow's antialiased resampler, reproduced in its 8-bit
//! fixed-point arithmetic), a centre crop, conversion to RGB, and CLIP's mean/std.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, ImageDecoder, ImageReader};

use super::jpeg;

/// Why an image could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ImageError {
    /// The image file.
    pub path: PathBuf,
    /// What went wrong.
    pub problem: String,
}

/// Pixels of one image after preprocessing, channel-major (`[3, size, size]`).
pub type Pixels = Vec<f32>;

/// The preprocessing a model expects.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessor {
    /// Output side length.
    pub size: usize,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

/// An 8-bit image with `channels` interleaved channels, the unit Pillow's resampler works on.
struct Raster {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl Preprocessor {
    /// Reads and preprocesses an image file.
    pub fn load(&self, path: &Path) -> Result<Pixels, ImageError> {
        let image = decode(path)?;
        Ok(self.apply(&image))
    }

    /// Preprocesses a decoded image.
    pub fn apply(&self, image: &DynamicImage) -> Pixels {
        let raster = to_raster(image);
        let (w, h) = (raster.width, raster.height);
        let (new_w, new_h) = if w <= h {
            (self.size, (self.size as f64 * h as f64 / w as f64) as usize)
        } else {
            ((self.size as f64 * w as f64 / h as f64) as usize, self.size)
        };
        let resized = resize_bicubic(&raster, new_w, new_h);
        let top = round_half_even((new_h as f64 - self.size as f64) / 2.0);
        let left = round_half_even((new_w as f64 - self.size as f64) / 2.0);
        let plane = self.size * self.size;
        let mut out = vec![0.0f32; 3 * plane];
        for y in 0..self.size {
            for x in 0..self.size {
                let (sy, sx) = (y as i64 + top, x as i64 + left);
                let inside = sy >= 0 && sx >= 0 && (sy as usize) < new_h && (sx as usize) < new_w;
                for c in 0..3 {
                    let value = if inside {
                        let pixel = (sy as usize * new_w + sx as usize) * resized.channels;
                        resized.data[pixel + c.min(resized.channels - 1)]
                    } else {
                        0
                    };
                    let v = value as f32 / 255.0;
                    out[c * plane + y * self.size + x] = (v - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }

    /// Loads several images into one `[n, 3, size, size]` tensor.
    pub fn batch(&self, paths: &[PathBuf], device: &Device) -> Result<Tensor<4>, ImageError> {
        let mut values = Vec::with_capacity(paths.len() * 3 * self.size * self.size);
        for path in paths {
            values.extend(self.load(path)?);
        }
        Ok(self.tensor(values, paths.len(), device))
    }

    /// Wraps already preprocessed pixels of `count` images as a tensor.
    pub fn tensor(&self, values: Vec<f32>, count: usize, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(values, [count, 3, self.size, self.size]),
            device,
        )
    }
}

/// The picture a model sees: one image's normalised pixels (`[3, side, side]`, channel-major)
/// back to 8-bit RGB under the model's `mean` and `std`.
pub fn to_picture(pixels: &[f32], side: usize, mean: [f32; 3], std: [f32; 3]) -> image::RgbImage {
    let plane = side * side;
    image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let at = y as usize * side + x as usize;
        image::Rgb(std::array::from_fn(|c| {
            let value = pixels[c * plane + at] * std[c] + mean[c];
            (value * 255.0).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// Python's `round`: halves go to the even neighbour (torchvision's centre crop uses it).
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r as i64 % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// Decodes an image in any format `image` reads and applies its EXIF orientation. JPEGs are
/// decoded the way Pillow decodes them (see [`super::jpeg`]).
pub fn decode(path: &Path) -> Result<DynamicImage, ImageError> {
    let fail = |problem: String| ImageError {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = crate::limits::read_file(path).map_err(|e| fail(e.to_string()))?;
    let reader = || {
        ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| fail(e.to_string()))
    };
    // The header's size is checked before a single pixel is decoded: a small file may
    // declare a picture of gigabytes.
    let mut header = reader()?;
    header.no_limits();
    let (width, height) = header
        .into_dimensions()
        .map_err(|e| fail(format!("not a readable image ({e})")))?;
    crate::limits::check_picture_size(width, height).map_err(fail)?;
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(crate::limits::MAX_IMAGE_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| fail(format!("not a readable image ({e})")))?;
    let orientation = decoder.orientation().ok();
    let exact_jpeg = if jpeg::is_jpeg(&bytes) {
        jpeg::decode_rgb(&bytes)
    } else {
        None
    };
    let mut image = match exact_jpeg {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder)
            .map_err(|e| fail(format!("cannot decode image ({e})")))?,
    };
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// Converts to the channel layout Pillow resamples in: greyscale stays one channel, images
/// with alpha are premultiplied ("RGBa") as Pillow does before resizing, the rest is RGB.
fn to_raster(image: &DynamicImage) -> Raster {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (channels, data) = if !image.color().has_color() && !image.color().has_alpha() {
        (1, image.to_luma8().into_raw())
    } else if image.color().has_alpha() {
        let mut data = image.to_rgba8().into_raw();
        for pixel in data.chunks_exact_mut(4) {
            let alpha = pixel[3] as u32;
            for c in &mut pixel[..3] {
                let t = *c as u32 * alpha + 128;
                *c = (((t >> 8) + t) >> 8) as u8;
            }
        }
        (4, data)
    } else {
        (3, image.to_rgb8().into_raw())
    };
    Raster {
        width,
        height,
        channels,
        data,
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's per-output-pixel window start and fixed-point weights for one axis.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let scaled = w * (1u32 << PRECISION_BITS) as f64;
                    (if w < 0.0 { scaled - 0.5 } else { scaled + 0.5 }).trunc() as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(value: i64) -> u8 {
    if value >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if value <= 0 {
        0
    } else {
        (value >> PRECISION_BITS) as u8
    }
}

/// One resampling pass along x (`horizontal`) or y, as Pillow's `ImagingResample` does it.
fn resample_axis(src: &Raster, out_len: usize, horizontal: bool) -> Raster {
    let (in_len, other) = if horizontal {
        (src.width, src.height)
    } else {
        (src.height, src.width)
    };
    if in_len == out_len {
        return Raster {
            width: src.width,
            height: src.height,
            channels: src.channels,
            data: src.data.clone(),
        };
    }
    let (width, height) = if horizontal {
        (out_len, src.height)
    } else {
        (src.width, out_len)
    };
    let ch = src.channels;
    let coeffs = coefficients(in_len, out_len);
    let mut data = vec![0u8; width * height * ch];
    for line in 0..other {
        for (pos, (start, weights)) in coeffs.iter().enumerate() {
            for c in 0..ch {
                let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                for (k, w) in weights.iter().enumerate() {
                    let (x, y) = if horizontal {
                        (start + k, line)
                    } else {
                        (line, start + k)
                    };
                    acc += src.data[(y * src.width + x) * ch + c] as i64 * *w as i64;
                }
                let (x, y) = if horizontal { (pos, line) } else { (line, pos) };
                data[(y * width + x) * ch + c] = clip8(acc);
            }
        }
    }
    Raster {
        width,
        height,
        channels: ch,
        data,
    }
}

/// Pillow's bicubic `Image.resize`: horizontal pass, then vertical, 8-bit between passes;
/// premultiplied alpha is divided back out afterwards as Pillow's `RGBa -> RGBA` does.
fn resize_bicubic(src: &Raster, width: usize, height: usize) -> Raster {
    let mut out = resample_axis(&resample_axis(src, width, true), height, false);
    if out.channels == 4 {
        for pixel in out.data.chunks_exact_mut(4) {
            let alpha = pixel[3] as u32;
            if alpha != 0 && alpha != 255 {
                for c in &mut pixel[..3] {
                    *c = ((255 * *c as u32) / alpha).min(255) as u8;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_goes_to_even() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(2.6), 3);
    }

    #[test]
    fn bicubic_weights_sum_to_one_in_fixed_point() {
        for (_, weights) in coefficients(97, 32) {
            let total: i64 = weights.iter().map(|&w| w as i64).sum();
            assert!(
                (total - (1 << PRECISION_BITS)).abs() <= weights.len() as i64,
                "{total}"
            );
        }
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            50,
            30,
            image::Rgb([200, 100, 50]),
        ));
        let pre = Preprocessor {
            size: 16,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let pixels = pre.apply(&image);
        assert_eq!(pixels.len(), 3 * 16 * 16);
        for (c, expected) in [200.0f32, 100.0, 50.0].iter().enumerate() {
            for v in &pixels[c * 256..(c + 1) * 256] {
                assert!((v - expected / 255.0).abs() < 1e-6);
            }
        }
    }
}

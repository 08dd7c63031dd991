//! JPEG decoding with libjpeg-turbo's algorithms (through mozjpeg, built from source), so that
//! decoded pixels are bit-identical to what Pillow gives the reference CLIP pipelines. Other
//! decoders differ by a level here and there, which moves embeddings measurably.

use std::cell::Cell;
use std::sync::Once;

use image::{DynamicImage, RgbImage};

thread_local! {
    /// Set while libjpeg runs on this thread, so its error unwinds stay quiet.
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// libjpeg reports errors by unwinding; this hook keeps those expected unwinds off stderr and
/// leaves every other panic to the previous hook.
fn install_quiet_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// True for data that starts with a JPEG marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Decodes greyscale or YCbCr JPEG data to RGB. `None` for colour spaces libjpeg cannot turn
/// into RGB (CMYK, YCCK) and for data it rejects; the caller then uses the general decoder,
/// which also produces the error message.
pub fn decode_rgb(bytes: &[u8]) -> Option<DynamicImage> {
    install_quiet_hook();
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(|| -> std::io::Result<Option<RgbImage>> {
        let decompress = mozjpeg::Decompress::new_mem(bytes)?;
        if !matches!(
            decompress.color_space(),
            mozjpeg::ColorSpace::JCS_GRAYSCALE
                | mozjpeg::ColorSpace::JCS_YCbCr
                | mozjpeg::ColorSpace::JCS_RGB
        ) {
            return Ok(None);
        }
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(RgbImage::from_raw(width, height, pixels))
    });
    DECODING.with(|d| d.set(false));
    match result {
        Ok(Ok(Some(image))) => Some(DynamicImage::ImageRgb8(image)),
        _ => None,
    }
}

//! Preprocessing parity with open_clip's `image_transform` (Pillow + torchvision) for colour,
//! greyscale, RGBA and EXIF-rotated JPEG images at two resolutions.

mod common;

use lethe::clip::config::{CLIP_MEAN, CLIP_STD};
use lethe::clip::preprocess::{Preprocessor, decode};

use common::{assert_close, fixtures, read_tensors};

fn preprocessor(size: usize) -> Preprocessor {
    Preprocessor {
        size,
        mean: CLIP_MEAN,
        std: CLIP_STD,
    }
}

#[test]
fn lossless_images_match_pillow_exactly() {
    let reference = read_tensors(&fixtures().join("images/preprocess_reference.safetensors"));
    for name in ["a", "b", "gray", "rgba"] {
        for size in [32, 64] {
            let pixels = preprocessor(size)
                .load(&fixtures().join(format!("images/{name}.png")))
                .unwrap();
            assert_close(
                &format!("{name}_{size}"),
                &pixels,
                &reference[&format!("{name}_{size}")].1,
                1e-6,
            );
        }
    }
}

#[test]
fn jpegs_decode_like_pillow_and_exif_orientation_is_applied() {
    let reference = read_tensors(&fixtures().join("images/preprocess_reference.safetensors"));
    let image = decode(&fixtures().join("images/exif_rot.jpg")).unwrap();
    let (shape, pillow) = &reference["exif_rot_decoded"];
    assert_eq!(
        [image.height() as usize, image.width() as usize],
        [shape[0], shape[1]],
        "rotated size"
    );
    let ours: Vec<f32> = image
        .to_rgb8()
        .into_raw()
        .into_iter()
        .map(f32::from)
        .collect();
    assert_eq!(&ours, pillow, "decoded JPEG differs from Pillow's");
    for size in [32, 64] {
        let pixels = preprocessor(size)
            .load(&fixtures().join("images/exif_rot.jpg"))
            .unwrap();
        let want = &reference[&format!("exif_rot_{size}")].1;
        assert_close(&format!("exif_rot_{size}"), &pixels, want, 1e-6);
    }
}

#[test]
fn unreadable_images_name_the_file() {
    let err = preprocessor(32)
        .load(&fixtures().join("images/corrupt.png"))
        .unwrap_err();
    assert!(err.to_string().contains("corrupt.png"), "{err}");
    let err = preprocessor(32)
        .load(&fixtures().join("images/absent.png"))
        .unwrap_err();
    assert!(err.to_string().contains("absent.png"), "{err}");
}

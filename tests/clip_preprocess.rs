//! Image preprocessing against the reference processor: for every COCO-mini image (and a
//! PNG), assay's pixel tensor must match transformers' CLIPImageProcessor (Pillow decode
//! and bicubic resize) within 1e-3 — at CLIP's 224 and at the 336 of CLIP ViT-L/336
//! (E5-V's vision tower), and LLaVA-NeXT's any-resolution tiles with E5-V's processor
//! config against LlavaNextImageProcessor. The reference runs in the Python that
//! scripts/python-reference.sh sets up (ASSAY_PYTHON).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use assay::engine::preprocess::{ProcessorConfig, Rgb};
use assay::engine::ImageInput;

fn python() -> String {
    std::env::var("ASSAY_PYTHON")
        .expect("ASSAY_PYTHON is not set: eval \"$(scripts/python-reference.sh)\" first")
}

/// Per image, its tiles (one for CLIP), each (3, h, w) flattened.
fn reference_pixels(processor_dir: &Path, images: &[PathBuf]) -> Vec<Vec<Vec<f32>>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_pixels.py");
    let out = Command::new(python())
        .arg(script)
        .arg(processor_dir)
        .args(images)
        .output()
        .expect("runs the reference python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let mut rest = &out.stdout[..];
    let mut per_image = Vec::new();
    while !rest.is_empty() {
        let count = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        rest = &rest[4..];
        let mut tiles = Vec::new();
        for _ in 0..count {
            // Square tiles: 3 * s * s floats; s from the first tile's config is not
            // needed, the caller checks lengths.
            let len = tile_floats(processor_dir);
            tiles.push(floats(&rest[..len * 4]));
            rest = &rest[len * 4..];
        }
        per_image.push(tiles);
    }
    per_image
}

/// Floats in one tile for the processor in `dir` (its crop size).
fn tile_floats(dir: &Path) -> usize {
    let config: ProcessorConfig = serde_json::from_str(
        &std::fs::read_to_string(dir.join("preprocessor_config.json")).unwrap(),
    )
    .unwrap();
    let (h, w) = config.output_size();
    3 * h * w
}

fn max_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

fn images() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ["val2017", "train2017"]
        .iter()
        .flat_map(|split| {
            std::fs::read_dir(common::data_root().join("coco_mini").join(split))
                .unwrap()
                .map(|e| e.unwrap().path())
        })
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    paths.sort();
    paths
}

fn check(size: usize, images: &[PathBuf]) {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"image_processor_type": "CLIPImageProcessor", "size": {{"shortest_edge": {size}}},
            "crop_size": {{"height": {size}, "width": {size}}}, "resample": 3}}"#
    );
    std::fs::write(dir.path().join("preprocessor_config.json"), &config).unwrap();
    let processor: ProcessorConfig = serde_json::from_str(&config).unwrap();
    let want = reference_pixels(dir.path(), images);
    assert_eq!(want.len(), images.len());
    let mut worst = 0f32;
    for (path, want) in images.iter().zip(&want) {
        let got = processor
            .pixel_values(&ImageInput::read(path).unwrap())
            .unwrap();
        assert_eq!(want.len(), 1);
        let diff = max_difference(&got, &want[0]);
        assert!(
            diff <= 1e-3,
            "{}: max abs difference {diff}",
            path.display()
        );
        worst = worst.max(diff);
    }
    eprintln!(
        "{} images at {size}: max abs difference {worst}",
        images.len()
    );
}

#[test]
fn clip_pixels_match_the_reference_processor_on_every_coco_image() {
    let images = images();
    assert!(images.len() >= 150, "{} images", images.len());
    check(224, &images);
}

#[test]
fn png_input_and_the_336_processor_match_too() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = images()[0].clone();
    let rgb = Rgb::decode(&ImageInput::read(&jpeg).unwrap()).unwrap();
    let png = dir.path().join("coco.png");
    image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
        .unwrap()
        .save(&png)
        .unwrap();
    check(336, &[jpeg, png, images()[7].clone()]);
}

/// E5-V's processor (llava-v1.6 style: 336-pixel tiles on five grids).
const E5V_PROCESSOR: &str = r#"{
  "image_processor_type": "LlavaNextImageProcessor",
  "size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336},
  "resample": 3, "do_pad": true,
  "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
}"#;

#[test]
fn llava_next_tiles_match_the_reference_processor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("preprocessor_config.json"), E5V_PROCESSOR).unwrap();
    let processor: ProcessorConfig = serde_json::from_str(E5V_PROCESSOR).unwrap();
    // COCO photos (landscape, portrait, grayscale) all land on the 672×672 grid; strips
    // cut from one reach the 1008×336 and 336×1008 grids and pad the other way.
    let all = images();
    let mut picked: Vec<PathBuf> = all.iter().step_by(12).cloned().collect();
    let photo = Rgb::decode(&ImageInput::read(&all[3]).unwrap()).unwrap();
    for (name, (w, h)) in [
        ("wide.png", (600, 150)),
        ("tall.png", (130, 470)),
        ("small.png", (90, 61)),
    ] {
        let mut strip = image::RgbImage::new(w, h);
        for (x, y, px) in strip.enumerate_pixels_mut() {
            let at = (y as usize * photo.width + x as usize) * 3;
            *px = image::Rgb([photo.data[at], photo.data[at + 1], photo.data[at + 2]]);
        }
        let path = dir.path().join(name);
        strip.save(&path).unwrap();
        picked.push(path);
    }
    let want = reference_pixels(dir.path(), &picked);
    let mut grids = std::collections::BTreeSet::new();
    for (path, want) in picked.iter().zip(&want) {
        let got = processor
            .anyres_tiles(&ImageInput::read(path).unwrap())
            .unwrap();
        assert_eq!(got.tiles.len(), want.len(), "{}", path.display());
        grids.insert(want.len());
        for (i, (g, w)) in got.tiles.iter().zip(want).enumerate() {
            let diff = max_difference(g, w);
            assert!(
                diff <= 1e-3,
                "{} tile {i}: max abs difference {diff}",
                path.display()
            );
        }
    }
    eprintln!("{} images, tile counts {grids:?}", picked.len());
}

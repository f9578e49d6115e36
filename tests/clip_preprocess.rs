//! Image preprocessing against the reference processor: for every COCO-mini image (and a
//! PNG), assay's pixel tensor must match transformers' CLIPImageProcessor (Pillow decode
//! and bicubic resize) within 1e-3 — at CLIP's 224 and at the 336 of CLIP ViT-L/336
//! (E5-V's vision tower). The reference runs in the Python that
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

fn reference_pixels(processor_dir: &Path, images: &[PathBuf]) -> Vec<f32> {
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
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
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
    let per_image = 3 * size * size;
    assert_eq!(want.len(), per_image * images.len());
    let mut worst = 0f32;
    for (i, path) in images.iter().enumerate() {
        let got = processor
            .pixel_values(&ImageInput::read(path).unwrap())
            .unwrap();
        let diff = got
            .iter()
            .zip(&want[i * per_image..][..per_image])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
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

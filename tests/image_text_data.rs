//! Image-text retrieval data on the staged COCO subset (COCO captions layout) and a
//! hand-made Karpathy-split file pointing at the same images, with the recall wiring.

mod common;

use assay::data::image_text::{load_coco, load_karpathy};
use assay::metrics::image_text::recalls;

fn coco_mini() -> std::path::PathBuf {
    common::data_root().join("coco_mini")
}

#[test]
fn coco_mini_captions_layout() {
    let data = load_coco(&coco_mini(), "val2017").unwrap();
    assert_eq!((data.images.len(), data.captions.len()), (79, 395));
    let mut per_image = vec![0; data.images.len()];
    for c in &data.captions {
        per_image[c.image] += 1;
    }
    assert!(per_image.iter().all(|&n| n == 5), "{per_image:?}");
    assert_eq!(data.images[0].id, "397133");
    assert!(data.images[0].path.ends_with("val2017/000000397133.jpg"));
    assert_eq!(data.fingerprint.len(), 64);

    // Scores that put each caption's own image first: perfect recall both ways, so the
    // caption → image ground truth is wired the right way round.
    let truth = data.caption_images();
    let scores: Vec<Vec<f32>> = truth
        .iter()
        .map(|&own| {
            (0..data.images.len())
                .map(|i| if i == own { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let r = recalls(&scores, &truth, &[1, 5, 10]);
    assert!(
        r.text_to_image
            .iter()
            .chain(&r.image_to_text)
            .all(|&(_, v)| v == 1.0),
        "{r:?}"
    );
    // Every score equal: ties go to the lowest index, so only image 0's captions find it
    // at rank 1 (5 of 395), and at k=5 the first 5 images' captions hit (25 of 395).
    let flat = vec![vec![0.5f32; data.images.len()]; truth.len()];
    let r = recalls(&flat, &truth, &[1, 5]);
    assert_eq!(r.text_to_image, vec![(1, 5.0 / 395.0), (5, 25.0 / 395.0)]);
    // Image → text: ties rank captions in file order, and the file's first five captions
    // all describe image 205401, so it alone hits, at k=1 and at k=5.
    assert_eq!(r.image_to_text, vec![(1, 1.0 / 79.0), (5, 1.0 / 79.0)]);
}

#[test]
fn karpathy_split_layout() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/karpathy/dataset_coco_tiny.json");
    let data = load_karpathy(&file, &coco_mini(), "test").unwrap();
    let ids: Vec<&str> = data.images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["139", "11813"]);
    let captions: Vec<(&str, &str, usize)> = data
        .captions
        .iter()
        .map(|c| (c.id.as_str(), c.text.as_str(), c.image))
        .collect();
    assert_eq!(captions[2], ("30", "A bowl of food on a table.", 1));
    assert_eq!(data.captions.len(), 5);
    assert_eq!(data.caption_images(), [0, 0, 1, 1, 1]);

    // No such split; a missing image file is named.
    let err = load_karpathy(&file, &coco_mini(), "val")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no images in split `val`"), "{err}");
    let err = load_karpathy(&file, std::path::Path::new("/nonexistent"), "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/val2017/000000000139.jpg") && err.contains("missing"),
        "{err}"
    );
}

//! Image-text retrieval datasets in the two layouts users have: COCO's own caption files
//! (`annotations/captions_<split>.json` with images in `<split>/`, as `coco_mini` ships)
//! and the Karpathy-split file used for COCO 5k and Flickr30k 1k (`dataset_coco.json`,
//! `dataset_flickr30k.json`: one list of images, each with its split and sentences).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::data::lines::sha256_hex;
use crate::error::{Error, Result};

/// Images and their captions; every caption points at one image, every image has at least
/// one caption.
#[derive(Debug, Clone)]
pub struct ImageTextDataset {
    pub images: Vec<Image>,
    pub captions: Vec<Caption>,
    /// Where the data came from, for the run record.
    pub origin: String,
    /// sha256 of the annotation file.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub id: String,
    pub text: String,
    /// Index into `images`.
    pub image: usize,
}

impl ImageTextDataset {
    /// For each caption, the index of its image (the retrieval ground truth).
    pub fn caption_images(&self) -> Vec<usize> {
        self.captions.iter().map(|c| c.image).collect()
    }
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: u64,
    image_id: u64,
    caption: String,
}

/// COCO captions layout: `<root>/annotations/captions_<split>.json`, images under
/// `<root>/<split>/`. Images without captions are left out.
pub fn load_coco(root: &Path, split: &str) -> Result<ImageTextDataset> {
    let path = root
        .join("annotations")
        .join(format!("captions_{split}.json"));
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let file: CocoFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::record(&path, e.line(), "(json)", e.to_string()))?;
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut images = Vec::new();
    for image in &file.images {
        index.insert(image.id, images.len());
        images.push(Image {
            id: image.id.to_string(),
            path: root.join(split).join(&image.file_name),
        });
    }
    let mut captions = Vec::new();
    for a in &file.annotations {
        let image = *index.get(&a.image_id).ok_or_else(|| {
            Error::record(
                &path,
                0,
                "annotations[].image_id",
                format!(
                    "caption {} names image {}, which is not in `images`",
                    a.id, a.image_id
                ),
            )
        })?;
        captions.push(Caption {
            id: a.id.to_string(),
            text: a.caption.trim().to_string(),
            image,
        });
    }
    finish(images, captions, &path, &bytes)
}

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    #[serde(default)]
    filepath: Option<String>,
    filename: String,
    split: String,
    sentences: Vec<KarpathySentence>,
    #[serde(default)]
    cocoid: Option<u64>,
    #[serde(default)]
    imgid: Option<u64>,
}

#[derive(Deserialize)]
struct KarpathySentence {
    raw: String,
    #[serde(default)]
    sentid: Option<u64>,
}

/// Karpathy-split layout: images of `split` (`test` for COCO 5k and Flickr30k 1k) from
/// `file`, image paths `<images_root>/<filepath>/<filename>` (`filepath` is absent for
/// Flickr30k).
pub fn load_karpathy(file: &Path, images_root: &Path, split: &str) -> Result<ImageTextDataset> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
    let parsed: KarpathyFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::record(file, e.line(), "(json)", e.to_string()))?;
    let mut images = Vec::new();
    let mut captions = Vec::new();
    for (n, entry) in parsed.images.iter().enumerate() {
        if entry.split != split {
            continue;
        }
        let id = entry
            .cocoid
            .or(entry.imgid)
            .map_or_else(|| n.to_string(), |i| i.to_string());
        let dir = entry
            .filepath
            .as_deref()
            .map_or(images_root.to_path_buf(), |p| images_root.join(p));
        for (k, s) in entry.sentences.iter().enumerate() {
            captions.push(Caption {
                id: s
                    .sentid
                    .map_or_else(|| format!("{id}-{k}"), |i| i.to_string()),
                text: s.raw.trim().to_string(),
                image: images.len(),
            });
        }
        images.push(Image {
            id,
            path: dir.join(&entry.filename),
        });
    }
    if images.is_empty() {
        return Err(Error::input(file, format!("no images in split `{split}`")));
    }
    finish(images, captions, file, &bytes)
}

/// Drops images nobody describes (CLIP_benchmark's recall needs a correct caption for
/// every image) and checks that every image file exists.
fn finish(
    images: Vec<Image>,
    captions: Vec<Caption>,
    path: &Path,
    bytes: &[u8],
) -> Result<ImageTextDataset> {
    let mut described = vec![false; images.len()];
    for c in &captions {
        described[c.image] = true;
    }
    let mut new_index = vec![usize::MAX; images.len()];
    let mut kept = Vec::new();
    for (i, image) in images.into_iter().enumerate() {
        if described[i] {
            if !image.path.is_file() {
                return Err(Error::input(
                    &image.path,
                    format!("image {} named in {} is missing", image.id, path.display()),
                ));
            }
            new_index[i] = kept.len();
            kept.push(image);
        }
    }
    if kept.is_empty() {
        return Err(Error::input(path, "no captioned images"));
    }
    let captions = captions
        .into_iter()
        .map(|c| Caption {
            image: new_index[c.image],
            ..c
        })
        .collect();
    Ok(ImageTextDataset {
        images: kept,
        captions,
        origin: path.display().to_string(),
        fingerprint: sha256_hex(bytes),
    })
}

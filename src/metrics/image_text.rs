//! Image-text retrieval recall as CLIP_benchmark defines it: for each query, a hit when
//! *any* correct item is among the top k (so an image with five captions counts once).
//! Text→image ranks images for every caption; image→text ranks captions for every image.
//! Ties are broken by the lower index (the order items were given), so results do not
//! depend on a sort's stability.

/// Recall@k in both directions from a caption×image similarity matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalls {
    /// (k, text→image recall@k): share of captions whose image is in the top k images.
    pub text_to_image: Vec<(usize, f64)>,
    /// (k, image→text recall@k): share of images with one of their captions in the top k.
    pub image_to_text: Vec<(usize, f64)>,
}

/// `scores[t][i]`: similarity of caption `t` and image `i`; `caption_image[t]`: the image
/// caption `t` describes. Every image should have at least one caption.
pub fn recalls(scores: &[Vec<f32>], caption_image: &[usize], ks: &[usize]) -> Recalls {
    let n_images = scores.first().map_or(0, Vec::len);
    let by_caption = caption_ranks(caption_image, |t| scores[t].clone());
    let by_image = image_ranks(n_images, caption_image, |i| {
        scores.iter().map(|row| row[i]).collect()
    });
    Recalls {
        text_to_image: ks.iter().map(|&k| (k, recall_at(&by_caption, k))).collect(),
        image_to_text: ks.iter().map(|&k| (k, recall_at(&by_image, k))).collect(),
    }
}

/// Text→image: for each caption, the rank of its image among all images, given the
/// caption's scores against every image (`row(t)`; rows are computed one at a time, so a
/// 25k×5k matrix never has to be held).
pub fn caption_ranks(caption_image: &[usize], row: impl Fn(usize) -> Vec<f32>) -> Vec<usize> {
    caption_image
        .iter()
        .enumerate()
        .map(|(t, &image)| rank_of(&row(t), image))
        .collect()
}

/// Image→text: for each image, the best rank among all captions of any of its own
/// captions, given the image's scores against every caption (`column(i)`); `usize::MAX`
/// (never a hit) for an image nobody describes.
pub fn image_ranks(
    n_images: usize,
    caption_image: &[usize],
    column: impl Fn(usize) -> Vec<f32>,
) -> Vec<usize> {
    (0..n_images)
        .map(|image| {
            let column = column(image);
            caption_image
                .iter()
                .enumerate()
                .filter(|(_, &owner)| owner == image)
                .map(|(t, _)| rank_of(&column, t))
                .min()
                .unwrap_or(usize::MAX)
        })
        .collect()
}

/// Share of queries whose best correct item ranks within the top `k` (0-based ranks).
pub fn recall_at(ranks: &[usize], k: usize) -> f64 {
    let hits = ranks.iter().filter(|&&r| r < k).count();
    hits as f64 / ranks.len().max(1) as f64
}

/// 0-based rank of item `target` when `row` is sorted by score descending, ties by index.
pub fn rank_of(row: &[f32], target: usize) -> usize {
    let s = row[target];
    row.iter()
        .enumerate()
        .filter(|&(j, &v)| v > s || (v == s && j < target))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: 3 images, 5 captions (image 0 has three, images 1 and 2 one each),
    /// with ties.
    #[test]
    fn hand_computed_case_with_ties_and_multi_caption_images() {
        let scores = vec![
            vec![0.9, 0.1, 0.2], // c0 → image 0: rank 0
            vec![0.3, 0.3, 0.1], // c1 → image 0: tie with image 1, lower index wins: rank 0
            vec![0.2, 0.5, 0.4], // c2 → image 0: rank 2
            vec![0.5, 0.5, 0.6], // c3 → image 1: image 2 higher, tie with 0 (lower index): rank 2
            vec![0.1, 0.2, 0.3], // c4 → image 2: rank 0
        ];
        let owner = [0, 0, 0, 1, 2];
        let r = recalls(&scores, &owner, &[1, 2, 3]);
        // Captions ranked 0, 0, 2, 2, 0.
        assert_eq!(r.text_to_image, vec![(1, 0.6), (2, 0.6), (3, 1.0)]);
        // Image 0's column: 0.9 0.3 0.2 0.5 0.1 → c0 is rank 0: hit at every k.
        // Image 1's column: 0.1 0.3 0.5 0.5 0.2 → c3 ties c2 (lower index first): rank 1.
        // Image 2's column: 0.2 0.1 0.4 0.6 0.3 → c4 is rank 2.
        let third = 1.0 / 3.0;
        assert_eq!(
            r.image_to_text,
            vec![(1, third), (2, 2.0 * third), (3, 1.0)]
        );
    }
}

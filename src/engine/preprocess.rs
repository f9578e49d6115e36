//! Image preprocessing exactly as Hugging Face's (PIL-based) image processors do it, so a
//! local model sees the same pixel tensor as the reference: JPEG decoded by libjpeg-turbo's
//! code (the mozjpeg fork, as Pillow bundles libjpeg-turbo), Pillow's fixed-point bicubic
//! resampling, centre crop, rescale and normalise.

use serde::Deserialize;

use crate::engine::image::ImageInput;
use crate::error::{Error, Result};

/// An 8-bit RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// The most pixels an image may have, decoded or resized: Pillow's decompression-bomb
/// threshold (`Image.MAX_IMAGE_PIXELS`). A JPEG header can claim 65,500 × 65,500.
pub const MAX_PIXELS: usize = 89_478_485;

impl Rgb {
    /// Decodes a JPEG (islow IDCT, fancy upsampling: Pillow's defaults) or PNG to RGB.
    pub fn decode(image: &ImageInput) -> Result<Rgb> {
        let bad = |what: String| Error::input(&image.path, format!("cannot decode image: {what}"));
        match image.mime {
            // libjpeg's errors unwind as panics without running the panic hook (the
            // mozjpeg crate's documented contract): `contain` turns them into errors.
            "image/jpeg" => match crate::engine::contain::contain(|| decode_jpeg(&image.bytes)) {
                Ok(Ok(rgb)) => Ok(rgb),
                Ok(Err(e)) => Err(bad(e.to_string())),
                Err(libjpeg) => Err(bad(libjpeg)),
            },
            _ => {
                let mut reader = image::ImageReader::with_format(
                    std::io::Cursor::new(&image.bytes),
                    image::ImageFormat::Png,
                );
                let mut limits = image::Limits::default();
                limits.max_alloc = Some(MAX_PIXELS as u64 * 4);
                reader.limits(limits);
                let decoded = reader.decode().map_err(|e| bad(e.to_string()))?;
                if decoded.width() as usize * decoded.height() as usize > MAX_PIXELS {
                    return Err(bad(too_many_pixels(
                        decoded.width() as usize,
                        decoded.height() as usize,
                    )));
                }
                let decoded = decoded.to_rgb8();
                Ok(Rgb {
                    width: decoded.width() as usize,
                    height: decoded.height() as usize,
                    data: decoded.into_raw(),
                })
            }
        }
    }

    /// Resizes with Pillow's bicubic filter (`Image.resize(size, Image.BICUBIC)`):
    /// separable, horizontal pass first, 22-bit fixed-point weights, each pass rounded
    /// and clamped to 8 bits.
    pub fn resize_bicubic(&self, width: usize, height: usize) -> Rgb {
        let mut image = self.clone();
        let vertical = Coefficients::new(self.height, height);
        if width != self.width {
            let horizontal = Coefficients::new(self.width, width);
            // Only the rows the vertical pass reads.
            let first = vertical.bounds[0].0;
            let last = vertical.bounds.last().map_or(0, |(start, len)| start + len);
            image = image.pass_horizontal(&horizontal, first, last);
            let vertical = vertical.shifted(first);
            if height != self.height {
                image = image.pass_vertical(&vertical);
            }
            return image;
        }
        if height != self.height {
            image = image.pass_vertical(&vertical);
        }
        image
    }

    fn pass_horizontal(&self, c: &Coefficients, first_row: usize, last_row: usize) -> Rgb {
        let out_width = c.bounds.len();
        let rows = last_row - first_row;
        let mut data = vec![0u8; out_width * rows * 3];
        for y in 0..rows {
            let src = &self.data[(y + first_row) * self.width * 3..][..self.width * 3];
            for (x, &(start, len)) in c.bounds.iter().enumerate() {
                let k = &c.weights[x * c.size..][..len];
                for ch in 0..3 {
                    let mut sum = HALF;
                    for (i, w) in k.iter().enumerate() {
                        sum += i32::from(src[(start + i) * 3 + ch]) * w;
                    }
                    data[(y * out_width + x) * 3 + ch] = clip8(sum);
                }
            }
        }
        Rgb {
            width: out_width,
            height: rows,
            data,
        }
    }

    fn pass_vertical(&self, c: &Coefficients) -> Rgb {
        let out_height = c.bounds.len();
        let row = self.width * 3;
        let mut data = vec![0u8; row * out_height];
        for (y, &(start, len)) in c.bounds.iter().enumerate() {
            let k = &c.weights[y * c.size..][..len];
            for x in 0..row {
                let mut sum = HALF;
                for (i, w) in k.iter().enumerate() {
                    sum += i32::from(self.data[(start + i) * row + x]) * w;
                }
                data[y * row + x] = clip8(sum);
            }
        }
        Rgb {
            width: self.width,
            height: out_height,
            data,
        }
    }

    /// The centre `width` × `height` window (top-left at ((h − height) / 2, (w − width) / 2),
    /// rounded down), padding with black where the image is smaller, as transformers does.
    pub fn center_crop(&self, width: usize, height: usize) -> Rgb {
        let top = self.height as isize - height as isize;
        let left = self.width as isize - width as isize;
        let (top, left) = (top.div_euclid(2), left.div_euclid(2));
        let mut data = vec![0u8; width * height * 3];
        for y in 0..height {
            let sy = y as isize + top;
            if sy < 0 || sy >= self.height as isize {
                continue;
            }
            for x in 0..width {
                let sx = x as isize + left;
                if sx < 0 || sx >= self.width as isize {
                    continue;
                }
                let s = (sy as usize * self.width + sx as usize) * 3;
                data[(y * width + x) * 3..][..3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        Rgb {
            width,
            height,
            data,
        }
    }
}

impl Rgb {
    /// The image centred on a black `width` × `height` canvas (extra pixel after, as
    /// `divmod` splits an odd padding).
    fn pad_to(&self, width: usize, height: usize) -> Rgb {
        let (top, left) = ((height - self.height) / 2, (width - self.width) / 2);
        let mut data = vec![0u8; width * height * 3];
        for y in 0..self.height {
            let row = &self.data[y * self.width * 3..][..self.width * 3];
            data[((y + top) * width + left) * 3..][..self.width * 3].copy_from_slice(row);
        }
        Rgb {
            width,
            height,
            data,
        }
    }

    fn window(&self, left: usize, top: usize, width: usize, height: usize) -> Rgb {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in top..top + height {
            data.extend_from_slice(&self.data[(y * self.width + left) * 3..][..width * 3]);
        }
        Rgb {
            width,
            height,
            data,
        }
    }
}

/// A JPEG's pixels; the header's size is checked before anything is allocated.
fn decode_jpeg(bytes: &[u8]) -> std::io::Result<Rgb> {
    let header = mozjpeg::Decompress::new_mem(bytes)?;
    let (width, height) = (header.width(), header.height());
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(std::io::Error::other(too_many_pixels(width, height)));
    }
    let mut started = header.rgb()?;
    let pixels: Vec<[u8; 3]> = started.read_scanlines()?;
    started.finish()?;
    if pixels.len() != width * height {
        return Err(std::io::Error::other("fewer rows than the header says"));
    }
    Ok(Rgb {
        width,
        height,
        data: pixels.into_iter().flatten().collect(),
    })
}

fn too_many_pixels(width: usize, height: usize) -> String {
    format!("{width} × {height} is more than {MAX_PIXELS} pixels")
}

/// The grid canvas (height, width) that keeps most of the image's pixels, then wastes
/// the fewest (transformers' `select_best_resolution`).
pub fn best_resolution((height, width): (usize, usize), grid: &[[usize; 2]]) -> (usize, usize) {
    let mut best = (grid[0][0], grid[0][1]);
    let (mut most_kept, mut least_wasted) = (0usize, usize::MAX);
    for &[h, w] in grid {
        let scale = (w as f64 / width as f64).min(h as f64 / height as f64);
        let (dw, dh) = (
            (width as f64 * scale) as usize,
            (height as f64 * scale) as usize,
        );
        let kept = (dw * dh).min(width * height);
        let wasted = w * h - kept;
        if kept > most_kept || (kept == most_kept && wasted < least_wasted) {
            (most_kept, least_wasted) = (kept, wasted);
            best = (h, w);
        }
    }
    best
}

/// The size (height, width) the image takes on the canvas, aspect kept
/// (transformers' `get_patch_output_size`).
pub fn fitted_size(
    (height, width): (usize, usize),
    (target_h, target_w): (usize, usize),
) -> (usize, usize) {
    let scale_w = target_w as f64 / width as f64;
    let scale_h = target_h as f64 / height as f64;
    if scale_w < scale_h {
        (
            ((height as f64 * scale_w).ceil() as usize).min(target_h),
            target_w,
        )
    } else {
        (
            target_h,
            ((width as f64 * scale_h).ceil() as usize).min(target_w),
        )
    }
}

const PRECISION_BITS: u32 = 22;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's bicubic kernel (a = −0.5).
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

/// Per output pixel: the first input pixel and how many it reads, and the fixed-point
/// weights (`size` slots each).
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
    size: usize,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Coefficients {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = 2.0 * filter_scale;
        let size = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * size];
        let mut k = vec![0f64; size];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates towards zero.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let len = max - min;
            let mut total = 0.0;
            for (x, slot) in k.iter_mut().enumerate().take(len) {
                let w = bicubic((x as f64 + min as f64 - center + 0.5) / filter_scale);
                *slot = w;
                total += w;
            }
            for (x, w) in k.iter().enumerate().take(len) {
                let w = if total != 0.0 { w / total } else { *w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[xx * size + x] = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((min, len));
        }
        Coefficients {
            bounds,
            weights,
            size,
        }
    }

    /// The same windows, counted from row `first` (the horizontal pass kept only the
    /// rows from there on).
    fn shifted(mut self, first: usize) -> Coefficients {
        for b in &mut self.bounds {
            b.0 -= first;
        }
        self
    }
}

/// An image cut for LLaVA-NeXT: each tile channel-first (3, s, s), the squeezed whole
/// image first; and the image's (height, width), which the model needs to crop padding.
#[derive(Debug, Clone)]
pub struct Tiles {
    pub tiles: Vec<Vec<f32>>,
    pub size: (usize, usize),
}

/// A CLIP-style processor config (`preprocessor_config.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct ProcessorConfig {
    #[serde(default = "default_size")]
    pub size: SizeSpec,
    #[serde(default = "default_size")]
    pub crop_size: SizeSpec,
    #[serde(default = "yes")]
    pub do_resize: bool,
    #[serde(default = "yes")]
    pub do_center_crop: bool,
    #[serde(default = "yes")]
    pub do_rescale: bool,
    #[serde(default = "yes")]
    pub do_normalize: bool,
    #[serde(default = "default_rescale")]
    pub rescale_factor: f64,
    #[serde(default = "clip_mean")]
    pub image_mean: Vec<f32>,
    #[serde(default = "clip_std")]
    pub image_std: Vec<f32>,
    /// PIL resample code; 3 is bicubic, the only one implemented.
    #[serde(default = "bicubic_code")]
    pub resample: u32,
    /// LLaVA-NeXT's any-resolution grid: the (height, width) canvases an image may be
    /// tiled on.
    #[serde(default)]
    pub image_grid_pinpoints: Option<Vec<[usize; 2]>>,
}

/// `{"shortest_edge": 224}`, `{"height": 224, "width": 224}` or a bare number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    Square(usize),
    Shortest { shortest_edge: usize },
    Exact { height: usize, width: usize },
}

fn default_size() -> SizeSpec {
    SizeSpec::Square(224)
}
fn yes() -> bool {
    true
}
fn default_rescale() -> f64 {
    1.0 / 255.0
}
fn clip_mean() -> Vec<f32> {
    vec![0.481_454_66, 0.457_827_5, 0.408_210_73]
}
fn clip_std() -> Vec<f32> {
    vec![0.268_629_54, 0.261_302_6, 0.275_777_1]
}
fn bicubic_code() -> u32 {
    3
}

impl ProcessorConfig {
    /// The output side lengths (height, width) after cropping (or resizing, without crop).
    pub fn output_size(&self) -> (usize, usize) {
        let spec = if self.do_center_crop {
            &self.crop_size
        } else {
            &self.size
        };
        match *spec {
            SizeSpec::Square(n) | SizeSpec::Shortest { shortest_edge: n } => (n, n),
            SizeSpec::Exact { height, width } => (height, width),
        }
    }

    /// The size transformers resizes to: the short side to `shortest_edge`, the long
    /// side scaled and truncated (`int(edge * long / short)`).
    fn resized(&self, width: usize, height: usize) -> (usize, usize) {
        match self.size {
            SizeSpec::Exact { height, width } => (width, height),
            SizeSpec::Square(edge)
            | SizeSpec::Shortest {
                shortest_edge: edge,
            } => {
                let (short, long) = (width.min(height), width.max(height));
                let long_out = (edge as f64 * long as f64 / short as f64) as usize;
                if width <= height {
                    (edge, long_out)
                } else {
                    (long_out, edge)
                }
            }
        }
    }

    /// Channel-first (3, h, w) floats, as the processor's `pixel_values` for one image.
    pub fn pixel_values(&self, image: &ImageInput) -> Result<Vec<f32>> {
        if self.resample != 3 {
            return Err(Error::input(
                &image.path,
                format!(
                    "the model's processor resamples with PIL filter {} (only bicubic, 3, is implemented)",
                    self.resample
                ),
            ));
        }
        let mut rgb = Rgb::decode(image)?;
        if self.do_resize {
            let (w, h) = self.resized(rgb.width, rgb.height);
            // A 1 × 65,000 image would become 224 × 14.5 million.
            if w.saturating_mul(h) > MAX_PIXELS {
                return Err(Error::input(
                    &image.path,
                    format!(
                        "resizing {} × {} to {w} × {h}: {}",
                        rgb.width,
                        rgb.height,
                        too_many_pixels(w, h)
                    ),
                ));
            }
            rgb = rgb.resize_bicubic(w, h);
        }
        if self.do_center_crop {
            let (h, w) = self.output_size();
            rgb = rgb.center_crop(w, h);
        }
        Ok(self.normalize(&rgb))
    }

    /// LLaVA-NeXT any-resolution tiling, as LlavaNextImageProcessor does it: the image
    /// squeezed to one tile, then the image fitted (aspect kept) and centred on the best
    /// grid canvas, padded black and cut into tiles row by row; each tile is then
    /// processed as a plain image.
    pub fn anyres_tiles(&self, image: &ImageInput) -> Result<Tiles> {
        let grid = self.image_grid_pinpoints.as_deref().unwrap_or_default();
        if grid.is_empty() {
            return Err(Error::input(
                &image.path,
                "the processor has no image_grid_pinpoints",
            ));
        }
        let rgb = Rgb::decode(image)?;
        let size = (rgb.height, rgb.width);
        let tile = self.output_size().0;
        let squeeze = match self.size {
            SizeSpec::Exact { height, width } => height.min(width),
            SizeSpec::Square(n) | SizeSpec::Shortest { shortest_edge: n } => n,
        };
        let mut tiles = vec![self.plain(rgb.resize_bicubic(squeeze, squeeze))];
        let (canvas_h, canvas_w) = best_resolution(size, grid);
        let (h, w) = fitted_size(size, (canvas_h, canvas_w));
        let fitted = rgb.resize_bicubic(w, h);
        let canvas = fitted.pad_to(canvas_w, canvas_h);
        for top in (0..canvas_h).step_by(tile) {
            for left in (0..canvas_w).step_by(tile) {
                tiles.push(self.plain(canvas.window(left, top, tile, tile)));
            }
        }
        Ok(Tiles { tiles, size })
    }

    /// The plain CLIP steps on an already decoded tile.
    fn plain(&self, mut rgb: Rgb) -> Vec<f32> {
        if self.do_resize {
            let (w, h) = self.resized(rgb.width, rgb.height);
            if (w, h) != (rgb.width, rgb.height) {
                rgb = rgb.resize_bicubic(w, h);
            }
        }
        if self.do_center_crop {
            let (h, w) = self.output_size();
            rgb = rgb.center_crop(w, h);
        }
        self.normalize(&rgb)
    }

    fn normalize(&self, rgb: &Rgb) -> Vec<f32> {
        let plane = rgb.width * rgb.height;
        let mut out = vec![0f32; plane * 3];
        for (i, px) in rgb.data.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                // transformers rescales in f64, then works in f32.
                let mut v = if self.do_rescale {
                    (f64::from(px[ch]) * self.rescale_factor) as f32
                } else {
                    f32::from(px[ch])
                };
                if self.do_normalize {
                    v = (v - self.image_mean[ch]) / self.image_std[ch];
                }
                out[ch * plane + i] = v;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (n_in, n_out) in [(640, 224), (100, 300), (7, 7), (480, 336)] {
            let c = Coefficients::new(n_in, n_out);
            for (x, &(_, len)) in c.bounds.iter().enumerate() {
                let sum: i32 = c.weights[x * c.size..][..len].iter().sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= len as i32, "{sum}");
            }
        }
    }

    #[test]
    fn resizing_a_flat_image_keeps_it_flat_and_crop_centres() {
        let flat = Rgb {
            width: 40,
            height: 30,
            data: vec![77; 40 * 30 * 3],
        };
        let small = flat.resize_bicubic(13, 11);
        assert_eq!((small.width, small.height), (13, 11));
        assert!(small.data.iter().all(|&v| v == 77));
        let mut ramp = Rgb {
            width: 5,
            height: 3,
            data: vec![0; 45],
        };
        for (i, px) in ramp.data.chunks_exact_mut(3).enumerate() {
            px.fill(i as u8);
        }
        // 5 wide, crop 3: left = 1; 3 high, crop 1: top = 1.
        let crop = ramp.center_crop(3, 1);
        assert_eq!(crop.data, vec![6, 6, 6, 7, 7, 7, 8, 8, 8]);
    }
}

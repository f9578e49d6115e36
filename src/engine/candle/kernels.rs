//! Fused CPU kernels for the hot element-wise steps of encoder models. candle computes
//! GELU's erf and softmax's exp with scalar libm calls (a quarter of BERT's CPU time
//! when measured); these versions are branch-free so the compiler vectorises them.
//! LayerNorm sums its rows in fixed lanes for the same reason. Other devices and dtypes
//! fall back to candle's own ops.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

/// e^x for x in [-87, 88]: range reduction to r in [-ln2/2, ln2/2], a degree-7 Taylor
/// polynomial (relative error < 3e-8 there), and the exponent set through the bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n built in the float domain: adding 2^23 + 127 leaves n + 127 in the low
    // mantissa bits, which the shift moves into the exponent. An `as i32` cast here
    // would saturate lane by lane and keep the loops from vectorising.
    let scale = f32::from_bits((n + (8_388_608.0 + 127.0)).to_bits() << 23);
    p * scale
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let mut p = 1.061_405_4f32;
    p = p.mul_add(t, -1.453_152_1);
    p = p.mul_add(t, 1.421_413_8);
    p = p.mul_add(t, -0.284_496_74);
    p = p.mul_add(t, 0.254_829_6);
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form of one value.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU with the exact (erf) form, as BERT's `gelu` activation.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        xs.apply_op1_no_bwd(&GeluErf)
    } else {
        xs.gelu_erf()
    }
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "assay-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let out: Vec<f32> = src.iter().map(|&x| gelu(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// LayerNorm over the last dimension of CPU f32 rows: mean, then the mean of squared
/// deviations (two passes), each summed in 8 fixed lanes so the loop vectorises and the
/// floats are the same on every CPU.
pub struct RowNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
}

fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += f(c[j]);
        }
    }
    for (j, &x) in rest.iter().enumerate() {
        acc[j] += f(x);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

impl CustomOp1 for RowNorm {
    fn name(&self) -> &'static str {
        "assay-layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let n = self.weight.len();
        if layout.shape().dims().last() != Some(&n) {
            candle_core::bail!(
                "{}: rows of {:?} are not {n} long",
                self.name(),
                layout.shape()
            );
        }
        let mut out = vec![0f32; src.len()];
        for (x, y) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mean = lane_sum(x, |v| v) / n as f32;
            let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(&self.weight).zip(&self.bias) {
                *y = (x - mean) * inv * w + b;
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn exp_and_erf_are_accurate() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            assert!(rel < 1e-6, "exp({x}): rel error {rel}");
            x += 0.0137;
        }
        for &(x, want) in &[
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-1.5, -0.966_105_146_475_310_7),
            (3.0, 0.999_977_909_503_001_4),
        ] {
            assert!((erf(x) as f64 - want).abs() < 3e-7, "erf({x})");
        }
    }

    #[test]
    fn exp_scale_is_a_power_of_two() {
        for n in -125..=127 {
            let bits = (n as f32 + (8_388_608.0 + 127.0)).to_bits() << 23;
            assert_eq!(f32::from_bits(bits), 2f32.powi(n), "2^{n}");
        }
    }

    #[test]
    fn gelu_matches_candle() {
        let dev = Device::Cpu;
        let xs = Tensor::arange(-400f32, 400f32, &dev)
            .unwrap()
            .affine(0.01, 0.0)
            .unwrap();
        let ours: Vec<f32> = gelu_erf(&xs).unwrap().to_vec1().unwrap();
        let theirs: Vec<f32> = xs.gelu_erf().unwrap().to_vec1().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn row_norm_matches_candle() {
        let dev = Device::Cpu;
        // 37 columns: four full lanes of 8 and a remainder; rows offset from zero so the
        // mean matters.
        let xs = (Tensor::randn(0f32, 2.0, (3, 5, 37), &dev).unwrap() + 4.0).unwrap();
        let weight = Tensor::randn(1f32, 0.3, 37, &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.3, 37, &dev).unwrap();
        let op = RowNorm {
            weight: weight.to_vec1().unwrap(),
            bias: bias.to_vec1().unwrap(),
            eps: 1e-12,
        };
        let ours: Vec<f32> = xs
            .apply_op1_no_bwd(&op)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let reference = candle_nn::LayerNorm::new(weight, bias, 1e-12);
        let theirs: Vec<f32> = candle_core::Module::forward(&reference, &xs)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(ours.len(), 3 * 5 * 37);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // A row of the wrong length is an error, not a panic.
        let short = Tensor::zeros((2, 36), DType::F32, &dev).unwrap();
        assert!(short.apply_op1_no_bwd(&op).is_err());
    }
}

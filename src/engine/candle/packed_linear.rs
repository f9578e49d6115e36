//! A linear layer whose weight is packed once, at load time, into the layout an f32 GEMM
//! kernel reads: panels of 16 output columns, each stored k-major. candle's matmul (the
//! `gemm` crate) packs the weight again on every call and picks its blocking from the
//! CPU's cache sizes; this kernel packs nothing per call and its arithmetic is fixed.
//!
//! Every output element is one fused multiply-add chain over k in order, from the bias:
//! the vector width only decides how many columns advance together, and the k-blocking
//! continues the chain through the output. The result is therefore the same on every
//! x86-64 CPU with FMA, and the portable form (`f32::mul_add`) computes the same floats.
//!
//! The bias starts the chains inside the kernel, and what follows the product (BERT's
//! GELU, or the residual sum before a LayerNorm) runs as an epilogue on each finished
//! group of rows × block of columns while it is in cache, instead of as another pass over
//! the whole output: the same operations on the same values, so the same floats.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::Linear;

use crate::engine::candle::kernels::{contiguous_f32, gelu, gelu_erf};

/// Output columns per packed panel (two AVX2 registers, or one AVX-512 register).
const NR: usize = 16;
/// Panels per block: 8 panels of up to 512 k (256 KB) stay in L2 while every row group
/// passes them, so a product reads its weights from memory once, not once per group of
/// rows.
const NB: usize = 8;

/// A linear layer on CPU f32 weights packed for the kernel, or candle's layer for other
/// devices and dtypes (the weights are held once either way).
pub enum PackedLinear {
    Packed(Packed),
    Candle(Linear),
}

pub struct Packed {
    /// `panels × k × NR` floats, zero beyond the last real column.
    packed: Vec<f32>,
    /// `panels × NR` floats, zero beyond the last real column.
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl PackedLinear {
    /// `weight`: (outputs, inputs); `bias`: (outputs).
    pub fn new(weight: Tensor, bias: Tensor) -> Result<PackedLinear> {
        if !weight.device().is_cpu() || weight.dtype() != DType::F32 {
            return Ok(PackedLinear::Candle(Linear::new(weight, Some(bias))));
        }
        let (outputs, inputs) = weight.dims2()?;
        if inputs == 0 || outputs == 0 {
            // The kernel writes its output through its k loop: it needs some k.
            candle_core::bail!("linear layer of {outputs} outputs × {inputs} inputs is empty");
        }
        Ok(PackedLinear::Packed(Packed::new(
            &weight.flatten_all()?.to_vec1::<f32>()?,
            bias.to_vec1::<f32>()?,
            inputs,
            outputs,
        )))
    }

    /// GELU(x·Wᵀ + b), exact (erf) form: BERT's intermediate layer.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            PackedLinear::Packed(p) if is_cpu_f32(x) => x.contiguous()?.apply_op1_no_bwd(&Op {
                layer: p,
                gelu: true,
            }),
            _ => gelu_erf(&self.forward(x)?),
        }
    }

    /// (x·Wᵀ + b) + residual, summed in that order: the input of BERT's LayerNorms.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self {
            PackedLinear::Packed(p) if is_cpu_f32(x) && is_cpu_f32(residual) => x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &AddOp { layer: p }),
            _ => self.forward(x)? + residual,
        }
    }
}

fn is_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

impl Module for PackedLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            PackedLinear::Packed(p) if is_cpu_f32(x) => x.contiguous()?.apply_op1_no_bwd(&Op {
                layer: p,
                gelu: false,
            }),
            PackedLinear::Packed(_) => candle_core::bail!(
                "packed linear layer: weights are CPU f32, input is {:?} on {:?}",
                x.dtype(),
                x.device()
            ),
            PackedLinear::Candle(l) => l.forward(x),
        }
    }
}

/// The layer as a candle op, with or without GELU after it.
struct Op<'a> {
    layer: &'a Packed,
    gelu: bool,
}

/// The layer as a candle op whose output is summed with a residual of the same shape.
struct AddOp<'a> {
    layer: &'a Packed,
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "assay-packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(storage, layout, self.name())?;
        let epilogue = if self.gelu {
            Epilogue::Gelu
        } else {
            Epilogue::None
        };
        self.layer.run(self.name(), a, layout.shape(), epilogue)
    }
}

impl CustomOp2 for AddOp<'_> {
    fn name(&self) -> &'static str {
        "assay-packed-linear-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(s1, l1, self.name())?;
        let residual = contiguous_f32(s2, l2, self.name())?;
        self.layer
            .run(self.name(), a, l1.shape(), Epilogue::Add(residual))
    }
}

impl Packed {
    /// `weights`: (outputs, inputs) row-major; `bias`: (outputs).
    fn new(weights: &[f32], mut bias: Vec<f32>, inputs: usize, outputs: usize) -> Packed {
        bias.resize(outputs.div_ceil(NR) * NR, 0.0);
        Packed {
            packed: pack(weights, inputs),
            bias,
            inputs,
            outputs,
        }
    }

    fn run(
        &self,
        op: &str,
        a: &[f32],
        shape: &Shape,
        epilogue: Epilogue,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = shape.dims();
        if dims.last() != Some(&self.inputs) {
            candle_core::bail!("{op}: input {dims:?} does not end in {}", self.inputs);
        }
        let rows = a.len() / self.inputs;
        if let Epilogue::Add(residual) = epilogue {
            if residual.len() != rows * self.outputs {
                candle_core::bail!(
                    "{op}: residual of {} values does not match {rows} rows of {}",
                    residual.len(),
                    self.outputs
                );
            }
        }
        let c = gemm(a, rows, self, epilogue);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("checked above") = self.outputs;
        Ok((CpuStorage::F32(c), Shape::from(out_dims)))
    }
}

/// What is applied to each output element once its chain is complete.
#[derive(Clone, Copy)]
enum Epilogue<'a> {
    None,
    Gelu,
    /// Adds the element at the same place in this (m × n) matrix.
    Add(&'a [f32]),
}

impl Epilogue<'_> {
    /// Applies to `out`, the elements of c from flat index `at` on.
    #[inline(always)]
    fn apply(self, out: &mut [f32], at: usize) {
        match self {
            Epilogue::None => {}
            Epilogue::Gelu => out.iter_mut().for_each(|v| *v = gelu(*v)),
            Epilogue::Add(r) => out.iter_mut().zip(&r[at..]).for_each(|(v, x)| *v += x),
        }
    }
}

/// Packs (outputs, k) row-major weights into panels of NR columns, k-major.
fn pack(weights: &[f32], k: usize) -> Vec<f32> {
    let panels = (weights.len() / k).div_ceil(NR);
    let mut packed = vec![0f32; panels * k * NR];
    for (n, row) in weights.chunks_exact(k).enumerate() {
        let panel = &mut packed[(n / NR) * k * NR..][..k * NR];
        for (kk, &w) in row.iter().enumerate() {
            panel[kk * NR + n % NR] = w;
        }
    }
    packed
}

/// bias + a (m × k) · Wᵀ (m × n), every element one FMA chain over k in order from its
/// bias, then the epilogue on each element.
fn gemm(a: &[f32], m: usize, layer: &Packed, epilogue: Epilogue) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if simd() != Simd::None {
        // SAFETY: `simd` detected the features of the form it names.
        return unsafe { gemm_simd(simd(), a, m, layer, epilogue) };
    }
    let mut c = gemm_portable(a, m, layer);
    epilogue.apply(&mut c, 0);
    c
}

/// `gemm` by one compiled form of the kernel.
///
/// # Safety
/// The CPU must have the features of `form` (AVX2 and FMA; AVX-512F as well for
/// `Simd::Avx512`), as `simd` detects them.
#[cfg(target_arch = "x86_64")]
unsafe fn gemm_simd(
    form: Simd,
    a: &[f32],
    m: usize,
    layer: &Packed,
    epilogue: Epilogue,
) -> Vec<f32> {
    let n = layer.outputs;
    let mut c = Vec::with_capacity(m * n);
    // SAFETY: the features are the caller's promise; the kernel writes every one of the
    // m × n elements (reading none before it has written it) and the epilogue runs on
    // written ones only, so all are initialised when the length is set.
    unsafe {
        match form {
            Simd::Avx512 => x86::gemm_avx512(a, m, layer, c.as_mut_ptr(), epilogue),
            _ => x86::gemm_avx2(a, m, layer, c.as_mut_ptr(), epilogue),
        }
        c.set_len(m * n);
    }
    c
}

fn gemm_portable(a: &[f32], m: usize, layer: &Packed) -> Vec<f32> {
    let (k, n, packed) = (layer.inputs, layer.outputs, &layer.packed);
    let mut c = layer.bias[..n].repeat(m);
    for (p, panel) in packed.chunks_exact(k * NR).enumerate() {
        let cols = NR.min(n - p * NR);
        for i in 0..m {
            let row = &a[i * k..][..k];
            for j in 0..cols {
                let out = &mut c[i * n + p * NR + j];
                for (kk, &x) in row.iter().enumerate() {
                    *out = x.mul_add(panel[kk * NR + j], *out);
                }
            }
        }
    }
    c
}

/// Which compiled form of the product kernel this CPU runs, for benchmark headers: a
/// speed measured on one host says nothing about another form.
pub fn kernel_form() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    match simd() {
        Simd::Avx512 => return "AVX-512 (12 x 16 tile)",
        Simd::Avx2 => return "AVX2+FMA (6 x 16 tile)",
        Simd::None => {}
    }
    "portable"
}

/// The widest kernel this CPU runs, detected once.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Simd {
    Avx512,
    Avx2,
    None,
}

#[cfg(target_arch = "x86_64")]
fn simd() -> Simd {
    static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") && has!("fma") {
            Simd::Avx512
        } else if has!("avx2") && has!("fma") {
            Simd::Avx2
        } else {
            Simd::None
        }
    })
}

/// One kernel source compiled twice: for AVX2 + FMA (16 columns are two 8-wide
/// registers; 6 rows fill 12 of the 16 registers with accumulators) and for AVX-512
/// (16 columns are one 16-wide register; 12 rows use 12 of the 32). The kernel is plain
/// Rust over fixed-size arrays, which the compiler keeps in registers and vectorises to
/// the width the enclosing function enables, so both forms are the same arithmetic: one
/// FMA chain per output element over k in order.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Epilogue, Packed, NB, NR};
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};

    /// # Safety
    /// The CPU must have AVX2 and FMA; `c` must have room for m × n elements.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm_avx2(a: &[f32], m: usize, layer: &Packed, c: *mut f32, e: Epilogue) {
        gemm::<6, 512>(a, m, layer, c, e)
    }

    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA; `c` must have room for m × n elements.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn gemm_avx512(a: &[f32], m: usize, layer: &Packed, c: *mut f32, e: Epilogue) {
        gemm::<12, 384>(a, m, layer, c, e)
    }

    /// Writes all of c (m × n), which may start uninitialised: the first block of k
    /// starts each chain from the bias instead of reading c. MR rows per kernel call, k
    /// in blocks of KC: a call's rows of KC k (12 KB for AVX2's 6 × 512, 18 KB for
    /// AVX-512's 12 × 384) stay in L1 while they pass a block of panels. Blocks of 512
    /// rather than 256 were 3-5% faster on BERT's k = 384 products (one block, no second
    /// pass over c) and 1% on k = 1536.
    #[inline(always)]
    unsafe fn gemm<const MR: usize, const KC: usize>(
        a: &[f32],
        m: usize,
        layer: &Packed,
        c: *mut f32,
        epilogue: Epilogue,
    ) {
        let (k, n, packed, bias) = (layer.inputs, layer.outputs, &layer.packed, &layer.bias);
        // Room for the largest MR (12, AVX-512's); an array length cannot name MR itself.
        const { assert!(MR <= 12) };
        let mut tile = [0f32; 12 * NR];
        let panels = packed.len() / (k * NR);
        for p0 in (0..panels).step_by(NB) {
            let p1 = (p0 + NB).min(panels);
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                let first = k0 == 0;
                let last = k0 + kc == k;
                let mut i = 0;
                while i < m {
                    let rows = MR.min(m - i);
                    let a_at = a[i * k + k0..].as_ptr();
                    for p in p0..p1 {
                        let b = packed[p * k * NR + k0 * NR..].as_ptr();
                        let start = first.then(|| bias[p * NR..].as_ptr());
                        let cols = NR.min(n - p * NR);
                        let c_at = c.add(i * n + p * NR);
                        if cols == NR {
                            block(rows, a_at, k, b, kc, start, c_at, n);
                        } else {
                            // The last, partial panel goes through a full-width tile.
                            if !first {
                                for r in 0..rows {
                                    for j in 0..cols {
                                        tile[r * NR + j] = *c_at.add(r * n + j);
                                    }
                                }
                            }
                            block(rows, a_at, k, b, kc, start, tile.as_mut_ptr(), NR);
                            for r in 0..rows {
                                for j in 0..cols {
                                    *c_at.add(r * n + j) = tile[r * NR + j];
                                }
                            }
                        }
                    }
                    if last {
                        // These rows' chains in this block of columns are complete.
                        let (c0, c1) = (p0 * NR, (p1 * NR).min(n));
                        for r in i..i + rows {
                            let at = r * n + c0;
                            epilogue.apply(std::slice::from_raw_parts_mut(c.add(at), c1 - c0), at);
                        }
                    }
                    i += rows;
                }
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // a kernel call's operands and strides
    unsafe fn block(
        rows: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        kc: usize,
        start: Option<*const f32>,
        c: *mut f32,
        ldc: usize,
    ) {
        match rows {
            12 => kernel::<12>(a, lda, b, kc, start, c, ldc),
            11 => kernel::<11>(a, lda, b, kc, start, c, ldc),
            10 => kernel::<10>(a, lda, b, kc, start, c, ldc),
            9 => kernel::<9>(a, lda, b, kc, start, c, ldc),
            8 => kernel::<8>(a, lda, b, kc, start, c, ldc),
            7 => kernel::<7>(a, lda, b, kc, start, c, ldc),
            6 => kernel::<6>(a, lda, b, kc, start, c, ldc),
            5 => kernel::<5>(a, lda, b, kc, start, c, ldc),
            4 => kernel::<4>(a, lda, b, kc, start, c, ldc),
            3 => kernel::<3>(a, lda, b, kc, start, c, ldc),
            2 => kernel::<2>(a, lda, b, kc, start, c, ldc),
            _ => kernel::<1>(a, lda, b, kc, start, c, ldc),
        }
    }

    /// R rows × NR columns over kc steps of k, continuing the chains held in c, or
    /// starting them from the NR values at `start` (the bias) in every row.
    #[inline(always)]
    unsafe fn kernel<const R: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        kc: usize,
        start: Option<*const f32>,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[0f32; NR]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            let from = start.unwrap_or_else(|| c.add(r * ldc));
            *acc = from.cast::<[f32; NR]>().read_unaligned();
        }
        let step = |acc: &mut [[f32; NR]; R], kk: usize| {
            let w = b.add(kk * NR).cast::<[f32; NR]>().read_unaligned();
            // The panel streams from L2 (or memory, on its first pass): fetch 8 k ahead.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((kk + 8) * NR) as *const i8);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = *a.add(r * lda + kk);
                for (v, &w) in acc.iter_mut().zip(&w) {
                    *v = x.mul_add(w, *v);
                }
            }
        };
        // Four steps of k per iteration: the row addresses and the loop count are
        // updated once per four steps (1-14% faster than one step at a time, paired, the
        // most when the sibling hardware thread is busy); eight was much slower at k = 1536.
        let whole = kc - kc % 4;
        let mut kk = 0;
        while kk < whole {
            for u in 0..4 {
                step(&mut acc, kk + u);
            }
            kk += 4;
        }
        for kk in whole..kc {
            step(&mut acc, kk);
        }
        for (r, acc) in acc.iter().enumerate() {
            c.add(r * ldc).cast::<[f32; NR]>().write_unaligned(*acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn simd_and_portable_forms_are_bit_identical() {
        // Odd sizes: partial row groups, a partial last panel, k across blocks, columns
        // across blocks of panels.
        for &(m, k, n) in &[
            (13, 300, 37),
            (25, 520, 33),
            (5, 7, 20),
            (6, 16, 16),
            (1, 513, 5),
            (20, 256, 48),
            (7, 260, 150),
        ] {
            let a = noise(m * k, 1);
            let layer = Packed::new(&noise(n * k, 2), noise(n, 6), k, n);
            let slow = gemm_portable(&a, m, &layer);
            let fast = gemm(&a, m, &layer, Epilogue::None);
            assert_eq!(fast, slow, "m={m} k={k} n={n}");
            // Both compiled forms where this CPU runs them (the AVX-512 one only on
            // hosts that have it; `gemm` above already took the widest).
            #[cfg(target_arch = "x86_64")]
            for form in [Simd::Avx2, Simd::Avx512] {
                if simd() == Simd::None || (form == Simd::Avx512 && simd() != Simd::Avx512) {
                    continue;
                }
                // SAFETY: the form's features were detected just above.
                let c = unsafe { gemm_simd(form, &a, m, &layer, Epilogue::None) };
                assert_eq!(c, slow, "m={m} k={k} n={n}");
            }
        }
    }

    #[test]
    fn epilogues_equal_the_separate_passes() {
        let dev = Device::Cpu;
        // Columns across two blocks of panels, the last partial.
        let (k, n) = (300, 150);
        let w = Tensor::from_vec(noise(n * k, 7), (n, k), &dev).unwrap();
        let bias = Tensor::from_vec(noise(n, 8), n, &dev).unwrap();
        let x = Tensor::from_vec(noise(13 * k, 9), (13, k), &dev).unwrap();
        let residual = Tensor::from_vec(noise(13 * n, 10), (13, n), &dev).unwrap();
        let layer = PackedLinear::new(w, bias).unwrap();
        let plain = layer.forward(&x).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            v.into_iter().map(f32::to_bits).collect()
        };
        assert_eq!(
            bits(&layer.forward_gelu(&x).unwrap()),
            bits(&gelu_erf(&plain).unwrap())
        );
        assert_eq!(
            bits(&layer.forward_add(&x, &residual).unwrap()),
            bits(&(plain + residual).unwrap())
        );
    }

    #[test]
    fn an_empty_layer_is_an_error_not_a_panic() {
        let dev = Device::Cpu;
        let err = PackedLinear::new(
            Tensor::zeros((4, 0), DType::F32, &dev).unwrap(),
            Tensor::zeros(4, DType::F32, &dev).unwrap(),
        )
        .err()
        .expect("an empty layer is refused");
        assert!(err.to_string().contains("4 outputs × 0 inputs"), "{err}");
    }

    #[test]
    fn matches_candles_linear() {
        let dev = Device::Cpu;
        let (k, n) = (384, 1536);
        let w = Tensor::from_vec(noise(n * k, 3), (n, k), &dev).unwrap();
        let bias = Tensor::from_vec(noise(n, 4), n, &dev).unwrap();
        let x = Tensor::from_vec(noise(2 * 7 * k, 5), (2, 7, k), &dev).unwrap();
        let ours = PackedLinear::new(w.clone(), bias.clone())
            .unwrap()
            .forward(&x)
            .unwrap();
        let theirs = Linear::new(w, Some(bias)).forward(&x).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let diff = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max difference {diff}");
    }
}

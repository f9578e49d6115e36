//! ggml's GeGLU (`ggml_vec_geglu_f32` in a build with `GGML_GELU_FP16`, the default): the
//! tanh-approximated GELU is read from a table indexed by the input rounded to f16, the
//! table holding f16 values, then multiplied by the other half.

use std::sync::OnceLock;

use half::f16;

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// ggml's `ggml_gelu_f32` as GCC compiles it in ggml's build (`-std=gnu11`, so floating-point
/// contraction is on): `1 + a·x·x` becomes one fused multiply-add; the other products stay.
fn gelu_f32(x: f32) -> f32 {
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// GELU of every f16 value, as f16 bits (ggml's `ggml_table_gelu_f16`).
fn table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_f32(f16::from_bits(bits).to_f32())).to_bits())
            .collect()
    })
}

/// `out[i] = gelu(gate[i]) × up[i]`, with ggml's cut-offs at ±10.
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let table = table();
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            f16::from_bits(table[f16::from_f32(g).to_bits() as usize]).to_f32() * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The whole table equals ggml's: sha256 of the 65,536 little-endian f16 values that
    /// ggml's expression gives when compiled by GCC 12 with `-O3 -mavx2 -mfma -mf16c`
    /// (contraction on, as in llama.cpp's build). Without the fused multiply-add the
    /// digest is 5f1b2a3b…, so this test tells the two apart.
    #[test]
    fn table_equals_ggml_compiled_table() {
        let bytes: Vec<u8> = table().iter().flat_map(|v| v.to_le_bytes()).collect();
        let digest = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            digest,
            "5372503d4d69aabb589feee6b59e80bf08cbcd71ffb6c43a8210622729ad32bf"
        );
    }

    #[test]
    fn cut_offs_and_a_table_value() {
        let mut out = [0f32; 3];
        geglu(&[-10.0, 10.0, 1.0], &[2.0, 2.0, 2.0], &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 20.0);
        // gelu(1) ≈ 0.8412, held as the f16 0.84130859375.
        assert_eq!(out[2], 2.0 * 0.841_308_6);
    }
}

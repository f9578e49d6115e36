//! Which of llama.cpp's arithmetics the native GGUF path reproduces, which kernels compute
//! it on this CPU, and whether a given llama.cpp build computes the same floats.
//!
//! ggml compiles its CPU code for one instruction set, and each set has its own dot-product
//! widths, GEMM tiles and exp/softmax code: an AVX-512 build and an AVX2 build of the same
//! source give different floats, and greedy decoding flips on near-ties. The native path
//! always computes the AVX2 build's floats, on any x86-64 CPU (AVX2 intrinsics where the CPU
//! has them, a portable form with the same lanes and order elsewhere), so it agrees token for
//! token with a llama.cpp built for AVX2 + FMA + F16C without AVX-512, and only with that.

use std::collections::BTreeMap;

/// The arithmetic the native path reproduces, as recorded in run records.
pub const ARITHMETIC: &str = "ggml-x86-avx2";

/// The llama.cpp build features (its `system_info` names) that arithmetic needs, and the
/// ones that would change it.
const REQUIRED: &[&str] = &["AVX", "AVX2", "FMA", "F16C", "LLAMAFILE"];
const CHANGES_ARITHMETIC: &[&str] = &[
    "AVX512",
    "AVX512_VBMI",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AMX_INT8",
];

/// The kernels computing [`ARITHMETIC`] on this CPU: AVX2 intrinsics, or the portable form
/// (bit-identical, slower) on a CPU without AVX2 and FMA.
pub fn kernels() -> &'static str {
    if super::ggml_ops::simd_kernels() {
        "avx2+fma"
    } else {
        "portable"
    }
}

/// `ggml-x86-avx2 (avx2+fma kernels)`: what the native path computed and how.
pub fn describe() -> String {
    format!("{ARITHMETIC} ({} kernels)", kernels())
}

/// The features a llama.cpp build reports in its `system_info:` log line
/// (`... | CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ... |`), with their values.
pub fn build_features(system_info: &str) -> BTreeMap<String, String> {
    system_info
        .split('|')
        .filter_map(|part| {
            // The first feature of the CPU backend comes as `CPU : SSE3 = 1`.
            let part = part.rsplit(" : ").next().unwrap_or(part);
            let (name, value) = part.split_once('=')?;
            let name = name.trim();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            valid.then(|| (name.to_string(), value.trim().to_string()))
        })
        .collect()
}

/// Whether a llama.cpp build (its `system_info:` line) computes the native path's floats;
/// the error says what differs and how to build a matching reference.
pub fn check_reference(system_info: &str) -> Result<(), String> {
    let features = build_features(system_info);
    let on = |name: &str| features.get(name).is_some_and(|v| v != "0");
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|f| !on(f)).collect();
    let extra: Vec<&str> = CHANGES_ARITHMETIC
        .iter()
        .copied()
        .filter(|f| on(f))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut differs = Vec::new();
    if !extra.is_empty() {
        differs.push(format!("built with {}", extra.join(", ")));
    }
    if !missing.is_empty() {
        differs.push(format!("built without {}", missing.join(", ")));
    }
    Err(format!(
        "the reference llama.cpp was {} (its system_info: `{}`), but assay's native GGUF path \
         reproduces {ARITHMETIC}: ggml's x86 build with AVX2, FMA, F16C and llamafile's sgemm, \
         no AVX-512. Its floats differ, so greedy tokens disagree on near-ties. Build the \
         reference for that instruction set: scripts/build-llama-server.sh does \
         (GGML_NATIVE=OFF, GGML_AVX2/FMA/F16C=ON, GGML_AVX512=OFF)",
        differs.join(" and "),
        system_info.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as llama-server 11434 prints them (`-lv 4`) for the two builds.
    const AVX2_BUILD: &str = "system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ";
    const AVX512_BUILD: &str = "system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ";

    #[test]
    fn features_are_read_from_system_info() {
        let f = build_features(AVX2_BUILD);
        assert_eq!(f.get("SSE3").map(String::as_str), Some("1"));
        assert_eq!(f.get("LLAMAFILE").map(String::as_str), Some("1"));
        assert!(!f.contains_key("n_threads"), "{f:?}");
        assert!(!f.contains_key("AVX512"));
    }

    #[test]
    fn an_avx2_build_matches_and_an_avx512_build_does_not() {
        assert_eq!(check_reference(AVX2_BUILD), Ok(()));
        let err = check_reference(AVX512_BUILD).unwrap_err();
        assert!(
            err.contains("built with AVX512, AVX512_VBMI, AVX512_VNNI, AVX512_BF16"),
            "{err}"
        );
        assert!(err.contains("scripts/build-llama-server.sh"), "{err}");
        let no_sgemm = AVX2_BUILD.replace("LLAMAFILE = 1 | ", "");
        assert!(check_reference(&no_sgemm)
            .unwrap_err()
            .contains("built without LLAMAFILE"));
        let arm = "system_info: n_threads = 4 / 4 | CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | LLAMAFILE = 1 |";
        assert!(check_reference(arm)
            .unwrap_err()
            .contains("built without AVX, AVX2, FMA, F16C"));
    }

    #[test]
    fn the_record_names_the_arithmetic_and_kernels() {
        let d = describe();
        assert!(d.starts_with("ggml-x86-avx2 ("), "{d}");
        assert!(d.ends_with(" kernels)"), "{d}");
    }
}

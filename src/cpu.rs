//! The CPU features this binary was compiled to assume, checked against the CPU it runs on.
//!
//! `.cargo/config.toml` compiles for x86-64-v3 (AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE):
//! candle picks its SIMD kernels at compile time. A binary compiled for more (a
//! `-C target-cpu=native` build on an AVX-512 machine, say) dies with an illegal
//! instruction on a CPU without it; this check turns that into a clear error first.

/// The compiled-in x86 features this CPU lacks (empty when the binary can run here).
pub fn missing_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut missing = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($feature:tt),*) => {$(
                if cfg!(target_feature = $feature) && !std::arch::is_x86_feature_detected!($feature) {
                    missing.push($feature);
                }
            )*};
        }
        check!(
            "sse4.1",
            "sse4.2",
            "popcnt",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi1",
            "bmi2",
            "lzcnt",
            "movbe",
            "avx512f",
            "avx512bw",
            "avx512cd",
            "avx512dq",
            "avx512vl",
            "avx512vnni",
            "avx512bf16",
            "avx512vbmi",
            "avx512ifma",
            "avxvnni"
        );
    }
    missing
}

/// An error naming what is missing and why, when the binary cannot run on this CPU.
pub fn check() -> Result<(), String> {
    let missing = missing_features();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "this assay binary was compiled for CPU features this CPU lacks ({}): binaries are \
         not portable beyond the target CPU they were built for (.cargo/config.toml builds \
         for x86-64-v3; a RUSTFLAGS=-C target-cpu=native build assumes the build machine's \
         CPU). Rebuild on this machine with `cargo build --release`",
        missing.join(", ")
    ))
}

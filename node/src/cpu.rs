//! The instruction set this build of `strata-node` needs, checked at startup.
//!
//! reed-solomon-erasure compiles its SIMD C for Haswell on x86-64 (AVX2, FMA, BMI and friends), and the
//! workspace enables SSE4.2 and PCLMULQDQ for RocksDB's checksums (`.cargo/config.toml`). On an older CPU the
//! node would die with SIGILL at its first erasure-coding operation, long after it joined a cluster; instead
//! it refuses to start and names what is missing. The `strata` client does no erasure coding and needs only
//! SSE4.2 and PCLMULQDQ.

/// Features a Haswell build of reed-solomon-erasure's C may use, and what the workspace enables.
#[cfg(target_arch = "x86_64")]
const NEEDED: &[&str] = &["sse4.2", "pclmulqdq", "popcnt", "avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "lzcnt"];

/// The features of [`NEEDED`] that `has` says are missing.
#[cfg(target_arch = "x86_64")]
fn missing(has: impl Fn(&str) -> bool) -> Vec<&'static str> {
    NEEDED.iter().copied().filter(|f| !has(f)).collect()
}

/// Refuses to run on a CPU that lacks what this build uses, naming the missing features.
pub fn check() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let gone = missing(|f| match f {
            "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
            "pclmulqdq" => std::is_x86_feature_detected!("pclmulqdq"),
            "popcnt" => std::is_x86_feature_detected!("popcnt"),
            "avx" => std::is_x86_feature_detected!("avx"),
            "avx2" => std::is_x86_feature_detected!("avx2"),
            "fma" => std::is_x86_feature_detected!("fma"),
            "bmi1" => std::is_x86_feature_detected!("bmi1"),
            "bmi2" => std::is_x86_feature_detected!("bmi2"),
            "f16c" => std::is_x86_feature_detected!("f16c"),
            "lzcnt" => std::is_x86_feature_detected!("lzcnt"),
            _ => false,
        });
        if !gone.is_empty() {
            return Err(format!(
                "this CPU lacks {}, which strata-node's erasure coding is compiled to use: it needs an x86-64 CPU \
                 from Intel Haswell (2013) or AMD Excavator (2015) on (see README, Requirements)",
                gone.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn missing_features_are_named() {
        assert!(missing(|_| true).is_empty());
        assert_eq!(missing(|f| f != "avx2" && f != "fma"), vec!["avx2", "fma"]);
        assert_eq!(missing(|_| false).len(), NEEDED.len());
    }
}

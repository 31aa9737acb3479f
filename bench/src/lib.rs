//! Shared helpers for Strata's benchmarks: CPU-time measurement and medians. Benchmarks report ratios
//! measured side by side in one run, because the machines they run on are shared and noisy.

use std::time::{Duration, Instant};

/// User plus system CPU time consumed by this process so far.
pub fn cpu_time() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

/// Wall and CPU time of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Elapsed time.
    pub wall: Duration,
    /// CPU time of the whole process.
    pub cpu: Duration,
}

/// Runs `f` and measures it.
pub async fn measure<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<Sample> {
    let (t, c) = (Instant::now(), cpu_time());
    f.await?;
    Ok(Sample { wall: t.elapsed(), cpu: cpu_time() - c })
}

/// The median of `values` (which must not be empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

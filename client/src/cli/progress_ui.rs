//! Showing progress of long work: a bar on a terminal, a plain line every ten seconds otherwise, and JSON
//! status lines (every two seconds) with `--json`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_client::backup::progress::Progress;

/// A running display; stops when dropped or finished.
pub struct ProgressUi {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

fn snapshot(p: &Progress, started: Instant) -> serde_json::Value {
    let done = Progress::get(&p.bytes_done);
    let total = Progress::get(&p.bytes_total);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let eta = (p.totals_final.load(std::sync::atomic::Ordering::Relaxed) && total > done && rate > 0.0)
        .then(|| ((total - done) as f64 / rate) as u64);
    serde_json::json!({
        "message_type": "status",
        "seconds_elapsed": secs as u64,
        "files_done": Progress::get(&p.files_done),
        "total_files": Progress::get(&p.files_total),
        "bytes_done": done,
        "total_bytes": total,
        "bytes_uploaded": Progress::get(&p.bytes_uploaded),
        "errors": Progress::get(&p.errors),
        "seconds_remaining": eta,
        "current_file": p.current(),
    })
}

fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

impl ProgressUi {
    /// Starts displaying `progress` for work called `what` ("backup", "restore").
    pub fn start(progress: Arc<Progress>, what: &'static str, json: bool) -> ProgressUi {
        let started = Instant::now();
        if json {
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    println!("{}", snapshot(&progress, started));
                }
            });
            return ProgressUi { task: Some(task), bar: None };
        }
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    b.set_length(Progress::get(&progress.bytes_total).max(Progress::get(&progress.bytes_done)));
                    b.set_position(Progress::get(&progress.bytes_done));
                    b.set_message(format!(
                        "{what}: {}/{} files, {} errors",
                        Progress::get(&progress.files_done),
                        Progress::get(&progress.files_total),
                        Progress::get(&progress.errors)
                    ));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            return ProgressUi { task: Some(task), bar: Some(bar) };
        }
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let s = snapshot(&progress, started);
                eprintln!(
                    "{what}: {} files, {} of {} done, {} errors, {}",
                    s["files_done"],
                    human(s["bytes_done"].as_u64().unwrap_or(0)),
                    human(s["total_bytes"].as_u64().unwrap_or(0)),
                    s["errors"],
                    s["seconds_remaining"].as_u64().map(|e| format!("about {e} s left")).unwrap_or_else(|| "estimating".into())
                );
            }
        });
        ProgressUi { task: Some(task), bar: None }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for ProgressUi {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Human-readable bytes.
pub fn human_bytes(b: u64) -> String {
    human(b)
}

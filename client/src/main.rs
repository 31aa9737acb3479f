//! `strata`: the Strata command-line client.

fn main() {
    eprintln!("strata: not built yet");
    std::process::exit(1);
}

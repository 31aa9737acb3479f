//! `strata`: the Strata command-line client.

mod cli;

fn main() {
    std::process::exit(cli::main());
}

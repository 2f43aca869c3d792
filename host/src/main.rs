//! `ww`: start a host, run a ROM, and inspect a cluster.

fn main() -> std::process::ExitCode {
    ww::cli::main()
}

//! The `elide` command-line binary.

fn main() -> std::process::ExitCode {
    elide_cli::run()
}

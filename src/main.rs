//! The `elide` command-line binary.

/// mimalloc rather than glibc's malloc: capture and queries allocate many
/// small JSON values and strings from several threads, where glibc's
/// arenas cost more than the work (see docs/benchmarks.md). Built with
/// `no_thp` (Cargo.toml): no transparent huge pages requested.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    elide_cli::run()
}

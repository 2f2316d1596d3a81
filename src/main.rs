//! The `sluice` binary: parse the command line, set up logging, dispatch,
//! map the outcome to an exit code.

use clap::Parser;
use std::io::Write;

fn main() {
    let cli = sluice::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (the terminal or log collector went away) must not
        // matter: the fallback report of a failed write would panic.
        .log_internal_errors(false)
        .init();
    let code = match sluice::cli::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            1
        }
    };
    std::process::exit(code);
}

/// mimalloc rather than glibc's malloc: a connection's setup and each
/// request allocate and free dozens of small blocks, and tokio and hyper
/// ask for cache-aligned ones (glibc's `posix_memalign` alone cost about
/// 1,500 instructions per connection). With it, sluice runs about 3% fewer
/// instructions per keep-alive request and 9% fewer per new connection.
/// Built without transparent huge pages (the `no_thp` feature), so each
/// process starts at about 1 MiB of heap instead of 8. `Allocator` asks
/// mimalloc for plain blocks where the `mimalloc` crate would ask for
/// aligned ones (see its module).
#[global_allocator]
static ALLOCATOR: sluice::allocator::Allocator = sluice::allocator::Allocator;

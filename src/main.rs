//! The `lethe` command line.

use std::process::ExitCode;

use lethe::cli::{Cli, run};
use lethe::eval::audit::AuditNotPassed;

/// Log filter unless `LETHE_LOG` says otherwise: warnings, minus the graphics layer's reports
/// about APIs it probes and cannot use (a headless machine has no GL display, which is fine).
const DEFAULT_LOG: &str = "warn,wgpu_hal=off,wgpu_core=error";

fn main() -> ExitCode {
    keep_freed_memory();
    quiet_headless_graphics();
    let cli = Cli::parse_args();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LETHE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the underlying library put in its message.
            let message = format!("{error:#}");
            eprintln!(
                "error: {}",
                message.lines().map(str::trim).collect::<Vec<_>>().join(" ")
            );
            error
                .downcast_ref::<AuditNotPassed>()
                .map_or(ExitCode::FAILURE, |audit| ExitCode::from(audit.exit_code()))
        }
    }
}

/// glibc's allocator hands every freed block above its mmap threshold back to the system and
/// faults a fresh one in on the next allocation. Tensor code allocates and frees many such
/// blocks every step, and on a 2-core machine that churn (page faults, zeroing pages) took
/// half of a demo-ViT training step (`lethe bench train --arch vit --stage attributes`:
/// 1.95 s a step before, 1.02 s after). Blocks up to 32 MiB are therefore served from the heap,
/// and the heap keeps what is freed for reuse: memory stays at the run's peak instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// Other allocators manage their own memory.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Vulkan drivers probe for a Wayland session while listing adapters and complain on stderr
/// when `XDG_RUNTIME_DIR` is unset (servers, containers, CI). Giving them a private runtime
/// folder keeps errors to the one line Lethe prints.
fn quiet_headless_graphics() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let user = std::env::var("USER").unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("lethe-runtime-{user}"));
    if std::fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

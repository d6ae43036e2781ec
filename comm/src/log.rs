//! Atoll's diagnostics: `ATOLL_LOG` turns on its `tracing` events on standard error.
//!
//! The value is a `tracing` filter, as `RUST_LOG` takes it: `debug` for everything at debug
//! level, `atoll_comm=debug,warn` for the comm layer only. Each place writes its own lines
//! (tagged `[place k]` by the local launcher, by the external launcher's own means
//! otherwise). A program that installs its own `tracing` subscriber first keeps it: Atoll
//! then installs none.

use crate::config::LOG;

/// Installs a subscriber that writes `ATOLL_LOG`'s events to standard error, once, when the
/// variable is set. A filter that does not parse is reported on standard error and ignored.
pub(crate) fn init_from_env() {
    let Ok(filter) = std::env::var(LOG) else {
        return;
    };
    match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(filter) => {
            // Fails only when a subscriber is installed already (this one, or the program's).
            let _already = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .without_time()
                .try_init();
        }
        Err(error) => eprintln!(
            "atoll: {LOG}={filter:?} is not a tracing filter ({error}); logging stays off \
             (try {LOG}=debug)"
        ),
    }
}

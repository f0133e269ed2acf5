//! The crate's own environment variables, read by
//! [`ObserverBuilder::configure_from_env`] — all of them here, in one place.
//!
//! They follow the rules of the `OTEL_*` variables ([`otlp`](crate#pieces)): what the code
//! sets wins, the variable applies where the code set nothing, an empty value counts as
//! unset, and a value that cannot be used fails [`ObserverBuilder::build`] with
//! [`BuildError::InvalidVariable`] naming the variable. Secrets come from files (what
//! Kubernetes and Docker mount for a `Secret`): the file is read once, trimmed, and its
//! content is never logged nor repeated in an error.
//!
//! | variable | sets | when the code did not |
//! |---|---|---|
//! | `TOWER_OBSERVE_ADMIN_ADDR` | the admin listener's address, e.g. `0.0.0.0:9464` (feature `admin`) | call `ObserverBuilder::admin_addr` |
//! | `TOWER_OBSERVE_RESET_TOKEN_FILE` | the token of `POST /v1/stats/reset`, read from this file | give a non-empty `ObserverBuilder::reset_token` |
//! | `TOWER_OBSERVE_LOGS_TOKEN_FILE` | the token of the log store's routes, read from this file (feature `log-store`) | give `LogStoreOptions::token` |
//! | `TOWER_OBSERVE_HISTORY_PATH` | turns history on in this redb file (feature `history`) | configure `ObserverBuilder::history` |
//! | `TOWER_OBSERVE_LOG_STORE_PATH` | turns the log store on in this redb file (feature `log-store`) | configure `ObserverBuilder::log_store` |
//!
//! A variable whose feature is not compiled in is ignored with a warning (target
//! `tower_observe`), so one deployment manifest can serve builds with different features.
//!
//! ```
//! use tower_observe::Observer;
//!
//! // TOWER_OBSERVE_RESET_TOKEN_FILE=/run/secrets/reset-token in the container's environment.
//! let observer = Observer::builder()
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .configure_from_env()
//!     .build()?;
//! # let _ = observer;
//! # Ok::<(), tower_observe::BuildError>(())
//! ```

use std::any::Any;
use std::sync::Arc;

use crate::observer::{Pending, RecordSink};
use crate::{BuildError, Observer, ObserverBuilder};

/// The admin listener's address (`0.0.0.0:9464`, `[::]:9464`).
pub const ADMIN_ADDR_ENV: &str = "TOWER_OBSERVE_ADMIN_ADDR";
/// A file holding the reset token.
pub const RESET_TOKEN_FILE_ENV: &str = "TOWER_OBSERVE_RESET_TOKEN_FILE";
/// A file holding the log store's token.
pub const LOGS_TOKEN_FILE_ENV: &str = "TOWER_OBSERVE_LOGS_TOKEN_FILE";
/// The history's redb file.
pub const HISTORY_PATH_ENV: &str = "TOWER_OBSERVE_HISTORY_PATH";
/// The log store's redb file.
pub const LOG_STORE_PATH_ENV: &str = "TOWER_OBSERVE_LOG_STORE_PATH";

/// Reads one variable: `None` when unset or empty (after trimming).
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        // Reported as unusable by the parser of each variable (it is not a path or an address).
        Err(std::env::VarError::NotUnicode(value)) => Some(value.to_string_lossy().into_owned()),
    }
}

fn get(env: Lookup<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn invalid(variable: &str, reason: impl Into<String>) -> BuildError {
    BuildError::InvalidVariable {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

/// The first unusable variable, kept until `build` reports it.
#[derive(Debug, Default)]
struct EnvPending(Option<BuildError>);

impl Pending for EnvPending {
    fn prepare(&mut self) -> Result<(), BuildError> {
        match self.0.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn attach(self: Box<Self>, _observer: &Observer) -> Option<Arc<dyn RecordSink>> {
        None
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A token read from the file a variable names: trimmed, never empty, never shown.
fn token_file(env: Lookup<'_>, variable: &str) -> Result<Option<String>, BuildError> {
    let Some(path) = get(env, variable) else {
        return Ok(None);
    };
    // The error names the file, never what it holds.
    let text = std::fs::read_to_string(&path).map_err(|e| {
        invalid(
            variable,
            format!("cannot read the token file {path:?}: {e}"),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(
            variable,
            format!("the token file {path:?} is empty"),
        ));
    }
    Ok(Some(token.to_owned()))
}

/// A variable meant for a capability that is not compiled in.
#[allow(dead_code)] // unused when every feature is on
fn not_compiled(env: Lookup<'_>, variable: &str, feature: &str) {
    if get(env, variable).is_some() {
        tracing::warn!(
            target: "tower_observe",
            { "event.code" = "variable_without_feature" },
            "{variable} is set but tower-observe was built without the `{feature}` feature; it is ignored"
        );
    }
}

impl ObserverBuilder {
    /// Reads the crate's own environment variables (see [`crate::env`]) for the settings the
    /// code does not give, whichever order the setters are called in: the admin address, the
    /// reset and log store tokens (from files), the history and log store files. An unusable
    /// value fails [`build`](Self::build) with [`BuildError::InvalidVariable`] naming it.
    pub fn configure_from_env(self) -> Self {
        self.configure_from(&process_env)
    }

    /// [`configure_from_env`](Self::configure_from_env) through `env` (tests).
    pub(crate) fn configure_from(mut self, env: Lookup<'_>) -> Self {
        if let Err(error) = self.read_env(env) {
            let pending = self.pending::<EnvPending>();
            pending.0.get_or_insert(error);
        }
        self
    }

    fn read_env(&mut self, env: Lookup<'_>) -> Result<(), BuildError> {
        #[cfg(feature = "admin")]
        if let Some(addr) = get(env, ADMIN_ADDR_ENV) {
            let addr = addr.parse().map_err(|e| {
                invalid(
                    ADMIN_ADDR_ENV,
                    format!("{addr:?} is not an address and port such as 0.0.0.0:9464: {e}"),
                )
            })?;
            self.pending::<crate::admin::AdminPending>().env_addr = Some(addr);
        }
        #[cfg(not(feature = "admin"))]
        not_compiled(env, ADMIN_ADDR_ENV, "admin");

        if let Some(token) = token_file(env, RESET_TOKEN_FILE_ENV)? {
            self.pending::<crate::endpoints::ResetPending>().env_token = Some(token);
        }

        #[cfg(feature = "history")]
        if let Some(path) = get(env, HISTORY_PATH_ENV) {
            // The pending history's third field: its path from the environment.
            self.pending::<crate::history::HistoryPending>().2 =
                Some(std::path::PathBuf::from(path));
        }
        #[cfg(not(feature = "history"))]
        not_compiled(env, HISTORY_PATH_ENV, "history");

        #[cfg(feature = "log-store")]
        {
            let token = token_file(env, LOGS_TOKEN_FILE_ENV)?;
            let path = get(env, LOG_STORE_PATH_ENV).map(std::path::PathBuf::from);
            let pending = self.pending::<crate::log_store::LogStorePending>();
            pending.env_token = token;
            pending.env_path = path;
        }
        #[cfg(not(feature = "log-store"))]
        {
            not_compiled(env, LOGS_TOKEN_FILE_ENV, "log-store");
            not_compiled(env, LOG_STORE_PATH_ENV, "log-store");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

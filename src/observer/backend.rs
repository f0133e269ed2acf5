//! Where registrations go: the observer's own registry, a recorder it was given, or the global
//! one (reachable only inside `metrics::with_recorder`).

use std::sync::Arc;

use metrics::Recorder;

use crate::registry::Registry;

/// What the observer records into.
pub(crate) enum RecorderBackend {
    Registry(Registry),
    Recorder(Arc<dyn Recorder + Send + Sync>),
    Global,
}

/// Where handles are registered. Registration code takes this rather than a recorder, so it
/// works the same with the global recorder (which can only be borrowed in a callback) and
/// with [`NoRecorder`] after a recorder panicked.
pub(crate) trait RecorderSource {
    fn with(&self, f: &mut dyn FnMut(&dyn Recorder));

    /// Our own registry, when that is the recorder: its storage is then used directly.
    fn registry(&self) -> Option<&Registry>;
}

impl RecorderSource for RecorderBackend {
    fn with(&self, f: &mut dyn FnMut(&dyn Recorder)) {
        match self {
            RecorderBackend::Registry(r) => f(r),
            RecorderBackend::Recorder(r) => f(&**r),
            RecorderBackend::Global => metrics::with_recorder(|r| f(r)),
        }
    }

    fn registry(&self) -> Option<&Registry> {
        match self {
            RecorderBackend::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// Where registrations go when the recorder panicked: nowhere. Handles made from it are
/// no-ops, so the code holding them needs no special case.
#[allow(dead_code)] // used by optional capabilities
pub(crate) struct NoRecorder;

impl RecorderSource for NoRecorder {
    fn with(&self, _: &mut dyn FnMut(&dyn Recorder)) {}

    fn registry(&self) -> Option<&Registry> {
        None
    }
}

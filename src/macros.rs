//! Small macros shared by the services.

/// `get_ref`, `get_mut` and `into_inner` for a service whose wrapped service is `self.inner`.
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the wrapped one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

/// `Debug` of a public error, as readable as its `Display`: the type's name, then the
/// message (what `?` in `main` and `anyhow` print, without escaped quotes and newlines).
macro_rules! debug_as_display {
    ($($ty:ident),+ $(,)?) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($ty), ": {}"), self)
            }
        }
    )+};
}

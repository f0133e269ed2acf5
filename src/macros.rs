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

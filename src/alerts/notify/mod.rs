//! Notification channels (being written).

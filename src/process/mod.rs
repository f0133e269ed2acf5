//! Process and runtime metrics (being written).

//! The planning core (being written).

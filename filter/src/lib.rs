//! filter skeleton

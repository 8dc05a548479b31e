//! Benchmark fixtures live here; the criterion benches are in `benches/`.

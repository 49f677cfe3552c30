//! rnats-runtime-sim: the deterministic simulator.

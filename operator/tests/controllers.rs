//! End-to-end tests of the operator against a real local control plane (being written).

fn main() {}

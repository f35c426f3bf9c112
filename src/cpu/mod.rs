//! The CPU reference path: plain, f64, obviously correct. It is the specification every other path is checked against.

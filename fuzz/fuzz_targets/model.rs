//! The model reader (safetensors + its JSON header metadata) on arbitrary bytes, and the
//! `scaling` metadata entry `predict` parses. Any result is fine except a panic, an
//! allocation over libFuzzer's limit or a hang; an Ok model must match its metadata and be
//! finite.
#![no_main]

use curvature::data::Scaling;
use curvature::files::{load_model_from_bytes, read_tensors_from_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|input: &[u8]| {
    let path = Path::new("model.safetensors");
    if let Ok((tensors, _)) = read_tensors_from_bytes(input, path) {
        for t in &tensors {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
    }
    let Ok(model) = load_model_from_bytes(input, path) else {
        return;
    };
    assert_eq!(model.theta.len(), model.mlp.num_params());
    assert!(model.theta.iter().all(|v| v.is_finite()));
    if let Some(s) = model.metadata.get("scaling") {
        if let Ok(scaling) = Scaling::from_metadata(s) {
            assert_eq!(scaling.shift.len(), scaling.scale.len());
        }
    }
});

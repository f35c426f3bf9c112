//! Optimizer names, parameters and the dense-size limit.

mod optim_support;

use curvature::optim::{OptimError, OptimizerSpec, OPTIMIZER_NAMES};
use curvature::{Activation, Loss, Mlp};
use ndarray::Array2;
use optim_support::{uniform_inputs, CPU};

#[test]
fn every_listed_name_parses_and_aliases_map_to_canonical_names() {
    for name in OPTIMIZER_NAMES {
        let spec: OptimizerSpec = name.parse().unwrap();
        let built = spec.build();
        assert_eq!(built.name(), spec.name(), "{name}");
    }
    assert_eq!(
        "lm".parse::<OptimizerSpec>().unwrap().name(),
        "levenberg-marquardt"
    );
    assert_eq!(
        "hf".parse::<OptimizerSpec>().unwrap().name(),
        "hessian-free"
    );
    assert_eq!(" CG-PR ".parse::<OptimizerSpec>().unwrap().name(), "cg-pr");
}

#[test]
fn an_unknown_name_is_an_error_listing_the_names() {
    let err = "adam".parse::<OptimizerSpec>().unwrap_err();
    assert!(matches!(err, OptimError::UnknownOptimizer { .. }));
    let msg = err.to_string();
    for name in OPTIMIZER_NAMES {
        assert!(msg.contains(name), "{msg} lacks {name}");
    }
}

#[test]
fn parameters_are_checked() {
    let mut spec: OptimizerSpec = "cg-fr".parse().unwrap();
    spec.set("line-search", "hessian").unwrap();
    assert!(spec.set("line-search", "exact").is_err());
    let err = spec.set("lr", "0.1").unwrap_err().to_string();
    assert!(
        err.contains("line-search") && err.contains("restart"),
        "{err}"
    );
    let mut gd: OptimizerSpec = "gd".parse().unwrap();
    assert!(gd.set("lr", "-1").is_err());
    assert!(gd.set("lr", "abc").is_err());
    gd.set_all("lr=0.5").unwrap();
    assert!(gd.set_all("lr").is_err());
    let mut hf: OptimizerSpec = "hf".parse().unwrap();
    hf.set_all("preconditioner=true, curvature-fraction=0.25, max-cg=50")
        .unwrap();
    assert!(hf.set("curvature-fraction", "1.5").is_err());
}

#[test]
fn dense_methods_name_the_largest_w_they_allow() {
    let mlp = Mlp::new(&[3, 2], &[Activation::Identity], Loss::Sse, 0.0).unwrap();
    let x = uniform_inputs(10, 3, 0);
    let t = Array2::<f32>::zeros((10, 2));
    for name in ["newton", "lm", "bfgs"] {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        spec.set("max-dense", "5").unwrap();
        let mut engine = (CPU.make)(&mlp, x.view(), t.view());
        let mut theta = vec![0.1; mlp.num_params()];
        let err = spec
            .build()
            .step(engine.as_mut(), &mut theta, 0..10)
            .unwrap_err();
        assert!(
            matches!(err, OptimError::TooLargeForDense { w: 8, max: 5, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("8×8") && msg.contains("is 5"), "{msg}");
    }
    assert_eq!(curvature::optim::dense::max_dense_params(), 8192);
}

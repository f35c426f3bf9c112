//! Optimizer names, parameters and the dense-size limit.

use crate::optim_support;
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
    let err = "lion".parse::<OptimizerSpec>().unwrap_err();
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
    let mut kfac: OptimizerSpec = "kfac".parse().unwrap();
    kfac.set_all("fisher=exact, tikhonov=plain, inverse-every=3, seed=18446744073709551615")
        .unwrap();
    for (key, value) in [
        ("fisher", "gauss-newton"),
        ("tikhonov", "exact"),
        ("decay", "1"),
        ("decay", "-0.1"),
        ("inverse-every", "0"),
        ("damping-every", "0"),
        ("samples", "0"),
        ("damping", "0"),
        ("seed", "-1"),
        ("momentum", "0.9"),
    ] {
        let err = kfac.set(key, value).unwrap_err();
        assert!(
            matches!(err, OptimError::BadParameter { .. }),
            "kfac {key}={value}: {err}"
        );
    }
    let err = kfac.set("lr", "0.1").unwrap_err().to_string();
    assert!(
        err.contains("inverse-every") && err.contains("tikhonov"),
        "{err}"
    );
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

/// The stored form (`optimizer=NAME,key=value,…`, what a checkpoint keeps)
/// parses back to the same spec: for every optimizer at its defaults and with
/// every parameter set away from its default.
#[test]
fn the_stored_form_parses_back_to_the_same_spec() {
    let changed = [
        ("gd", "lr=0.37"),
        ("momentum", "lr=0.01,momentum=0.5"),
        ("nesterov", "momentum=0.99"),
        ("adam", "lr=0.01,beta1=0.8,beta2=0.99,eps=1e-6,amsgrad=true"),
        (
            "adam",
            "schedule=cosine,min-lr=1e-5,warmup=5,warmup-factor=0.1",
        ),
        (
            "adamw",
            "weight-decay=0.05,amsgrad=on,schedule=step,gamma=0.5,step-size=10",
        ),
        ("adamw", "weight-decay=0"),
        (
            "rmsprop",
            "lr=0.001,alpha=0.9,eps=1e-7,momentum=0.9,centered=true",
        ),
        ("rmsprop", "schedule=exponential,gamma=0.97"),
        (
            "adagrad",
            "lr=0.1,lr-decay=0.01,initial-accumulator-value=0.1,eps=1e-8,schedule=exponential",
        ),
        ("gd", "schedule=step,step-size=7,warmup=2"),
        ("momentum", "schedule=cosine,min-lr=0.001"),
        ("newton", "damping=1e-6,max-dense=100"),
        (
            "hessian-diag",
            "lr=0.05,min-eigval=0.3,diagonal=becker-lecun",
        ),
        ("lm", "damping=3.5,max-dense=4000"),
        ("cg-fr", "line-search=hessian,restart=17"),
        ("cg-dy", "restart=3"),
        ("bfgs", "max-dense=77"),
        ("lbfgs", "history=4"),
        (
            "hf",
            "damping=0.1,max-cg=9,preconditioner=true,curvature-fraction=0.125",
        ),
        (
            "kfac",
            "damping=150,fisher=empirical,samples=3,seed=42,decay=0.99,inverse-every=7,\
             damping-every=2,momentum=false,tikhonov=plain",
        ),
        ("kfac", "fisher=exact,decay=0"),
    ];
    let defaults = OPTIMIZER_NAMES.iter().map(|&name| (name, ""));
    for (name, params) in defaults.chain(changed) {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        spec.set_all(params).unwrap();
        let stored = spec.to_stored().unwrap();
        assert!(
            stored.starts_with(&format!("optimizer={},", spec.name())),
            "{stored}"
        );
        let back = OptimizerSpec::from_stored(&stored).unwrap();
        assert_eq!(back, spec, "{name} {params}: {stored}");
        assert_eq!(back.to_stored().unwrap(), stored);
        // Every parameter with a value is in the stored form.
        for key in spec.keys() {
            if let Some(value) = spec.get(key) {
                assert!(stored.contains(&format!("{key}={value}")), "{stored}");
            }
        }
    }
    let hf: OptimizerSpec = "hf".parse().unwrap();
    assert_eq!(
        hf.to_stored().unwrap(),
        "optimizer=hessian-free,damping=1.0,max-cg=250,preconditioner=false,curvature-fraction=1.0"
    );
    let kfac: OptimizerSpec = "kfac".parse().unwrap();
    assert_eq!(
        kfac.to_stored().unwrap(),
        "optimizer=kfac,damping=1.0,fisher=mc,samples=1,seed=0,decay=0.95,inverse-every=20,\
         damping-every=5,momentum=true,tikhonov=factored"
    );
    // CG's restart is unset by default (every W iterations): not stored.
    let cg: OptimizerSpec = "cg-pr".parse().unwrap();
    assert_eq!(cg.to_stored().unwrap(), "optimizer=cg-pr,line-search=wolfe");
    assert_eq!(cg.get("lr"), None);
}

#[test]
fn stored_forms_that_do_not_parse_are_errors() {
    for text in [
        "",
        "lr=0.1",
        "gd,lr=0.1",
        "optimizer=lion",
        "optimizer=gd,lr=-1",
        "optimizer=adam,schedule=linear",
    ] {
        assert!(OptimizerSpec::from_stored(text).is_err(), "`{text}` parsed");
    }
    let err = OptimizerSpec::from_stored("optimizer=gd,momentum=0.9").unwrap_err();
    assert!(matches!(err, OptimError::UnknownParameter { .. }), "{err}");
    // A setting outside the keys (here gd's unused momentum) has no stored form.
    let mut gd: OptimizerSpec = "gd".parse().unwrap();
    if let OptimizerSpec::GradientDescent(c) = &mut gd {
        c.momentum = 0.5;
    }
    let err = gd.to_stored().unwrap_err();
    assert!(matches!(err, OptimError::StoredSpec { .. }), "{err}");
    assert!(err.to_string().contains("optimizer=gd,lr=0.1,"), "{err}");
}

/// Each optimizer's training defaults (what `curvature train` uses when
/// --epochs, --batch-size or --checkpoint-every are not given).
#[test]
fn every_optimizer_owns_its_training_defaults() {
    for name in OPTIMIZER_NAMES {
        let d = name.parse::<OptimizerSpec>().unwrap().training_defaults();
        let want = match name {
            "newton" | "levenberg-marquardt" | "lm" => (20, None, 1),
            "hessian-free" | "hf" => (30, None, 10),
            "gd" | "momentum" | "nesterov" | "adam" | "adamw" | "rmsprop" | "adagrad"
            | "hessian-diag" => (100, Some(32), 10),
            "bfgs" => (200, None, 100),
            "kfac" => (20, Some(256), 10),
            _ => (200, None, 10),
        };
        assert_eq!((d.epochs, d.batch_size, d.checkpoint_every), want, "{name}");
    }
}

/// The first-order methods: PyTorch's defaults in their stored form, their
/// keys (each optimizer's own, then the schedule's), and values out of range.
#[test]
fn first_order_methods_have_pytorchs_defaults_and_the_schedule_keys() {
    let schedule =
        "schedule=constant,step-size=30,min-lr=0.0,warmup=0,warmup-factor=0.3333333333333333";
    for (name, stored) in [
        ("gd", "optimizer=gd,lr=0.1".to_string()),
        ("nesterov", "optimizer=nesterov,lr=0.1,momentum=0.9".to_string()),
        (
            "adam",
            "optimizer=adam,lr=0.001,beta1=0.9,beta2=0.999,eps=1e-8,amsgrad=false".to_string(),
        ),
        (
            "adamw",
            "optimizer=adamw,lr=0.001,beta1=0.9,beta2=0.999,eps=1e-8,amsgrad=false,weight-decay=0.01"
                .to_string(),
        ),
        (
            "rmsprop",
            "optimizer=rmsprop,lr=0.01,alpha=0.99,eps=1e-8,momentum=0.0,centered=false".to_string(),
        ),
        (
            "adagrad",
            "optimizer=adagrad,lr=0.01,lr-decay=0.0,initial-accumulator-value=0.0,eps=1e-10"
                .to_string(),
        ),
    ] {
        let spec: OptimizerSpec = name.parse().unwrap();
        // γ is unset (the schedule's own default) and not stored.
        assert_eq!(spec.to_stored().unwrap(), format!("{stored},{schedule}"));
        assert_eq!(spec.get("gamma"), None);
        assert!(spec.schedule().is_some(), "{name}");
    }
    // Second-order methods have no schedule, and their keys say so.
    for name in ["newton", "hessian-diag", "cg-pr", "lbfgs", "hf", "kfac"] {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        assert!(spec.schedule().is_none(), "{name}");
        let err = spec.set("schedule", "cosine").unwrap_err();
        assert!(matches!(err, OptimError::UnknownParameter { .. }), "{err}");
    }
    // An unknown key lists the valid ones: the optimizer's own and the schedule's.
    for (name, own) in [
        ("adam", &["lr", "beta1", "beta2", "eps", "amsgrad"][..]),
        (
            "adamw",
            &["lr", "beta1", "beta2", "eps", "amsgrad", "weight-decay"],
        ),
        ("rmsprop", &["lr", "alpha", "eps", "momentum", "centered"]),
        (
            "adagrad",
            &["lr", "lr-decay", "initial-accumulator-value", "eps"],
        ),
        ("momentum", &["lr", "momentum"]),
    ] {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        let err = spec.set("betas", "0.9").unwrap_err();
        assert!(matches!(err, OptimError::UnknownParameter { .. }), "{err}");
        let listed = own.iter().chain(&curvature::optim::SCHEDULE_KEYS);
        let msg = err.to_string();
        let want = listed.copied().collect::<Vec<_>>().join(", ");
        assert!(msg.ends_with(&want), "{name}: {msg}");
    }
    // Adam has no weight-decay of its own: E's --l2 is PyTorch's coupled decay.
    let mut adam: OptimizerSpec = "adam".parse().unwrap();
    assert!(adam.set("weight-decay", "0.1").is_err());
    // Values out of range.
    for (name, key, value) in [
        ("adam", "beta1", "1"),
        ("adam", "beta2", "-0.1"),
        ("adam", "eps", "0"),
        ("adam", "amsgrad", "maybe"),
        ("adamw", "weight-decay", "-1"),
        ("rmsprop", "alpha", "1.5"),
        ("rmsprop", "momentum", "-0.5"),
        ("adagrad", "lr-decay", "-1"),
        ("adagrad", "initial-accumulator-value", "-0.1"),
        ("adagrad", "lr", "0"),
        ("gd", "schedule", "linear"),
        ("gd", "gamma", "0"),
        ("gd", "step-size", "0"),
        ("gd", "min-lr", "-1"),
        ("gd", "warmup", "-1"),
        ("gd", "warmup-factor", "0"),
        ("gd", "warmup-factor", "1.5"),
    ] {
        let mut spec: OptimizerSpec = name.parse().unwrap();
        let err = spec.set(key, value).unwrap_err();
        assert!(
            matches!(err, OptimError::BadParameter { .. }),
            "{name} {key}={value}: {err}"
        );
    }
    // A set γ is stored; the schedule keys are case-insensitive in their value.
    let mut gd: OptimizerSpec = "gd".parse().unwrap();
    gd.set_all("schedule=Cosine,gamma=0.5").unwrap();
    assert_eq!(gd.get("schedule").as_deref(), Some("cosine"));
    assert!(gd.to_stored().unwrap().contains(",gamma=0.5,"));
}

//! The strong-Wolfe line search returns a step meeting both conditions, with
//! the loss and gradient of the point it returns, for both c₂ settings and
//! for first guesses far too short and far too long.

use crate::optim_support;
use curvature::optim::line_search::{strong_wolfe, WolfeConfig};
use curvature::optim::vector::{added, dot};
use curvature::{Activation, Loss, Mlp};
use ndarray::Array2;
use optim_support::{uniform_inputs, CPU};

#[test]
fn the_returned_step_meets_both_strong_wolfe_conditions() {
    let x = uniform_inputs(64, 3, 9);
    let t = Array2::from_shape_fn((64, 1), |(n, _)| f32::from(x[[n, 0]] * x[[n, 1]] > 0.0));
    let mlp = Mlp::new(
        &[3, 4, 1],
        &[Activation::Tanh, Activation::Sigmoid],
        Loss::Bce,
        0.0,
    )
    .unwrap();
    let mut engine = (CPU.make)(&mlp, x.view(), t.view());
    let theta = mlp.init_params(3);
    let (loss0, g) = engine.loss_grad(&theta, 0..64).unwrap();
    let d: Vec<f64> = g.iter().map(|v| -v).collect();
    let slope0 = dot(&g, &d);
    for config in [
        WolfeConfig::quasi_newton(),
        WolfeConfig::conjugate_gradient(),
    ] {
        for alpha0 in [1e-6, 1.0, 1e4] {
            let o = strong_wolfe(
                engine.as_mut(),
                &theta,
                0..64,
                loss0,
                slope0,
                &d,
                alpha0,
                &config,
            )
            .unwrap()
            .expect("a step exists along a descent direction");
            assert!(
                o.strong_wolfe,
                "c2 {} α0 {alpha0}: budget ran out",
                config.c2
            );
            assert!(
                o.loss <= loss0 + config.c1 * o.alpha * slope0,
                "sufficient decrease"
            );
            assert!(
                dot(&o.grad, &d).abs() <= -config.c2 * slope0,
                "curvature condition"
            );
            let (e, grad) = engine
                .loss_grad(&added(&theta, o.alpha, &d), 0..64)
                .unwrap();
            assert_eq!((e, grad), (o.loss, o.grad.clone()), "reported point");
            assert!(o.evaluations <= config.max_evaluations);
        }
    }
    // An ascent direction has no step: None, not a panic.
    let up: Vec<f64> = g.clone();
    let none = strong_wolfe(
        engine.as_mut(),
        &theta,
        0..64,
        loss0,
        dot(&g, &up),
        &up,
        1.0,
        &WolfeConfig::quasi_newton(),
    )
    .unwrap();
    assert!(none.is_none());
}

//! Device faults injected through the test hooks of `GpuContext` (`TestFaults`,
//! `lose_device_for_testing`): buffers over the adapter's limits (lowered limits), the
//! row, column and readback chunking those limits force (checked against the CPU
//! reference), and a lost device; and the same faults in the `curvature train` binary
//! (through the `CURVATURE_TEST_*` variables read by `Device::open`). Every fault must
//! come back as an error value — one line naming what was being allocated or run, the
//! limit or reason, and what to try — never a panic or a hang.
//!
//! An out-of-memory error cannot be provoked on a software adapter (llvmpipe allocates
//! lazily from host memory); its classification is unit-tested in `src/gpu/context.rs`.

use crate::gpu_support;
use curvature::engine::device::Device;
use curvature::engine::ReferenceEngine;
use curvature::gpu::{AdapterChoice, AdapterOptions, GpuContext, GpuError, TestFaults};
use curvature::{Activation, Curvature, Error, Loss};
use gpu_support::{assert_close, flat, scaled_to, Case, TOL_CURVATURE, TOL_FORWARD, TOL_GRADIENT};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// A fresh context (the faults below must not touch the context other tests share), or
/// `None` after printing SKIPPED when there is no adapter — unless CURVATURE_REQUIRE_GPU=1.
fn context(faults: TestFaults) -> Option<Arc<GpuContext>> {
    let opts = AdapterOptions {
        choice: AdapterChoice::Gpu,
        name: std::env::var("CURVATURE_ADAPTER").ok(),
    };
    let ctx = GpuContext::new_with_faults_for_testing(&opts, faults);
    match ctx {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("CURVATURE_REQUIRE_GPU=1 but no GPU context: {e}");
            }
            println!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// 16 KiB per buffer: above the small test networks' θ, below the over-limit cases.
const SMALL_BUFFER_BYTES: u64 = 16 << 10;

/// Asserts that a fault's message is one line and says what to try.
fn assert_actionable(msg: &str) {
    assert!(!msg.contains('\n'), "not one line: {msg}");
    assert!(msg.contains("--device cpu"), "no way out: {msg}");
}

/// The GPU error inside a crate error, or a failure naming what came instead.
fn gpu_error<T>(result: curvature::Result<T>) -> GpuError {
    match result {
        Err(Error::Gpu(e)) => e,
        Err(other) => panic!("expected a GPU error, got: {other}"),
        Ok(_) => panic!("expected a GPU error, got a result"),
    }
}

#[test]
fn a_network_whose_parameters_exceed_the_limit_is_refused_by_name() {
    let lowered = TestFaults {
        storage_binding_bytes: Some(SMALL_BUFFER_BYTES),
        ..TestFaults::default()
    };
    let Some(ctx) = context(lowered) else {
        return;
    };
    // W = 64·80 + 80 + 80·10 + 10 = 6010 parameters = 24040 bytes of f32 > 16384.
    let case = Case::new(&[64, 80, 10], Activation::Tanh, Loss::Ce, 0.0, 8, 1);
    assert_eq!(case.mlp.num_params(), 6010);
    let (x, t) = (case.x.mapv(|v| v as f32), case.t.mapv(|v| v as f32));
    let err = gpu_error(Device::Gpu(ctx).engine(&case.mlp, x.view(), t.view()));
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, GpuError::Allocation { bytes: 24040, .. }),
        "{msg}"
    );
    assert!(msg.contains("θ (6010 parameters of 64-80-10"), "{msg}");
    assert!(msg.contains("at most 16384 bytes"), "{msg}");
    assert_actionable(&msg);
}

#[test]
fn one_row_over_the_limit_is_refused_by_the_buffer_it_needs() {
    let lowered = TestFaults {
        storage_binding_bytes: Some(SMALL_BUFFER_BYTES),
        ..TestFaults::default()
    };
    let Some(ctx) = context(lowered) else {
        return;
    };
    // θ fits (4·300 + 300 + 300·3 + 3 = 2403 floats), but one row's R-propagated
    // pre-activations for 16 vectors, 16 · (300 + 3) floats = 19392 bytes, do not.
    let case = Case::new(&[4, 300, 3], Activation::Tanh, Loss::Ce, 0.0, 8, 2);
    let (x, t) = (case.x.mapv(|v| v as f32), case.t.mapv(|v| v as f32));
    let err = gpu_error(Device::Gpu(ctx).engine(&case.mlp, x.view(), t.view()));
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, GpuError::Allocation { bytes: 19392, .. }),
        "{msg}"
    );
    assert!(msg.contains("R{a} (1 row)"), "{msg}");
    assert_actionable(&msg);
}

#[test]
fn the_outer_product_over_the_limit_is_an_error_not_a_panic() {
    let lowered = TestFaults {
        storage_binding_bytes: Some(SMALL_BUFFER_BYTES),
        ..TestFaults::default()
    };
    let Some(ctx) = context(lowered) else {
        return;
    };
    // W = 5·40 + 40 + 40·3 + 3 = 363: the (W, W) matrix needs 527076 bytes.
    let case = Case::new(&[5, 40, 3], Activation::Tanh, Loss::Ce, 1e-3, 20, 3);
    let mut eng = case.engine(&ctx);
    let err = gpu_error(eng.outer_product(&case.theta, 0..20));
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        matches!(err, GpuError::Allocation { bytes: 527076, .. }),
        "{msg}"
    );
    assert_actionable(&msg);
    // The engine still works after the refusal.
    let e = eng.loss(&case.theta, 0..20).unwrap();
    assert!(e.is_finite());
}

#[test]
fn chunking_forced_by_low_limits_still_matches_the_cpu() {
    // 2 KiB storage buffers (512 floats): 2 rows per chunk (one row's 16 R-vectors take
    // 16·15 floats), 4 vectors of W = 111 per block; 256-byte staging (64 floats): every
    // result longer than that is read back in pieces.
    let lowered = TestFaults {
        storage_binding_bytes: Some(2 << 10),
        staging_bytes: Some(256),
        ..TestFaults::default()
    };
    let Some(ctx) = context(lowered) else {
        return;
    };
    let n = 30;
    let case = Case::new(&[5, 12, 3], Activation::Tanh, Loss::Ce, 1e-3, n, 4);
    let (x, t) = (case.x.mapv(|v| v as f32), case.t.mapv(|v| v as f32));
    let mut gpu = case.engine(&ctx);
    assert_eq!(
        gpu.chunk_rows(),
        2,
        "the lowered limit must force row chunks"
    );
    assert_eq!(gpu.vectors_per_block(), 4, "and column blocks");
    let mut cpu = ReferenceEngine::new(&case.mlp, x.view(), t.view()).unwrap();
    let theta = &case.theta;

    let (e, g) = gpu.loss_grad(theta, 0..n).unwrap();
    let (e_cpu, g_cpu) = cpu.loss_grad(theta, 0..n).unwrap();
    assert_close("loss (chunked)", &[e], &[e_cpu], TOL_FORWARD);
    assert_close(
        "gradient (chunked, 2 staging pieces)",
        &g,
        &g_cpu,
        scaled_to(TOL_GRADIENT, &g_cpu),
    );

    let y = gpu.outputs(theta, 3..27).unwrap();
    let y_cpu = cpu.outputs(theta, 3..27).unwrap();
    assert_close("outputs (chunked)", &flat(&y), &flat(&y_cpu), TOL_FORWARD);

    // 7 vectors: a block of 4 and one of 3.
    let v = case.vectors(7, 5);
    let hv = flat(&gpu.hvp_block(theta, 1..n, v.view()).unwrap());
    let hv_cpu = flat(&cpu.hvp_block(theta, 1..n, v.view()).unwrap());
    assert_close(
        "Hv k=7 (chunked)",
        &hv,
        &hv_cpu,
        scaled_to(TOL_CURVATURE, &hv_cpu),
    );
    let gv = flat(&gpu.gvp_block(theta, 0..n, v.view()).unwrap());
    let gv_cpu = flat(&cpu.gvp_block(theta, 0..n, v.view()).unwrap());
    assert_close(
        "Gv k=7 (chunked)",
        &gv,
        &gv_cpu,
        scaled_to(TOL_CURVATURE, &gv_cpu),
    );

    // The exact diagonal over every chunk; H takes one submit per block of 4 columns
    // (28 blocks): on 8 rows (4 chunks) to keep the test short on a software adapter.
    let d = gpu.diag_hessian(theta, 0..n).unwrap();
    let d_cpu = cpu.diag_hessian(theta, 0..n).unwrap();
    assert_close(
        "diag H (chunked)",
        &d,
        &d_cpu,
        scaled_to(TOL_CURVATURE, &d_cpu),
    );
    let dg = gpu.diag_ggn(theta, 0..n).unwrap();
    let dg_cpu = cpu.diag_ggn(theta, 0..n).unwrap();
    assert_close(
        "diag G (chunked)",
        &dg,
        &dg_cpu,
        scaled_to(TOL_CURVATURE, &dg_cpu),
    );

    let h = flat(&gpu.hessian(theta, 2..10).unwrap());
    let h_cpu = flat(&cpu.hessian(theta, 2..10).unwrap());
    assert_close("H (chunked)", &h, &h_cpu, scaled_to(TOL_CURVATURE, &h_cpu));
}

#[test]
fn kernel_parameters_over_the_buffer_limit_are_an_error_naming_them() {
    // Every buffer capped at 4 KiB: the storage buffers of this network fit (in chunks),
    // but the uniform buffer of kernel parameters (≥ 64 slots of ≥ 128 bytes) does not.
    let lowered = TestFaults {
        buffer_bytes: Some(4 << 10),
        ..TestFaults::default()
    };
    let Some(ctx) = context(lowered) else {
        return;
    };
    let case = Case::new(&[5, 7, 3], Activation::Tanh, Loss::Ce, 1e-3, 20, 8);
    let mut eng = case.engine(&ctx);
    let err = gpu_error(eng.loss(&case.theta, 0..20));
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, GpuError::Allocation { .. }), "{msg}");
    assert!(msg.contains("kernel parameters"), "{msg}");
    assert!(
        msg.contains("at most 4096 bytes = 4.0 KiB per buffer"),
        "{msg}"
    );
    assert_actionable(&msg);
}

/// Generous bound on the lost-device test (it takes seconds): reaching it means a hang.
const HANG_GUARD: Duration = Duration::from_secs(300);

#[test]
fn a_lost_device_fails_every_later_operation_with_lost() {
    let Some(ctx) = context(TestFaults::default()) else {
        return;
    };
    // Run in a thread so that a hang becomes a failure that says so.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let case = Case::new(&[5, 7, 3], Activation::Tanh, Loss::Ce, 1e-3, 20, 6);
        let mut eng = case.engine(&ctx);
        let before = eng.loss(&case.theta, 0..20).unwrap();
        assert!(before.is_finite());

        ctx.lose_device_for_testing();

        let mut messages = Vec::new();
        let v = case.vectors(2, 7);
        for err in [
            gpu_error(eng.loss(&case.theta, 0..20)),
            gpu_error(eng.loss_grad(&case.theta, 0..20).map(|r| r.0)),
            gpu_error(eng.hvp_block(&case.theta, 0..20, v.view())),
            gpu_error(eng.hessian(&case.theta, 0..20)),
        ] {
            assert!(matches!(err, GpuError::Lost { .. }), "{err}");
            messages.push(err.to_string());
        }
        // A new engine on the lost device is refused at its first allocation.
        let (x, t) = (case.x.mapv(|v| v as f32), case.t.mapv(|v| v as f32));
        let err = gpu_error(Device::Gpu(ctx.clone()).engine(&case.mlp, x.view(), t.view()));
        assert!(matches!(err, GpuError::Lost { .. }), "{err}");
        messages.push(err.to_string());
        let _ = tx.send(messages);
    });
    let messages = rx
        .recv_timeout(HANG_GUARD)
        .expect("the lost-device operations panicked (see above) or hung");
    for msg in &messages {
        println!("{msg}");
        assert_actionable(msg);
        assert!(msg.contains("was lost while"), "{msg}");
        assert!(msg.contains("run the command again"), "{msg}");
    }
    assert!(messages[0].contains("running `loss`"), "{}", messages[0]);
    assert!(messages[4].contains("allocating `θ"), "{}", messages[4]);
}

/// `curvature train` on the GPU with `env` set (the device's test-fault variables), in a
/// fresh directory: its output, or `None` after printing SKIPPED when there is no adapter.
fn train_with_faults(env: &[(&str, &str)], args: &[&str]) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_curvature"))
        .args(["train", "--device", "gpu", "--quiet"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .output()
        .expect("the curvature binary runs");
    if gpu_support::child_found_no_gpu(&out) {
        return None;
    }
    Some(out)
}

/// The one `error` line of a failed run (asserting it failed, without a panic).
fn the_error_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    // Mesa's software driver prints `error: XDG_RUNTIME_DIR is invalid…` when that
    // variable is unset; that line is the driver's, not curvature's.
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("error") && !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected, stderr: {err}");
    println!("{}", lines[0]);
    lines[0].to_string()
}

#[test]
fn train_on_a_device_lost_mid_run_stops_with_one_line() {
    // The device is lost before the 11th operation: inside the first epoch.
    let Some(out) = train_with_faults(
        &[("CURVATURE_TEST_LOSE_DEVICE_AFTER_OPS", "10")],
        &["--epochs", "2"],
    ) else {
        return;
    };
    let line = the_error_line(&out);
    assert!(line.contains("the GPU device was lost while"), "{line}");
    assert_actionable(&line);
    assert_eq!(out.status.code(), Some(3), "a device fault exits with 3");
}

#[test]
fn train_with_a_network_over_the_limit_stops_with_one_line() {
    // 64-80-10: θ is 6010 parameters = 24040 bytes, over a 16 KiB storage binding.
    let Some(out) = train_with_faults(
        &[("CURVATURE_TEST_STORAGE_BINDING_BYTES", "16384")],
        &["--hidden", "80", "--epochs", "1"],
    ) else {
        return;
    };
    let line = the_error_line(&out);
    assert!(
        line.contains("cannot allocate `θ (6010 parameters"),
        "{line}"
    );
    assert!(line.contains("24040 bytes"), "{line}");
    assert_actionable(&line);
    assert_eq!(out.status.code(), Some(3), "a device fault exits with 3");
}

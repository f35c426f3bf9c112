//! Where the curvature operations run: the runtime `Device` (CPU reference or a
//! wgpu adapter), chosen by `--device auto|gpu|cpu` and optionally an adapter
//! name, and the `Engine` it binds to a model and data set.
//!
//! `auto` takes a hardware GPU when there is one and otherwise the CPU path,
//! saying so: a software adapter (llvmpipe) is slower than the CPU path on the
//! same cores. `gpu` takes any adapter, software ones included.

use super::{Backend, DeviceTraining, Diagonal, Kind, Limits};
use crate::cpu_fast::FastCpuEngine;
use crate::error::{Error, Result};
use crate::gpu::{AdapterChoice, AdapterOptions, GpuContext, GpuEngine, GpuError, TestFaults};
use crate::model::Mlp;
use ndarray::{Array2, ArrayView2};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

/// The user's choice of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A hardware GPU if present, else the CPU.
    Auto,
    /// Any GPU adapter, software ones included; an error if there is none.
    Gpu,
    /// The CPU (the fast engine, f64).
    Cpu,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(format!("unknown device `{other}`: use auto, gpu or cpu")),
        }
    }
}

/// The floating-point precision of a CPU engine (`--precision f32|f64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            other => Err(format!("unknown precision `{other}`: use f32 or f64")),
        }
    }
}

/// A device, opened once and shared by every engine bound on it.
#[derive(Clone)]
pub enum Device {
    /// The fast CPU engine in f64 (`cpu_fast`), parity-tested against the f64
    /// reference (`cpu`, which `verify` and the tests keep as the specification).
    FastCpuF64,
    /// The fast CPU engine in f32 (`--precision f32`).
    FastCpuF32,
    Gpu(Arc<GpuContext>),
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Device {
    /// Opens the device the user chose. The second value is a note for the
    /// user when `auto` fell back to the CPU (why), else `None`.
    pub fn open(choice: DeviceChoice, adapter: Option<&str>) -> Result<(Device, Option<String>)> {
        let opts = |choice| AdapterOptions {
            choice,
            name: adapter.map(str::to_string),
        };
        let faults = test_faults_from_env()?;
        let context = |choice| {
            if faults == TestFaults::default() {
                GpuContext::new(&opts(choice))
            } else {
                GpuContext::new_with_faults_for_testing(&opts(choice), faults)
            }
        };
        match choice {
            DeviceChoice::Cpu => Ok((Device::FastCpuF64, None)),
            DeviceChoice::Gpu => Ok((Device::Gpu(context(AdapterChoice::Gpu)?), None)),
            DeviceChoice::Auto => match context(AdapterChoice::Auto) {
                Ok(ctx) => Ok((Device::Gpu(ctx), None)),
                // A named adapter that does not exist is the user's mistake, not a reason to fall back.
                Err(e @ GpuError::NoMatch { .. }) => Err(Error::Gpu(e)),
                Err(e) => Ok((
                    Device::FastCpuF64,
                    Some(format!("using the CPU device: {e}")),
                )),
            },
        }
    }

    /// E.g. `cpu (f64, faer GEMM)` or `gpu: NVIDIA H100 (Vulkan)`.
    pub fn describe(&self) -> String {
        match self {
            Device::FastCpuF64 => "cpu (f64, faer GEMM)".to_string(),
            Device::FastCpuF32 => "cpu (f32, faer GEMM)".to_string(),
            Device::Gpu(ctx) => {
                let s = ctx.summary();
                format!("gpu: {} ({}, {})", s.name, s.backend, s.device_type)
            }
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// The same device in another precision: the CPU runs f32 or f64; a GPU
    /// computes in f32 whatever is asked (its storage buffers are f32).
    pub fn with_precision(self, precision: Precision) -> Device {
        match (self, precision) {
            (Device::FastCpuF64 | Device::FastCpuF32, Precision::F64) => Device::FastCpuF64,
            (Device::FastCpuF64 | Device::FastCpuF32, Precision::F32) => Device::FastCpuF32,
            (gpu, _) => gpu,
        }
    }

    /// The precision the device computes in.
    pub fn precision(&self) -> Precision {
        match self {
            Device::FastCpuF64 => Precision::F64,
            Device::FastCpuF32 | Device::Gpu(_) => Precision::F32,
        }
    }

    /// Binds `mlp` to X (N, D) and T (N, K) on this device (uploading them once on a GPU).
    pub fn engine(&self, mlp: &Mlp, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<Engine> {
        Ok(match self {
            Device::FastCpuF64 => Engine::FastCpuF64(FastCpuEngine::new(mlp, x, t)?),
            Device::FastCpuF32 => Engine::FastCpuF32(FastCpuEngine::new(mlp, x, t)?),
            Device::Gpu(ctx) => Engine::Gpu(Box::new(GpuEngine::new(ctx.clone(), mlp, x, t)?)),
        })
    }
}

/// Environment variables that inject device faults into `Device::open`, so that tests
/// reach the fault paths of the `curvature` binary itself (a test hook: unset in use).
pub const TEST_FAULT_VARIABLES: [&str; 3] = [
    "CURVATURE_TEST_STORAGE_BINDING_BYTES",
    "CURVATURE_TEST_BUFFER_BYTES",
    "CURVATURE_TEST_LOSE_DEVICE_AFTER_OPS",
];

/// The faults named by `TEST_FAULT_VARIABLES` (none when unset); a value that is not a
/// whole number is an error rather than silently no fault.
fn test_faults_from_env() -> Result<TestFaults> {
    let read =
        |name: &str| -> Result<Option<u64>> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::Input(format!("{name}={v}: give a whole number, or unset it"))
                }),
            }
        };
    let [storage, buffer, lose] = TEST_FAULT_VARIABLES;
    Ok(TestFaults {
        storage_binding_bytes: read(storage)?,
        buffer_bytes: read(buffer)?,
        staging_bytes: None,
        lose_device_after_ops: read(lose)?,
    })
}

/// A device bound to one model and data set: the backend it opened, dispatched.
pub enum Engine {
    /// The fast CPU engine, f64.
    FastCpuF64(FastCpuEngine<f64>),
    /// The fast CPU engine, f32.
    FastCpuF32(FastCpuEngine<f32>),
    /// The GPU engine (f32 on the device).
    Gpu(Box<GpuEngine>),
}

macro_rules! dispatch {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            Engine::FastCpuF64($e) => $body,
            Engine::FastCpuF32($e) => $body,
            Engine::Gpu($e) => $body,
        }
    };
}

impl Backend for Engine {
    fn architecture(&self) -> &Mlp {
        dispatch!(self, e => e.architecture())
    }
    fn data_rows(&self) -> usize {
        dispatch!(self, e => e.data_rows())
    }
    fn data_loss(&mut self, theta: &[f64], rows: Range<usize>) -> Result<f64> {
        dispatch!(self, e => e.data_loss(theta, rows))
    }
    fn data_loss_grad(&mut self, theta: &[f64], rows: Range<usize>) -> Result<(f64, Vec<f64>)> {
        dispatch!(self, e => e.data_loss_grad(theta, rows))
    }
    fn network_outputs(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        dispatch!(self, e => e.network_outputs(theta, rows))
    }
    fn data_products(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
        v: ArrayView2<f64>,
    ) -> Result<Array2<f64>> {
        dispatch!(self, e => e.data_products(kind, theta, rows, v))
    }
    fn data_diagonal(
        &mut self,
        which: Diagonal,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Vec<f64>> {
        dispatch!(self, e => e.data_diagonal(which, theta, rows))
    }
    fn data_matrix(
        &mut self,
        kind: Kind,
        theta: &[f64],
        rows: Range<usize>,
    ) -> Result<Array2<f64>> {
        dispatch!(self, e => e.data_matrix(kind, theta, rows))
    }
    fn data_outer_product(&mut self, theta: &[f64], rows: Range<usize>) -> Result<Array2<f64>> {
        dispatch!(self, e => e.data_outer_product(theta, rows))
    }
    fn bind_data(&mut self, x: ArrayView2<f32>, t: ArrayView2<f32>) -> Result<()> {
        dispatch!(self, e => e.bind_data(x, t))
    }
    fn limits(&self) -> Limits {
        dispatch!(self, e => e.limits())
    }
    fn precision(&self) -> Precision {
        dispatch!(self, e => e.precision())
    }
    fn device_training(&mut self) -> Option<&mut dyn DeviceTraining> {
        dispatch!(self, e => e.device_training())
    }
}

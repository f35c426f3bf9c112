//! `curvature`: train small MLPs on any GPU and compute the second-order
//! structure of their loss, every result checked against a CPU reference.
//!
//! Exit codes: 0 success; 1 an error of the input, the files or the run; 2 a
//! usage error (clap); 3 a fault of the GPU device (lost, out of memory, over
//! its limits, a failed operation: [`curvature::Error::is_device_fault`]), after
//! which the same command may succeed when run again, or with `--device cpu`;
//! 130 / 143 interrupted by SIGINT / SIGTERM with a checkpoint written.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit code of a device fault: the input was fine, the device failed
/// (scripts can tell it from 1 and retry, or fall back to `--device cpu`).
const EXIT_DEVICE_FAULT: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "curvature",
    version,
    about = "Train MNIST-sized MLPs on any GPU (wgpu) and compute exact second-order structure of their loss",
    long_about = "Train MNIST-sized MLPs on any GPU that wgpu reaches (Vulkan, Metal, DX12) and compute the \
second-order structure of their loss — exact Hessian-vector products by R-propagation, Gauss-Newton products, \
the Hessian diagonal, the full Hessian and its inverse — every result checked against a CPU reference.\n\n\
The objective is the batch mean plus an L2 penalty on weights, E(θ) = (1/N) Σ E_n(θ) + (λ/2) Σ ‖W_l‖².",
    after_help = "Examples:\n  \
curvature train                                  # the main job: digits, 64-50-10, a second-order optimizer\n  \
curvature eval --model runs/X/model.safetensors --data digits\n  \
curvature compute hvp --model m.safetensors --data digits --vectors v.safetensors --out hv.safetensors\n  \
curvature devices                                # which adapters there are, and what `auto` picks\n  \
curvature parity                                 # check this machine's GPU against the CPU reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train an MLP (default: the main job — digits, 64-50-10 sigmoid/softmax, Hessian-free).
    #[command(after_help = "Examples:\n  \
curvature train                                   # the main job on the bundled digits\n  \
curvature train --optimizer lm --epochs 10 --device gpu\n  \
curvature train --data mnist10k --hidden 128 --optimizer hessian-free --plot mnist.svg\n  \
curvature train --data xor --hidden 2 --optimizer bfgs --validation-fraction 0 --test-fraction 0")]
    Train(Box<cli::train::TrainArgs>),
    /// Loss, accuracy and confusion matrix of a saved model on a data set.
    #[command(
        after_help = "Example:\n  curvature eval --model runs/X/model.safetensors --data digits --split test"
    )]
    Eval(cli::eval::EvalArgs),
    /// One prediction and its class probabilities per row of a CSV of inputs.
    #[command(
        after_help = "Example:\n  curvature predict --model runs/X/model.safetensors --input rows.csv"
    )]
    Predict(cli::predict::PredictArgs),
    /// Compute one curvature quantity of a saved model and write it to a safetensors file.
    #[command(after_help = "Examples:\n  \
curvature compute grad --model m.safetensors --data digits --out g.safetensors\n  \
curvature compute hvp --model m.safetensors --data digits --vectors v.safetensors --out hv.safetensors\n\n\
Vectors come in tensor `v` (W) or `V` (k, W); the result is the tensor named after the quantity\n\
(hvp, diag_hessian, ...), in f64. In Python: safetensors.numpy.load_file(\"hv.safetensors\")[\"hvp\"].")]
    Compute(cli::compute::ComputeArgs),
    /// Spectrum of H or G: Lanczos eigenvalues, trace, condition number, density picture, per layer.
    #[command(
        after_help = "Example:\n  curvature hessian --model runs/X/model.safetensors --data digits --plot density.png"
    )]
    Hessian(Box<cli::hessian::HessianArgs>),
    /// Laplace approximation: calibrated predictive, evidence-maximising α; accuracy, NLL, ECE before and after.
    #[command(
        after_help = "Example:\n  curvature laplace --model runs/X/model.safetensors --data digits"
    )]
    Laplace(Box<cli::laplace::LaplaceArgs>),
    /// Prune weights by OBD, OBS or magnitude; accuracy and loss before and after, beside magnitude pruning.
    #[command(
        after_help = "Example:\n  curvature prune --model runs/X/model.safetensors --data digits --method obs --fraction 0.5"
    )]
    Prune(Box<cli::prune::PruneArgs>),
    /// List the GPU adapters, their limits, and which device `--device auto` picks.
    #[command(
        after_help = "Example:\n  curvature devices\n  WGPU_BACKEND=gl curvature devices      # search OpenGL adapters instead of Vulkan/Metal/DX12"
    )]
    Devices,
    /// Benchmark the curvature operations on the standard workloads (time, GFLOP/s, fraction of peak).
    #[command(after_help = "Examples:\n  \
curvature bench                                   # workload S on the CPU, f64\n  \
curvature bench --workload all --precision f32 --json bench.json\n  \
curvature bench --workload L --device gpu")]
    Bench(cli::bench::BenchArgs),
    /// Check this machine's GPU against the CPU reference on the digits network; exit 1 on any failure.
    #[command(after_help = "Example:\n  curvature parity --adapter nvidia")]
    Parity(cli::parity::ParityArgs),
}

fn main() -> ExitCode {
    cli::runtime_dir::ensure_runtime_dir();
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Train(args) => match cli::train::run(args) {
            // Interrupted by SIGINT (130) or SIGTERM (143), its checkpoint written.
            Ok(Some(code)) => return ExitCode::from(code),
            other => other.map(|_| true),
        },
        Command::Eval(args) => cli::eval::run(args).map(|()| true),
        Command::Predict(args) => cli::predict::run(args).map(|()| true),
        Command::Compute(args) => cli::compute::run(args).map(|()| true),
        Command::Hessian(args) => cli::hessian::run(args).map(|()| true),
        Command::Laplace(args) => cli::laplace::run(args).map(|()| true),
        Command::Prune(args) => cli::prune::run(args).map(|()| true),
        Command::Devices => cli::devices::run().map(|()| true),
        Command::Parity(args) => cli::parity::run(args),
        Command::Bench(args) => cli::bench::run(args).map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // One line: the error already names the file, position and what to do
            // (a device fault: run again, or use `--device cpu`).
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(if e.is_device_fault() {
                EXIT_DEVICE_FAULT
            } else {
                1
            })
        }
    }
}

//! Running operations: an [`Executor`] records an [`Op`] into one command encoder,
//! submits it once inside error scopes and reads back only the requested range (through
//! a staging buffer, in pieces when it is long); a [`Runner`] is an executor bound to
//! its context, the handle the engines hold.

use super::device::{GpuBuffer, GpuDevice};
use super::op::{Cmd, Op};
use super::pipelines::{Pipelines, PARAM_BYTES};
use super::GpuContext;
use crate::gpu::error::{human_bytes, one_line, GpuError};
use crate::gpu::kernels::Kernel;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

/// (buffer, first element, element count) to read back after an operation.
pub type Readback<'a> = (&'a GpuBuffer, usize, usize);

/// The uniform buffer that holds every dispatch's parameters (one slot each) and its
/// bind group.
struct ParamBuffer {
    buffer: wgpu::Buffer,
    group: wgpu::BindGroup,
    slots: usize,
}

/// Copies recorded into the staging buffer and not yet read: the encoder they are in,
/// (which range, floats) of each piece in staging order, and the floats staged.
struct Staged {
    encoder: Option<wgpu::CommandEncoder>,
    pieces: Vec<(usize, usize)>,
    filled: usize,
}

/// A host-visible buffer that results are copied into and mapped from.
struct Staging {
    buffer: wgpu::Buffer,
    bytes: u64,
}

/// What running an [`Op`] needs and keeps from one operation to the next: the
/// uniform-parameter buffer, the staging buffer for results and a cache of bind groups.
/// It runs on the device and pipelines it is given, so that the matmul tuning can run
/// kernels while the context is still being built.
pub(super) struct Executor {
    params: Option<ParamBuffer>,
    staging: Option<Staging>,
    /// Bind groups by kernel and the ids of their buffers.
    groups: HashMap<(Kernel, Vec<u64>), wgpu::BindGroup>,
}

impl Executor {
    pub fn new() -> Executor {
        Executor {
            params: None,
            staging: None,
            groups: HashMap::new(),
        }
    }

    /// Runs `op` (one encoder, one submit) and returns the `readback` range (empty if none).
    pub fn run(
        &mut self,
        device: &GpuDevice,
        pipelines: &Pipelines,
        op: Op,
        readback: Option<Readback>,
    ) -> Result<Vec<f32>, GpuError> {
        let ranges: Vec<Readback> = readback.into_iter().collect();
        let mut results = self.run_gather(device, pipelines, op, &ranges)?;
        Ok(results.pop().unwrap_or_default())
    }

    /// Runs `op` (one encoder, one submit) and returns each of the `readbacks` ranges,
    /// read back together (one map while they fit one staging buffer).
    pub fn run_gather(
        &mut self,
        device: &GpuDevice,
        pipelines: &Pipelines,
        op: Op,
        readbacks: &[Readback],
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        let running = format!("running `{}`", op.label);
        device.check_lost(&running)?;
        let dispatches = op.dispatches();
        self.ensure_params(device, pipelines, dispatches)?;
        let slot = pipelines.param_slot as usize;
        let mut words = vec![0u8; dispatches.max(1) * slot];
        let mut i = 0;
        for cmd in &op.cmds {
            if let Cmd::Dispatch { params, .. } = cmd {
                let bytes = &op.params[params.clone()];
                words[i * slot..i * slot + bytes.len()].copy_from_slice(bytes);
                i += 1;
            }
        }
        let Some(param) = &self.params else {
            return Err(GpuError::Operation {
                op: op.label,
                reason: "no parameter buffer".into(),
            });
        };
        device.queue.write_buffer(&param.buffer, 0, &words);
        for cmd in &op.cmds {
            if let Cmd::Dispatch {
                kernel, buffers, ..
            } = cmd
            {
                self.groups
                    .entry(group_key(*kernel, buffers))
                    .or_insert_with(|| bind_group(device, pipelines, *kernel, buffers));
            }
        }
        let mut encoder = device
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(&op.label),
            });
        let mut slot_index = 0u64;
        let mut cmds = op.cmds.iter().peekable();
        while let Some(cmd) = cmds.next() {
            match cmd {
                Cmd::Clear(buf) => encoder.clear_buffer(&buf.raw, 0, None),
                Cmd::Copy(src, dst) => encoder.copy_buffer_to_buffer(
                    &src.raw,
                    0,
                    &dst.raw,
                    0,
                    (src.len() as u64 * 4).min(dst.raw.size()),
                ),
                Cmd::Dispatch { .. } => {
                    // Consecutive dispatches share one compute pass.
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&op.label),
                        timestamp_writes: None,
                    });
                    let mut next = Some(cmd);
                    while let Some(Cmd::Dispatch {
                        kernel,
                        buffers,
                        groups,
                        ..
                    }) = next
                    {
                        pass.set_pipeline(&pipelines.of(*kernel).pipeline);
                        pass.set_bind_group(0, &self.groups[&group_key(*kernel, buffers)], &[]);
                        pass.set_bind_group(
                            1,
                            &param.group,
                            &[(slot_index * pipelines.param_slot) as u32],
                        );
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        slot_index += 1;
                        next = match cmds.peek() {
                            Some(Cmd::Dispatch { .. }) => cmds.next(),
                            _ => None,
                        };
                    }
                }
            }
        }
        let total: usize = readbacks.iter().map(|r| r.2).sum();
        if total == 0 {
            self.submit(device, &running, encoder)?;
            device.check(&running)?;
            return Ok(vec![Vec::new(); readbacks.len()]);
        }
        // The ranges are copied one after the other into the staging buffer and read
        // back when it is full or all are in; the first copies ride in the operation's
        // own submit, so ranges that fit one staging buffer take one submit and one map.
        let piece_len = ((device.limits.staging / 4).max(1) as usize).min(total);
        self.ensure_staging(device, (piece_len * 4) as u64)?;
        let mut results: Vec<Vec<f32>> =
            readbacks.iter().map(|r| Vec::with_capacity(r.2)).collect();
        let mut staged = Staged {
            encoder: Some(encoder),
            pieces: Vec::new(),
            filled: 0,
        };
        for (which, &(buf, offset, len)) in readbacks.iter().enumerate() {
            let mut done = 0;
            while done < len {
                let n = (piece_len - staged.filled).min(len - done);
                let enc = staged.encoder.get_or_insert_with(|| {
                    device
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some(&op.label),
                        })
                });
                if let Some(staging) = &self.staging {
                    enc.copy_buffer_to_buffer(
                        &buf.raw,
                        ((offset + done) * 4) as u64,
                        &staging.buffer,
                        (staged.filled * 4) as u64,
                        (n * 4) as u64,
                    );
                }
                staged.pieces.push((which, n));
                staged.filled += n;
                done += n;
                if staged.filled == piece_len {
                    self.read_staged(device, &running, &op.label, &mut staged, &mut results)?;
                }
            }
        }
        if staged.filled > 0 {
            self.read_staged(device, &running, &op.label, &mut staged, &mut results)?;
        }
        device.check(&running)?;
        Ok(results)
    }

    /// Submits the copies recorded into the staging buffer and hands each piece read
    /// back to its range's result.
    fn read_staged(
        &self,
        device: &GpuDevice,
        running: &str,
        label: &str,
        staged: &mut Staged,
        results: &mut [Vec<f32>],
    ) -> Result<(), GpuError> {
        let Some(encoder) = staged.encoder.take() else {
            return Err(GpuError::Readback(label.to_string()));
        };
        self.submit(device, running, encoder)?;
        let data = self.read_staging(device, label, staged.filled)?;
        let mut at = 0;
        for &(which, n) in &staged.pieces {
            results[which].extend_from_slice(&data[at..at + n]);
            at += n;
        }
        staged.pieces.clear();
        staged.filled = 0;
        Ok(())
    }

    /// Drops the cached bind groups that use `buf`, which is about to be replaced (so the
    /// cache does not keep replaced buffers alive).
    pub fn forget(&mut self, buf: &GpuBuffer) {
        self.groups.retain(|(_, ids), _| !ids.contains(&buf.id));
    }

    /// Submits `encoder` inside error scopes: an out-of-memory or validation error of the
    /// submission comes back as an error of `running`.
    fn submit(
        &self,
        device: &GpuDevice,
        running: &str,
        encoder: wgpu::CommandEncoder,
    ) -> Result<(), GpuError> {
        device.count_submit();
        let ((), err) = device.scoped(|| {
            device.queue.submit([encoder.finish()]);
        });
        match err {
            None => Ok(()),
            Some(err) => Err(device.fault(running, err, |reason| GpuError::Operation {
                op: running.to_string(),
                reason,
            })),
        }
    }

    /// A parameter buffer with a slot for each of `dispatches`: reused while big enough.
    fn ensure_params(
        &mut self,
        device: &GpuDevice,
        pipelines: &Pipelines,
        dispatches: usize,
    ) -> Result<(), GpuError> {
        let have = self.params.as_ref().map_or(0, |p| p.slots);
        if have >= dispatches.max(1) {
            return Ok(());
        }
        if PARAM_BYTES > device.limits.uniform_binding {
            return Err(GpuError::Allocation {
                what: "one kernel's parameters".into(),
                bytes: PARAM_BYTES,
                limit: format!(
                    "the adapter binds at most {} per uniform buffer",
                    human_bytes(device.limits.uniform_binding)
                ),
            });
        }
        let slots = dispatches.max(64).next_power_of_two();
        let bytes = slots as u64 * pipelines.param_slot;
        let what = format!("kernel parameters ({dispatches} dispatches)");
        let buffer = device.raw_buffer(
            &what,
            bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            device.limits.buffer,
            "per buffer",
        )?;
        let (group, err) = device.scoped(|| {
            device.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("kernel parameters"),
                layout: &pipelines.params_layout,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &buffer,
                        offset: 0,
                        size: NonZeroU64::new(PARAM_BYTES),
                    }),
                }],
            })
        });
        if let Some(err) = err {
            let doing = format!("binding `{what}`");
            return Err(device.fault(&doing, err, |reason| GpuError::Operation {
                op: doing.clone(),
                reason,
            }));
        }
        self.params = Some(ParamBuffer {
            buffer,
            group,
            slots,
        });
        Ok(())
    }

    /// A staging buffer of at least `bytes` (≤ the staging limit): reused while big enough.
    fn ensure_staging(&mut self, device: &GpuDevice, bytes: u64) -> Result<(), GpuError> {
        if self.staging.as_ref().is_some_and(|s| s.bytes >= bytes) {
            return Ok(());
        }
        let size = bytes
            .next_power_of_two()
            .max(256)
            .min(device.limits.staging)
            .max(bytes);
        // Dropped first, so that the old and the new buffer are never held together.
        self.staging = None;
        let buffer = device.raw_buffer(
            "readback staging",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            device.limits.buffer,
            "per buffer",
        )?;
        self.staging = Some(Staging {
            buffer,
            bytes: size,
        });
        Ok(())
    }

    /// The first `len` f32 of the staging buffer, once the copies submitted into it
    /// have run: mapped, copied out, unmapped.
    fn read_staging(
        &self,
        device: &GpuDevice,
        label: &str,
        len: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let Some(staging) = &self.staging else {
            return Err(GpuError::Readback(label.to_string()));
        };
        let reading = format!("reading back `{label}`");
        let bytes = (len * 4) as u64;
        let slice = staging.buffer.slice(0..bytes);
        // The map callback runs inside the device poll below; the oneshot channel carries
        // its outcome out, and resolves to None if wgpu dropped the callback unrun.
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r.is_ok());
        });
        if let Err(e) = device.device.poll(wgpu::PollType::wait_indefinitely()) {
            device.check_lost(&reading)?;
            return Err(GpuError::Operation {
                op: reading,
                reason: one_line(&e.to_string()),
            });
        }
        if pollster::block_on(receiver.receive()) != Some(true) {
            // A map fails when the device was lost under it; say so if that is why.
            device.check_lost(&reading)?;
            return Err(GpuError::Readback(label.to_string()));
        }
        let data = {
            let view = slice
                .get_mapped_range()
                .map_err(|_| GpuError::Readback(label.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.buffer.unmap();
        Ok(data)
    }
}

/// The bind-group cache key of a dispatch: its kernel and the ids of its buffers.
fn group_key(kernel: Kernel, buffers: &[GpuBuffer]) -> (Kernel, Vec<u64>) {
    (kernel, buffers.iter().map(|b| b.id).collect())
}

/// The group-0 bind group of `kernel` on `buffers` (in the order of its bindings).
fn bind_group(
    device: &GpuDevice,
    pipelines: &Pipelines,
    kernel: Kernel,
    buffers: &[GpuBuffer],
) -> wgpu::BindGroup {
    let (_, entry, bindings) = kernel.spec();
    let entries: Vec<wgpu::BindGroupEntry> = bindings
        .iter()
        .zip(buffers)
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: b.index,
            resource: buf.raw.as_entire_binding(),
        })
        .collect();
    device.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(entry),
        layout: &pipelines.of(kernel).layout,
        entries: &entries,
    })
}

/// Runs [`Op`]s on one context: an `Executor` (its parameter buffer, staging buffer
/// and bind-group cache, reused from one operation to the next) bound to the context.
pub struct Runner {
    ctx: Arc<GpuContext>,
    executor: Executor,
}

impl Runner {
    pub fn new(ctx: Arc<GpuContext>) -> Runner {
        Runner {
            ctx,
            executor: Executor::new(),
        }
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Drops the cached bind groups that use `buf`, which is about to be replaced (so the
    /// cache does not keep replaced buffers alive).
    pub fn forget(&mut self, buf: &GpuBuffer) {
        self.executor.forget(buf);
    }

    /// Runs `op` (one encoder, one submit) and returns the `readback` range (empty if none).
    pub fn run(&mut self, op: Op, readback: Option<Readback>) -> Result<Vec<f32>, GpuError> {
        self.ctx.device.count_operation();
        let mut out = self
            .executor
            .run(&self.ctx.device, &self.ctx.pipelines, op, readback)?;
        self.ctx.device.corrupt(&mut out);
        Ok(out)
    }

    /// Runs `op` (one encoder, one submit) and returns each of the `readbacks` ranges,
    /// read back together: one map while they fit one staging buffer (64 MiB).
    pub fn run_gather(
        &mut self,
        op: Op,
        readbacks: &[Readback],
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        self.ctx.device.count_operation();
        let mut out =
            self.executor
                .run_gather(&self.ctx.device, &self.ctx.pipelines, op, readbacks)?;
        for part in &mut out {
            self.ctx.device.corrupt(part);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::context::{AdapterChoice, AdapterOptions};

    /// A device lost between the check before an operation and its readback (the window
    /// the check cannot close): the readback reports the loss, without a hang or a panic.
    #[test]
    fn a_device_lost_under_a_readback_is_reported_as_lost() {
        let opts = AdapterOptions {
            choice: AdapterChoice::Gpu,
            name: None,
        };
        let ctx = match GpuContext::new(&opts) {
            Ok(ctx) => ctx,
            Err(e) if std::env::var("CURVATURE_REQUIRE_GPU").as_deref() != Ok("1") => {
                println!("SKIPPED (no GPU adapter): {e}");
                return;
            }
            Err(e) => panic!("CURVATURE_REQUIRE_GPU=1 but no GPU context: {e}"),
        };
        let device = &ctx.device;
        let buf = device.buffer("source", 16).unwrap();
        let mut executor = Executor::new();
        executor.ensure_staging(device, 64).unwrap();
        let mut encoder = device
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        if let Some(staging) = &executor.staging {
            encoder.copy_buffer_to_buffer(&buf.raw, 0, &staging.buffer, 0, 64);
        }
        device.device.destroy();
        let result = executor
            .submit(device, "running `probe`", encoder)
            .and_then(|()| executor.read_staging(device, "probe", 16));
        match result {
            Err(e @ GpuError::Lost { .. }) => println!("{e}"),
            other => panic!("expected Lost, got {other:?}"),
        }
    }
}

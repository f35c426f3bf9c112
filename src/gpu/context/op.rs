//! Recording one operation: an [`Op`] is the ordered list of dispatches (each a kernel,
//! its buffers, its uniform parameters and its workgroup grid), clears and copies that a
//! `Runner` then runs as one command encoder and one submit.

use super::device::GpuBuffer;
use super::pipelines::PARAM_BYTES;
use crate::gpu::kernels::Kernel;
use crate::gpu::params::KernelParams;
use std::ops::Range;

pub(super) enum Cmd {
    Dispatch {
        kernel: Kernel,
        buffers: Vec<GpuBuffer>,
        /// The bytes of its params struct in [`Op::params`].
        params: Range<usize>,
        groups: [u32; 3],
    },
    Clear(GpuBuffer),
    /// Copies the whole of the first buffer into the start of the second.
    Copy(GpuBuffer, GpuBuffer),
}

/// The recorded work of one operation: dispatches and clears, run as one command
/// encoder and one submit by `Runner::run`.
pub struct Op {
    pub(super) label: String,
    pub(super) cmds: Vec<Cmd>,
    /// Every dispatch's uniform parameters, one after the other (the runner copies each
    /// into its own aligned slot of the parameter buffer).
    pub(super) params: Vec<u8>,
}

impl Op {
    pub fn new(label: &str) -> Op {
        Op {
            label: label.to_string(),
            cmds: Vec::new(),
            params: Vec::new(),
        }
    }

    /// Records one dispatch; `buffers` follow the order of `kernel.spec()`'s bindings and
    /// `params` is the uniform struct of its family.
    pub fn dispatch<P: KernelParams>(
        &mut self,
        kernel: Kernel,
        buffers: &[&GpuBuffer],
        params: P,
        groups: [u32; 3],
    ) {
        debug_assert_eq!(buffers.len(), kernel.spec().2.len(), "{kernel:?}");
        debug_assert_eq!(
            kernel.spec().0,
            P::FAMILY,
            "{kernel:?} takes its family's params"
        );
        let bytes = bytemuck::bytes_of(&params);
        debug_assert!(bytes.len() as u64 <= PARAM_BYTES);
        let start = self.params.len();
        self.params.extend_from_slice(bytes);
        self.cmds.push(Cmd::Dispatch {
            kernel,
            buffers: buffers.iter().map(|&b| b.clone()).collect(),
            params: start..self.params.len(),
            groups,
        });
    }

    /// Records zeroing a whole buffer.
    pub fn clear(&mut self, buf: &GpuBuffer) {
        self.cmds.push(Cmd::Clear(buf.clone()));
    }

    /// Records copying the whole of `src` into the start of `dst` (at least as long).
    pub fn copy(&mut self, src: &GpuBuffer, dst: &GpuBuffer) {
        debug_assert!(src.len() <= dst.len());
        self.cmds.push(Cmd::Copy(src.clone(), dst.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// The number of dispatches (each takes one parameter slot).
    pub(super) fn dispatches(&self) -> usize {
        self.cmds
            .iter()
            .filter(|c| matches!(c, Cmd::Dispatch { .. }))
            .count()
    }
}

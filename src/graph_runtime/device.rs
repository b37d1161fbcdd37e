//! The arrays of a CUDA model kept on the GPU: the executor of a model built for
//! [`Target::Cuda`](crate::Target) uploads the parameters once, the inputs at each run,
//! runs every node's kernel on device memory (the buffers of the memory plan allocated
//! once on the GPU), and downloads only the graph outputs.

use super::{CompiledModel, ValueId, ValueKind};
use crate::error::{graph_err, Error, Result};
use crate::runtime::NdArray;
use crate::te::DType;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::sync::Arc;

/// Device memory of one executor.
pub(super) struct DeviceArrays {
    stream: Arc<CudaStream>,
    /// Parameters by value id (uploaded when the state is created).
    params: Vec<Option<CudaSlice<u8>>>,
    /// Graph inputs by value id (uploaded at every run).
    inputs: Vec<Option<CudaSlice<u8>>>,
    /// The buffers of the memory plan.
    buffers: Vec<CudaSlice<u8>>,
}

fn driver(what: &str, e: cudarc::driver::DriverError) -> Error {
    Error::Target(format!("CUDA {} failed: {:?}", what, e))
}

impl DeviceArrays {
    /// Allocate the plan's buffers on the GPU of the model's kernels and upload the
    /// parameters. `None` when the model has no kernel.
    pub(super) fn new(model: &CompiledModel) -> Result<Option<DeviceArrays>> {
        let Some(module) = model.kernels.iter().find_map(|k| k.cuda_module()) else {
            return Ok(None);
        };
        let stream = module.stream()?;
        let alloc = |bytes: usize| {
            stream
                .alloc_zeros::<u8>(bytes.max(1))
                .map_err(|e| driver("allocation", e))
        };
        let mut params = Vec::with_capacity(model.params.len());
        for p in &model.params {
            params.push(match p {
                Some(a) => {
                    let mut d = alloc(a.as_bytes().len())?;
                    if !a.as_bytes().is_empty() {
                        stream
                            .memcpy_htod(a.as_bytes(), &mut d)
                            .map_err(|e| driver("copy of a parameter to the GPU", e))?;
                    }
                    Some(d)
                }
                None => None,
            });
        }
        let buffers = model
            .plan
            .buffers
            .iter()
            .map(|&(bytes, _)| alloc(bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(DeviceArrays {
            stream,
            params,
            inputs: (0..model.graph.values().len()).map(|_| None).collect(),
            buffers,
        }))
    }

    fn ptr(&self, s: &CudaSlice<u8>) -> u64 {
        let (p, _sync) = s.device_ptr(&self.stream);
        p
    }

    /// Run every node on the GPU: upload `inputs` (by value id), launch the kernels in
    /// order, download the graph outputs into `host` (the executor's buffers, by plan
    /// buffer). Returns, for each plan buffer, the value it holds on the host afterwards.
    pub(super) fn run(
        &mut self,
        model: &CompiledModel,
        inputs: &[Option<NdArray>],
        host: &mut [NdArray],
    ) -> Result<Vec<Option<ValueId>>> {
        let g = &model.graph;
        for &v in g.inputs() {
            let Some(a) = &inputs[v.0] else { continue };
            let bytes = a.as_bytes();
            let fits = self.inputs[v.0].as_ref().is_some_and(|d| d.len() == bytes.len().max(1));
            if !fits {
                self.inputs[v.0] = Some(
                    self.stream
                        .alloc_zeros::<u8>(bytes.len().max(1))
                        .map_err(|e| driver("allocation", e))?,
                );
            }
            let d = self.inputs[v.0].as_mut().expect("allocated above");
            if !bytes.is_empty() {
                self.stream
                    .memcpy_htod(bytes, d)
                    .map_err(|e| driver("copy of an input to the GPU", e))?;
            }
        }
        let plan = &model.plan;
        for (node, kernel) in g.nodes().iter().zip(&model.kernels) {
            let addr = |v: ValueId| -> Result<u64> {
                let d = match &g.value(v).kind {
                    ValueKind::Param(_) => self.params[v.0].as_ref(),
                    ValueKind::Input(_) => self.inputs[v.0].as_ref(),
                    ValueKind::Node(_) => plan.storage_of[v.0].map(|b| &self.buffers[b]),
                };
                d.map(|d| self.ptr(d)).ok_or_else(|| {
                    graph_err(&node.name, format!("{} is not on the GPU", g.value_name(v)))
                })
            };
            let mut ins = node.inputs.iter();
            let mut args: Vec<(u64, &[usize], DType)> = Vec::new();
            for &is_in in kernel.input_params() {
                let v = if is_in {
                    *ins.next().ok_or_else(|| {
                        graph_err(&node.name, "the kernel has more inputs than the node")
                    })?
                } else {
                    node.output
                };
                let info = g.value(v);
                args.push((addr(v)?, &info.shape, info.dtype));
            }
            // Safety: every address is an allocation of this executor holding the value's
            // whole array (parameters and inputs as uploaded, node outputs in the plan's
            // buffer for them, sized by the plan for its largest value), alive as long as
            // `self`; launches and frees are ordered on one stream.
            unsafe { kernel.launch_on_device(&args) }
                .map_err(|e| graph_err(&node.name, e.to_string()))?;
        }
        let mut owner = vec![None; host.len()];
        for &v in g.outputs() {
            let (ValueKind::Node(_), Some(b)) = (&g.value(v).kind, plan.storage_of[v.0]) else {
                continue;
            };
            let info = g.value(v);
            host[b].reshape_in_place(&info.shape, info.dtype)?;
            let n = host[b].as_bytes().len();
            if n > 0 {
                self.stream
                    .memcpy_dtoh(&self.buffers[b].slice(..n), host[b].as_bytes_mut())
                    .map_err(|e| driver("copy of an output from the GPU", e))?;
            }
            owner[b] = Some(v);
        }
        self.stream
            .synchronize()
            .map_err(|e| driver("synchronization", e))?;
        Ok(owner)
    }
}

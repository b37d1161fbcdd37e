//! The arrays of a CUDA model kept on the GPU: the executor of a model built for
//! [`Target::Cuda`](crate::Target) allocates every array on the GPU once (parameters
//! uploaded then, graph inputs and the buffers of the memory plan), works out each
//! node's kernel arguments once, and at each run uploads the inputs, launches the
//! kernels and downloads only the graph outputs.

use super::{CompiledModel, ValueId, ValueKind};
use crate::error::{graph_err, Error, Result};
use crate::runtime::NdArray;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::sync::Arc;

/// Device memory of one executor.
pub(super) struct DeviceArrays {
    stream: Arc<CudaStream>,
    /// Parameters by value id (uploaded when the state is created). Kept for their
    /// memory: the kernels reach them through `launches`.
    _params: Vec<Option<CudaSlice<u8>>>,
    /// Graph inputs by value id (uploaded at every run).
    inputs: Vec<Option<CudaSlice<u8>>>,
    /// The buffers of the memory plan.
    buffers: Vec<CudaSlice<u8>>,
    /// For each node, its kernel's arguments in parameter order: the device address
    /// and the value it holds (for the shape and dtype the launch checks).
    launches: Vec<Vec<(u64, ValueId)>>,
}

fn driver(what: &str, e: cudarc::driver::DriverError) -> Error {
    Error::Target(format!("CUDA {} failed: {:?}", what, e))
}

impl DeviceArrays {
    /// Allocate the arrays of `model` on the GPU of its kernels, upload the parameters
    /// and resolve every kernel argument to its address. `None` when the model has no
    /// kernel.
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
        let g = &model.graph;
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
        let mut inputs: Vec<Option<CudaSlice<u8>>> = (0..g.values().len()).map(|_| None).collect();
        for &v in g.inputs() {
            let info = g.value(v);
            let bytes = info.shape.iter().product::<usize>() * info.dtype.bytes();
            inputs[v.0] = Some(alloc(bytes)?);
        }
        let buffers = model
            .plan
            .buffers
            .iter()
            .map(|&(bytes, _)| alloc(bytes))
            .collect::<Result<Vec<_>>>()?;
        // The allocations live as long as `self` and do not move: their addresses serve
        // every run (all on one stream, so no cross-stream synchronization is needed).
        let ptr = |s: &CudaSlice<u8>| s.device_ptr(&stream).0;
        let mut launches = Vec::with_capacity(g.nodes().len());
        for (node, kernel) in g.nodes().iter().zip(&model.kernels) {
            let addr = |v: ValueId| -> Result<u64> {
                let d = match &g.value(v).kind {
                    ValueKind::Param(_) => params[v.0].as_ref(),
                    ValueKind::Input(_) => inputs[v.0].as_ref(),
                    ValueKind::Node(_) => model.plan.storage_of[v.0].map(|b| &buffers[b]),
                };
                d.map(ptr).ok_or_else(|| {
                    graph_err(&node.name, format!("{} is not on the GPU", g.value_name(v)))
                })
            };
            let mut ins = node.inputs.iter();
            let mut args = Vec::with_capacity(kernel.input_params().len());
            for &is_in in kernel.input_params() {
                let v = if is_in {
                    *ins.next().ok_or_else(|| {
                        graph_err(&node.name, "the kernel has more inputs than the node")
                    })?
                } else {
                    node.output
                };
                args.push((addr(v)?, v));
            }
            launches.push(args);
        }
        Ok(Some(DeviceArrays {
            stream,
            _params: params,
            inputs,
            buffers,
            launches,
        }))
    }

    /// Run every node on the GPU: upload `inputs` (by value id; `set_input` checked their
    /// shapes and dtypes), launch the kernels in order, download the graph outputs into
    /// `host` (the executor's buffers, by plan buffer). Returns, for each plan buffer,
    /// the value it holds on the host afterwards.
    pub(super) fn run(
        &mut self,
        model: &CompiledModel,
        inputs: &[Option<NdArray>],
        host: &mut [NdArray],
    ) -> Result<Vec<Option<ValueId>>> {
        let g = &model.graph;
        for &v in g.inputs() {
            let (Some(a), Some(d)) = (&inputs[v.0], self.inputs[v.0].as_mut()) else {
                continue;
            };
            if !a.as_bytes().is_empty() {
                self.stream
                    .memcpy_htod(a.as_bytes(), d)
                    .map_err(|e| driver("copy of an input to the GPU", e))?;
            }
        }
        for ((node, kernel), launch) in g.nodes().iter().zip(&model.kernels).zip(&self.launches) {
            let args: Vec<_> = launch
                .iter()
                .map(|&(p, v)| {
                    let info = g.value(v);
                    (p, info.shape.as_slice(), info.dtype)
                })
                .collect();
            // Safety: every address is an allocation of this executor holding the value's
            // whole array (parameters and inputs as uploaded, node outputs in the plan's
            // buffer for them, sized by the plan for its largest value), alive as long as
            // `self`; launches, copies and frees are ordered on one stream.
            unsafe { kernel.launch_on_device(&args) }
                .map_err(|e| graph_err(&node.name, e.to_string()))?;
        }
        let plan = &model.plan;
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

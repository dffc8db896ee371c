"""Everything DPU: libdpu bindings, the DPU emulator, kernels, partitioner, cost model, PIM backend."""

//! CPU codegen (being written)

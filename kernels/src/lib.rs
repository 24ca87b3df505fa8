//! assay's compute kernels, each beside the reference it is tested against.
//!
//! `cpu` owns the CPU matmul straight from a GGUF file's quantized blocks: the weights are
//! repacked once at load into the kernel's tiles (no f32 copy), the activations are quantized
//! to int8 per block on the fly, and the products run as AVX512-VNNI or AVX2 dot products
//! where the CPU has them, portable Rust elsewhere. A row's arithmetic never depends on how many rows
//! share a call, so batched and solo generation give the same bits.
//!
//! `cpu` also holds the f32 GEMM of the exact reference path (`PackedWeights`).
//!
//! This crate knows blocks, tiles and rows; it must not know models, tensors by name or
//! devices (`assay-engine` maps weights onto it).

pub mod cpu;

//! Kernel-stack data paths: UDP and TCP.
pub mod record;

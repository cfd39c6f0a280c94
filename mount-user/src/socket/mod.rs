//! Kernel-stack data paths: UDP and TCP.

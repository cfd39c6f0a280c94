//! Types shared by the XDP program and the userspace loader.
//!
//! Everything here is `#[repr(C)]` plain data so both sides agree on layout.
#![no_std]

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "mount_xdp";

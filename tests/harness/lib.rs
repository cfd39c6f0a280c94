//! Test harness: namespaces, veth, daemon processes, a small independent RPC client.

//! Shared fixtures for the end-to-end tests.

#![allow(dead_code)]

#[path = "../../crates/openshell-build/tests/support/server.rs"]
pub mod server;

#[path = "../../crates/openshell-proxy/tests/common/mod.rs"]
pub mod proxy_common;

pub mod built;
pub mod containerd;
pub mod debian_archive;
pub mod gpg;
pub mod https;
pub mod npm_registry;
pub mod postgres;
pub mod pypi_index;
pub mod registry;

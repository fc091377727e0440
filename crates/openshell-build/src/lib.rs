//! Image definitions, lockfiles, package sources and (as they land) lock, fetch
//! and build. `build` never resolves; `lock` never builds.

pub mod build;
pub mod closure;
pub mod def;
pub mod exclude;
pub mod fetch;
pub mod images;
pub mod lock;
pub mod lockfile;
pub mod maintainer;
pub mod sources;
pub mod verify;
pub mod wheels;

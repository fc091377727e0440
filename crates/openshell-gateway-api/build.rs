//! Generates the gRPC code of `proto/openshell/gateway/v1/gateway.proto`. The
//! file is compiled by protox, in Rust: building openshell needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/openshell/gateway/v1/gateway.proto";
    println!("cargo:rerun-if-changed={proto}");
    let files = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(files)?;
    Ok(())
}

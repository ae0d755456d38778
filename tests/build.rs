//! Generates the tonic client and server for `proto/demo.proto` (compiled by protox: no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/demo.proto");
    let fds = protox::compile(["demo.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

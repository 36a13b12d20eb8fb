//! Compiles `bpf/relay_fwd.bpf.c` with clang into `$OUT_DIR/relay_fwd.o`, which the
//! crate embeds. Without clang (a fresh machine running the README's first command)
//! the build still succeeds: the object is empty, and the relay says at start that
//! this build has no eBPF program.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/relay_fwd.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("relay_fwd.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let target = match std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    // linux/bpf.h includes asm/types.h, which Debian keeps under the multiarch
    // directory that `-target bpf` does not search.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", target])
        .arg(format!("-I{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        // Kernel headers missing, or an old clang: the build goes on without the
        // program (the relay says so at start; the crate's tests fail on it).
        Ok(s) => {
            println!(
                "cargo:warning=no eBPF fast path in this build: {clang} failed on {src} ({s})"
            );
            std::fs::write(&object, b"").expect("write an empty object");
        }
        Err(e) => {
            println!(
                "cargo:warning=no eBPF fast path in this build: cannot run {clang} ({e}); install clang to build it"
            );
            std::fs::write(&object, b"").expect("write an empty object");
        }
    }
}

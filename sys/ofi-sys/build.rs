//! Finds libfabric, compiles the C shim for its `static inline` calls, and runs bindgen over
//! its headers.
//!
//! Probes, in order: `ATOLL_OFI_DIR` (a prefix holding `include/rdma/fabric.h` and
//! `lib/libfabric.so`, or `lib64/`), then pkg-config's `libfabric` (1.17.0 up to, not
//! including, 3.0.0). When every probe fails, the build stops with the list of what each
//! probe found and the Debian package to install.

use std::env;
use std::path::{Path, PathBuf};

/// The prefix override.
const DIR_VAR: &str = "ATOLL_OFI_DIR";
/// The oldest libfabric the provider is written against (Debian 12's).
const MIN_VERSION: &str = "1.17.0";
/// The first version not accepted (libfabric 2.x keeps the 1.x API; 3.x is unknown).
const MAX_VERSION: &str = "3.0.0";

struct Found {
    include: Vec<PathBuf>,
}

fn main() {
    println!("cargo:rerun-if-env-changed={DIR_VAR}");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    let mut failures = Vec::new();
    let found = probe_dir(&mut failures).or_else(|| probe_pkg_config(&mut failures));
    let Some(found) = found else {
        eprintln!("error: libfabric was not found. Every probe failed:");
        for failure in &failures {
            eprintln!("  - {failure}");
        }
        eprintln!(
            "Install the development files (Debian/Ubuntu: `apt-get install libfabric-dev \
             pkg-config`; Fedora: `dnf install libfabric-devel`), or point {DIR_VAR} at a \
             libfabric {MIN_VERSION} or newer installation prefix."
        );
        std::process::exit(1);
    };

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true);
    for dir in &found.include {
        shim.include(dir);
    }
    shim.compile("atoll_ofi_shim");

    let mut builder = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_arg("-Isrc")
        .allowlist_function("fi_.*")
        .allowlist_function("atoll_fi_.*")
        .allowlist_type("fi_.*")
        .allowlist_type("fid_.*")
        .allowlist_type("fid")
        .allowlist_var("FI_.*")
        // Status codes and enumerations stay plain integer constants: a value outside a Rust
        // enum's list would be undefined behaviour.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for dir in &found.include {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = match builder.generate() {
        Ok(bindings) => bindings,
        Err(error) => {
            eprintln!(
                "error: bindgen could not read libfabric's headers: {error}. bindgen needs \
                 libclang (Debian: `apt-get install libclang-dev`)."
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(error) = bindings.write_to_file(out.join("bindings.rs")) {
        eprintln!("error: writing the bindings to {}: {error}", out.display());
        std::process::exit(1);
    }
}

fn probe_dir(failures: &mut Vec<String>) -> Option<Found> {
    let Some(prefix) = env::var_os(DIR_VAR).filter(|v| !v.is_empty()) else {
        failures.push(format!("{DIR_VAR}: not set"));
        return None;
    };
    let prefix = PathBuf::from(prefix);
    let include = prefix.join("include");
    if !include.join("rdma/fabric.h").is_file() {
        failures.push(format!(
            "{DIR_VAR}={}: no include/rdma/fabric.h there",
            prefix.display()
        ));
        return None;
    }
    let lib = ["lib", "lib64"]
        .iter()
        .map(|dir| prefix.join(dir))
        .find(|dir| has_library(dir));
    let Some(lib) = lib else {
        failures.push(format!(
            "{DIR_VAR}={}: no lib/libfabric.so or lib64/libfabric.so there",
            prefix.display()
        ));
        return None;
    };
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=fabric");
    Some(Found {
        include: vec![include],
    })
}

fn has_library(dir: &Path) -> bool {
    dir.join("libfabric.so").exists() || dir.join("libfabric.a").exists()
}

fn probe_pkg_config(failures: &mut Vec<String>) -> Option<Found> {
    match pkg_config::Config::new()
        .range_version(MIN_VERSION..MAX_VERSION)
        .probe("libfabric")
    {
        Ok(library) => Some(Found {
            include: library.include_paths,
        }),
        Err(error) => {
            let text = error.to_string().replace('\n', " ");
            failures.push(format!(
                "pkg-config libfabric (>= {MIN_VERSION}, < {MAX_VERSION}): {text}"
            ));
            None
        }
    }
}

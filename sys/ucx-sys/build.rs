//! Finds UCX (pkg-config `ucx`, or the prefix in `ATOLL_UCX_DIR`) and generates the bindings.
//! A failure lists every probe that was tried and names the Debian package to install.

use std::env;
use std::path::PathBuf;

/// Oldest UCX the bindings are written against (Debian 12 ships 1.13.1).
const MIN_VERSION: &str = "1.13";
/// First UCX version not accepted (a new major version may change the ABI).
const MAX_VERSION: &str = "2.0";
/// Overrides pkg-config with an installation prefix (`$ATOLL_UCX_DIR/include`, `/lib`).
const DIR_VAR: &str = "ATOLL_UCX_DIR";

struct Found {
    include_paths: Vec<PathBuf>,
}

fn main() {
    println!("cargo:rerun-if-env-changed={DIR_VAR}");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=wrapper.h");
    let mut failures = Vec::new();
    let found = probe_dir(&mut failures).or_else(|| probe_pkg_config(&mut failures));
    let Some(found) = found else {
        let mut message = String::from("ucx-sys: could not find UCX (libucp). Probes tried:\n");
        for failure in &failures {
            message.push_str(&format!("  - {failure}\n"));
        }
        message.push_str(&format!(
            "Install UCX {MIN_VERSION} or later with its headers and pkg-config file: on Debian or \
             Ubuntu `apt-get install libucx-dev pkg-config`; elsewhere set {DIR_VAR} to the \
             prefix UCX was installed under (it must hold include/ucp/api/ucp.h and lib/libucp.so).\n"
        ));
        panic!("{message}");
    };
    generate(&found);
}

fn probe_dir(failures: &mut Vec<String>) -> Option<Found> {
    let dir = PathBuf::from(env::var_os(DIR_VAR)?);
    let header = dir.join("include/ucp/api/ucp.h");
    if !header.is_file() {
        failures.push(format!(
            "{DIR_VAR}={}: {} does not exist",
            dir.display(),
            header.display()
        ));
        return None;
    }
    let lib = ["lib", "lib64"]
        .iter()
        .map(|l| dir.join(l))
        .find(|l| l.join("libucp.so").exists());
    let Some(lib) = lib else {
        failures.push(format!(
            "{DIR_VAR}={}: neither lib/ nor lib64/ holds libucp.so",
            dir.display()
        ));
        return None;
    };
    println!("cargo:rustc-link-search=native={}", lib.display());
    for name in ["ucp", "uct", "ucs"] {
        println!("cargo:rustc-link-lib={name}");
    }
    Some(Found {
        include_paths: vec![dir.join("include")],
    })
}

fn probe_pkg_config(failures: &mut Vec<String>) -> Option<Found> {
    match pkg_config::Config::new()
        .range_version(MIN_VERSION..MAX_VERSION)
        .probe("ucx")
    {
        Ok(library) => Some(Found {
            include_paths: library.include_paths,
        }),
        Err(error) => {
            failures.push(format!(
                "pkg-config ucx (>= {MIN_VERSION}, < {MAX_VERSION}): {error}"
            ));
            None
        }
    }
}

fn generate(found: &Found) {
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("ucp_.*|ucs_.*")
        .allowlist_type("ucp_.*|ucs_.*")
        .allowlist_var("UCP_.*|UCS_.*")
        // C enums become integer constants; the status type becomes a newtype. Never Rust
        // enums: an unlisted value in one would be undefined behaviour.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .newtype_enum("ucs_status_t")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for path in &found.include_paths {
        builder = builder.clang_arg(format!("-I{}", path.display()));
    }
    let bindings = match builder.generate() {
        Ok(bindings) => bindings,
        Err(error) => panic!(
            "ucx-sys: bindgen could not parse UCX's headers ({error}); bindgen needs libclang: \
             on Debian `apt-get install libclang-dev`"
        ),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("ucx-sys: writing bindings.rs to OUT_DIR failed");
}

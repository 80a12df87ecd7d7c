//! Builds the plugin components so that `cargo run` and `cargo test` need nothing else:
//! each plugin of the `plugins/` workspace is compiled for `wasm32-wasip2` and copied
//! to `plugins/dist/` (the shipped plugins) and `plugins/test-dist/` (those plus the
//! misbehaving test plugins). Test plugins that cannot load on purpose (marked
//! `broken = true` under `[package.metadata.wasm-connect]`) go to
//! `plugins/test-broken/` instead.
//!
//! Each plugin is built by its own cargo invocation: the SDK exports one WIT world per
//! feature, and building the workspace at once would unify those features.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// Set to 1 to keep the plugins' function names (their `name` section) for profiling.
const SYMBOLS_VARIABLE: &str = "WASM_CONNECT_PLUGIN_SYMBOLS";

/// The commit the host is built from, for `GET /` (`WASM_CONNECT_COMMIT`); nothing
/// outside a git checkout.
fn emit_commit(root: &Path) {
    let git = root.join(".git");
    if !git.is_dir() {
        return;
    }
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed={}", git.join(reference).display());
        println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
    }
    let commit = Command::new("git").arg("-C").arg(root).args(["rev-parse", "HEAD"]).output();
    if let Ok(output) = commit
        && output.status.success()
    {
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
            println!("cargo:rustc-env=WASM_CONNECT_COMMIT={commit}");
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ sits in the repository root").to_path_buf();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", plugins.join("Cargo.lock").display());
    println!("cargo:rerun-if-env-changed=WASM_CONNECT_SKIP_PLUGIN_BUILD");
    println!("cargo:rerun-if-env-changed={SYMBOLS_VARIABLE}");
    emit_commit(&root);
    // The jq component is built into the host (runtime/builtin.rs).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let builtin_jq = out_dir.join("jq-transform.wasm");
    if std::env::var_os("WASM_CONNECT_SKIP_PLUGIN_BUILD").is_some() {
        // From an earlier build, if there is one.
        let earlier = plugins.join("dist").join("jq-transform.wasm");
        println!("cargo:rerun-if-changed={}", earlier.display());
        let built = std::fs::read(&earlier).unwrap_or_default();
        if built.is_empty() {
            println!(
                "cargo:warning=no plugins/dist/jq-transform.wasm: this host runs no jq (build once without WASM_CONNECT_SKIP_PLUGIN_BUILD)"
            );
        }
        std::fs::write(&builtin_jq, built).expect("writing the built-in jq component");
        return;
    }

    let packages = plugin_packages(&plugins);
    for package in &packages {
        println!("cargo:rerun-if-changed={}", package.dir.display());
    }
    for shared in ["sdk", "protocol"] {
        println!("cargo:rerun-if-changed={}", plugins.join(shared).display());
    }

    ensure_target();
    // OUT_DIR is <target>/<profile>/build/<pkg>/out: keep the plugins' own target
    // directory beside the host's so both caches survive together.
    // Components with their function names are built apart, so that switching back and
    // forth does not rebuild every plugin each time.
    let symbols = std::env::var_os(SYMBOLS_VARIABLE).is_some_and(|value| value == "1");
    let plugin_target = if symbols { "wasm-plugins-symbols" } else { "wasm-plugins" };
    let target_dir = out_dir.ancestors().nth(4).expect("OUT_DIR is deep enough").join(plugin_target);
    let dist = plugins.join("dist");
    let test_dist = plugins.join("test-dist");
    let test_broken = plugins.join("test-broken");
    for directory in [&dist, &test_dist, &test_broken] {
        std::fs::create_dir_all(directory).expect("creating the plugin output directory");
    }
    for package in &packages {
        build_plugin(&plugins, &target_dir, &package.name, symbols);
        let built = target_dir.join(TARGET).join("release").join(format!("{}.wasm", package.name.replace('-', "_")));
        let file = format!("{}.wasm", package.name);
        if package.name == "jq-transform" {
            copy_if_changed(&built, &builtin_jq);
        }
        if package.broken {
            copy_if_changed(&built, &test_broken.join(&file));
            continue;
        }
        copy_if_changed(&built, &test_dist.join(&file));
        if !package.test_only {
            copy_if_changed(&built, &dist.join(&file));
        }
    }
}

struct Package {
    name: String,
    dir: PathBuf,
    test_only: bool,
    broken: bool,
}

/// Every `cdylib` package below `plugins/` (the SDK and protocol are libraries).
fn plugin_packages(plugins: &Path) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut directories = vec![plugins.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !path.is_dir() || matches!(name.as_str(), "dist" | "test-dist" | "target" | "src") || name.starts_with('.') {
                continue;
            }
            let manifest = path.join("Cargo.toml");
            match std::fs::read_to_string(&manifest) {
                Ok(text) if text.contains("cdylib") => packages.push(Package {
                    name: package_name(&text).unwrap_or_else(|| panic!("no package name in {}", manifest.display())),
                    test_only: path.starts_with(plugins.join("test-plugins")),
                    broken: text.lines().any(|line| line.trim() == "broken = true"),
                    dir: path,
                }),
                Ok(_) => {}
                Err(_) => directories.push(path),
            }
        }
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    packages
}

fn package_name(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| line.trim().strip_prefix("name = ")).map(|name| name.trim_matches('"').to_owned())
}

/// `rust-toolchain.toml` lists the target, but rustup installs listed targets only
/// when it installs the toolchain itself: add it when it is missing.
fn ensure_target() {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(output) if String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == TARGET) => {}
        Ok(_) => {
            let status = Command::new("rustup").args(["target", "add", TARGET]).status().expect("running rustup");
            assert!(status.success(), "`rustup target add {TARGET}` failed");
        }
        // Without rustup the toolchain must already have the target; cargo will say if not.
        Err(_) => {}
    }
}

fn build_plugin(plugins: &Path, target_dir: &Path, package: &str, symbols: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.current_dir(plugins).args(["build", "--release", "--target", TARGET, "-p", package]).arg("--target-dir").arg(target_dir);
    // The outer build's settings (flags, profile, jobserver) are not the plugins'.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            command.env_remove(key.as_ref());
        }
    }
    // Function names kept in the components, for profiles (BENCHMARKS.md, "How to profile").
    if symbols {
        command.env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    }
    let status = command.status().unwrap_or_else(|error| panic!("running cargo for plugin {package}: {error}"));
    assert!(status.success(), "building plugin {package} for {TARGET} failed (see the output above)");
}

fn copy_if_changed(from: &Path, to: &Path) {
    let new = std::fs::read(from).unwrap_or_else(|error| panic!("reading {}: {error}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(new.as_slice()) {
        std::fs::write(to, new).unwrap_or_else(|error| panic!("writing {}: {error}", to.display()));
    }
}

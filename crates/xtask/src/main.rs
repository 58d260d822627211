//! `cargo xtask bundle [--image REF] [--version X.Y.Z] [--check]`
//!
//! Regenerates the CRDs, the OLM bundle, the file-based catalog and every
//! image reference from Cargo.toml's release image and workspace version.
//! `--image`/`--version` first write those into Cargo.toml (then run any
//! cargo command once so Cargo.lock takes the new version); `--check` only
//! lists the stale files and fails if there are any; `--root` works on
//! another checkout.

use std::path::Path;
use std::process::ExitCode;
use xtask::{Release, generate, stale, with_release};

const USAGE: &str =
    "usage: cargo xtask bundle [--image REF] [--version X.Y.Z] [--check] [--root DIR]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("bundle") {
        return Err(USAGE.into());
    }
    let (mut image, mut version, mut check) = (None, None, false);
    let mut root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--image" => image = Some(args.next().ok_or(USAGE)?),
            "--version" => version = Some(args.next().ok_or(USAGE)?),
            "--check" => check = true,
            // Another checkout (the tests run it on a copy).
            "--root" => root = args.next().ok_or(USAGE)?.into(),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    let manifest_path = root.join("Cargo.toml");
    let manifest =
        std::fs::read_to_string(&manifest_path).map_err(|e| format!("Cargo.toml: {e}"))?;
    let mut release = Release::from_manifest(&manifest)?;
    if image.is_some() || version.is_some() {
        release = Release {
            image: image.unwrap_or(release.image),
            version: version.unwrap_or(release.version),
        };
        release.validate()?;
        if !check {
            std::fs::write(&manifest_path, with_release(&manifest, &release))
                .map_err(|e| format!("Cargo.toml: {e}"))?;
        }
    }
    let files = generate(&root, &release)?;
    let stale = stale(&root, &files);
    if check {
        if stale.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "stale (run `cargo xtask bundle`): {}",
            list.join(", ")
        ));
    }
    for path in &stale {
        let target = root.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&target, &files[path]).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "{} {} ({}; bundle {})",
        xtask::PACKAGE,
        release.version,
        release.image,
        release.bundle_image()
    );
    Ok(())
}

//! Embeds the JavaScript packages the sandbox provides to scripts (zod), as `npm ci` installed
//! them in `sandbox-js/node_modules` (scripts/bootstrap does). Without them the build still
//! works: the generated table lists them as missing, and a script importing one gets an error
//! naming the setup command.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The packages scripts may import without installing them, as Nango's runner provides them.
const PROVIDED: [&str; 1] = ["zod"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let sandbox_js = manifest.join("../../sandbox-js");
    println!("cargo:rerun-if-changed={}", sandbox_js.display());
    println!("cargo:rerun-if-changed=build.rs");
    let mut out = String::from("pub static PACKAGES: &[Package] = &[\n");
    let mut missing = Vec::new();
    for name in PROVIDED {
        let dir = sandbox_js.join("node_modules").join(name);
        match package(name, &dir) {
            Some(text) => out.push_str(&text),
            None => missing.push(name),
        }
    }
    out.push_str("];\n");
    writeln!(out, "pub static MISSING: &[&str] = &{missing:?};").expect("write to string");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("js_packages.rs");
    std::fs::write(dest, out).expect("write the package table");
}

/// One `Package { ... },` entry: its version, the bare specifiers its `exports` map gives for
/// `import`, and every ES module file of it (`.js` outside `src/`).
fn package(name: &str, dir: &Path) -> Option<String> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).ok()?).ok()?;
    let version = manifest["version"].as_str()?.to_string();
    let mut entries = Vec::new();
    match &manifest["exports"] {
        serde_json::Value::Object(exports) => {
            for (subpath, target) in exports {
                let import = target.get("import").and_then(|v| v.as_str());
                let (Some(import), false) = (import, subpath.contains('*')) else {
                    continue;
                };
                let specifier = match subpath.strip_prefix("./") {
                    Some(rest) => format!("{name}/{rest}"),
                    None => name.to_string(),
                };
                let file = format!("{name}/{}", import.trim_start_matches("./"));
                entries.push((specifier, file));
            }
        }
        _ => {
            let main = manifest["module"].as_str().or(manifest["main"].as_str())?;
            entries.push((
                name.to_string(),
                format!("{name}/{}", main.trim_start_matches("./")),
            ));
        }
    }
    let mut files = Vec::new();
    collect(dir, dir, &mut files);
    files.sort();
    let mut text = String::new();
    writeln!(
        text,
        "    Package {{ name: {name:?}, version: {version:?}, entries: &{entries:?}, files: &["
    )
    .ok()?;
    for (relative, path) in files {
        writeln!(
            text,
            "        ({:?}, include_str!({:?})),",
            format!("{name}/{relative}"),
            path.display().to_string()
        )
        .ok()?;
    }
    text.push_str("    ] },\n");
    Some(text)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        if path.is_dir() {
            if relative != "src" && relative != "node_modules" {
                collect(root, &path, files);
            }
        } else if relative.ends_with(".js") {
            files.push((relative, path));
        }
    }
}

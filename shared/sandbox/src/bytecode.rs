//! Compiled modules, by source hash. Parsing JavaScript is most of what a fresh sandbox costs;
//! loading QuickJS bytecode compiled once per process is several times cheaper. The bytecode
//! comes only from this process's own compiler, never from outside.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use rquickjs::module::{Declared, WriteOptions};
use rquickjs::{Ctx, Module};

/// Total bytecode kept; past it the cache starts over (scripts are small, deploys rare).
const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
struct Cache {
    modules: HashMap<[u8; 32], Arc<Vec<u8>>>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

fn key(name: &str, source: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(name.as_bytes());
    hasher.update(&[0]);
    hasher.update(source.as_bytes());
    *hasher.finalize().as_bytes()
}

/// Whether a module's bytecode keeps its line numbers. The user's modules do, for stacks that
/// point into their TypeScript; the SDK's own need not, which makes them cheaper to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Debug {
    Keep,
    Strip,
}

/// The module `name` with `source`, from bytecode when it was compiled before.
pub fn declare<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    source: &str,
    debug: Debug,
) -> rquickjs::Result<Module<'js, Declared>> {
    let key = key(name, source);
    let cached = CACHE
        .lock()
        .expect("bytecode cache")
        .modules
        .get(&key)
        .cloned();
    if let Some(bytes) = cached {
        // SAFETY: these bytes were written by `Module::write` of this same QuickJS build, for a
        // module of this name and source.
        return unsafe { Module::load(ctx.clone(), &bytes) };
    }
    let module = Module::declare(ctx.clone(), name, source)?;
    let bytes = module.write(WriteOptions {
        strip_debug: debug == Debug::Strip,
        ..WriteOptions::default()
    })?;
    let mut cache = CACHE.lock().expect("bytecode cache");
    if cache.bytes + bytes.len() > MAX_CACHED_BYTES {
        *cache = Cache::default();
    }
    cache.bytes += bytes.len();
    cache.modules.insert(key, Arc::new(bytes));
    Ok(module)
}

/// Bytecode of the modules built into the binary (provided packages, Node modules), by name:
/// their source never changes within a process, so hashing it on every load is not needed.
static STATIC: LazyLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = LazyLock::new(Mutex::default);

/// A built-in module (`source` is part of the binary), from bytecode after its first load.
pub fn declare_static<'js>(
    ctx: &Ctx<'js>,
    name: &str,
    source: &'static str,
) -> rquickjs::Result<Module<'js, Declared>> {
    let cached = STATIC.lock().expect("bytecode cache").get(name).cloned();
    if let Some(bytes) = cached {
        // SAFETY: written by `Module::write` of this same QuickJS build for this module, whose
        // source is fixed at build time.
        return unsafe { Module::load(ctx.clone(), &bytes) };
    }
    let module = Module::declare(ctx.clone(), name, source)?;
    let bytes = module.write(WriteOptions {
        strip_debug: true,
        ..WriteOptions::default()
    })?;
    STATIC
        .lock()
        .expect("bytecode cache")
        .insert(name.to_string(), Arc::new(bytes));
    Ok(module)
}

//! Script projects to bundles: find a project's functions (from `nango.yaml` and the object
//! form), strip their TypeScript with oxc, and bundle each function's modules with their
//! source maps. The types it produces ([`lasso_core::scripts`]) live with the stores that keep
//! them; this crate only runs at build time (`lasso compile`, `lasso deploy`, tests, benches),
//! never in a deployed function.

mod commonjs;
mod compile;
mod evaluate;
mod index_file;
mod node_modules;
mod yaml;

pub use compile::compile;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod zero_yaml_tests;

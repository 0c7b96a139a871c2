//! Stack traces in the user's TypeScript: JavaScript positions mapped back through the
//! bundle's source maps.

use std::collections::BTreeMap;

use lasso_core::scripts::Bundle;

/// Rewrites the `<module key>:<line>:<column>` positions of a JavaScript stack trace to the
/// TypeScript positions the source maps point at (`github/syncs/issues.ts:12:7`). Positions
/// the maps do not cover stay as they are.
pub fn remap_stack(bundle: &Bundle, stack: &str) -> String {
    let maps: BTreeMap<&str, oxc_sourcemap::SourceMap> = bundle
        .source_maps
        .iter()
        .filter_map(|(key, json)| {
            oxc_sourcemap::SourceMap::from_json_string(json)
                .ok()
                .map(|m| (key.as_str(), m))
        })
        .collect();
    let mut out = String::with_capacity(stack.len());
    for (i, line) in stack.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&remap_line(line, &maps));
    }
    out
}

/// Replaces the first `key:line:col` of `line` whose key has a source map.
fn remap_line(line: &str, maps: &BTreeMap<&str, oxc_sourcemap::SourceMap>) -> String {
    for (key, map) in maps {
        let Some(at) = line.find(&format!("{key}:")) else {
            continue;
        };
        let rest = &line[at + key.len() + 1..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let line_len = digits(rest);
        if line_len == 0 || !rest[line_len..].starts_with(':') {
            continue;
        }
        let col_len = digits(&rest[line_len + 1..]);
        let (Ok(js_line), Ok(js_col)) = (
            rest[..line_len].parse::<u32>(),
            rest[line_len + 1..line_len + 1 + col_len].parse::<u32>(),
        ) else {
            continue;
        };
        // Stack positions are 1-based; source maps count from 0.
        let table = map.generate_lookup_table();
        let Some(token) =
            map.lookup_token(&table, js_line.saturating_sub(1), js_col.saturating_sub(1))
        else {
            continue;
        };
        let Some(source) = token.get_source_id().and_then(|id| map.get_source(id)) else {
            continue;
        };
        let end = at + key.len() + 1 + line_len + 1 + col_len;
        return format!(
            "{}{source}:{}:{}{}",
            &line[..at],
            token.get_src_line() + 1,
            token.get_src_col() + 1,
            &line[end..]
        );
    }
    line.to_string()
}

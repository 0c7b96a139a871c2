// Node's `vm` with zod, isolated as Lasso isolates it: a fresh context per execution, zod
// evaluated fresh in that context (its files compiled once, as Lasso caches bytecode), then a
// sync-like script that parses 100 objects with a zod model and hands them to `nango.batchSave`.
// argv: iterations, the zod package directory. Prints JSON: {per_execution_us, node}.
import vm from 'node:vm';
import fs from 'node:fs';
import path from 'node:path';

const iterations = Number(process.argv[2] || 500);
const zodDir = process.argv[3];
const items = Array.from({ length: 100 }, (_, i) => ({ id: `item-${i}`, title: `Item ${i}`, n: i, tags: ['a', 'b'] }));

const compiled = new Map();
function script(file) {
    let s = compiled.get(file);
    if (!s) {
        const source = fs.readFileSync(file, 'utf8');
        s = new vm.Script(`(function (exports, require, module) {${source}\n})`, { filename: file });
        compiled.set(file, s);
    }
    return s;
}

// A CommonJS loader whose modules all live in `context`.
function loadIn(context, entry) {
    const cache = new Map();
    const load = (file) => {
        if (cache.has(file)) {
            return cache.get(file).exports;
        }
        const module = { exports: {} };
        cache.set(file, module);
        const require = (spec) => load(path.resolve(path.dirname(file), spec));
        script(file).runInContext(context)(module.exports, require, module);
        return module.exports;
    };
    return load(entry);
}

const source = `(async () => {
    const Item = z.object({ id: z.string(), title: z.string(), n: z.number().int(), tags: z.array(z.string()) });
    await nango.batchSave(input.items.map((i) => Item.parse(i)), 'Item');
})()`;
const sync = new vm.Script(source);

let saved = 0;
async function once() {
    const context = vm.createContext({
        nango: { batchSave: async (records) => { saved += records.length; return true; } },
        input: { items },
    });
    context.z = loadIn(context, path.join(zodDir, 'index.cjs')).z;
    await sync.runInContext(context);
}

for (let i = 0; i < 50; i++) await once(); // warm up
const start = process.hrtime.bigint();
for (let i = 0; i < iterations; i++) await once();
const elapsed = Number(process.hrtime.bigint() - start) / 1e3;
if (saved !== 100 * (iterations + 50)) {
    throw new Error(`saved ${saved}`);
}
console.log(JSON.stringify({ per_execution_us: elapsed / iterations, node: process.version }));
